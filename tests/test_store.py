"""The store on a real SQLite file and on the real PostgreSQL server: the same behaviour on both."""

from __future__ import annotations

import pytest

from telemetry.collector import build_run
from telemetry.filters import FilterError, Page, RunFilters, decode_cursor, parse_page, parse_run_filters
from telemetry.model import Run, RunLabels
from telemetry.store.migrations import LATEST_VERSION


def _runs(recorded_runs) -> list[Run]:
    runs = []
    for case in recorded_runs["cases"]:
        (prompt_id, item), = case["history"].items()
        runs.append(build_run(prompt_id, item, ))
    return runs


def test_runs_round_trip_with_their_parts(store, recorded_runs):
    runs = _runs(recorded_runs)
    store.save_runs(runs)
    for run in runs:
        assert store.get_run(run.run_id).to_dict() == run.to_dict()
    assert store.schema_version == LATEST_VERSION


def test_saving_again_replaces_instead_of_duplicating(store, recorded_runs):
    runs = _runs(recorded_runs)
    store.save_runs(runs)
    store.save_runs(runs)
    assert store.query_runs(parse_run_filters({}), Page())[1] == len(runs)
    assert len(store.get_run(runs[0].run_id).nodes) == runs[0].node_count


def test_filters_sorting_and_paging(store, recorded_runs):
    runs = _runs(recorded_runs)
    runs[0].labels = RunLabels("Saga", "Scene 1", ["night", "rain"])
    store.save_runs(runs)
    q = lambda **kw: store.query_runs(parse_run_filters(kw), parse_page(kw))  # noqa: E731
    assert q(status="failed,interrupted")[1] == 2
    assert q(label="rain")[1] == 1 and q(label="Scene 1")[1] == 1 and q(label="ra")[1] == 0
    assert q(q="allocate")[1] == 1
    longest = q(sort="-duration_ms", limit="1").runs
    assert longest[0].status == "interrupted"
    page, total, _, _ = q(limit="2", offset="4")
    assert total == 5 and len(page) == 1
    assert q(workflow=runs[1].fingerprint)[1] >= 1


@pytest.mark.parametrize("sort", ["-started_at_ms", "started_at_ms", "-duration_ms", "duration_ms"])
def test_cursor_pages_walk_the_same_order_as_offset_pages_ties_and_missing_values_included(store, sort):
    # Ties in the sort column, runs without a value (they come last in both directions), ids out of order, and
    # durations that a 4-byte float cannot hold exactly (a cursor must still find its place after them).
    store.save_runs([Run(f"k{(i * 7) % 23:02d}", "success", started_at_ms=None if i % 5 == 0 else 1000 + i // 3,
                         duration_ms=None if i % 4 == 0 else 1_153_309.9 + i % 6) for i in range(23)])
    by_offset = [r.run_id for r in store.query_runs(RunFilters(), Page(sort=sort, limit=100)).runs]
    walked, cursor, pages = [], None, 0
    while pages < 10:  # 6 are enough; a cursor that does not move on must fail, not loop
        found = store.query_runs(RunFilters(), Page(sort=sort, limit=4, cursor=cursor))
        walked += [r.run_id for r in found.runs]
        pages += 1
        cursor = found.next_cursor
        if cursor is None:
            break
        cursor = decode_cursor(cursor.encode())  # through its text form, as a client sends it back
    assert walked == by_offset and len(walked) == 23 and pages == 6
    column = sort.lstrip("-")
    values = [getattr(store.get_run(i), column) for i in walked]
    present = [v for v in values if v is not None]
    assert present == sorted(present, reverse=sort.startswith("-"))
    assert all(v is None for v in values[len(present):])  # missing values last, in both directions
    for offset in range(0, 26):  # offset pages: within the valued runs, across into the missing ones, past the end
        page = store.query_runs(RunFilters(), Page(sort=sort, limit=4, offset=offset))
        assert [r.run_id for r in page.runs] == walked[offset:offset + 4], offset
        assert (page.next_cursor is None) == (offset + 4 >= len(walked))
    assert [r.run_id for r in store.iter_runs(RunFilters(), sort, chunk=4)] == walked  # the export's order


def test_the_total_is_capped_unless_the_exact_count_is_asked_for(store, monkeypatch):
    from telemetry.store import store as store_module

    monkeypatch.setattr(store_module, "COUNT_CAP", 5)
    store.save_runs([Run(f"c{i}", "success", started_at_ms=i) for i in range(8)])
    capped = store.query_runs(RunFilters(), Page(limit=2))
    assert (capped.total, capped.total_capped) == (5, True) and capped.next_cursor is not None
    exact = store.query_runs(RunFilters(), Page(limit=2, exact_total=True))
    assert (exact.total, exact.total_capped) == (8, False)
    few = store.query_runs(parse_run_filters({"since_ms": "5"}), Page())
    assert (few.total, few.total_capped, few.next_cursor) == (3, False, None)


