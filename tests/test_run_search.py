"""Text search (`q`) finds exactly the runs the plain substring condition finds, whichever way the store takes
(the FTS5 trigram index for rare terms, the sort's index for dense ones, the plain condition for 1-2 characters;
pg_trgm on PostgreSQL), and the index follows every replace, rename, delete and prune. A real SQLite file and the
real PostgreSQL server (`store` fixture)."""

from __future__ import annotations

import random
import shutil
import uuid

import pytest

from telemetry.filters import Page, RunFilters
from telemetry.model import NodeRun, Run, RunError, RunLabels
from telemetry.store import run_pages, run_search
from telemetry.store.database import sqlite_url
from telemetry.store.schema import RunRow
from telemetry.store.store import Store

# U+212A (Kelvin sign) and U+0130 fold to ASCII k and i in the trigram index, never in SQLite's LIKE.
NAMES = ("upscale 4x", "Portrait studio", "Ünïcode façade 漢字", "50% off_sale", "VAEDecode test", "inpaint mask",
         "\u212a-rated \u0130zmir")
ERRORS = ("mat1 and mat2 shapes cannot be multiplied", "CUDA out of memory. Tried to allocate 2.50 GiB",
          "No such file: 'models/loras/missing_v2.safetensors'", "Ошибка: ÉCHEC du nœud", 'quote " and \\ slash')
TERMS = ("upscale", "UPSCALE", "portrait", "ünïcode", "Ünïcode", "漢字", "façade", "50%", "%", "_", "off_sale",
         "0%_o", "VAEDecode", "vaedecode", "mat1", "missing_v2", "ÉCHEC", "nœud", '"', 'quote "', "\\", "\\ sl",
         "hero", '"hero"', "Scene 7", "Story", "zzqx", "u", "up", "ca", "Ö", "  ", "a b",
         # 1-2 characters, where a column ends, its only character, cased non-ASCII, caseless, none at all
         "4x", "x", "X", "7", "字", "漢", "de", "DE", "t", '"]', "]", "ü", "Ош", "%_", "qz", "\\ ",
         "k-rated", "-rated", "izmir", "zmir", "k", "i", "ki")


def _runs(count: int, seed: int = 7) -> list[Run]:
    rng = random.Random(seed)
    runs = []
    for i in range(count):
        failed = i % 5 == 0
        run = Run(str(uuid.UUID(int=rng.getrandbits(128), version=4)), "failed" if failed else "success",
                  started_at_ms=1_000_000 + i * 1000 if i % 17 else None, duration_ms=float(rng.randrange(100, 9000)),
                  workflow_name=NAMES[i % len(NAMES)] if i % 11 else None)
        if failed:
            run.error = RunError("3", "KSampler" if i % 2 else "VAEDecode", "RuntimeError", ERRORS[i % len(ERRORS)])
        run.nodes = [NodeRun("1", ("KSampler", "VAEDecode", "SaveImage")[i % 3], "executed", duration_ms=float(i))]
        if i % 3 == 0:
            run.labels = RunLabels(f"Story {i % 4}", f"Scene {i % 9}", ["hero", "night"] if i % 2 else ["ünï"])
        runs.append(run)
    return runs


def _plain_ids(store: Store, q: str) -> set[str]:
    """The old semantics: the substring condition alone, no index."""
    with store.bound():
        return {r for (r,) in RunRow.select(RunRow.run_id).where(run_search.substring_condition(q)).tuples()}


def _searched(store: Store, q: str, limit: int = 12) -> tuple[list[str], int]:
    """Every run `q` finds through query_runs, walking the cursor pages, and the exact total."""
    walked, cursor = [], None
    while True:
        page = store.query_runs(RunFilters(q=q), Page(limit=limit, cursor=cursor, exact_total=True))
        walked += [r.run_id for r in page.runs]
        total, cursor = page.total, page.next_cursor
        if cursor is None:
            return walked, total


