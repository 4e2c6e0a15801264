"""Rollups of runs (table `run_rollups`, migration 11), so statistics read a few rows instead of scanning runs.

One row per group (workflow_key, instance, status) and bucket at three grains: an hour of `started_at_ms`, a
UTC day, and all time (grain 0, bucket 0); and the same three for the totals of each status over every workflow
and instance (grains -3600000, -86400000, -1; workflow_key and instance ''), and of every status (status '*').
Runs without a start (e.g. `cancelled`) are in the hour grains' bucket -1 and in the all-time rows, never in a
day. A row holds the group's count, sums (duration, frames, energy) with the counts of non-null values, the
maxima of the GPU and RAM peaks, and a histogram of durations.

The store keeps them in the same transaction as every write of runs (`apply`), so they cannot drift:
- a run inserted (not replacing a stored one) is added to its nine rows;
- a run deleted, replaced or changed (status) makes its hour rows be recomputed from runs (a group of one hour
  is small); the coarser rows take the difference (counts, sums, histogram), and a maximum that the removed
  values held is recomputed from the finer rows.

Durations histogram: bin 0 is [0, 1 ms), bin k >= 1 is [2^((k-1)/8), 2^(k/8)) ms. A percentile from it is the
geometric middle of its bin, within `HISTOGRAM_RELATIVE_ERROR` (2^(1/16) - 1, 4.4 %) of the exact
nearest-rank value (below 1 ms: within 0.5 ms).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import peewee
from peewee import Database, PostgresqlDatabase, fn

from .schema import RollupRow, RunRow

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
GRAIN_ALL = 0
# The totals of every workflow and instance per status (workflow_key and instance ''), for reads that filter
# neither (the overview's timeline, percentiles): hour, day and all time.
TOTAL_HOUR, TOTAL_DAY, TOTAL_ALL = -HOUR_MS, -DAY_MS, -1
ANY_STATUS = "*"  # the totals of every status too: one row per bucket answers an unfiltered timeline point
NO_START = -1
BINS_PER_OCTAVE = 8
HISTOGRAM_RELATIVE_ERROR = 2 ** (1 / (2 * BINS_PER_OCTAVE)) - 1

Group = tuple[str, str, str]  # (workflow_key, instance, status), '' for a missing key or instance
Key = tuple[str, str, str, int, int]  # group + (grain, bucket_ms)

RUN_COLUMNS = (RunRow.started_at_ms, RunRow.workflow_key, RunRow.instance, RunRow.status, RunRow.duration_ms,
               RunRow.frame_count, RunRow.energy_j, RunRow.gpu_peak_bytes, RunRow.ram_peak_bytes)


_TOP_BIN = 1 + 64 * BINS_PER_OCTAVE  # +inf (a float column may hold it); nothing real comes near


def duration_bin(duration_ms: float) -> int:
    if duration_ms < 1.0:
        return 0
    if math.isinf(duration_ms):
        return _TOP_BIN
    return min(_TOP_BIN, 1 + int(math.floor(math.log2(duration_ms) * BINS_PER_OCTAVE)))


def bin_value(index: int) -> float:
    """The value a percentile falling in bin `index` is given: the geometric middle of the bin."""
    if index == 0:
        return 0.5
    return 2 ** ((index - 0.5) / BINS_PER_OCTAVE)


def _max(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else max(a, b)


@dataclass
class Agg:
    """What a rollup row holds; `add` merges another one in (every field is mergeable)."""

    runs: int = 0
    durations: int = 0
    duration_sum: float = 0.0
    frames: int = 0
    energies: int = 0
    energy_sum: float = 0.0
    gpu_peak: int | None = None
    ram_peak: int | None = None
    hist: dict[int, int] = field(default_factory=dict)

    def add(self, other: Agg) -> Agg:
        self.runs += other.runs
        self.durations += other.durations
        self.duration_sum += other.duration_sum
        self.frames += other.frames
        self.energies += other.energies
        self.energy_sum += other.energy_sum
        self.gpu_peak = _max(self.gpu_peak, other.gpu_peak)
        self.ram_peak = _max(self.ram_peak, other.ram_peak)
        for b, n in other.hist.items():
            self.hist[b] = self.hist.get(b, 0) + n
        return self

    def subtract(self, other: Agg) -> Agg:
        """Take out the counts, sums and histogram of `other` (a part of this); maxima stay as they are."""
        self.runs -= other.runs
        self.durations -= other.durations
        self.duration_sum -= other.duration_sum
        self.frames -= other.frames
        self.energies -= other.energies
        self.energy_sum -= other.energy_sum
        for b, n in other.hist.items():
            left = self.hist.get(b, 0) - n
            if left > 0:
                self.hist[b] = left
            else:
                self.hist.pop(b, None)
        if not self.durations:
            self.duration_sum = 0.0
        if not self.energies:
            self.energy_sum = 0.0
        return self

    def add_run(self, duration_ms: float | None, frames: int | None, energy_j: float | None,
                gpu_peak: int | None, ram_peak: int | None) -> Agg:
        self.runs += 1
        if duration_ms is not None and math.isnan(duration_ms):
            duration_ms = None  # SQLite stores NaN as NULL
        if energy_j is not None and math.isnan(energy_j):
            energy_j = None
        if duration_ms is not None:
            self.durations += 1
            self.duration_sum += duration_ms
            b = duration_bin(duration_ms)
            self.hist[b] = self.hist.get(b, 0) + 1
        self.frames += frames or 0
        if energy_j is not None:
            self.energies += 1
            self.energy_sum += energy_j
        self.gpu_peak = _max(self.gpu_peak, gpu_peak)
        self.ram_peak = _max(self.ram_peak, ram_peak)
        return self


def hour_of(started_at_ms: int | None) -> int:
    return NO_START if started_at_ms is None else started_at_ms // HOUR_MS * HOUR_MS


def group_of(workflow_key: str | None, instance: str | None, status: str) -> Group:
    return (workflow_key or "", instance or "", status)


def hour_key(started_at_ms: int | None, workflow_key: str | None, instance: str | None, status: str) -> Key:
    return (*group_of(workflow_key, instance, status), HOUR_MS, hour_of(started_at_ms))


def _coarser(key: Key) -> list[Key]:
    """The rows an hour row is part of: its group's day and all time, and the totals of its status (hour, day,
    all time)."""
    wk, inst, status, _, bucket = key
    out = [(wk, inst, status, GRAIN_ALL, 0)]
    for total in (status, ANY_STATUS):
        out += [("", "", total, TOTAL_HOUR, bucket), ("", "", total, TOTAL_ALL, 0)]
    if bucket != NO_START:
        day = bucket // DAY_MS * DAY_MS
        out += [(wk, inst, status, DAY_MS, day), ("", "", status, TOTAL_DAY, day), ("", "", ANY_STATUS, TOTAL_DAY, day)]
    return out


def percentile_at(hist: dict[int, int], rank: int) -> float:
    """The value the histogram gives the `rank`-th smallest duration (0-based; rank < its count)."""
    seen = 0
    for b, count in sorted(hist.items()):
        seen += count
        if seen > rank:
            return bin_value(b)
    raise ValueError("rank beyond the histogram")


def percentiles(hist: dict[int, int], qs: Iterable[float]) -> list[float | None]:
    """Nearest-rank percentiles (rank round(q (n - 1)), as `Store._duration_percentiles`) from a histogram."""
    n = sum(hist.values())
    if not n:
        return [None for _ in qs]
    order = sorted(hist.items())
    out = []
    for q in qs:
        rank, seen = min(n - 1, int(round(q * (n - 1)))), 0
        for b, count in order:
            seen += count
            if seen > rank:
                out.append(bin_value(b))
                break
    return out


# -- rows ----------------------------------------------------------------------------------------------------

def _agg_of_row(row: dict[str, Any]) -> Agg:
    return Agg(row["runs"], row["durations"], row["duration_sum"] or 0.0, row["frames"], row["energies"],
               row["energy_sum"] or 0.0, row["gpu_peak_max"], row["ram_peak_max"],
               {int(b): n for b, n in json.loads(row["hist"] or "{}").items()})


def _row_of(key: Key, agg: Agg) -> tuple:
    hist = json.dumps({str(b): agg.hist[b] for b in sorted(agg.hist)}, separators=(",", ":"))
    return (*key, agg.runs, agg.durations, agg.duration_sum, agg.frames, agg.energies, agg.energy_sum,
            agg.gpu_peak, agg.ram_peak, hist)


_COLUMNS = ("workflow_key", "instance", "status", "grain", "bucket_ms", "runs", "durations", "duration_sum",
            "frames", "energies", "energy_sum", "gpu_peak_max", "ram_peak_max", "hist")
_IN_CHUNK = 150  # keys per IN list (at most 6 parameters each: within SQLite's old limit of 999)


def _keys_where(db: Database, key_columns: tuple[str, ...], keys: list[tuple]) -> tuple[str, list[Any]]:
    """A WHERE of these keys as an OR of primary-key equalities: both databases read each from the primary
    key's index (a row-value IN list is a scan of the table in SQLite)."""
    one = "(" + " AND ".join(f'"{c}" = {db.param}' for c in key_columns) + ")"
    return " OR ".join([one] * len(keys)), [v for key in keys for v in key]


