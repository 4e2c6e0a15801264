"""Statistics from the rollups (`store.rollups`) where the filters allow: status, instance, workflow (when the
runs it matches are exactly those of some keys: `workflow_keys`) and since/until. A window is cut into whole days
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
        keys = workflow_keys(filters.workflow)
        if keys is None:
            return None
    parts, runs = split_window(filters.since_ms, filters.until_ms)
    return Plan(parts, runs, keys)


def workflow_keys(w: str) -> list[str] | None:
    """The workflow keys whose runs are exactly those the workflow filter `w` matches (workflow id, UI name,
    fingerprint or key `w`: `store._workflow_condition`), or None when no such keys are known.

    A run's key is its workflow id, else its fingerprint, so the runs of key `w` all match, and so do the runs
    named `w`. Those are the keys' rollups when every run of each key named `w` (other than `w`) is named `w` (a
    run renamed, or a key whose runs carry two names, makes its rollups hold runs the filter does not match), no
    run named `w` lacks a key (the rollups of '' hold every keyless run), and no run of fingerprint `w` with an id
    is outside these keys. Each check is an index probe or a few: a name's keys come from a loose index scan of
    (workflow_name, workflow_key), and "another name" from the least and greatest name of each key along
    (workflow_key, workflow_name)."""
    keys = [w] if RollupRow.select().where(RollupRow.workflow_key == w, RollupRow.grain == GRAIN_ALL).exists() \
        else []
    named = _keys_named(w)
    if named is None:
        return None
    others = [k for k in named if k != w]
    if others and _another_name(others, w):
        return None
    keys += others
    if not keys:
        return None
    by_fingerprint = RunRow.select().where((RunRow.fingerprint == w) & RunRow.workflow_id.is_null(False)
                                           & RunRow.workflow_key.not_in(keys))
    if by_fingerprint.exists():
        return None
    return keys


MAX_NAMED_KEYS = 32  # a name shared by more keys is answered by the scan


def _keys_named(w: str) -> list[str] | None:
    """The keys of the runs named `w` (a recursive CTE that seeks from key to key), or None when one has no key
    or there are more than MAX_NAMED_KEYS."""
    db, p = RunRow._meta.database, RunRow._meta.database.param
    if RunRow.select().where((RunRow.workflow_name == w) & RunRow.workflow_key.is_null()).exists():
        return None
    rows = db.execute_sql(
        'WITH RECURSIVE k("key") AS ('
        f'SELECT (SELECT MIN("workflow_key") FROM "runs" WHERE "workflow_name" = {p}) '
        'UNION ALL SELECT (SELECT MIN("workflow_key") FROM "runs" '
        f'WHERE "workflow_name" = {p} AND "workflow_key" > k."key") FROM k WHERE k."key" IS NOT NULL) '
        f'SELECT "key" FROM k WHERE "key" IS NOT NULL LIMIT {MAX_NAMED_KEYS + 1}', (w, w)).fetchall()
    keys = [key for (key,) in rows]
    if len(keys) > MAX_NAMED_KEYS or "" in keys:  # '' is a missing key to the rollups
        return None
    return keys


def _another_name(keys: list[str], w: str) -> bool:
    """Whether a run of one of `keys` is not named `w`: its smallest or largest name is another, or one has none.
    MIN and MAX along (workflow_key, workflow_name) are one index probe each on both databases (an EXISTS of
    "name < w" is not: PostgreSQL expects to find one soon and scans runs when there is none)."""
    db, p = RunRow._meta.database, RunRow._meta.database.param
    one = ('(SELECT {agg}("workflow_name") FROM "runs" WHERE "workflow_key" = {p})')
    same = (f"COALESCE({one.format(agg='MIN', p=p)} = {p} AND {one.format(agg='MAX', p=p)} = {p}, 1 = 0)")
    nameless = f'EXISTS (SELECT 1 FROM "runs" WHERE "workflow_key" = {p} AND "workflow_name" IS NULL)'
    parts, args = [], []
    for key in keys:
        parts.append(f"NOT {same} OR {nameless}")
        args += [key, w, key, w, key]
    (found,) = db.execute_sql("SELECT " + " OR ".join(f"({part})" for part in parts), args).fetchone()
    return bool(found)


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


def _timeline_plan(filters: RunFilters, grain: int, lo: int, hi: int) -> tuple[Plan, RunFilters]:
    base = plan(filters)
    if base is None:
        raise ValueError("these filters need runs")
    return _totals_plan(Plan([(grain, (lo, hi))], [], base.workflow_keys), filters)


def timeline_runs(store: Any, filters: RunFilters, grain: int, lo: int, hi: int) -> int:
    """How many runs `timeline_totals` of the same window counts (one SUM in the database)."""
    q, q_filters = _timeline_plan(filters, grain, lo, hi)
    (total,) = rollup_query(q, q_filters, fn.SUM(RollupRow.runs)).tuples().get()
    return int(total or 0)


def timeline_totals(store: Any, filters: RunFilters, grain: int, lo: int, hi: int) -> dict[int, dict[str, Any]]:
    """Per bucket of `grain` in [lo, hi) (whole buckets): runs per status, durations, their sum, the GPU peak,
    frames, and the durations histogram, from the rollups (the histograms merged here). Read through the raw
    cursor: at 2,400 buckets peewee's per-row conversion was a third of the call."""
    q, q_filters = _timeline_plan(filters, grain, lo, hi)
    out: dict[int, dict[str, Any]] = {}
    totals = rollup_query(q, filters, RollupRow.bucket_ms, RollupRow.status, fn.SUM(RollupRow.runs),
                           fn.SUM(RollupRow.durations), fn.SUM(RollupRow.duration_sum),
                           fn.MAX(RollupRow.gpu_peak_max), fn.SUM(RollupRow.frames)).group_by(
        RollupRow.bucket_ms, RollupRow.status)
    if q.workflow_keys is None and not filters.instance:  # the totals rows: '*' would count every run twice
        totals = totals.where(RollupRow.status != ANY_STATUS)
    for b, status, runs, durations, dsum, peak, frames in _raw(store, totals):
        entry = out.setdefault(int(b), {"status": {}, "durations": 0, "duration_sum": 0.0, "peak": None,
                                        "frames": 0, "hist": {}})
        entry["status"][status] = int(runs)
        entry["durations"] += int(durations)
        entry["duration_sum"] += float(dsum or 0.0)
        entry["peak"] = peak if entry["peak"] is None else max(entry["peak"], peak or 0)
        entry["frames"] += int(frames or 0)
    hists = rollup_query(q, q_filters, RollupRow.bucket_ms, RollupRow.hist)
    for b, text in _raw(store, hists):
        hist = out[int(b)]["hist"]
        for k, n in json.loads(text).items():
            k = int(k)
            hist[k] = hist.get(k, 0) + n
    return out


def _raw(store: Any, query: Any) -> list[tuple]:
    sql, params = query.sql()
    return store.db.execute_sql(sql, params).fetchall()
