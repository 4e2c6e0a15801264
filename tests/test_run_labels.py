"""The label filter (telemetry.store.run_labels) on a real SQLite file and the real PostgreSQL server: after every
kind of write of runs the `run_labels` rows equal those built again from runs, and every read that takes `label`
(pages in every sort, by cursor and offset, counts, stats, export) gives what the plain condition of before gives
(exact story title or scene, tag with the case folded as LIKE / ILIKE fold it), but for its JSON accidents."""

from __future__ import annotations

import random

from telemetry.filters import Page, RunFilters, decode_cursor
from telemetry.model import Run, RunLabels, RunStatus
from telemetry.store import run_labels
from telemetry.store.database import sqlite_url
from telemetry.store.schema import RunLabelRow, RunRow
from telemetry.store.store import Store

T0 = 1_700_000_000_000
STORIES = ["Saga", "saga", "SAGA", "Nuit étoilée", "Été", "100%_done", 'say "hi"', "back\\slash", "  spaced  "]
SCENES = ["Scene 1", "scene 1", "Été", "ÉTÉ", "Saga"]
TAGS = ["night", "Night", "NIGHT", "rain", "été", "ÉTÉ", "hero", "x_y", "x%y", "a,b", "ünïcödé", "Saga", "日本"]
# Labels asked: every value above and case variants of them, and some that match nothing.
COLUMNS = (RunLabelRow.folded, RunLabelRow.run, RunLabelRow.tagged, RunLabelRow.title, RunLabelRow.scene,
           RunLabelRow.started_at_ms)
ASKED = sorted(set(STORIES + SCENES + TAGS + [v.upper() for v in TAGS] + [v.lower() for v in STORIES + SCENES]
                   + ["nothing", "ra", "Scene", "x", "%", "_", "日"]))


def _run(rng: random.Random, i: int) -> Run:
    started = None if rng.random() < 0.08 else T0 + rng.randrange(0, 3 * 86_400_000)
    # Equal starts now and then, so that pages break ties by run id.
    if started is not None and rng.random() < 0.2:
        started = T0 + rng.randrange(0, 5) * 1000
    status = RunStatus.CANCELLED if started is None else rng.choice(["success", "failed", "interrupted"])
    run = Run(f"r{i:05d}", status, started_at_ms=started,
              duration_ms=None if rng.random() < 0.1 else float(rng.randrange(1, 50)) * 100.0,
              workflow_id=rng.choice(["wf-a", "wf-b", None]), fingerprint=rng.choice(["fp1", None]),
              workflow_name=rng.choice(["Portrait", None]), instance=rng.choice(["a:1", None]))
    run.labels = RunLabels(story_title=rng.choice(STORIES + [None] * 4), scene=rng.choice(SCENES + [None] * 4),
                           tags=rng.sample(TAGS, rng.choice([0, 0, 1, 2, 3])))
    return run


def _plain_ids(store, filters: RunFilters) -> set[str]:
    """The runs the filter matched before the table: the plain condition, scanned."""
    with store.bound():
        query = RunRow.select(RunRow.run_id).where(run_labels.plain_condition(filters.label))
        plain = {r for (r,) in query.tuples()}
        others = {r for (r,) in store.filtered(RunFilters(status=filters.status, since_ms=filters.since_ms,
                                                          q=filters.q), RunRow.select(RunRow.run_id)).tuples()}
    return plain & others


def _order_key(run, sort: str):
    value = getattr(run, sort.lstrip("-"))
    if sort.startswith("-"):
        return (value is None, -(value or 0), tuple(-ord(c) for c in run.run_id))
    return (value is None, value or 0, run.run_id)


def _all_pages(store, filters: RunFilters, sort: str, limit: int) -> list[str]:
    ids, cursor = [], None
    while True:
        page = store.query_runs(filters, Page(limit=limit, sort=sort, cursor=cursor))
        ids += [r.run_id for r in page.runs]
        if page.next_cursor is None:
            return ids
        cursor = decode_cursor(page.next_cursor.encode())  # as a client hands it back


def _check_label(store, filters: RunFilters) -> None:
    want = _plain_ids(store, filters)
    with store.bound():
        rows = {r.run_id: r for r in RunRow.select().where(RunRow.run_id.in_(list(want) or [""]))}
    for sort in ("-started_at_ms", "started_at_ms", "-duration_ms", "duration_ms"):
        expected = [r.run_id for r in sorted(rows.values(), key=lambda r, s=sort: _order_key(r, s))]
        assert _all_pages(store, filters, sort, 16) == expected, (filters, sort)
        offset = store.query_runs(filters, Page(limit=5, offset=3, sort=sort))
        assert [r.run_id for r in offset.runs] == expected[3:8], (filters, sort)
        assert [r.run_id for r in store.iter_runs(filters, sort, chunk=25)] == expected, (filters, sort)
    page = store.query_runs(filters, Page(limit=3, exact_total=True))
    assert page.total == len(want) and not page.total_capped, filters
    capped = store.query_runs(filters, Page(limit=3))
    assert capped.total == len(want), filters
    stats = store.stats(filters)
    assert stats["total_runs"] == len(want)
    assert sum(stats["by_status"].values()) == len(want)


def _rebuilt(store) -> set[tuple]:
    with store.bound():
        with store.db.atomic() as txn:
            RunLabelRow.delete().execute()
            run_labels.backfill(store.db, chunk=17)
            rows = set(RunLabelRow.select(*COLUMNS).tuples())
            txn.rollback()
    return rows