def read_rows(db: Database, table: str, columns: tuple[str, ...], key_len: int,
              keys: list[tuple], select: Callable[..., tuple[str, list[Any]]] | None = None) -> dict[tuple, tuple]:
    """The stored rows of these keys (the first `key_len` of `columns`), as key -> the other columns; `select`
    makes each chunk's statement (by default the one for the database)."""
    found: dict[tuple, tuple] = {}
    select = select or (_select_by_join if isinstance(db, PostgresqlDatabase) else select_by_or)
    for start in range(0, len(keys), _IN_CHUNK):
        sql, args = select(db, table, columns, key_len, keys[start:start + _IN_CHUNK])
        for values in db.execute_sql(sql, args).fetchall():
            found[tuple(values[:key_len])] = tuple(values[key_len:])
    return found


def select_by_or(db: Database, table: str, columns: tuple[str, ...], key_len: int,
                 keys: list[tuple]) -> tuple[str, list[Any]]:
    """SQLite: the rows of these keys by an OR of primary-key equalities (`_keys_where`)."""
    where, args = _keys_where(db, columns[:key_len], keys)
    names = ", ".join(f'"{c}"' for c in columns)
    return f'SELECT {names} FROM "{table}" WHERE {where}', args


def _select_by_join(db: Database, table: str, columns: tuple[str, ...], key_len: int,
                    keys: list[tuple]) -> tuple[str, list[Any]]:
    """PostgreSQL: the rows of these keys by a join to the keys as VALUES, one index scan per key. An OR of the
    keys is read by a bitmap scan, which never marks a dead version it passes as dead in the index: every write
    of runs leaves one of the all-time totals it rewrites (a DELETE and an INSERT), so after 1,000 runs written
    the next write read 3,900 of them (4 ms, growing until a vacuum); an index scan marks them, and the next
    read skips them."""
    key_columns = columns[:key_len]
    row = "(" + ", ".join([db.param] * key_len) + ")"
    aliases = ", ".join(f"k{i}" for i in range(key_len))
    on = " AND ".join(f'r."{c}" = k.k{i}' for i, c in enumerate(key_columns))
    selected = ", ".join(f'r."{c}"' for c in columns)
    sql = (f'SELECT {selected} FROM "{table}" AS r JOIN (VALUES {", ".join([row] * len(keys))}) AS k({aliases}) '
           f"ON {on}")
    return sql, [v for key in keys for v in key]


