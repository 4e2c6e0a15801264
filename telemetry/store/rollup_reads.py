"""Statistics from the rollups (`store.rollups`) where the filters allow: status, instance, workflow (when it
names a workflow key and no run outside that key matches it) and since/until. A window is cut into whole days
and whole hours read from the rollups and, at its edges, the parts of an hour read from runs by index.
`label` and `q` need runs: `plan` answers None and the store scans as before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from peewee import fn

from ..filters import INT64_MAX, RunFilters
from .rollups import ANY_STATUS, DAY_MS, GRAIN_ALL, HOUR_MS, TOTAL_ALL, TOTAL_DAY, TOTAL_HOUR, Agg, duration_bin
from .schema import RollupRow, RunRow

Range = tuple[int, int | None]  # [lo, hi) in ms; hi None: no end
_FAR = INT64_MAX - 2 * DAY_MS  # an end this late is no end (292 million years from 1970)
_TOTALS = {HOUR_MS: TOTAL_HOUR, DAY_MS: TOTAL_DAY, GRAIN_ALL: TOTAL_ALL}


@dataclass
class Plan:
    rollups: list[tuple[int, Range]]  # (grain, bucket range)
    runs: list[Range]  # started_at_ms ranges read from runs
    workflow_keys: list[str] | None


def _ceil(value: int, size: int) -> int:
    return -(-value // size) * size


def split_window(since_ms: int | None, until_ms: int | None) -> tuple[list[tuple[int, Range]], list[Range]]:
    """[since, until] (both inclusive, either open) as rollup bucket ranges per grain and run ranges."""
    if since_ms is None and until_ms is None:
        return [(GRAIN_ALL, (0, 1))], []
    lo = since_ms or 0  # a window with an end only excludes runs without a start, as the runs filter does
    if lo >= _FAR:
        return [], [(lo, None if until_ms is None else until_ms + 1)]
    hi = None if until_ms is None or until_ms >= _FAR else until_ms + 1  # bounds stay within 64 bits
    h_lo = _ceil(lo, HOUR_MS)
    h_hi = None if hi is None else hi // HOUR_MS * HOUR_MS
    if h_hi is not None and h_lo >= h_hi:
        return [], [(lo, hi)]
    runs: list[Range] = [(lo, h_lo)] if lo < h_lo else []
    if hi is not None and h_hi is not None and h_hi < hi:
        runs.append((h_hi, hi))
    d_lo = _ceil(h_lo, DAY_MS)
    d_hi = None if h_hi is None else h_hi // DAY_MS * DAY_MS
    if d_hi is not None and d_lo >= d_hi:
        return [(HOUR_MS, (h_lo, h_hi))], runs
    parts: list[tuple[int, Range]] = [(DAY_MS, (d_lo, d_hi))]
    if h_lo < d_lo:
        parts.append((HOUR_MS, (h_lo, d_lo)))
    if d_hi is not None and h_hi is not None and d_hi < h_hi:
        parts.append((HOUR_MS, (d_hi, h_hi)))
    return parts, runs


def plan(filters: RunFilters) -> Plan | None:
    """How the rollups answer `filters`, or None when they cannot."""
    if filters.label or filters.q:
        return None
    keys = None
    if filters.workflow:
        w = filters.workflow
        if not RollupRow.select().where(RollupRow.workflow_key == w, RollupRow.grain == GRAIN_ALL).exists():
            return None
        # The filter also matches runs by name and fingerprint: only when none of those is outside key w are its
        # runs exactly the key's rollups. (A run's key is its workflow id, else its fingerprint: a run of
        # workflow id w has key w.)
        outside = RunRow.select().where(
            ((RunRow.fingerprint == w) | (RunRow.workflow_name == w))
            & ((RunRow.workflow_key != w) | RunRow.workflow_key.is_null()))
        if outside.exists():
            return None
        keys = [w]
    parts, runs = split_window(filters.since_ms, filters.until_ms)
    return Plan(parts, runs, keys)


def rollup_query(p: Plan, filters: RunFilters, *columns: Any, model: Any = RollupRow) -> Any:
    """The rows of `model` (a rollups table: grain, bucket_ms, status, instance, workflow_key) that `p` reads."""
    ranges = None
    for grain, (lo, hi) in p.rollups:
        cond = (model.grain == grain) & (model.bucket_ms >= lo)
        if hi is not None:
            cond &= model.bucket_ms < hi
        ranges = cond if ranges is None else ranges | cond
    query = model.select(*columns).where(ranges)
    if filters.status:
        query = query.where(model.status.in_(filters.status))
    if filters.instance:
        query = query.where(model.instance == filters.instance)
    if p.workflow_keys is not None:
        query = query.where(model.workflow_key.in_(p.workflow_keys))
    return query


def edge_filters(filters: RunFilters, lo: int, hi: int | None) -> RunFilters:
    return replace(filters, since_ms=lo, until_ms=None if hi is None else min(hi - 1, INT64_MAX))


def groups(store: Any, p: Plan, filters: RunFilters) -> dict[tuple[str | None, str], Agg]:
    """Per (workflow_key, status): the rollups' totals of the window plus those of its edge runs."""
    out: dict[tuple[str | None, str], Agg] = {}
    if p.rollups:
        query = rollup_query(
            p, filters, RollupRow.workflow_key, RollupRow.status, fn.SUM(RollupRow.runs),
            fn.SUM(RollupRow.durations), fn.SUM(RollupRow.duration_sum), fn.SUM(RollupRow.frames),
            fn.SUM(RollupRow.energies), fn.SUM(RollupRow.energy_sum), fn.MAX(RollupRow.gpu_peak_max),
            fn.MAX(RollupRow.ram_peak_max)).group_by(RollupRow.workflow_key, RollupRow.status)
        for wk, status, runs, durations, dsum, frames, energies, esum, gpu, ram in query.tuples():
            agg = Agg(int(runs), int(durations), float(dsum or 0.0), int(frames or 0), int(energies),
                      float(esum or 0.0), None if gpu is None else int(gpu), None if ram is None else int(ram))
            out.setdefault((wk or None, status), Agg()).add(agg)
    for lo, hi in p.runs:
        for row in store.grouped_runs(edge_filters(filters, lo, hi)):
            agg = Agg(row["runs"], row["durations"] or 0, float(row["duration_sum"] or 0.0), row["frames"] or 0,
                      row["energies"] or 0, float(row["energy_j"] or 0.0), row["gpu_peak"], row["ram_peak"])
            out.setdefault((row["workflow_key"] or None, row["status"]), Agg()).add(agg)
    return out


