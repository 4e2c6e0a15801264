"""The store reads that analysis needs, each bounded: one workflow, fingerprint or scene at a time, newest first
with a LIMIT, over the indexes added by migration 2. Nothing here scans the whole runs table, except the
timeline, which reads only its time window.

Runs without a start time (cancelled before they ran) are left out of analysis.
"""

from __future__ import annotations

from typing import Any

from peewee import SQL, Case, fn

from ..filters import INT64_MAX, RunFilters
from ..model import RunStatus
from ..store.comfy_history import ComfyHistoryRow, prompt_of_record
from ..store.schema import NodeRunRow, RunRow
from ..store.store import Store
from . import timeline
from .actions import ActionRun
from .rules import RunPoint, parse_parameters

RUN_POINT_COLUMNS = (
    RunRow.run_id, RunRow.status, RunRow.started_at_ms, RunRow.finished_at_ms, RunRow.duration_ms,
    RunRow.gpu_peak_bytes, RunRow.gpu_total_bytes, RunRow.frame_count, RunRow.error_kind, RunRow.error_node_id,
    RunRow.error_node_type, RunRow.error_exception_type, RunRow.workflow_name, RunRow.story_title, RunRow.scene,
    RunRow.parameters,
)


def _points(query, limit: int) -> list[RunPoint]:
    rows = query.where(RunRow.started_at_ms.is_null(False)).order_by(RunRow.started_at_ms.desc()).limit(limit)
    return [RunPoint(*row) for row in reversed(list(rows.tuples()))]


def workflow_points(wf: str, limit: int) -> list[RunPoint]:
    """The workflow's latest `limit` runs (finished or not), oldest first."""
    return _points(RunRow.select(*RUN_POINT_COLUMNS).where(RunRow.workflow_key == wf), limit)


def scene_points(story_title: str | None, scene: str, limit: int) -> list[RunPoint]:
    query = RunRow.select(*RUN_POINT_COLUMNS).where(RunRow.scene == scene)
    query = query.where(RunRow.story_title.is_null() if story_title is None else RunRow.story_title == story_title)
    return _points(query, limit)


def run_nodes(run_id: str) -> list[tuple[str, str, float | None]]:
    return list(NodeRunRow.select(NodeRunRow.class_type, NodeRunRow.status, NodeRunRow.duration_ms)
                .where(NodeRunRow.run == run_id).tuples())


_IN_CHUNK = 500  # ids per IN (...) list: within SQLite's variable limit of old builds (999)


def action_runs(run_ids: list[str]) -> dict[str, ActionRun]:
    """The runs (by id) whose stored ComfyUI history record holds their API prompt, for `actions.derive`."""
    wanted = list(dict.fromkeys(run_ids))
    found = {}
    for start in range(0, len(wanted), _IN_CHUNK):
        rows = (RunRow.select(RunRow.run_id, RunRow.parameters, RunRow.gpu_total_bytes, RunRow.error_node_id,
                              RunRow.scene, ComfyHistoryRow.record)
                .join(ComfyHistoryRow, on=(ComfyHistoryRow.run_id == RunRow.run_id))
                .where(RunRow.run_id.in_(wanted[start:start + _IN_CHUNK])).tuples())
        for run_id, parameters, total, error_node, scene, record in rows:
            prompt = prompt_of_record(record)
            if prompt:
                found[run_id] = ActionRun(run_id, prompt, parse_parameters(parameters), total, error_node, scene)
    return found


def resolve_workflow(workflow: str) -> tuple[str, str | None] | None:
    """(workflow key, name) for a workflow key, UI workflow id, fingerprint or name; None when no run has it."""
    for column in (RunRow.workflow_key, RunRow.workflow_id, RunRow.fingerprint, RunRow.workflow_name):
        row = (RunRow.select(RunRow.workflow_key, RunRow.workflow_name).where(column == workflow)
               .order_by(RunRow.started_at_ms.desc()).limit(1).tuples().first())
        if row and row[0]:
            return row[0], row[1]
    return None


def metric_series(wf: str, metric: str, limit: int) -> list[tuple[str, int, Any, Any, Any]]:
    """(run_id, started_at_ms, status, duration_ms, gpu_peak_bytes, frame_count) of the latest `limit` runs,
    oldest first. `metric` decides which runs can carry a value: success_rate needs completed runs."""
    query = (RunRow.select(RunRow.run_id, RunRow.started_at_ms, RunRow.status, RunRow.duration_ms,
                           RunRow.gpu_peak_bytes, RunRow.frame_count)
             .where(RunRow.workflow_key == wf, RunRow.started_at_ms.is_null(False)))
    if metric == "success_rate":
        query = query.where(RunRow.status.in_([RunStatus.SUCCESS, RunStatus.FAILED]))
    else:
        query = query.where(RunRow.status == RunStatus.SUCCESS)
    return list(reversed(list(query.order_by(RunRow.started_at_ms.desc()).limit(limit).tuples())))