def replace_rows(db: Database, table: str, columns: tuple[str, ...], key_len: int, keys: list[tuple],
                 rows: list[tuple]) -> None:
    """Delete the rows of these keys, then insert `rows` (full rows in `columns` order)."""
    for start in range(0, len(keys), _IN_CHUNK):
        where, args = _keys_where(db, columns[:key_len], keys[start:start + _IN_CHUNK])
        db.execute_sql(f'DELETE FROM "{table}" WHERE {where}', args)
    if rows:
        names = ", ".join(f'"{c}"' for c in columns)
        marks = ", ".join([db.param] * len(columns))
        with peewee.__exception_wrapper__:  # the driver's errors as peewee's, as from execute_sql (the recorder
            db.cursor().executemany(f'INSERT INTO "{table}" ({names}) VALUES ({marks})', rows)  # tells them)


def bulk_insert(db: Database, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """Insert many rows (a backfill), in chunks; on PostgreSQL as multi-row VALUES."""
    q0, q1 = db.quote[0], db.quote[-1]
    names = ", ".join(f"{q0}{c}{q1}" for c in columns)
    marks = ", ".join([db.param] * len(columns))
    sql = f"INSERT INTO {q0}{table}{q1} ({names}) VALUES ({marks})"
    for start in range(0, len(rows), 5000):
        chunk = rows[start:start + 5000]
        with peewee.__exception_wrapper__:
            if isinstance(db, PostgresqlDatabase):  # psycopg2's executemany is a round trip per row
                from psycopg2.extras import execute_values

                execute_values(db.cursor(), sql.replace(f"({marks})", "%s"), chunk, page_size=1000)
            else:
                db.cursor().executemany(sql, chunk)


def _read(db: Database, keys: list[Key]) -> dict[Key, Agg]:
    rows = read_rows(db, "run_rollups", _COLUMNS, 5, keys)
    return {key: _agg_of_row(dict(zip(_COLUMNS[5:], values, strict=True)))  # type: ignore[misc]
            for key, values in rows.items()}


def _write(db: Database, rows: dict[Key, Agg]) -> None:
    """Replace the rows of these keys (an empty group's row is deleted)."""
    replace_rows(db, "run_rollups", _COLUMNS, 5, list(rows), [_row_of(k, a) for k, a in rows.items() if a.runs])


def _group_where(query: Any, model: Any, group: Group) -> Any:
    wk, inst, status = group
    for column, value in ((model.workflow_key, wk), (model.instance, inst)):
        # In runs a missing key or instance may be NULL or '': both are the rollups' ''.
        query = query.where((column == value) | column.is_null() if not value and model is RunRow
                            else column == value)
    return query.where(model.status == status)


def _from_runs(key: Key) -> Agg:
    *group, _, bucket = key
    query = _group_where(RunRow.select(*RUN_COLUMNS[4:]), RunRow, tuple(group))  # type: ignore[arg-type]
    if bucket == NO_START:
        query = query.where(RunRow.started_at_ms.is_null())
    else:
        query = query.where(RunRow.started_at_ms >= bucket, RunRow.started_at_ms < bucket + HOUR_MS)
    agg = Agg()
    for row in query.tuples():
        agg.add_run(*row)
    return agg


def _finer(key: Key, *columns: Any) -> Any:
    """The rows a coarser row is made of: a group's day from its hours, its all time from its days and its
    hour without a start; a total hour from every group's hour row of the status (or of every status); total
    days and all time as the groups'."""
    *group, grain, bucket = key
    if grain == TOTAL_HOUR:
        query = RollupRow.select(*columns).where(RollupRow.grain == HOUR_MS, RollupRow.bucket_ms == bucket)
        return query if group[2] == ANY_STATUS else query.where(RollupRow.status == group[2])
    query = _group_where(RollupRow.select(*columns), RollupRow, tuple(group))  # type: ignore[arg-type]
    hour, day = (HOUR_MS, DAY_MS) if grain in (DAY_MS, GRAIN_ALL) else (TOTAL_HOUR, TOTAL_DAY)
    if grain in (DAY_MS, TOTAL_DAY):
        return query.where(RollupRow.grain == hour, RollupRow.bucket_ms >= bucket,
                           RollupRow.bucket_ms < bucket + DAY_MS)
    return query.where((RollupRow.grain == day) | ((RollupRow.grain == hour) & (RollupRow.bucket_ms == NO_START)))


# A coarser row's maxima are recomputed from the rows of the grain before it in this order.
_COARSE_ORDER = (DAY_MS, GRAIN_ALL, TOTAL_HOUR, TOTAL_DAY, TOTAL_ALL)


def added_of(rows: Iterable[dict[str, Any]]) -> list[tuple]:
    """The RUN_COLUMNS of rows about to be inserted, as the database will hold them (durations and energy are
    8-byte floats on both databases since migration 13, so a scan of runs reads what the rollups add)."""
    return [tuple(row[c.name] for c in RUN_COLUMNS) for row in rows]


_PG_LOCK_KEY = 0x52_54_52_4C  # "RTRL"


def lock(db: Database) -> None:
    """Call first in a transaction that writes runs: on PostgreSQL, where several instances write at once and
    read committed lets two of them add to the same rollup row from the same old value, the writers of runs take
    turns (a transaction-level advisory lock, held for the few ms of the batch). SQLite has one writer anyway."""
    if isinstance(db, PostgresqlDatabase):
        db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK_KEY,))


