"""Rollups of node types (table `node_type_rollups`, migration 14), so /stats/node_types reads a few rows instead
of joining every executed node row to its run.

A row sums the executed node rows of one class type over the runs of a group and bucket: the executions, the
durations (count of non-null values and their sum) and the maximum GPU peak. Grains (as `store.rollups`):
- GRAIN_ALL (0, bucket 0): per (workflow_key, instance, run status): the workflow filter, at all time only;
- TOTAL_ALL (-1, bucket 0): every workflow (workflow_key '') per (instance, run status): unfiltered, status and
  instance filters read about (class types x instances x statuses) rows;
- DAY_MS and HOUR_MS: every workflow per (instance, run status) and UTC day / hour of the run's start, for
  since/until windows (`rollup_reads.split_window`). Runs without a start are in the hour bucket -1 (never in a
  day) and in both all-time grains.
Per workflow only at all time: a workflow's days would multiply the table by the workflows a day runs; a window
with a workflow filter reads node rows instead (`node_type_reads`).

Kept in the same transaction as every write of runs (`apply`), from the node rows as the database holds them
(`aggregates`, read before a run's rows go and after its new ones are in): added values are added, removed ones
subtracted; a maximum that a removed node held is recomputed (an hour from its runs' node rows, a day from its
hours, the totals from their days and the hour without start, a workflow's all time from its runs' node rows).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from peewee import JOIN, Database, PostgresqlDatabase, fn

from .rollups import (
    _IN_CHUNK,
    DAY_MS,
    GRAIN_ALL,
    HOUR_MS,
    NO_START,
    TOTAL_ALL,
    Agg,
    _group_where,
    bulk_insert,
    hour_of,
    read_rows,
    replace_rows,
)
from .schema import NodeRunRow, NodeTypeRollupRow, RunRow

TABLE = "node_type_rollups"
COLUMNS = ("class_type", "workflow_key", "instance", "status", "grain", "bucket_ms", "executions", "durations",
           "duration_sum", "gpu_peak_max")
EXECUTED = "executed"

Base = tuple[str, str, str, str, int]  # (class_type, workflow_key, instance, run status, hour of the run's start)
Key = tuple[str, str, str, str, int, int]  # (class_type, workflow_key, instance, status, grain, bucket_ms)


def targets(base: Base) -> list[Key]:
    """The rows a node of this class, in a run of this group and hour, is counted in."""
    class_type, wk, inst, status, hour = base
    out: list[Key] = [(class_type, wk, inst, status, GRAIN_ALL, 0), (class_type, "", inst, status, TOTAL_ALL, 0),
                      (class_type, "", inst, status, HOUR_MS, hour)]
    if hour != NO_START:
        out.append((class_type, "", inst, status, DAY_MS, hour // DAY_MS * DAY_MS))
    return out


def aggregates(run_ids: Iterable[str]) -> dict[Base, Agg]:
    """The executed node rows of these stored runs, per class type and group and hour of their run."""
    ids = list(run_ids)
    out: dict[Base, Agg] = {}
    for start in range(0, len(ids), _IN_CHUNK):
        query = (NodeRunRow.select(RunRow.started_at_ms, RunRow.workflow_key, RunRow.instance, RunRow.status,
                                   NodeRunRow.class_type, fn.COUNT(NodeRunRow.id), fn.COUNT(NodeRunRow.duration_ms),
                                   fn.SUM(NodeRunRow.duration_ms), fn.MAX(NodeRunRow.gpu_peak_bytes))
                 .join(RunRow, JOIN.INNER, on=NodeRunRow.run == RunRow.run_id)
                 .where(NodeRunRow.run.in_(ids[start:start + _IN_CHUNK]), NodeRunRow.status == EXECUTED)
                 .group_by(RunRow.run_id, NodeRunRow.class_type))
        for started, wk, inst, status, class_type, n, durations, dsum, peak in query.tuples():
            base = (class_type, wk or "", inst or "", status, hour_of(started))
            out.setdefault(base, Agg()).add(Agg(int(n), int(durations), float(dsum or 0.0), gpu_peak=peak))
    return out


def _read(db: Database, keys: list[Key]) -> dict[Key, Agg]:
    rows = read_rows(db, TABLE, COLUMNS, 6, keys)
    return {key: Agg(n, d, float(s or 0.0), gpu_peak=g) for key, (n, d, s, g) in rows.items()}  # type: ignore[misc]


def _write(db: Database, rows: dict[Key, Agg]) -> None:
    kept = [(*k, a.runs, a.durations, a.duration_sum, a.gpu_peak) for k, a in rows.items() if a.runs]
    replace_rows(db, TABLE, COLUMNS, 6, list(rows), kept)


def _runs_of(key: Key) -> Any:
    """The runs whose executed nodes of the key's class make that row (grains GRAIN_ALL and HOUR_MS)."""
    class_type, wk, inst, status, grain, bucket = key
    runs = RunRow.select(RunRow.run_id)
    if grain == GRAIN_ALL:
        return _group_where(runs, RunRow, (wk, inst, status))
    runs = runs.where(RunRow.status == status)
    runs = runs.where(RunRow.instance == inst if inst else RunRow.instance.is_null() | (RunRow.instance == ""))
    if bucket == NO_START:
        return runs.where(RunRow.started_at_ms.is_null())
    return runs.where(RunRow.started_at_ms >= bucket, RunRow.started_at_ms < bucket + HOUR_MS)