def test_stats_match_the_runs(store, recorded_runs):
    store.save_runs(_runs(recorded_runs))
    stats = store.stats(parse_run_filters({}))
    assert stats["total_runs"] == 5 and stats["by_status"]["success"] == 3
    assert stats["success_rate"] == pytest.approx(0.6)
    assert stats["total_frames"] == 10
    assert stats["p50_duration_ms"] <= stats["p95_duration_ms"]


def test_stale_running_runs_are_closed_per_instance(store):
    store.save_runs([Run("a", "running", instance="h:1"), Run("b", "running", instance="h:2"),
                     Run("c", "success", instance="h:1")])
    assert store.close_stale_running("h:1", "crash") == ["a"]
    assert store.get_run("a").status == "interrupted" and store.get_run("b").status == "running"


def test_retention_by_count_and_age(store):
    import time

    now = int(time.time() * 1000)
    store.save_runs([Run(f"r{i}", "success", started_at_ms=now - i * 86_400_000) for i in range(10)])
    assert store.apply_retention(max_age_days=5.5, max_runs=None) == 4
    assert store.apply_retention(max_age_days=None, max_runs=3) == 3
    assert [r.run_id for r in store.query_runs(parse_run_filters({}), Page())[0]] == ["r0", "r1", "r2"]


def test_presets_and_workflow_names(store):
    preset = store.save_preset("Failures ✨", {"status": ["failed"]})
    assert [p.name for p in store.list_presets()] == ["Failures ✨"]
    assert store.delete_preset(preset.id) and not store.list_presets()
    store.save_runs([Run("w1", "success", workflow_id="wf", workflow_name="derived")])
    assert store.set_workflow_name("wf", "Portrait") == 1
    assert store.get_run("w1").workflow_name == "Portrait"


def test_a_name_reported_while_a_batch_is_being_written_still_names_its_runs(store):
    """The panel reports a workflow's name at about the time its first run is written (frontend 1.58 in CI): the
    name, committed by another connection between the batch's read of known names and its insert, must rename the
    run all the same, never leave it with its derived name."""
    import threading

    from telemetry.store.store import Store

    other = Store(store.url)
    other.open()
    reported = threading.Thread(target=other.set_workflow_name, args=("wf-race", "Portrait upscale"))
    read_names = store._known_workflow_names

    def names_then_a_report(workflow_ids):
        found = read_names(workflow_ids)
        reported.start()
        reported.join(timeout=0.3)  # with the batch's turn held, the report waits for it instead of finishing here
        return found

    store._known_workflow_names = names_then_a_report
    try:
        store.save_runs([Run("race-1", "success", workflow_id="wf-race", workflow_name="EmptyImage → SaveImage")])
    finally:
        store._known_workflow_names = read_names
    reported.join(timeout=15)
    other.close()
    assert not reported.is_alive()
    stored = store.get_run("race-1")
    assert (stored.workflow_name, stored.workflow_name_source) == ("Portrait upscale", "ui")


@pytest.mark.parametrize("query,message", [
    ({"status": "done"}, "'status' has unknown value"),
    ({"limit": "0"}, "'limit' must be at least 1"),
    ({"limit": "501"}, "'limit' must be at most 500"),
    ({"limit": "ten"}, "'limit' must be an integer"),
    ({"sort": "name"}, "'sort' must be one of"),
    ({"since_ms": "5", "until_ms": "1"}, "'until_ms' is before 'since_ms'"),
    ({"cursor": "not-a-cursor"}, "'cursor' is not a cursor this server gave out"),
    ({"cursor": "WyJzdGFydGVkX2F0X21zIiwxLCJ4Il0"}, "'cursor' continues sort 'started_at_ms'"),
    ({"cursor": "WyItc3RhcnRlZF9hdF9tcyIsMSwieCJd", "offset": "50"}, "either 'offset' or 'cursor'"),
    ({"cursor": "WyItc3RhcnRlZF9hdF9tcyIsdHJ1ZSwieCJd"}, "'cursor' is not a cursor"),  # a boolean value
    ({"count": "all"}, "'count' must be 'capped'"),
])
def test_bad_filters_say_what_is_wrong(query, message):
    with pytest.raises(FilterError, match=message):
        parse_run_filters(query)
        parse_page(query)


