"""The rollups (telemetry.store.rollups) on a real SQLite file and the real PostgreSQL server: after every kind
of write of runs (inserts, replacements, status changes, prunes, a whole hour deleted, runs without a start) the
rows kept by the store equal those built again from runs, and /stats from the rollups equals the scan of runs
(exact fields equal, p50/p95 within the histogram's stated bound)."""

from __future__ import annotations

import copy
import random

import pytest
from peewee import fn

from telemetry.filters import RunFilters
from telemetry.model import Run, RunStatus
from telemetry.store import rollup_reads, rollups
from telemetry.store.rollups import DAY_MS, HISTOGRAM_RELATIVE_ERROR, HOUR_MS
from telemetry.store.schema import RollupRow, RunRow

T0 = 1_700_000_000_000 // DAY_MS * DAY_MS  # a UTC midnight
STATUSES = ("success", "success", "success", "failed", "interrupted", "partial_success")


def _run(rng: random.Random, i: int, status: str | None = None) -> Run:
    status = status or rng.choice(STATUSES)
    started = None if rng.random() < 0.04 else T0 + rng.randrange(0, 5 * DAY_MS)
    if started is None:
        status = RunStatus.CANCELLED
    run = Run(f"r{i:05d}", status, started_at_ms=started,
              duration_ms=None if started is None or rng.random() < 0.05 else rng.lognormvariate(8, 1.2),
              workflow_id=rng.choice(["wf-a", "wf-b", "wf-c", None]), fingerprint=rng.choice(["fp1", "fp2", None]),
              workflow_name=rng.choice(["Portrait", "Landscape", None]), instance=rng.choice(["a:1", "b:1", None]))
    run.frame_count = rng.randrange(0, 20)
    run.energy_j = None if rng.random() < 0.3 else rng.uniform(10, 5000)
    run.gpu_peak_bytes = None if rng.random() < 0.2 else rng.randrange(1, 80 * 2**30)
    run.ram_peak_bytes = None if rng.random() < 0.2 else rng.randrange(1, 64 * 2**30)
    return run


def _stored_rollups(store) -> dict[tuple, tuple]:
    with store.bound():
        rows = list(RollupRow.select().tuples())
    return {row[:5]: row[5:] for row in rows}


def _rebuilt_rollups(store) -> dict[tuple, tuple]:
    """The rows migration 11's backfill makes from the runs there are now, in a scratch transaction."""
    with store.bound():
        with store.db.atomic() as txn:
            RollupRow.delete().execute()
            rollups.backfill(store.db)
            rows = list(RollupRow.select().tuples())
            txn.rollback()
    return {row[:5]: row[5:] for row in rows}


def _same_rollups(store) -> None:
    stored, rebuilt = _stored_rollups(store), _rebuilt_rollups(store)
    assert set(stored) == set(rebuilt)
    for key, values in stored.items():
        again = rebuilt[key]
        # runs, durations, sum, frames, energies, sum, gpu max, ram max, histogram: sums as floats
        assert values[:2] + values[3:5] + values[6:] == again[:2] + again[3:5] + again[6:], key
        assert values[2] == pytest.approx(again[2], rel=1e-9) and values[5] == pytest.approx(again[5], rel=1e-9)


def _close(a: float | None, b: float | None) -> bool:
    # Float sums in another order: the scan's sums are within 1e-6 of the rollups'.
    return a is None and b is None or a is not None and b is not None and a == pytest.approx(b, rel=1e-6)


def _raw_stats(store, filters: RunFilters, monkeypatch) -> dict:
    with monkeypatch.context() as m:
        m.setattr(rollup_reads, "plan", lambda _filters: None)
        return store.stats(filters, price_per_kwh=0.3)