def _recomputed_max(key: Key) -> int | None:
    class_type, _, inst, status, grain, bucket = key
    if grain in (GRAIN_ALL, HOUR_MS):
        return (NodeRunRow.select(fn.MAX(NodeRunRow.gpu_peak_bytes))
                .where(NodeRunRow.run.in_(_runs_of(key)), NodeRunRow.class_type == class_type,
                       NodeRunRow.status == EXECUTED).scalar())
    finer = NodeTypeRollupRow.select(fn.MAX(NodeTypeRollupRow.gpu_peak_max)).where(
        NodeTypeRollupRow.workflow_key == "", NodeTypeRollupRow.class_type == class_type,
        NodeTypeRollupRow.instance == inst, NodeTypeRollupRow.status == status)
    if grain == DAY_MS:
        return finer.where(NodeTypeRollupRow.grain == HOUR_MS, NodeTypeRollupRow.bucket_ms >= bucket,
                           NodeTypeRollupRow.bucket_ms < bucket + DAY_MS).scalar()
    return finer.where((NodeTypeRollupRow.grain == DAY_MS)
                       | ((NodeTypeRollupRow.grain == HOUR_MS) & (NodeTypeRollupRow.bucket_ms == NO_START))).scalar()


def _lost_max(before: Agg, gone: Agg, came: Agg | None) -> bool:
    """The row's maximum may have gone with the removed nodes (and no added node reaches it)."""
    if gone.gpu_peak is None or before.gpu_peak is None or gone.gpu_peak < before.gpu_peak:
        return False
    return came is None or came.gpu_peak is None or came.gpu_peak < before.gpu_peak


# Hours first: a day's maximum is recomputed from its hours, the totals' from the days.
_ORDER = (HOUR_MS, DAY_MS, TOTAL_ALL, GRAIN_ALL)


def apply(db: Database, removed: dict[Base, Agg], added: dict[Base, Agg]) -> None:
    """Bring the rollups in step with a write of runs, inside its transaction, once the node rows are written:
    `removed` are the `aggregates` of runs deleted, replaced or changed, read before they went; `added` those of
    the runs as they are now."""
    plus: dict[Key, Agg] = {}
    minus: dict[Key, Agg] = {}
    for into, source in ((plus, added), (minus, removed)):
        for base, agg in source.items():
            for key in targets(base):
                into.setdefault(key, Agg()).add(agg)
    keys = set(plus) | set(minus)
    if not keys:
        return
    stored = _read(db, list(keys))
    for grain in _ORDER:
        rows: dict[Key, Agg] = {}
        for key in (k for k in keys if k[4] == grain):
            before, gone, came = stored.get(key) or Agg(), minus.get(key), plus.get(key)
            after = Agg().add(before).add(came or Agg())
            if gone is not None:
                after.subtract(gone)
                if after.runs and _lost_max(before, gone, came):
                    after.gpu_peak = _recomputed_max(key)
            rows[key] = after
        _write(db, rows)


# -- migration 14 (frozen SQL) -----------------------------------------------------------------------------

