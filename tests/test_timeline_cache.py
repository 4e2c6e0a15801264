"""The timeline's cache of closed buckets (telemetry.analysis.timeline): a repeated timeline reads only the buckets
missing there (the first one when the window cuts it, the current one, one a stored run dropped), and its answer
equals a timeline read without the cache, from the rollups and from runs, on SQLite and PostgreSQL."""

from __future__ import annotations

import random

import pytest
from test_analysis_support import make_run

from telemetry.analysis import queries, timeline
from telemetry.analysis.service import AnalysisService
from telemetry.filters import RunFilters
from telemetry.store import rollup_reads

HOUR, DAY = timeline.BUCKET_MS["hour"], timeline.BUCKET_MS["day"]
T0 = 1_760_000_000_000 // DAY * DAY  # a UTC midnight
NOW = T0 + 4 * DAY + 5 * HOUR + 17 * 60_000  # 05:17 on the fifth day: the current hour and day are open


class FakeFetch:
    """A fetch that records the ranges it is asked for and gives every bucket in them one point."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.calls: list[list[tuple[int, int]]] = []

    def __call__(self, ranges: list[tuple[int, int]]) -> dict[int, dict]:
        self.calls.append(ranges)
        out = {}
        for lo, hi in ranges:
            for b in range(lo // self.size * self.size, hi + 1, self.size):
                out[b] = {"t_ms": b, "runs": 1, "read": len(self.calls)}
        return out


def test_missing_ranges_join_contiguous_buckets_and_cut_the_window():
    missing = [0, HOUR, 2 * HOUR, 5 * HOUR, 9 * HOUR, 10 * HOUR]
    assert timeline.missing_ranges(missing, HOUR, 100, 10 * HOUR + 5) == [
        (100, 3 * HOUR - 1), (5 * HOUR, 6 * HOUR - 1), (9 * HOUR, 10 * HOUR + 5)]
    assert timeline.missing_ranges([], HOUR, 0, HOUR) == []


def test_a_repeated_timeline_reads_only_the_cut_first_bucket_and_the_current_one():
    cache, fetch = timeline.TimelineCache(), FakeFetch(HOUR)
    since, until = T0 + 17, NOW  # the first hour is cut; the last is the current one
    first = timeline.timeline(cache, fetch, ("k", "hour"), "hour", since, until, NOW)
    assert fetch.calls == [[(since, until)]]
    again = timeline.timeline(cache, fetch, ("k", "hour"), "hour", since, until, NOW)
    assert fetch.calls[1] == [(since, T0 + HOUR - 1), (NOW // HOUR * HOUR, until)]
    assert [p["t_ms"] for p in again] == [p["t_ms"] for p in first]
    assert [p["read"] for p in again[1:-1]] == [1] * (len(first) - 2)  # the closed hours came from the cache
    assert (again[0]["read"], again[-1]["read"]) == (2, 2)

    cache.forget(T0 + 30 * HOUR + 5)  # a run stored into a closed hour drops it
    timeline.timeline(cache, fetch, ("k", "hour"), "hour", since, until, NOW)
    assert fetch.calls[2] == [(since, T0 + HOUR - 1), (T0 + 30 * HOUR, T0 + 31 * HOUR - 1),
                              (NOW // HOUR * HOUR, until)]


def test_a_window_that_ends_before_now_is_read_once():
    cache, fetch = timeline.TimelineCache(), FakeFetch(DAY)
    since, until = T0, T0 + 3 * DAY - 1  # whole closed days
    first = timeline.timeline(cache, fetch, ("k", "day"), "day", since, until, NOW)
    again = timeline.timeline(cache, fetch, ("k", "day"), "day", since, until, NOW)
    assert len(fetch.calls) == 1 and again == first and [p["t_ms"] for p in first] == [T0, T0 + DAY, T0 + 2 * DAY]


def _seed(store) -> None:
    rng = random.Random(5)
    runs = []
    for i in range(160):
        t = T0 + rng.randrange(0, NOW - T0)
        status = rng.choice(["success", "success", "failed", "interrupted"])
        runs.append(make_run(f"c-{i:03d}", rng.choice(["wf-a", "wf-b"]), t, status=status,
                             duration_ms=rng.lognormvariate(8, 1.0), frames=rng.randrange(0, 4)))
    store.save_runs(runs)


WINDOWS = [  # (bucket, since, until): edges cut mid-bucket, whole buckets, the open current bucket
    ("hour", T0 + 17, NOW),
    ("hour", T0 + 3 * HOUR, T0 + 2 * DAY + 7 * HOUR + 59),
    ("day", T0 + 5 * HOUR, NOW),
    ("day", T0, T0 + 4 * DAY - 1),
]


@pytest.mark.parametrize("rollups_from", [10, 5_000], ids=["rollups", "runs"])
@pytest.mark.parametrize("filters", [{}, {"status": "success,failed"}, {"workflow": "wf-a"}],
                         ids=["all", "status", "workflow"])
def test_the_cached_timeline_equals_one_read_without_the_cache(store, monkeypatch, rollups_from, filters):
    monkeypatch.setattr("telemetry.store.store.EXACT_PERCENTILES_MAX", rollups_from)
    monkeypatch.setattr("telemetry.analysis.service.now_ms", lambda: NOW)
    calls: list[tuple] = []
    real = rollup_reads.timeline_totals
    monkeypatch.setattr(rollup_reads, "timeline_totals", lambda *a: calls.append(a) or real(*a))
    _seed(store)
    cached = AnalysisService(store)
    for bucket, since, until in WINDOWS:
        query = {"bucket": bucket, "since_ms": str(since), "until_ms": str(until), **filters}
        first = cached.timeline(query)
        again = cached.timeline(query)
        fresh = AnalysisService(store).timeline(query)
        size = timeline.BUCKET_MS[bucket]
        with store.bound():
            parsed = RunFilters(status=filters["status"].split(",") if "status" in filters else [],
                                workflow=filters.get("workflow"))
        direct = queries.timeline_points(store, parsed, since, until, size)
        assert again == first  # the same cache: the same answer
        # A fresh read: the same points; an average may differ in its last bit (PostgreSQL sums in plan order).
        assert {k: v for k, v in fresh.items() if k != "points"} == {k: v for k, v in first.items() if k != "points"}
        assert [pytest.approx(p, rel=1e-12) for p in fresh["points"]] == first["points"]
        assert [p["t_ms"] for p in first["points"]] == sorted(direct)
        assert first["points"] == [pytest.approx(direct[b], rel=1e-12) for b in sorted(direct)]
        assert all(p["t_ms"] % size == 0 for p in first["points"])  # UTC buckets: hours and midnights
        assert sum(p["runs"] for p in first["points"]) == _runs_in(store, parsed, since, until)
    assert bool(calls) == (rollups_from == 10)


def test_a_run_stored_into_a_cached_hour_is_counted(store, monkeypatch):
    monkeypatch.setattr("telemetry.store.store.EXACT_PERCENTILES_MAX", 10)
    monkeypatch.setattr("telemetry.analysis.service.now_ms", lambda: NOW)
    _seed(store)
    service = AnalysisService(store)
    query = {"bucket": "hour", "since_ms": str(T0 + 17), "until_ms": str(NOW)}
    before = {p["t_ms"]: p["runs"] for p in service.timeline(query)["points"]}
    late = make_run("late", "wf-a", T0 + 30 * HOUR + 5, status="failed")
    store.save_runs([late])
    service.on_run_stored(late)
    after = {p["t_ms"]: p["runs"] for p in service.timeline(query)["points"]}
    assert after == {**before, T0 + 30 * HOUR: before.get(T0 + 30 * HOUR, 0) + 1}
    assert service.timeline(query) == AnalysisService(store).timeline(query)


def _runs_in(store, filters: RunFilters, since: int, until: int) -> int:
    from dataclasses import replace

    with store.bound():
        return store.filtered(replace(filters, since_ms=since, until_ms=until)).count()