def _check_all(store, labels: list[str] = ASKED) -> None:
    with store.bound():
        stored = set(RunLabelRow.select(*COLUMNS).tuples())
    assert stored and stored == _rebuilt(store)  # every label's rows, whichever are asked below
    for label in labels:
        _check_label(store, RunFilters(label=label))
    for filters in (RunFilters(label="night", status=["success"]), RunFilters(label="Saga", since_ms=T0 + 86_400_000),
                    RunFilters(label="été", q="Portrait"), RunFilters(label="NIGHT", q="r00")):
        _check_label(store, filters)


def test_the_label_filter_answers_as_the_plain_condition_after_every_write(store):
    rng = random.Random(5)
    runs = [_run(rng, i) for i in range(260)]
    for start in range(0, len(runs), 23):
        store.save_runs(runs[start:start + 23])
    # The table is compared whole after each step; the reads of each label, after one of the three (a third each).
    _check_all(store, ASKED[2::3])

    # Replacements with other labels and starts, a run given twice in a batch, status changes.
    again = [_run(rng, i) for i in range(0, 260, 9)]
    store.save_runs(again + [_run(rng, 3), _run(rng, 3)])
    running = [_run(rng, 400 + i) for i in range(12)]
    for run in running:
        run.status = RunStatus.RUNNING
    store.save_runs(running)
    store.close_stale_running(None, "stopped")
    _check_all(store, ASKED[::3])

    # Deletes: prunes by age and by count.
    store.prune_runs(before_ms=T0 + 86_400_000 // 2)
    store.prune_runs(keep=150)
    _check_all(store, ASKED[1::3])


def test_a_dense_label_pages_in_other_orders_as_the_plain_condition(store, monkeypatch):
    """Past RARE_MAX runs, SQLite's pages by duration walk the duration index and probe the label per run."""
    rng = random.Random(9)
    store.save_runs([_run(rng, i) for i in range(150)])
    monkeypatch.setattr(run_labels, "RARE_MAX", 3)
    with store.bound():
        assert run_labels.dense("night") and not run_labels.dense("nothing")
    for label in ("night", "Saga", "été", "ÉTÉ", "x_y", "nothing"):
        _check_label(store, RunFilters(label=label))
    _check_label(store, RunFilters(label="NIGHT", status=["failed"]))


def test_a_tag_matches_whole_not_across_the_json_text(store):
    """The plain condition's accidents: `,` matched every run with two tags, `x` a tag `"x`; a tag matches whole."""
    a = Run("two-tags", "success", started_at_ms=T0)
    a.labels = RunLabels(tags=["p", "q"])
    b = Run("quoted", "success", started_at_ms=T0 + 1)
    b.labels = RunLabels(tags=['"x'])
    c = Run("comma", "success", started_at_ms=T0 + 2)
    c.labels = RunLabels(tags=[","])
    store.save_runs([a, b, c])

    def ids(label: str) -> list[str]:
        return [r.run_id for r in store.query_runs(RunFilters(label=label), Page(limit=10)).runs]

    assert ids(",") == ["comma"] and ids("x") == [] and ids('"x') == ["quoted"] and ids("Q") == ["two-tags"]
    assert store.stats(RunFilters(label=","))["total_runs"] == 1


def test_a_label_too_long_for_the_index_is_still_found(store):
    long_tag, long_title = "t" * (run_labels.INDEXED_MAX + 5), "Story " * 40
    run = Run("long", "success", started_at_ms=T0)
    run.labels = RunLabels(story_title=long_title, tags=[long_tag])
    store.save_runs([run])
    assert len(long_title) > run_labels.QUERY_MAX
    for label in (long_tag, long_tag.upper(), long_title):
        page = store.query_runs(RunFilters(label=label), Page(limit=10, exact_total=True))
        assert [r.run_id for r in page.runs] == ["long"] and page.total == 1, label


def test_a_page_of_one_label_walks_the_label_index(tmp_path):
    """SQLite's plan for the newest page and the count of one label: the label's index and key, no scan of runs and
    no sort of its matches (the plain condition scanned every run), and the count reads no row of runs."""
    store = Store(sqlite_url(str(tmp_path / "plan.db")))  # SQLite's query plan
    rng = random.Random(2)
    try:
        _label_plans_use_the_label_index(store, rng)
    finally:
        store.close()


def _label_plans_use_the_label_index(store: Store, rng: random.Random) -> None:
    store.save_runs([_run(rng, i) for i in range(50)])
    with store.bound():
        started, run_id = run_labels.ORDER["started_at_ms"]  # the order of run_pages' first page
        query = store.filtered(RunFilters(label="night"), sort="-started_at_ms").order_by(
            started.desc(), run_id.desc()).limit(51)
        plan = _plan(store, query)
        count = _plan(store, store.filtered(RunFilters(label="night"), RunRow.select(RunRow.run_id), counting=True))
    assert "runlabelrow_folded_started_at_ms_run_id" in plan and "TEMP B-TREE" not in plan, plan
    assert "SCAN" not in plan and "SCAN" not in count, (plan, count)
    assert "USING PRIMARY KEY (folded=?)" in count and "COVERING INDEX sqlite_autoindex_runs_1" in count, count


def _plan(store, query) -> str:
    sql, params = query.sql()
    return " | ".join(row[-1] for row in store.db.execute_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall())
