"""The node-type rollups (telemetry.store.node_type_rollups) on a real SQLite file and the real PostgreSQL
server: after every kind of write of runs (inserts, replacements, status changes, prunes, a whole hour deleted,
runs without a start) the rows kept by the store equal those migration 14 builds again from the node rows, and
/stats/node_types from the rollups equals the scan of node rows for random filters (averages within 1e-6)."""

from __future__ import annotations

import copy
import random

import pytest

from telemetry.filters import RunFilters
from telemetry.model import NodeRun, Run, RunStatus
from telemetry.store import node_type_reads, node_type_rollups
from telemetry.store.rollups import DAY_MS, HOUR_MS
from telemetry.store.schema import NodeTypeRollupRow, RunRow

T0 = 1_700_000_000_000 // DAY_MS * DAY_MS  # a UTC midnight
STATUSES = ("success", "success", "success", "failed", "interrupted")
CLASSES = ("KSampler", "VAEDecode", "CLIPTextEncode", "CheckpointLoaderSimple", "LoraLoader", "SaveImage",
           "ImageScale", "Note")
NODE_STATUSES = ("executed", "executed", "executed", "cached", "failed")


def _nodes(rng: random.Random) -> list[NodeRun]:
    nodes = []
    for i in range(rng.randrange(0, 9)):
        node = NodeRun(str(i), rng.choice(CLASSES), rng.choice(NODE_STATUSES))
        node.duration_ms = None if rng.random() < 0.15 else rng.lognormvariate(6, 1.5)
        node.gpu_peak_bytes = None if rng.random() < 0.25 else rng.randrange(1, 80 * 2**30)
        nodes.append(node)
    return nodes


def _run(rng: random.Random, i: int, status: str | None = None) -> Run:
    status = status or rng.choice(STATUSES)
    started = None if rng.random() < 0.05 else T0 + rng.randrange(0, 4 * DAY_MS)
    if started is None:
        status = RunStatus.CANCELLED
    run = Run(f"n{i:05d}", status, started_at_ms=started, duration_ms=rng.uniform(10, 9000),
              workflow_id=rng.choice(["wf-a", "wf-b", "wf-c", None]), fingerprint=rng.choice(["fp1", "fp2", None]),
              workflow_name=rng.choice(["Portrait", None]), instance=rng.choice(["a:1", "b:1", None]))
    run.nodes = _nodes(rng)
    return run


def _rows(store) -> dict[tuple, tuple]:
    with store.bound():
        return {r[:6]: r[6:] for r in NodeTypeRollupRow.select(
            *(getattr(NodeTypeRollupRow, c) for c in node_type_rollups.COLUMNS)).tuples()}


def _rebuilt(store) -> dict[tuple, tuple]:
    """The rows migration 14's backfill makes from the node rows there are now, in a scratch transaction."""
    with store.bound():
        with store.db.atomic() as txn:
            NodeTypeRollupRow.delete().execute()
            node_type_rollups.backfill(store.db)
            rows = _rows(store)
            txn.rollback()
    return rows


def _same_rows(store) -> None:
    stored, rebuilt = _rows(store), _rebuilt(store)
    assert set(stored) == set(rebuilt)
    for key, (n, d, s, g) in stored.items():
        n2, d2, s2, g2 = rebuilt[key]
        assert (n, d, g) == (n2, d2, g2), key
        assert s == pytest.approx(s2, rel=1e-9, abs=1e-6), key


def _scan(store, filters: RunFilters, limit: int, monkeypatch) -> list[dict]:
    with monkeypatch.context() as m:
        m.setattr(node_type_reads, "plan", lambda _filters: None)
        return store.node_type_stats(filters, limit)


def _check(store, filters: RunFilters, monkeypatch, rollups: bool | None = None, limit: int = 50) -> None:
    with store.bound():
        planned = node_type_reads.plan(filters) is not None
    if rollups is not None:
        assert planned == rollups, filters
    fast, raw = store.node_type_stats(filters, limit), _scan(store, filters, limit, monkeypatch)
    assert [r["class_type"] for r in fast] == [r["class_type"] for r in raw], filters
    for a, b in zip(fast, raw, strict=True):
        assert (a["executions"], a["max_gpu_peak_bytes"]) == (b["executions"], b["max_gpu_peak_bytes"]), filters
        assert (a["avg_duration_ms"] is None) == (b["avg_duration_ms"] is None), filters
        if b["avg_duration_ms"] is not None:
            assert a["avg_duration_ms"] == pytest.approx(b["avg_duration_ms"], rel=1e-6), filters


def _random_filters(rng: random.Random) -> RunFilters:
    since = rng.choice([None, None, T0 + rng.randrange(-DAY_MS, 4 * DAY_MS)])
    until = rng.choice([None, None, (since or T0) + rng.randrange(0, 3 * DAY_MS)])
    return RunFilters(status=rng.choice([None, None, ["success"], ["failed", "interrupted"], ["cancelled"]]),
                      instance=rng.choice([None, None, "a:1", "b:1"]), workflow=rng.choice([None, None, "wf-a"]),
                      since_ms=since, until_ms=until)