def _check_all_terms(store: Store, terms=TERMS) -> None:
    everything = [r.run_id for r in store.query_runs(RunFilters(), Page(limit=500)).runs]
    for q in terms:
        expected = _plain_ids(store, q)
        walked, total = _searched(store, q)
        assert len(walked) == len(set(walked)) and set(walked) == expected, q
        assert total == len(expected), q
        assert walked == [r for r in everything if r in expected], q  # the order of the unfiltered list


@pytest.mark.parametrize("rare_max, short_terms_max, pg_frequency", [(0, 3, 1.0), (40, 256, 0.1), (10**9, 10**6, 0.0)])
def test_search_finds_exactly_what_the_substring_condition_finds(store, monkeypatch, rare_max, short_terms_max,
                                                                 pg_frequency):
    """rare_max moves the line between the index and the sort's index, short_terms_max the one between a short
    term's trigrams and the plain condition, pg_frequency how common PostgreSQL's statistics say a short term is
    (a page and a count by the index, a count by the index and a page by the walk, both by the walk): every term
    takes each way once."""
    monkeypatch.setattr(run_search, "RARE_MAX", rare_max)
    monkeypatch.setattr(run_search, "SHORT_TERMS_MAX", short_terms_max)
    monkeypatch.setattr(run_search.RunSearch, "pg_frequency", lambda self, gram: pg_frequency)
    runs = _runs(400)
    store.save_runs(runs)
    assert store.search is not None and store.search.state.available
    _check_all_terms(store, TERMS + (runs[123].run_id[4:17], runs[5].run_id.upper()[-9:]))
    assert _plain_ids(store, "50%") != _plain_ids(store, "50")  # % is literal, not a wildcard
    assert _plain_ids(store, "_") == {r.run_id for r in runs if r.workflow_name and "_" in r.workflow_name
                                      or r.error and "_" in r.error.message}
    assert len(_plain_ids(store, "upscale")) > 40 and _plain_ids(store, "zzqx") == set()


def test_search_with_other_filters_in_stats_and_node_types(store, monkeypatch):
    monkeypatch.setattr(run_search, "RARE_MAX", 30)
    runs = _runs(300)
    store.save_runs(runs)
    for q in ("upscale", "mat1", "VAEDecode", "Scene 7", "up"):
        expected = {r.run_id for r in runs if r.status == "failed"} & _plain_ids(store, q)
        page = store.query_runs(RunFilters(q=q, status=["failed"]), Page(limit=500, exact_total=True))
        assert {r.run_id for r in page.runs} == expected and page.total == len(expected), q
        assert store.stats(RunFilters(q=q))["total_runs"] == len(_plain_ids(store, q)), q
    indexed = [store.node_type_stats(RunFilters(q=q)) for q in ("upscale", "mat1", "up")]
    assert all(indexed) and indexed[0] != indexed[1]
    search, store.search = store.search, None  # the plain condition alone
    try:
        assert indexed == [store.node_type_stats(RunFilters(q=q)) for q in ("upscale", "mat1", "up")]
    finally:
        store.search = search