def test_prune_runs_by_age_and_by_count_takes_their_parts_along(store):
    from telemetry.model import NodeRun, RunOutput

    store.save_runs([Run(f"p{i:03d}", "success", started_at_ms=1000 + i, nodes=[NodeRun("1", "N", "executed")],
                         outputs=[RunOutput("1", "image", filename="x.png")]) for i in range(250)]
                    + [Run("unstarted", "failed")])
    assert store.prune_runs() == 0  # neither limit: nothing
    assert store.prune_runs(before_ms=1000 + 100) == 100
    assert not store.run_exists("p099") and store.run_exists("p100")
    assert store.prune_runs(keep=20) == 131  # runs without a start time count as oldest
    assert not store.run_exists("unstarted") and not store.run_exists("p229") and store.run_exists("p230")
    assert store.count_runs() == 20
    assert len(store.get_run("p249").nodes) == 1
    assert store.db.execute_sql("SELECT COUNT(*) FROM node_runs").fetchone()[0] == 20
    assert store.db.execute_sql("SELECT COUNT(*) FROM run_outputs").fetchone()[0] == 20
    with pytest.raises(ValueError):
        store.prune_runs(keep=-1)


def test_a_new_sqlite_database_and_its_folder_are_owner_only(tmp_path):
    import os
    import stat

    from telemetry.store.database import sqlite_url
    from telemetry.store.store import Store

    path = tmp_path / "new-folder" / "telemetry.db"
    old_umask = os.umask(0o022)
    try:
        created = Store(sqlite_url(str(path)))
        created.open()
        created.save_runs([Run("r", "success")])
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.iterdir()}
        assert modes == {"telemetry.db": 0o600, "telemetry.db-wal": 0o600, "telemetry.db-shm": 0o600}
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        created.shutdown()
    finally:
        os.umask(old_umask)


def test_write_private_file_is_atomic_and_owner_only(tmp_path):
    import os
    import stat

    from telemetry.fileperms import ensure_private_dir, write_private_file

    folder = ensure_private_dir(str(tmp_path / "cfg"))
    target = os.path.join(folder, "config.json")
    old_umask = os.umask(0)
    try:
        write_private_file(target, '{"a": 1}')
        write_private_file(target, '{"a": 2}')
    finally:
        os.umask(old_umask)
    assert open(target).read() == '{"a": 2}' and os.listdir(folder) == ["config.json"]
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600 and stat.S_IMODE(os.stat(folder).st_mode) == 0o700


def test_a_run_given_twice_in_one_batch_is_stored_as_its_last_version(store):
    store.save_runs([Run("twice", "running"), Run("other", "success"), Run("twice", "success")])
    assert store.get_run("twice").status == "success" and store.count_runs() == 2


def test_rest_work_on_a_fresh_database_waits_for_the_schema_instead_of_failing(tmp_path):
    from concurrent.futures import wait

    from telemetry.analysis.service import AnalysisService
    from telemetry.store.database import sqlite_url
    from telemetry.store.store import Store

    fresh = Store(sqlite_url(str(tmp_path / "fresh.db")))  # nobody opened or migrated it
    analysis = AnalysisService(fresh)
    futures = [fresh.executor.submit(analysis.recommendations, None, None, None) for _ in range(4)]
    futures.append(fresh.executor.submit(fresh.count_runs))
    wait(futures, timeout=30)
    assert [f.result() for f in futures] == [{"recommendations": []}] * 4 + [0]
    fresh.shutdown()


def test_the_workflow_filter_matches_id_name_fingerprint_or_key_whichever_branches_exist(store):
    runs = [
        Run("a1", "success", started_at_ms=1, workflow_id="ui-1", workflow_name="Portrait", fingerprint="fp-1"),
        Run("a2", "success", started_at_ms=2, workflow_id="ui-1", workflow_name="Renamed", fingerprint="fp-1"),
        Run("b1", "failed", started_at_ms=3, workflow_name="Portrait", fingerprint="fp-2"),  # API run: key fp-2
        Run("b2", "success", started_at_ms=4, fingerprint="fp-2"),
        Run("c1", "success", started_at_ms=5, workflow_id="ui-3", fingerprint="fp-2"),  # fp-2 with an id
        Run("d1", "success", started_at_ms=6, workflow_id="Portrait", fingerprint="fp-4"),  # an id that is a name
    ]
    store.save_runs(runs)
    for value in ("ui-1", "Portrait", "fp-1", "fp-2", "ui-3", "Renamed", "fp-4", "nothing"):
        expected = sorted(r.run_id for r in runs if value in (r.workflow_id, r.workflow_name, r.fingerprint,
                                                             r.workflow_id or r.fingerprint))
        page = store.query_runs(RunFilters(workflow=value), Page(limit=100))
        assert sorted(r.run_id for r in page.runs) == expected and page.total == len(expected), value
        assert store.stats(RunFilters(workflow=value))["total_runs"] == len(expected), value
