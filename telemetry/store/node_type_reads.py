"""Node-type statistics (/stats/node_types): from the node-type rollups (`store.node_type_rollups`) where the
filters allow, else from the executed node rows of the matching runs; the same answer either way.

The rollups answer what `rollup_reads.plan` answers, except a workflow with a window (a workflow has all-time
rows only): status, instance and since/until from the totals (whole days and hours from the rollups, the parts
of an hour at a window's edges from node rows), a workflow key from its all-time rows.
"""

from __future__ import annotations

from typing import Any

from peewee import fn

from ..filters import RunFilters
from . import rollup_reads
from .node_type_rollups import EXECUTED
from .rollup_reads import Plan
from .rollups import DAY_MS, GRAIN_ALL, HOUR_MS, TOTAL_ALL, Agg
from .schema import NodeRunRow, NodeTypeRollupRow, RunRow

_TOTALS = {GRAIN_ALL: TOTAL_ALL, DAY_MS: DAY_MS, HOUR_MS: HOUR_MS}


def plan(filters: RunFilters) -> Plan | None:
    """How the node-type rollups answer `filters`, or None when they cannot."""
    p = rollup_reads.plan(filters)
    if p is None:
        return None
    if p.workflow_keys is not None:
        return p if filters.since_ms is None and filters.until_ms is None else None
    return Plan([(_TOTALS[grain], r) for grain, r in p.rollups], p.runs, None)


def scanned(store: Any, filters: RunFilters) -> dict[str, Agg]:
    """Per class type: the executed node rows of the runs `filters` match."""
    runs = store.filtered(filters, RunRow.select(RunRow.run_id))
    query = (NodeRunRow.select(NodeRunRow.class_type, fn.COUNT(NodeRunRow.id), fn.COUNT(NodeRunRow.duration_ms),
                               fn.SUM(NodeRunRow.duration_ms), fn.MAX(NodeRunRow.gpu_peak_bytes))
             .where(NodeRunRow.status == EXECUTED, NodeRunRow.run.in_(runs)).group_by(NodeRunRow.class_type))
    return {c: Agg(int(n), int(d), float(s or 0.0), gpu_peak=g) for c, n, d, s, g in query.tuples()}


def from_rollups(store: Any, p: Plan, filters: RunFilters) -> dict[str, Agg]:
    """Per class type: the rollups' rows of the plan plus the node rows of its edge runs."""
    out: dict[str, Agg] = {}
    if p.rollups:
        row = NodeTypeRollupRow
        query = rollup_reads.rollup_query(
            p, filters, row.class_type, fn.SUM(row.executions), fn.SUM(row.durations), fn.SUM(row.duration_sum),
            fn.MAX(row.gpu_peak_max), model=row).group_by(row.class_type)
        for c, n, d, s, g in query.tuples():
            out.setdefault(c, Agg()).add(Agg(int(n), int(d), float(s or 0.0), gpu_peak=g))
    for lo, hi in p.runs:
        for c, agg in scanned(store, rollup_reads.edge_filters(filters, lo, hi)).items():
            out.setdefault(c, Agg()).add(agg)
    return {c: agg for c, agg in out.items() if agg.runs}


def ranked(groups: dict[str, Agg], limit: int) -> list[dict[str, Any]]:
    """The route's rows: by average duration, longest first (none last), then by class type."""
    rows = [{"class_type": c, "executions": agg.runs,
             "avg_duration_ms": agg.duration_sum / agg.durations if agg.durations else None,
             "max_gpu_peak_bytes": None if agg.gpu_peak is None else int(agg.gpu_peak)} for c, agg in groups.items()]
    rows.sort(key=lambda r: (r["avg_duration_ms"] is None, -(r["avg_duration_ms"] or 0.0), r["class_type"]))
    return rows[:limit]


def node_type_stats(store: Any, filters: RunFilters, limit: int) -> list[dict[str, Any]]:
    p = plan(filters)
    return ranked(scanned(store, filters) if p is None else from_rollups(store, p, filters), limit)