def test_a_short_term_is_looked_up_in_the_index(store):
    """1-2 characters: SQLite ORs the trigrams that begin with the term (none: no run read at all), PostgreSQL
    looks the term up in the index of 1-2 character substrings, which the query's expression really uses."""
    runs = _runs(200)
    store.save_runs(runs)
    search = store.search
    assert search.state.short_terms
    if store.kind == "sqlite":
        assert search.fts_query("qz") == ""  # nothing begins with it
        assert set(search.terms_beginning("4x")) == {"4x\x03"}  # "upscale 4x" ends there: the end marks
        assert set(search.terms_beginning("字")) == {"字\x03\x03"}
        assert search.fts_query("Ош") is None  # LIKE leaves Cyrillic case alone, the index folds it
        with store.bound():
            sql, params = search.narrow(RunRow.select(RunRow.run_id), "4x").sql()
            plan = " ".join(str(row) for row in store.db.execute_sql("EXPLAIN QUERY PLAN " + sql, params))
        assert "runs_search VIRTUAL TABLE" in plan
    else:
        with store.bound():
            store.db.execute_sql("ANALYZE runs")
            search._pg_stats = None  # read again
            assert 0.1 < search.pg_frequency("4x") < 0.3 and search.pg_frequency("qz") == 0.0
            assert search.pg_frequency("e") > 0.9
            page_sql = search.narrow(RunRow.select(RunRow.run_id), "4x").sql()[0]
            count_sql = search.narrow(RunRow.select(RunRow.run_id), "4x", counting=True).sql()[0]
            assert "@>" not in page_sql and "@>" in count_sql  # a page of 1 run in 6 walks, its count reads the index
            with store.db.atomic():
                store.db.execute_sql("SET LOCAL enable_seqscan = off")
                sql, params = search.narrow(RunRow.select(RunRow.run_id), "qz").sql()
                plan = " ".join(r for (r,) in store.db.execute_sql("EXPLAIN " + sql, params).fetchall())
        assert run_search.V16_PG_SHORT_INDEX in plan  # the query's expression is the index's
    assert _searched(store, "4x")[0] == [r.run_id for r in store.query_runs(RunFilters(), Page(limit=500)).runs
                                         if r.workflow_name == "upscale 4x"]


def test_the_index_follows_replace_rename_delete_and_prune(store):
    runs = _runs(60)
    store.save_runs(runs)
    target = runs[7]
    target.workflow_name = "Zeppelin flight"
    store.save_runs([target])  # replaced: the old name is gone from the index, the new one is there
    assert _searched(store, "zeppelin")[0] == [target.run_id]
    assert target.run_id not in _searched(store, NAMES[7 % len(NAMES)])[0]
    store.set_workflow_name("wf-z", "unused")  # a rename of runs of another workflow changes nothing here
    target.workflow_id, target.workflow_name_source = "wf-z", "derived"
    store.save_runs([target])
    store.set_workflow_name("wf-z", "Blimp hangar")
    assert _searched(store, "blimp")[0] == [target.run_id] and _searched(store, "zeppelin")[0] == []
    assert _searched(store, "bl")[0] == [target.run_id] and _searched(store, "zep")[0] == []
    store.prune_runs(keep=20)
    _check_all_terms(store, ("upscale", "portrait", "mat1", "blimp", "hero", "Ünïcode", "bl", "4x", "字"))
    assert store.count_runs() == 20
    store.prune_runs(keep=0)
    assert _searched(store, "upscale") == ([], 0)
    store.save_runs(runs[:5])
    _check_all_terms(store, ("upscale", "portrait", "hero"))


def test_health_names_the_search_index(store):
    from telemetry.service import TelemetryService

    health = TelemetryService(store, None, source="test", instance="t:1").health()
    expected = "fts5_trigram" if store.kind == "sqlite" else "pg_trgm"
    assert health["database"]["search"] == {"index": expected, "reason": None, "short_terms": True}


def test_a_database_without_the_index_searches_by_scanning(tmp_path):
    """What an SQLite without FTS5 (or a PostgreSQL without pg_trgm) gets: the same answers, by scanning."""
    store = Store(sqlite_url(str(tmp_path / "t.db")))
    store.open()
    try:
        runs = _runs(50)
        store.save_runs(runs)
        store.search = run_search.RunSearch(store.db, "sqlite", run_search.SearchIndexState("none", "test"))
        _check_all_terms(store, ("upscale", "Ünïcode", "50%", "up"))
    finally:
        store.close()