def node_series(wf: str, node_type: str, limit: int) -> list[tuple[str, int, str, float | None, Any, int]]:
    """(run_id, started_at_ms, node status, node duration_ms, node gpu_peak_bytes, run frame_count) of the node
    type in the workflow's latest `limit` runs, oldest first (one value per run: durations summed, peaks max)."""
    runs = (RunRow.select(RunRow.run_id, RunRow.started_at_ms, RunRow.frame_count)
            .where(RunRow.workflow_key == wf, RunRow.started_at_ms.is_null(False),
                   RunRow.status.in_([RunStatus.SUCCESS, RunStatus.FAILED]))
            .order_by(RunRow.started_at_ms.desc()).limit(limit))
    started = {run_id: (t, frames) for run_id, t, frames in runs.tuples()}
    if not started:
        return []
    per_run: dict[str, list[Any]] = {}
    nodes = (NodeRunRow.select(NodeRunRow.run, NodeRunRow.status, NodeRunRow.duration_ms, NodeRunRow.gpu_peak_bytes)
             .where(NodeRunRow.run.in_(list(started)), NodeRunRow.class_type == node_type).tuples())
    for run_id, status, duration, peak in nodes:
        entry = per_run.setdefault(run_id, [status, None, None])
        if status == "failed":
            entry[0] = "failed"
        if duration is not None:
            entry[1] = (entry[1] or 0.0) + duration
        if peak is not None:
            entry[2] = max(entry[2] or 0, peak)
    out = [(rid, started[rid][0], s, d, p, started[rid][1]) for rid, (s, d, p) in per_run.items()]
    return sorted(out, key=lambda r: (r[1], r[0]))


# Read through the raw cursor, the SQL written once: at 50 fingerprints a backtest pass spent a third of its
# reads in peewee's query building and per-row conversion.
_HISTORY_SQL = ("SELECT run_id, duration_ms, gpu_peak_bytes, parameters, workflow_key, workflow_name FROM runs "
                "WHERE fingerprint = {p} AND status = {p} AND started_at_ms IS NOT NULL "
                "ORDER BY started_at_ms DESC LIMIT {p}")
_RECENT_SQL = ("SELECT fingerprint FROM runs WHERE started_at_ms IS NOT NULL ORDER BY started_at_ms DESC "
               "LIMIT {p}")


def _raw_rows(sql: str, *params: Any) -> list[tuple]:
    db = RunRow._meta.database
    return db.execute_sql(sql.format(p=db.param), params).fetchall()


def fingerprint_history(fingerprint: str, limit: int) -> list[tuple[str, float | None, int | None, str | None,
                                                                    str | None, str | None]]:
    """(run_id, duration_ms, gpu_peak_bytes, parameters JSON, workflow_key, workflow_name) of the fingerprint's
    latest successful runs, oldest first."""
    return list(reversed(_raw_rows(_HISTORY_SQL, fingerprint, RunStatus.SUCCESS, int(limit))))


def recent_fingerprints(scan_runs: int) -> list[str]:
    """Fingerprints of the latest `scan_runs` runs, most active first."""
    counts: dict[str, int] = {}
    for (fp,) in _raw_rows(_RECENT_SQL, int(scan_runs)):
        if fp:
            counts[fp] = counts.get(fp, 0) + 1
    return sorted(counts, key=lambda fp: -counts[fp])


def recent_workflows(since_ms: int, limit: int) -> list[str]:
    rows = (RunRow.select(RunRow.workflow_key, fn.MAX(RunRow.started_at_ms).alias("last"))
            .where(RunRow.started_at_ms >= since_ms, RunRow.workflow_key.is_null(False))
            .group_by(RunRow.workflow_key).order_by(fn.MAX(RunRow.started_at_ms).desc()).limit(limit).tuples())
    return [wf for wf, _ in rows]


def running_starts(run_ids: list[str]) -> dict[str, int]:
    """started_at_ms of those runs that are executing now."""
    if not run_ids:
        return {}
    rows = (RunRow.select(RunRow.run_id, RunRow.started_at_ms)
            .where(RunRow.run_id.in_(run_ids), RunRow.status == RunStatus.RUNNING).tuples())
    return {rid: t for rid, t in rows if t is not None}