def apply(db: Database, changed: set[Key], added: Iterable[tuple]) -> None:
    """Bring the rollups in step with a write of runs, inside its transaction: `changed` are the hour keys of
    runs that were deleted, replaced or updated (as they were, and for updates as they are now), recomputed from
    runs; `added` are the RUN_COLUMNS of runs inserted, added to their rows (or recomputed with `changed`).

    The coarser rows take the difference of their hour rows (counts, sums and histograms are exact integers
    or sums; a float sum may differ from a fresh sum in its last bits); a maximum that an hour row held and
    lost is recomputed from the finer rows, by the database."""
    plus: dict[Key, Agg] = {}
    minus: dict[Key, Agg] = {}
    for started, wk, inst, status, *values in added:
        key = hour_key(started, wk, inst, status)
        if key not in changed:
            plus.setdefault(key, Agg()).add_run(*values)
    hours = _read(db, list(changed | set(plus)))
    new_hours = {key: _from_runs(key) for key in changed}
    for key, agg in plus.items():
        new_hours[key] = (hours.get(key) or Agg()).add(agg) if key not in changed else new_hours[key]
    for key in changed:
        old = hours.get(key)
        for c in _coarser(key):
            plus.setdefault(c, Agg()).add(new_hours[key])
            if old is not None:
                minus.setdefault(c, Agg()).add(old)
    for key in list(plus):
        if key[3] == HOUR_MS and key not in changed:
            for c in _coarser(key):
                plus.setdefault(c, Agg()).add(plus[key])
    _write(db, new_hours)
    coarse = [k for k in set(plus) | set(minus) if k[3] != HOUR_MS]
    stored = _read(db, coarse)
    for grain in _COARSE_ORDER:
        rows: dict[Key, Agg] = {}
        for key in (k for k in coarse if k[3] == grain):
            before, gone = stored.get(key) or Agg(), minus.get(key)
            after = Agg().add(before).add(plus.get(key) or Agg())
            if gone is not None:
                after.subtract(gone)
                if after.runs and _lost_max(before, gone):
                    after.gpu_peak, after.ram_peak = _finer(
                        key, fn.MAX(RollupRow.gpu_peak_max), fn.MAX(RollupRow.ram_peak_max)).tuples().first()
            rows[key] = after
        _write(db, rows)