FIXED = [
    (RunFilters(), True),
    (RunFilters(status=["success"], instance="a:1"), True),
    (RunFilters(workflow="wf-b", status=["failed"]), True),
    (RunFilters(since_ms=T0 + DAY_MS + 1234567), True),
    (RunFilters(until_ms=T0 + 2 * DAY_MS - 1), True),
    (RunFilters(since_ms=T0 + 7 * HOUR_MS + 99, until_ms=T0 + 2 * DAY_MS + 5 * HOUR_MS + 42, instance="b:1"), True),
    (RunFilters(since_ms=T0 + 7 * HOUR_MS + 10, until_ms=T0 + 7 * HOUR_MS + 30 * 60_000), True),
    (RunFilters(workflow="wf-a", since_ms=T0 + DAY_MS), False),  # a workflow has all-time rows only
    (RunFilters(workflow="fp1"), False),  # a fingerprint of several keys
    (RunFilters(label="Saga"), False),
]


def _check_all(store, monkeypatch, rng: random.Random) -> None:
    _same_rows(store)
    for filters, rollups in FIXED:
        _check(store, filters, monkeypatch, rollups)
    _check(store, RunFilters(), monkeypatch, True, limit=3)
    for _ in range(25):
        _check(store, _random_filters(rng), monkeypatch)


def test_node_type_rollups_follow_every_write_of_runs_and_answer_as_the_scan(store, monkeypatch):
    rng = random.Random(5)
    runs = [_run(rng, i) for i in range(400)]
    for start in range(0, len(runs), 29):  # recorder-sized batches
        store.save_runs(runs[start:start + 29])
    _check_all(store, monkeypatch, rng)

    # Replacements: running (with the nodes done so far) -> final, and a finished run stored with other nodes.
    running = [_run(rng, 1000 + i, RunStatus.RUNNING) for i in range(30)]
    store.save_runs(running)
    for run in running[:20]:
        run.status = rng.choice(["success", "failed"])
        run.nodes = run.nodes + _nodes(rng)
    changed = copy.deepcopy(runs[7])
    changed.nodes = _nodes(rng)
    store.save_runs(running[:20] + [runs[3], copy.deepcopy(runs[3]), changed])
    # Status changes: the rest closed as interrupted (one instance, then the others).
    store.close_stale_running("a:1", "ComfyUI stopped")
    store.close_stale_running(None, "ComfyUI stopped")
    _check_all(store, monkeypatch, rng)

    # Deletes: prunes by age and by count, and every run of one hour.
    store.prune_runs(before_ms=T0 + DAY_MS // 2)
    store.prune_runs(keep=300)
    hour = T0 + 2 * DAY_MS + 14 * HOUR_MS
    with store.bound():
        ids = [r for (r,) in RunRow.select(RunRow.run_id).where(
            RunRow.started_at_ms >= hour, RunRow.started_at_ms < hour + HOUR_MS).tuples()]
    assert ids
    store._delete_runs(ids)
    _check_all(store, monkeypatch, rng)
    with store.bound():
        assert not NodeTypeRollupRow.select().where(NodeTypeRollupRow.grain == HOUR_MS,
                                                    NodeTypeRollupRow.bucket_ms == hour).exists()
    store.prune_runs(keep=0)
    assert _rows(store) == {} and store.node_type_stats(RunFilters()) == []


def test_unfiltered_and_whole_day_windows_read_no_node_rows(store, monkeypatch):
    rng = random.Random(9)
    store.save_runs([_run(rng, i) for i in range(120)])
    expected = {str(f): _scan(store, f, 50, monkeypatch) for f, _ in FIXED[:3]}
    whole_days = RunFilters(since_ms=T0 + DAY_MS, until_ms=T0 + 3 * DAY_MS - 1)
    expected["days"] = _scan(store, whole_days, 50, monkeypatch)

    def no_scan(*_args):
        raise AssertionError("node rows scanned")

    monkeypatch.setattr(node_type_reads, "scanned", no_scan)
    for f, _ in FIXED[:3]:
        assert [r["class_type"] for r in store.node_type_stats(f)] == [r["class_type"] for r in expected[str(f)]]
    assert [r["executions"] for r in store.node_type_stats(whole_days)] == [r["executions"] for r in expected["days"]]


@pytest.mark.postgres
def test_two_instances_writing_at_once_keep_the_node_type_rollups_exact(pg_schema_url, monkeypatch):
    """A fleet on one PostgreSQL: two stores write runs of the same hours, workflows and class types at once (each
    run as running, then its final record), close and prune; the totals rows are shared by both."""
    import threading

    from telemetry.store.store import Store

    stores = [Store(pg_schema_url), Store(pg_schema_url)]
    for s in stores:
        s.open()
    errors: list[BaseException] = []

    def write(s: Store, instance: str, seed: int) -> None:
        rng = random.Random(seed)
        try:
            for i in range(50):
                run = _run(rng, i)
                run.run_id, run.instance = f"{instance}-{i}", instance
                run.started_at_ms = T0 + (i % 3) * HOUR_MS + i
                run.status = "running"
                s.save_runs([run])
                run.status = "success" if i % 4 else "failed"
                run.nodes = run.nodes + _nodes(rng)
                s.save_runs([copy.deepcopy(run)])
            s.close_stale_running(instance, "stopped")
            s.prune_runs(before_ms=T0 + HOUR_MS)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s, name, seed))
               for s, name, seed in ((stores[0], "a:1", 1), (stores[1], "a:1-other", 2))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    _same_rows(stores[0])
    _check(stores[0], RunFilters(), monkeypatch, True)
    for s in stores:
        s.shutdown()