def test_an_upgraded_database_is_indexed_and_kept_in_step(tmp_path):
    """Migration 12 on the newest fixture (its runs are indexed as they were), and later writes follow."""
    from tests.test_migrations import FIXTURES

    path = tmp_path / "v9-all.db"
    shutil.copyfile(FIXTURES / "v9-all.db", path)
    store = Store(sqlite_url(str(path)))
    store.open()
    try:
        assert set(_searched(store, "renamed")[0]) == _plain_ids(store, "renamed") == {"fx-success", "fx-failed"}
        assert _searched(store, "x-fail")[0] == ["fx-failed"]
        assert store.db.execute_sql("SELECT COUNT(*) FROM runs_search").fetchone()[0] == 3
        store.save_runs(_runs(30))
        _check_all_terms(store, ("upscale", "fx-", "KSampler", "Saga", "night"))
    finally:
        store.close()


def _point_the_index_at(path, module: str) -> None:
    """Edit the file's schema so the search index names another FTS module: what an SQLite without FTS5 sees."""
    import sqlite3

    conn = sqlite3.connect(path)
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute("UPDATE sqlite_master SET sql = ? WHERE name = 'runs_search'",
                 (conn.execute("SELECT sql FROM sqlite_master WHERE name = 'runs_search'").fetchone()[0]
                  .replace("USING fts5", f"USING {module}").replace("USING fts5_absent", f"USING {module}"),))
    conn.commit()
    conn.close()


def test_a_file_opened_by_an_sqlite_without_fts5_keeps_recording_and_is_indexed_again_later(tmp_path):
    path = tmp_path / "t.db"
    store = Store(sqlite_url(str(path)))
    store.open()
    store.save_runs(_runs(40))
    store.shutdown()
    _point_the_index_at(path, "fts5_absent")

    without = Store(sqlite_url(str(path)))
    without.open()
    try:
        assert without.search.state.kind == "none" and "cannot read" in without.search.state.reason
        later = _runs(80, seed=8)[40:]
        without.save_runs(later)  # the triggers are gone: writes go on
        _check_all_terms(without, ("upscale", "hero", later[3].run_id[:13]))
        assert {12, 16}.isdisjoint(v for (v,) in without.db.execute_sql("SELECT version FROM schema_version"))
    finally:
        without.shutdown()

    _point_the_index_at(path, "fts5")  # an SQLite with FTS5 again: migration 12 runs again and rebuilds
    again = Store(sqlite_url(str(path)))
    again.open()
    try:
        assert again.search.state.kind == "fts5_trigram"
        assert again.search.state.short_terms
        _check_all_terms(again, ("upscale", "hero", later[3].run_id[:13], "portrait", "4x", "ca", "字"))
        assert again.db.execute_sql("SELECT COUNT(*) FROM runs_search_docsize").fetchone()[0] == 80
    finally:
        again.shutdown()


def test_a_first_page_that_holds_every_match_is_its_own_count(store, monkeypatch):
    """A rare term (or any filter) whose matches fit the first page is read once: no count query, same total."""
    store.save_runs(_runs(200))
    counted: list[int | None] = []
    real = run_pages.capped_count
    monkeypatch.setattr(run_pages, "capped_count", lambda query, cap: counted.append(cap) or real(query, cap))
    alone = store.search.count_alone  # the count of a `q` alone, from the index (SQLite)
    monkeypatch.setattr(store.search, "count_alone", lambda q, cap: counted.append(cap) or alone(q, cap))
    for q in ("zzqx", "up", "u", "Ö", "mat1", "Scene 7", "ca"):
        expected = _plain_ids(store, q)
        for limit in (1, 5, 50, 500):
            counted.clear()
            first = store.query_runs(RunFilters(q=q), Page(limit=limit))
            assert (first.total, first.total_capped) == (len(expected), False), (q, limit)  # 200 runs: no cap
            assert bool(counted) == (len(expected) > limit), (q, limit)  # counted only when a next page exists
            exact = store.query_runs(RunFilters(q=q), Page(limit=limit, exact_total=True))
            assert (exact.total, exact.total_capped) == (len(expected), False)
    counted.clear()
    deep = store.query_runs(RunFilters(q="zzqx"), Page(limit=5, offset=5))  # not a first page: counted
    assert deep.total == 0 and counted
