"""Run statistics per hour or day bucket for charts (`GET /telemetry/stats/timeline`).

Buckets are UTC hours or days (bucket start = started_at_ms rounded down). Without `since_ms` the window is the
last `DEFAULT_SPAN_BUCKETS[bucket]` buckets; a window of more than `MAX_BUCKETS` buckets is refused with a message
that says how to narrow it. `success_rate` is successes over completed runs (success, failed, interrupted), as in
`/telemetry/stats`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..filters import FilterError

BUCKET_MS = {"hour": 3_600_000, "day": 86_400_000}
DEFAULT_SPAN_BUCKETS = {"hour": 48, "day": 30}
MAX_BUCKETS = 2400  # 100 days of hours: an hourly timeline over 90 days fits


def parse_bucket(value: str | None) -> str:
    bucket = (value or "day").strip()
    if bucket not in BUCKET_MS:
        raise FilterError(f"'bucket' must be hour or day, got {bucket[:40]!r}")
    return bucket


def window(bucket: str, since_ms: int | None, until_ms: int | None, now: int) -> tuple[int, int | None]:
    """The [since, until] window, defaulted and checked against MAX_BUCKETS."""
    size = BUCKET_MS[bucket]
    end = until_ms if until_ms is not None else now
    start = since_ms if since_ms is not None else (end // size - DEFAULT_SPAN_BUCKETS[bucket] + 1) * size
    if (end - start) // size + 1 > MAX_BUCKETS:
        raise FilterError(f"the window from since_ms={start} to {end} spans more than {MAX_BUCKETS} {bucket} buckets; "
                          f"narrow since_ms/until_ms" + (" or use bucket=day" if bucket == "hour" else ""))
    return start, until_ms


def points(rows: Sequence[tuple], ranks: Sequence[tuple]) -> dict[int, dict[str, Any]]:
    """Timeline points by bucket start from `queries.timeline_aggregates`. p95 interpolates linearly between the
    two ranks around it (numpy's default percentile)."""
    around: dict[int, dict[int, float]] = {}
    counts: dict[int, int] = {}
    for b, rank, n, duration in ranks:
        around.setdefault(int(b), {})[int(rank)] = float(duration)
        counts[int(b)] = int(n)
    out = {}
    for b, runs, ok, failed, interrupted, avg_ms, max_peak, frames in rows:
        b = int(b)
        ok, failed, interrupted = int(ok or 0), int(failed or 0), int(interrupted or 0)
        done = ok + failed + interrupted
        out[b] = {
            "t_ms": b, "runs": int(runs), "success": ok, "failed": failed, "interrupted": interrupted,
            "success_rate": ok / done if done else None,
            "avg_duration_ms": float(avg_ms) if avg_ms is not None else None,
            "p95_duration_ms": _p95(around.get(b), counts.get(b)),
            "max_gpu_peak_bytes": int(max_peak) if max_peak is not None else None,
            "frames": int(frames or 0),
        }
    return out


def point_of_totals(b: int, totals: dict[str, Any]) -> dict[str, Any]:
    """A point from `rollup_reads.timeline_totals`: p95 interpolated as in `points`, between the two ranks'
    values read from the histogram."""
    by_status = totals["status"]
    ok, failed, interrupted = (by_status.get(s, 0) for s in ("success", "failed", "interrupted"))
    done = ok + failed + interrupted
    n = totals["durations"]
    p95 = None
    if n:
        position = 0.95 * (n - 1)
        k = int(position)
        low, high = _ranks_of_histogram(totals["hist"], k, min(k + 1, n - 1))
        p95 = low + (high - low) * (position - k)
    return {
        "t_ms": b, "runs": sum(by_status.values()), "success": ok, "failed": failed, "interrupted": interrupted,
        "success_rate": ok / done if done else None,
        "avg_duration_ms": totals["duration_sum"] / n if n else None,
        "p95_duration_ms": p95,
        "max_gpu_peak_bytes": int(totals["peak"]) if totals["peak"] is not None else None,
        "frames": totals["frames"],
    }


def _ranks_of_histogram(hist: dict[int, int], low: int, high: int) -> tuple[float, float]:
    """`rollups.percentile_at` of ranks `low` <= `high` in one pass over the sorted bins."""
    from ..store.rollups import bin_value

    seen, found = 0, None
    for b, count in sorted(hist.items()):
        seen += count
        if found is None and seen > low:
            found = bin_value(b)
        if found is not None and seen > high:
            return found, bin_value(b)
    raise ValueError("rank beyond the histogram")


def _p95(values: dict[int, float] | None, n: int | None) -> float | None:
    if not values or not n:
        return None
    position = 0.95 * (n - 1)
    k = int(position)
    low = values.get(k + 1)
    high = values.get(k + 2, low)
    if low is None:
        return None
    return low + (high - low) * (position - k)


class TimelineCache:
    """Points of closed buckets (before the current one) by key (filters, bucket size, then anything else that
    decides how a point is computed), so a repeated timeline only asks the database for the current bucket and
    the first one when the window cuts it. A stored run drops its bucket (`forget`); entries expire after `ttl_s`
    for runs written by other processes (another instance on the same database, retention)."""

    def __init__(self, ttl_s: float = 300.0, max_keys: int = 64) -> None:
        self._entries: dict[tuple, tuple[float, dict[int, dict[str, Any] | None]]] = {}
        self._ttl_s = ttl_s
        self._max_keys = max_keys
        self._lock = threading.Lock()

    def get(self, key: tuple) -> dict[int, dict[str, Any] | None]:
        with self._lock:
            hit = self._entries.get(key)
            if hit is None or time.monotonic() - hit[0] > self._ttl_s:
                self._entries.pop(key, None)
                return {}
            return dict(hit[1])

    def put(self, key: tuple, closed: dict[int, dict[str, Any] | None]) -> None:
        with self._lock:
            stamp, known = self._entries.get(key, (time.monotonic(), {}))
            known.update(closed)
            self._entries[key] = (stamp, known)
            while len(self._entries) > self._max_keys:
                self._entries.pop(next(iter(self._entries)))

    def forget(self, started_at_ms: int | None) -> None:
        if started_at_ms is None:
            return
        with self._lock:
            for key, (_stamp, known) in self._entries.items():
                size = BUCKET_MS[key[1]]
                known.pop(started_at_ms // size * size, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def missing_ranges(missing: Sequence[int], size: int, since_ms: int, until_ms: int) -> list[tuple[int, int]]:
    """The buckets `missing` (ascending starts) as [start, end] ranges of contiguous buckets, cut to the window."""
    ranges: list[tuple[int, int]] = []
    for b in missing:
        if ranges and ranges[-1][1] + 1 == b:
            ranges[-1] = (ranges[-1][0], b + size - 1)
        else:
            ranges.append((b, b + size - 1))
    return [(max(lo, since_ms), min(hi, until_ms)) for lo, hi in ranges]


def timeline(cache: TimelineCache, fetch: Callable[[list[tuple[int, int]]], dict[int, dict[str, Any]]], key: tuple,
             bucket: str, since_ms: int, until_ms: int, now_ms: int) -> list[dict[str, Any]]:
    """The points of [since_ms, until_ms] (buckets with runs only): closed buckets from the cache where it has
    them, the rest from one `fetch(ranges)` (points by bucket start) over the [start, end] ranges of the buckets
    missing there, so a window whose first bucket is cut and whose last is the current one reads those two."""
    size = BUCKET_MS[bucket]
    current = now_ms // size * size
    first, last = since_ms // size * size, until_ms // size * size
    known = cache.get(key)
    starts = range(first, last + 1, size)
    # A bucket cut by the window's edges is always read (the cache holds whole buckets only).
    partial = {b for b in (first, last) if b < since_ms or b + size - 1 > until_ms}
    missing = [b for b in starts if b >= current or b not in known or b in partial]
    if missing:
        fetched = fetch(missing_ranges(missing, size, since_ms, until_ms))
        closed = {}
        for b in missing:
            point = fetched.get(b)
            if b < current and b not in partial:
                closed[b] = point  # None: a closed bucket without runs
            known[b] = point
        if closed:
            cache.put(key, closed)
    return [point for point in map(known.get, starts) if point is not None]