def _lost_max(before: Agg, gone: Agg) -> bool:
    return any(g is not None and b is not None and g >= b
               for g, b in ((gone.gpu_peak, before.gpu_peak), (gone.ram_peak, before.ram_peak)))


def stored_keys(run_ids: list[str]) -> set[Key]:
    """The hour keys of these stored runs."""
    keys: set[Key] = set()
    for start in range(0, len(run_ids), _IN_CHUNK):
        rows = (RunRow.select(RunRow.started_at_ms, RunRow.workflow_key, RunRow.instance, RunRow.status)
                .where(RunRow.run_id.in_(run_ids[start:start + _IN_CHUNK])).tuples())
        keys.update(hour_key(*row) for row in rows)
    return keys


def backfill(db: Database) -> None:
    """Build every rollup row from runs (migration 11, frozen SQL): the hour rows from one pass over runs, then
    the days and all time from them."""
    hours: dict[Key, Agg] = {}
    cursor = db.execute_sql('SELECT "started_at_ms", "workflow_key", "instance", "status", "duration_ms", '
                            '"frame_count", "energy_j", "gpu_peak_bytes", "ram_peak_bytes" FROM "runs"')
    for started, wk, inst, status, *values in cursor:
        key = hour_key(started, wk, inst, status)
        agg = hours.get(key)
        if agg is None:
            agg = hours[key] = Agg()
        agg.add_run(*values)
    coarse: dict[Key, Agg] = {}
    for key, agg in hours.items():
        for c in _coarser(key):
            coarse.setdefault(c, Agg()).add(agg)
    hours.update(coarse)
    bulk_insert(db, "run_rollups", _COLUMNS, [_row_of(k, a) for k, a in hours.items()])