def timeline_aggregates(store: Store, filters: RunFilters, since_ms: int, until_ms: int,
                        bucket_ms: int) -> tuple[list[tuple], list[tuple]]:
    """Per bucket of the filtered runs started in [since_ms, until_ms]: (bucket, runs, success, failed, interrupted,
    avg duration, max GPU peak, frames), and (bucket, rank, count, duration) for the two durations around the
    p95 rank of each bucket (ranks k+1 and k+2, k = floor(0.95 (count - 1))). Both are aggregated by the database
    over the covering index `runs_started_timeline`; nothing per run comes back to Python."""
    bucket = ((RunRow.started_at_ms / bucket_ms) * bucket_ms).alias("b")

    def count_of(status: str):
        return fn.SUM(Case(None, [(RunRow.status == status, 1)], 0))

    def windowed(query):
        query = query.where(RunRow.started_at_ms >= since_ms, RunRow.started_at_ms <= until_ms)
        return store.filtered(filters, query)

    totals = windowed(RunRow.select(bucket, fn.COUNT(RunRow.run_id), count_of(RunStatus.SUCCESS),
                                    count_of(RunStatus.FAILED), count_of(RunStatus.INTERRUPTED),
                                    fn.AVG(RunRow.duration_ms), fn.MAX(RunRow.gpu_peak_bytes),
                                    fn.SUM(RunRow.frame_count)))
    sql, params = totals.group_by(SQL("1")).sql()
    rows = store.db.execute_sql(sql, params).fetchall()
    part = (RunRow.started_at_ms / bucket_ms) * bucket_ms
    ranked = windowed(RunRow.select(
        bucket, RunRow.duration_ms.alias("d"),
        fn.ROW_NUMBER().over(partition_by=[part], order_by=[RunRow.duration_ms]).alias("rn"),
        fn.COUNT(RunRow.run_id).over(partition_by=[part]).alias("n"),
    )).where(RunRow.duration_ms.is_null(False))
    inner_sql, inner_params = ranked.sql()
    outer = (f"SELECT w.b, w.rn, w.n, w.d FROM ({inner_sql}) AS w "
             "WHERE w.rn BETWEEN (95 * (w.n - 1)) / 100 + 1 AND (95 * (w.n - 1)) / 100 + 2")
    ranks = store.db.execute_sql(outer, inner_params).fetchall()
    return rows, ranks


def timeline_from_rollups(store: Store, filters: RunFilters, since_ms: int, until_ms: int, bucket_ms: int) -> bool:
    """Whether the whole buckets of [since_ms, until_ms] come from the rollups: when the filters allow and they
    hold more than EXACT_PERCENTILES_MAX runs (p95 from their histograms, within
    rollups.HISTOGRAM_RELATIVE_ERROR); else every bucket comes from runs. Decided for the whole window, so a
    point is the same whichever part of the window it was read with."""
    from ..store import rollup_reads
    from ..store.store import EXACT_PERCENTILES_MAX

    first, end = -(-since_ms // bucket_ms) * bucket_ms, (until_ms + 1) // bucket_ms * bucket_ms
    with store.bound():
        if first >= end or end >= INT64_MAX - bucket_ms or rollup_reads.plan(filters) is None:
            return False
        return rollup_reads.timeline_runs(store, filters, bucket_ms, first, end) > EXACT_PERCENTILES_MAX


def timeline_ranges(store: Store, filters: RunFilters, ranges: list[tuple[int, int]], bucket_ms: int,
                    from_rollups: bool) -> dict[int, dict[str, Any]]:
    """`timeline.points` of the [start, end] ranges (see `timeline_from_rollups`): with `from_rollups`, each
    range's whole buckets from the rollups and the buckets cut by its edges from runs; else all from runs."""
    from ..store import rollup_reads

    def from_runs(lo: int, hi: int) -> dict[int, dict[str, Any]]:
        return timeline.points(*timeline_aggregates(store, filters, lo, hi, bucket_ms))

    out: dict[int, dict[str, Any]] = {}
    for since_ms, until_ms in ranges:
        first, end = -(-since_ms // bucket_ms) * bucket_ms, (until_ms + 1) // bucket_ms * bucket_ms
        if not from_rollups or first >= end:
            with store.bound():
                out.update(from_runs(since_ms, until_ms))
            continue
        with store.bound():
            whole = rollup_reads.timeline_totals(store, filters, bucket_ms, first, end)
            if since_ms < first:
                out.update(from_runs(since_ms, first - 1))
            if end <= until_ms:
                out.update(from_runs(end, until_ms))
        out.update((b, timeline.point_of_totals(b, e)) for b, e in whole.items())
    return out


def timeline_points(store: Store, filters: RunFilters, since_ms: int, until_ms: int,
                    bucket_ms: int) -> dict[int, dict[str, Any]]:
    """`timeline.points` of [since_ms, until_ms], read in one go (`timeline_from_rollups`, `timeline_ranges`)."""
    from_rollups = timeline_from_rollups(store, filters, since_ms, until_ms, bucket_ms)
    return timeline_ranges(store, filters, [(since_ms, until_ms)], bucket_ms, from_rollups)