def _check_stats(store, filters: RunFilters, monkeypatch, expect_rollups: bool = True) -> None:
    with store.bound():
        assert (rollup_reads.plan(filters) is not None) == expect_rollups
    fast, raw = store.stats(filters, price_per_kwh=0.3), _raw_stats(store, filters, monkeypatch)
    for name in ("total_runs", "success_rate", "total_frames", "max_gpu_peak_bytes", "max_ram_peak_bytes",
                 "by_status"):
        assert fast[name] == raw[name], name
    for name in ("avg_duration_ms", "total_energy_wh", "total_cost"):
        assert _close(fast[name], raw[name]), name
    for name in ("p50_duration_ms", "p95_duration_ms"):
        if raw[name] is None:
            assert fast[name] is None
        elif raw[name] >= 1.0:
            assert abs(fast[name] - raw[name]) <= HISTOGRAM_RELATIVE_ERROR * raw[name] + 1e-9, name
        else:
            assert abs(fast[name] - raw[name]) <= 0.5, name
    assert len(fast["by_workflow"]) == len(raw["by_workflow"])
    for a, b in zip(fast["by_workflow"], raw["by_workflow"], strict=True):
        assert {k: a[k] for k in ("workflow", "workflow_name", "runs", "success_rate", "total_frames")} == {
            k: b[k] for k in ("workflow", "workflow_name", "runs", "success_rate", "total_frames")}
        assert _close(a["avg_duration_ms"], b["avg_duration_ms"]) and _close(a["energy_wh"], b["energy_wh"])


FILTERS = [
    RunFilters(),
    RunFilters(status=["success"]),
    RunFilters(status=["failed", "interrupted"], instance="a:1"),
    RunFilters(workflow="wf-a"),
    RunFilters(since_ms=T0 + DAY_MS + 1234567),
    RunFilters(until_ms=T0 + 3 * DAY_MS - 1),
    RunFilters(since_ms=T0 + 7 * HOUR_MS + 99, until_ms=T0 + 3 * DAY_MS + 5 * HOUR_MS + 42),
    RunFilters(since_ms=T0 + 7 * HOUR_MS, until_ms=T0 + 9 * HOUR_MS - 1, workflow="wf-b"),
    RunFilters(since_ms=T0 + 7 * HOUR_MS + 10, until_ms=T0 + 7 * HOUR_MS + 30 * 60_000),
]


def _instances_by_scan(store) -> list[dict]:
    with store.bound():
        rows = (RunRow.select(RunRow.instance, fn.COUNT(RunRow.run_id), fn.MAX(RunRow.started_at_ms))
                .group_by(RunRow.instance).tuples())
        return sorted(({"instance": i, "runs": n, "last_started_at_ms": last} for i, n, last in rows),
                      key=lambda r: r["instance"] or "")


def _check_all(store, monkeypatch) -> None:
    _same_rollups(store)
    assert sorted(store.instances(), key=lambda r: r["instance"] or "") == _instances_by_scan(store)
    for filters in FILTERS:
        _check_stats(store, filters, monkeypatch)
    _check_stats(store, RunFilters(label="Saga"), monkeypatch, expect_rollups=False)
    # A name or fingerprint matches runs of several keys: the scan answers.
    _check_stats(store, RunFilters(workflow="fp1"), monkeypatch, expect_rollups=False)