def _totals_plan(p: Plan, filters: RunFilters) -> tuple[Plan, RunFilters]:
    """The same window over the totals rows when no workflow or instance is asked for (fewer rows), and the
    filters to read them with (no status asked for: the rows of every status)."""
    if p.workflow_keys is not None or filters.instance:
        return p, filters
    totals = Plan([(_TOTALS[grain], r) for grain, r in p.rollups], p.runs, None)
    return totals, filters if filters.status else replace(filters, status=[ANY_STATUS])


def _merged_hists(query: Any) -> dict[int, dict[int, int]]:
    """The histograms of the rows `query` selects (bucket_ms, hist), summed per bucket."""
    out: dict[int, dict[int, int]] = {}
    for bucket, text in query.tuples():
        hist = out.setdefault(int(bucket), {})
        for b, n in json.loads(text).items():
            hist[int(b)] = hist.get(int(b), 0) + n
    return out


def histogram(store: Any, p: Plan, filters: RunFilters) -> dict[int, int]:
    """The durations histogram of the window: the rollups' merged, and the edge runs' binned here."""
    hist: dict[int, int] = {}
    if p.rollups:
        q, q_filters = _totals_plan(p, filters)
        for bucket_hist in _merged_hists(rollup_query(q, q_filters, RollupRow.bucket_ms, RollupRow.hist)).values():
            for b, n in bucket_hist.items():
                hist[b] = hist.get(b, 0) + n
    for lo, hi in p.runs:
        query = store.filtered(edge_filters(filters, lo, hi), RunRow.select(RunRow.duration_ms)).where(
            RunRow.duration_ms.is_null(False))
        for (d,) in query.tuples():
            b = duration_bin(d)
            hist[b] = hist.get(b, 0) + 1
    return hist


def timeline_totals(store: Any, filters: RunFilters, grain: int, lo: int, hi: int) -> dict[int, dict[str, Any]]:
    """Per bucket of `grain` in [lo, hi) (whole buckets): runs per status, durations, their sum, the GPU peak,
    frames, and the durations histogram, from the rollups (the histograms merged by the database)."""
    base = plan(filters)
    if base is None:
        raise ValueError("these filters need runs")
    p = Plan([(grain, (lo, hi))], [], base.workflow_keys)
    q, q_filters = _totals_plan(p, filters)
    out: dict[int, dict[str, Any]] = {}
    totals = rollup_query(q, filters, RollupRow.bucket_ms, RollupRow.status, fn.SUM(RollupRow.runs),
                           fn.SUM(RollupRow.durations), fn.SUM(RollupRow.duration_sum),
                           fn.MAX(RollupRow.gpu_peak_max), fn.SUM(RollupRow.frames)).group_by(
        RollupRow.bucket_ms, RollupRow.status)
    if q is not p:
        totals = totals.where(RollupRow.status != ANY_STATUS)
    for b, status, runs, durations, dsum, peak, frames in totals.tuples():
        entry = out.setdefault(int(b), {"status": {}, "durations": 0, "duration_sum": 0.0, "peak": None,
                                        "frames": 0, "hist": {}})
        entry["status"][status] = int(runs)
        entry["durations"] += int(durations)
        entry["duration_sum"] += float(dsum or 0.0)
        entry["peak"] = peak if entry["peak"] is None else max(entry["peak"], peak or 0)
        entry["frames"] += int(frames or 0)
    for b, hist in _merged_hists(rollup_query(q, q_filters, RollupRow.bucket_ms, RollupRow.hist)).items():
        out[b]["hist"] = hist
    return out