def _floor(column: str, size: int, mod: str) -> str:
    return f"({column} - ((({column} {mod} {size}) + {size}) {mod} {size}))"


# SQLite: runs per grouped statement, one sort of a few weeks' node rows, not of all (110 s instead of 129 s at a
# million runs).
_BACKFILL_SPAN_MS = 14 * DAY_MS


def backfill(db: Database) -> None:
    """Build every row from the node rows there are: the hours (INSERT ... SELECT) and each workflow's all time
    (summed here) from the executed node rows joined to their runs (on SQLite a span of start times at a time,
    runs without a start first), then the days and the totals from the hours."""
    mod = "%%" if isinstance(db, PostgresqlDatabase) else "%"  # psycopg2 reads % as a parameter
    p = db.param
    # Runs outside, each run's nodes by the run_id index (SQLite keeps a CROSS JOIN's order).
    node_sums = ('COUNT(*), COUNT(n."duration_ms"), COALESCE(SUM(n."duration_ms"), 0), MAX(n."gpu_peak_bytes") '
                 'FROM "runs" r CROSS JOIN "node_runs" n WHERE r."run_id" = n."run_id" AND n."status" = \'executed\'')
    inst = "COALESCE(r.\"instance\", '')"
    started = 'r."started_at_ms"'
    hour = f"CASE WHEN {started} IS NULL THEN {NO_START} ELSE {_floor(started, HOUR_MS, mod)} END"
    day = _floor('"bucket_ms"', DAY_MS, mod)
    names = ", ".join(f'"{c}"' for c in COLUMNS)
    sums = 'SUM("executions"), SUM("durations"), SUM("duration_sum"), MAX("gpu_peak_max")'
    hours = (f'INSERT INTO "{TABLE}" ({names}) SELECT n."class_type", \'\', {inst}, r."status", {HOUR_MS}, {hour}, '
             f'{node_sums} AND {{span}} GROUP BY n."class_type", {inst}, r."status", {hour}')
    workflows = (f'SELECT n."class_type", COALESCE(r."workflow_key", \'\'), {inst}, r."status", {node_sums} '
                 f'AND {{span}} GROUP BY n."class_type", COALESCE(r."workflow_key", \'\'), {inst}, r."status"')
    lo, hi = db.execute_sql('SELECT MIN("started_at_ms"), MAX("started_at_ms") FROM "runs"').fetchone()
    spans: list[tuple[str, list[Any]]] = [(f'{started} IS NULL', [])]
    if isinstance(db, PostgresqlDatabase):  # hash aggregation: one statement is quicker (25 s vs 33 s at 100,000)
        spans = [("1 = 1", [])]
    elif lo is not None:
        first = lo // DAY_MS * DAY_MS
        spans += [(f"{started} >= {p} AND {started} < {p}", [b, b + _BACKFILL_SPAN_MS])
                  for b in range(first, hi + 1, _BACKFILL_SPAN_MS)]
    totals: dict[tuple, Agg] = {}
    for span, args in spans:
        db.execute_sql(hours.format(span=span), args)
        for c, wk, i, status, n, d, dsum, peak in db.execute_sql(workflows.format(span=span), args).fetchall():
            agg = Agg(int(n), int(d), float(dsum or 0.0), gpu_peak=peak)
            totals.setdefault((c, wk, i, status), Agg()).add(agg)
    rows = [(*k, GRAIN_ALL, 0, a.runs, a.durations, a.duration_sum, a.gpu_peak) for k, a in totals.items()]
    bulk_insert(db, TABLE, COLUMNS, rows)
    for select in (
        f'SELECT "class_type", \'\', "instance", "status", {DAY_MS}, {day}, {sums} FROM "{TABLE}" '
        f'WHERE "grain" = {HOUR_MS} AND "bucket_ms" <> {NO_START} GROUP BY "class_type", "instance", "status", {day}',
        f'SELECT "class_type", \'\', "instance", "status", {TOTAL_ALL}, 0, {sums} FROM "{TABLE}" '
        f'WHERE "grain" = {HOUR_MS} GROUP BY "class_type", "instance", "status"',
    ):
        db.execute_sql(f'INSERT INTO "{TABLE}" ({names}) {select}')