def test_rollups_follow_every_write_of_runs_and_answer_stats_as_the_scan_does(store, monkeypatch):
    rng = random.Random(7)
    runs = [_run(rng, i) for i in range(600)]
    for start in range(0, len(runs), 37):  # recorder-sized batches
        store.save_runs(runs[start:start + 37])
    _check_all(store, monkeypatch)

    # Replacements: running -> final, and a finished run stored again with other values.
    running = [_run(rng, 1000 + i, RunStatus.RUNNING) for i in range(40)]
    store.save_runs(running)
    for run in running[:30]:
        run.status = rng.choice(["success", "failed"])
        run.duration_ms = rng.lognormvariate(7, 1)
    store.save_runs(running[:30] + [runs[3], copy.deepcopy(runs[3])])
    again = _run(rng, 5)
    store.save_runs([again])
    # Status changes: the rest of the running runs closed as interrupted (one instance, then those without).
    store.close_stale_running("a:1", "ComfyUI stopped")
    store.close_stale_running(None, "ComfyUI stopped")
    _check_all(store, monkeypatch)

    # Deletes: a prune by age, a prune by count, and every run of one hour.
    store.prune_runs(before_ms=T0 + DAY_MS // 2)
    store.prune_runs(keep=450)
    hour = T0 + 3 * DAY_MS + 14 * HOUR_MS
    with store.bound():
        from telemetry.store.schema import RunRow

        ids = [r for (r,) in RunRow.select(RunRow.run_id).where(
            RunRow.started_at_ms >= hour, RunRow.started_at_ms < hour + HOUR_MS).tuples()]
        assert ids
        store._delete_runs(ids)
    _check_all(store, monkeypatch)
    with store.bound():
        assert not RollupRow.select().where(RollupRow.grain == HOUR_MS, RollupRow.bucket_ms == hour).exists()


def test_large_sets_take_percentiles_from_the_histogram_within_the_bound(store, monkeypatch):
    rng = random.Random(3)
    monkeypatch.setattr("telemetry.store.store.EXACT_PERCENTILES_MAX", 10)
    store.save_runs([_run(rng, i) for i in range(300)])
    for filters in FILTERS:
        _check_stats(store, filters, monkeypatch)


def test_split_window_covers_the_window_exactly_once():
    rng = random.Random(1)
    for _ in range(300):
        since = rng.choice([None, rng.randrange(0, 10 * DAY_MS)])
        until = rng.choice([None, rng.randrange(since or 0, 12 * DAY_MS)])
        parts, runs = rollup_reads.split_window(since, until)
        if since is None and until is None:
            assert parts == [(rollups.GRAIN_ALL, (0, 1))] and runs == []
            continue
        end = 13 * DAY_MS if until is None else until + 1
        covered = []
        for grain, (lo, hi) in parts:
            hi = end if hi is None else hi
            assert lo % grain == 0 and hi % grain == 0 or hi == end
            covered.append((lo, hi))
        covered += [(lo, end if hi is None else hi) for lo, hi in runs]
        covered.sort()
        assert covered[0][0] == (since or 0) and covered[-1][1] == end
        assert all(a[1] == b[0] for a, b in zip(covered, covered[1:], strict=False))


@pytest.mark.parametrize("bucket_ms", [HOUR_MS, DAY_MS])
def test_the_timeline_from_the_rollups_equals_the_one_from_runs(store, monkeypatch, bucket_ms):
    from telemetry.analysis import queries, timeline

    rng = random.Random(11)
    monkeypatch.setattr("telemetry.store.store.EXACT_PERCENTILES_MAX", 10)
    store.save_runs([_run(rng, i) for i in range(400)])
    store.prune_runs(keep=350)
    calls: list[tuple] = []
    real = rollup_reads.timeline_totals
    monkeypatch.setattr(rollup_reads, "timeline_totals", lambda *a: calls.append(a) or real(*a))
    for filters in (RunFilters(), RunFilters(status=["success", "failed"], instance="b:1"),
                    RunFilters(workflow="wf-c")):
        for lo, hi in ((T0, T0 + 5 * DAY_MS - 1), (T0 + 5 * HOUR_MS + 17, T0 + 3 * DAY_MS + 2 * HOUR_MS + 5)):
            with store.bound():
                raw = timeline.points(*queries.timeline_aggregates(store, filters, lo, hi, bucket_ms))
            calls.clear()
            fast = queries.timeline_points(store, filters, lo, hi, bucket_ms)
            assert calls  # the rollups answered
            assert set(fast) == set(raw)
            for b, point in raw.items():
                got = fast[b]
                assert {k: v for k, v in got.items() if k not in ("avg_duration_ms", "p95_duration_ms")} == {
                    k: v for k, v in point.items() if k not in ("avg_duration_ms", "p95_duration_ms")}, b
                assert _close(got["avg_duration_ms"], point["avg_duration_ms"])
                if point["p95_duration_ms"] is None:
                    assert got["p95_duration_ms"] is None
                else:
                    assert abs(got["p95_duration_ms"] - point["p95_duration_ms"]) <= (
                        HISTOGRAM_RELATIVE_ERROR * point["p95_duration_ms"] + 0.5), b


@pytest.mark.postgres
def test_two_instances_writing_at_once_keep_the_rollups_exact(pg_schema_url, monkeypatch):
    """A fleet on one PostgreSQL: two stores (two processes' worth of connections) write runs of the same hours,
    workflows and statuses at once; the totals rows are shared by both."""
    import threading

    from telemetry.store.store import Store

    stores = [Store(pg_schema_url), Store(pg_schema_url)]
    for s in stores:
        s.open()
    errors: list[BaseException] = []

    def write(s: Store, instance: str, seed: int) -> None:
        rng = random.Random(seed)
        try:
            for i in range(60):
                run = _run(rng, i)
                run.run_id, run.instance = f"{instance}-{i}", instance
                run.started_at_ms = T0 + (i % 3) * HOUR_MS + i
                run.status = "running"
                s.save_runs([run])
                run.status = "success" if i % 4 else "failed"
                s.save_runs([copy.deepcopy(run)])
            s.close_stale_running(instance, "stopped")
            s.prune_runs(before_ms=T0 + HOUR_MS)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s, name, seed))
               for s, name, seed in ((stores[0], "a:1", 1), (stores[1], "b:1", 2))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    _same_rollups(stores[0])
    _check_stats(stores[0], RunFilters(), monkeypatch)
    for s in stores:
        s.shutdown()


@pytest.mark.postgres
def test_a_write_of_runs_reads_its_rollup_rows_past_no_pile_of_dead_versions(pg_schema_url):
    """Every run rewrites the all-time totals of its status (a DELETE and an INSERT: a dead version each time).
    Read as an OR of keys (a bitmap scan) the dead versions were never marked and the next write passed every one
    of them, until a vacuum; read by one index scan per key, each is marked as it is passed and skipped after."""
    from telemetry.store.store import Store

    store = Store(pg_schema_url)
    store.open()
    try:
        # Enough rollup rows (3,000 hours of 40 workflows) that PostgreSQL reads them by index, not by a scan.
        store.save_runs([Run(f"history-{i}", "success", started_at_ms=T0 + i * HOUR_MS, duration_ms=1000.0,
                             workflow_id=f"wf-{i % 40}", instance="a:1") for i in range(3000)])
        with store.bound():
            store.db.execute_sql("ANALYZE run_rollups")
        for i in range(150):  # final records only, one per batch, as the recorder writes short runs
            store.save_runs([Run(f"dead-{i}", "success", started_at_ms=T0 + i * 1000, duration_ms=1000.0 + i,
                                 workflow_id="wf-0", instance="a:1")])
        with store.bound(), store.db.atomic():
            for setting in ("enable_seqscan", "enable_indexscan", "enable_indexonlyscan"):
                store.db.execute_sql(f"SET LOCAL {setting} = off")  # a bitmap scan: it counts what it found
            (plan,) = store.db.execute_sql(
                "EXPLAIN (ANALYZE, FORMAT JSON) SELECT runs FROM run_rollups WHERE workflow_key = '' AND "
                "instance = '' AND status = %s AND grain = %s AND bucket_ms = 0",
                ("success", rollups.TOTAL_ALL)).fetchone()

        def entries(node: dict) -> int:  # index entries the read found: live, and dead ones not yet marked
            own = node.get("Actual Rows", 0) if node["Node Type"] == "Bitmap Index Scan" else 0
            return own + sum(entries(child) for child in node.get("Plans", []))

        # Without the marking: 7 here (the index's own clean-up of a full page bounds them in so small a table),
        # 3,900 after 1,000 runs written on a million-run store.
        assert entries(plan[0]["Plan"]) <= 3
    finally:
        store.close()
