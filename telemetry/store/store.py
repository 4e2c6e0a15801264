"""The Store: every read and write of telemetry data goes through here, and one Store owns one database.

The one write path for runs: `Recorder.submit` (from any thread) -> the recorder thread -> `Store.save_runs`, one
transaction per batch. The other writes are each one short transaction: user actions on the store's REST thread
pool (presets, workflow names, recommendation state, `prune_runs`), recommendations written by the analysis on
the recorder thread once ComfyUI is idle, and retention (`prune_plan`/`prune_batch`) on the recorder thread,
one batch between its writes.

Each Store binds its own database (`schema.database_router`): every public method routes the models to this
store's database for its duration, and the threads a store owns (its recorder thread, its REST pool in
`store.executor`) are bound to it for life. Two stores in one process never see each other's rows.
Connections are pooled (`store.database`): REST reads take one per request and give it back, so a restarted
PostgreSQL is reconnected by itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import operator
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import peewee
from peewee import Database, OperationalError, fn

from ..filters import COUNT_CAP, Cursor, Page, RunFilters
from ..model import Run, RunStatus
from . import mapping, node_type_reads, node_type_rollups, rollup_reads, rollups, run_labels, run_pages, run_search
from .checkpoint import checkpoint_after
from .database import database_kind, open_database
from .migrations import migrate
from .schema import (
    FilterPresetRow,
    GpuSampleRow,
    InstanceRow,
    NodeRunRow,
    RollupRow,
    RunLabelRow,
    RunOutputRow,
    RunRow,
    WorkflowNameRow,
    database_router,
)
from .sqlite_file import follow_database_file

log = logging.getLogger("run_telemetry.store")

_PERCENTILE_IN_MEMORY_MAX = 20_000
EXACT_PERCENTILES_MAX = 5_000  # stats from the rollups rank at most this many durations exactly
PRUNE_BATCH_TARGET_S = 0.012  # one prune transaction aims at this; the limit it must keep is 100 ms
_PRUNE_BATCH_MIN, _PRUNE_BATCH_MAX = 20, 2000
SCHEMA_WAIT_S = 15.0

_T = TypeVar("_T")


def _on_own_database(method: Callable[..., _T]) -> Callable[..., _T]:
    """Run a Store method with the models routed to that store's database."""
    @functools.wraps(method)
    def wrapper(self: Store, *args: Any, **kwargs: Any) -> _T:
        if database_router.bound_database() is self.db:
            return method(self, *args, **kwargs)
        with database_router.bind(self.db):
            return method(self, *args, **kwargs)
    return wrapper


def _max(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else max(a, b)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Preset:
    id: int
    name: str
    filters: dict[str, Any]
    created_at_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "filters": self.filters, "created_at_ms": self.created_at_ms}


class RunsPage(NamedTuple):
    runs: list[Run]
    total: int
    total_capped: bool  # `total` stopped at COUNT_CAP: there are more
    next_cursor: Cursor | None


class PresetExistsError(ValueError):
    pass


class SchemaNotReadyError(OperationalError):
    """The schema was still being created or migrated when a bounded wait ran out (REST answers 503)."""


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.db: Database = open_database(url)
        self.kind = database_kind(self.db)
        self.schema_version: int | None = None
        self.search: run_search.RunSearch | None = None  # set once the schema is migrated
        self._schema_lock = threading.Lock()
        self._insert_sql: dict[type, str] = {}
        self._prune_batch = 100  # grows or shrinks to PRUNE_BATCH_TARGET_S
        self.last_prune_transaction_s: float | None = None
        self.last_prune_checkpoint_s: float | None = None  # the passive WAL checkpoint after a batch (SQLite)
        self._executor: Any = None
        self._executor_lock = threading.Lock()
        # No I/O: connections are taken from the pool lazily. Threads no store has bound use the newest store.
        database_router.initialize(self.db)

    # -- lifecycle -------------------------------------------------------------------------------------------

    def bound(self):
        """A context in which this thread's model queries go to this store's database."""
        return database_router.bind(self.db)

    def bind_thread(self) -> None:
        """Bind the calling thread to this store for its whole life (the store's own threads)."""
        database_router.bind_thread(self.db)

    @property
    def executor(self):
        """The store's small thread pool for REST work (`store.executor.StoreExecutor`), made on first use."""
        with self._executor_lock:
            if self._executor is None:
                from .executor import StoreExecutor

                self._executor = StoreExecutor(self)
            return self._executor

    def open(self) -> None:
        """Connect this thread and make sure the schema is current (migrated once per process)."""
        self.db.connect(reuse_if_open=True)
        self.ensure_schema()

    def ensure_schema(self, timeout_s: float = SCHEMA_WAIT_S) -> None:
        """Readers and the writer may race at start-up: whoever comes first migrates, the others wait for it,
        at most `timeout_s` (then SchemaNotReadyError: the request answers 503 instead of hanging)."""
        # A deleted SQLite file is created again and migrated here, through a connection on the new file: the
        # calling thread's connection may have been taken from the pool before the file went.
        follow_database_file(self, held_connection=True)
        if self.schema_version is not None:
            return
        if not self._schema_lock.acquire(timeout=timeout_s):
            raise SchemaNotReadyError(f"the telemetry schema was not ready within {timeout_s:g} s")
        try:
            if self.schema_version is None:
                with self.bound():
                    version = migrate(self.db)
                    self.search = run_search.RunSearch(self.db, self.kind, run_search.detect(self.db, self.kind))
                    self.schema_version = version
        finally:
            self._schema_lock.release()

    def close(self) -> None:
        if not self.db.is_closed():
            self.db.close()

    def shutdown(self) -> None:
        """Stop the REST pool and close every pooled connection (tests, a watcher that stops)."""
        with self._executor_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown()
        self.close()
        close_all = getattr(self.db, "close_all", None)
        if close_all is not None:
            close_all()

    @_on_own_database
    def ping(self) -> None:
        self.db.execute_sql("SELECT 1")

    # -- writes (recorder thread) ----------------------------------------------------------------------------

    @_on_own_database
    def save_runs(self, runs: list[Run]) -> None:
        """Insert or replace runs with their nodes, outputs and samples, in one transaction (the one write path
        of runs: the recorder's writer calls it). A run given twice is stored as its last version."""
        if not runs:
            return
        follow_database_file(self, held_connection=True)  # never into a deleted SQLite file
        self.ensure_schema()
        latest = {run.run_id: run for run in runs}
        runs = [run for run in runs if latest.get(run.run_id) is run]
        stamp = now_ms()
        run_ids = [run.run_id for run in runs]
        with self._runs_transaction():
            # Read inside the transaction: `set_workflow_name` takes the same turn, so a name reported while
            # this batch is written either is read here or renames the batch's runs once they are committed.
            names = self._known_workflow_names({r.workflow_id for r in runs if r.workflow_id})
            rows = []
            for run in runs:
                if run.workflow_id in names and run.workflow_name_source in ("derived", "label"):
                    run.workflow_name, run.workflow_name_source = names[run.workflow_id], "ui"
                rows.append(mapping.run_to_row(run, stamp))
            replaced = rollups.stored_keys(run_ids)
            old_nodes = node_type_rollups.aggregates(run_ids) if replaced else {}
            # Replacing a run drops its old nodes, outputs and samples with it (ON DELETE CASCADE).
            if replaced:
                run_labels.delete(run_ids)
                RunRow.delete().where(RunRow.run_id.in_(run_ids)).execute()
            self._insert_rows(RunRow, rows)
            run_labels.add(self.db, rows)
            rollups.apply(self.db, replaced, rollups.added_of(rows))
            with_nodes = []
            for run, row in zip(runs, rows, strict=True):
                run_id = row["run_id"]
                if run.nodes:
                    with_nodes.append(run_id)
                for model, child_rows in ((NodeRunRow, mapping.node_rows(run, run_id)),
                                          (RunOutputRow, mapping.output_rows(run, run_id)),
                                          (GpuSampleRow, mapping.sample_rows(run, run.gpu_samples, run_id))):
                    self._insert_rows(model, child_rows)
            node_type_rollups.apply(self.db, old_nodes, node_type_rollups.aggregates(with_nodes))

    @contextlib.contextmanager
    def _runs_transaction(self) -> Iterator[None]:
        """A transaction that writes runs and their rollups. It reads before it writes (which rollup rows a
        run is in), so SQLite takes the write lock at BEGIN (a deferred read would fail to upgrade once another
        process wrote), and PostgreSQL writers take turns (`rollups.lock`)."""
        with self.db.atomic(lock_type="IMMEDIATE") if self.kind == "sqlite" else self.db.atomic():
            rollups.lock(self.db)
            yield

    def _insert_rows(self, model, rows: list[dict[str, Any]]) -> None:
        """Child rows through one prepared statement: building peewee's multi-row SQL costs more CPU than the
        write itself, and that CPU competes with ComfyUI's worker for the GIL."""
        if not rows:
            return
        columns = list(rows[0])
        sql = self._insert_sql.get(model)
        if sql is None:
            opening, closing = self.db.quote[0], self.db.quote[-1]

            def quote(name: str) -> str:
                return f"{opening}{name}{closing}"

            names = ", ".join(quote(model._meta.fields[c].column_name) for c in columns)
            marks = ", ".join([self.db.param] * len(columns))
            sql = self._insert_sql[model] = f"INSERT INTO {quote(model._meta.table_name)} ({names}) VALUES ({marks})"
        with peewee.__exception_wrapper__:  # the driver's errors as peewee's (the recorder tells them apart)
            self.db.cursor().executemany(sql, [tuple(row[c] for c in columns) for row in rows])

    @_on_own_database
    def close_stale_running(self, instance: str | None, reason: str, source: str | None = None) -> list[str]:
        """Runs left `running` by a previous process: closed as interrupted. Returns their ids.

        With `instance`, only that instance's runs (a database shared by a fleet); with `source`, only runs
        recorded the same way (a watcher never closes the plugin's runs)."""
        query = RunRow.select(RunRow.run_id).where(RunRow.status == RunStatus.RUNNING)
        if instance is not None:
            query = query.where(RunRow.instance == instance)
        if source is not None:
            query = query.where(RunRow.source == source)
        return self.close_running([row.run_id for row in query], reason)

    @_on_own_database
    def close_running(self, run_ids: list[str], reason: str) -> list[str]:
        """Close these runs, if still `running`, as interrupted with `reason`. Returns the ids given."""
        if run_ids:
            with self._runs_transaction():
                before = rollups.stored_keys(run_ids)
                running = [r for (r,) in RunRow.select(RunRow.run_id).where(
                    RunRow.run_id.in_(run_ids), RunRow.status == RunStatus.RUNNING).tuples()]
                old_nodes = node_type_rollups.aggregates(running)
                (RunRow.update(status=RunStatus.INTERRUPTED, interrupted_reason=reason, updated_at_ms=now_ms())
                 .where(RunRow.run_id.in_(run_ids), RunRow.status == RunStatus.RUNNING).execute())
                rollups.apply(self.db, before | rollups.stored_keys(run_ids), [])
                node_type_rollups.apply(self.db, old_nodes, node_type_rollups.aggregates(running))
        return run_ids

    @_on_own_database
    def set_workflow_name(self, workflow_id: str, name: str) -> int:
        """Remember a UI workflow's name and rename its runs that had no better name. Returns runs renamed."""
        stamp = now_ms()
        with self._runs_transaction():
            (WorkflowNameRow.insert(workflow_id=workflow_id, name=name, updated_at_ms=stamp)
             .on_conflict(conflict_target=[WorkflowNameRow.workflow_id],
                          update={WorkflowNameRow.name: name, WorkflowNameRow.updated_at_ms: stamp})
             .execute())
            return (RunRow.update(workflow_name=name, workflow_name_source="ui")
                    .where((RunRow.workflow_id == workflow_id)
                           & RunRow.workflow_name_source.in_(("derived", "label", "ui")))
                    .execute())

    @_on_own_database
    def apply_retention(self, max_age_days: float | None, max_runs: int | None) -> int:
        """Delete runs older than `max_age_days` and beyond the newest `max_runs`. Returns runs deleted."""
        before_ms = now_ms() - int(max_age_days * 86_400_000) if max_age_days else None
        return self.prune_runs(before_ms=before_ms, keep=max_runs or None)

    @_on_own_database
    def prune_runs(self, before_ms: int | None = None, keep: int | None = None) -> int:
        """Delete finished runs that started before `before_ms` and those beyond the newest `keep` (runs without a
        start time count as oldest; running runs are kept), with their nodes, outputs and samples. Returns runs deleted.

        In batches, each its own short transaction (`prune_batch`), so the recorder's writes go on between them."""
        plan = self.prune_plan(before_ms, keep)
        deleted = 0
        while True:
            n = self.prune_batch(plan)
            if not n:
                return deleted
            deleted += n

    @_on_own_database
    def prune_plan(self, before_ms: int | None = None, keep: int | None = None) -> list[Any]:
        """What `prune_runs(before_ms, keep)` deletes, as conditions each served by the start-time index: the
        newest `keep` are found once here, not once per batch."""
        if keep is not None and keep < 0:
            raise ValueError("keep must be 0 or more")
        plan: list[Any] = []
        if before_ms is not None:
            plan.append(RunRow.started_at_ms < before_ms)
        if keep is not None:
            newest_first = (RunRow.started_at_ms.desc(nulls="LAST"), RunRow.run_id.desc())
            last_kept = None if keep == 0 else (RunRow.select(RunRow.started_at_ms, RunRow.run_id)
                                                .order_by(*newest_first).limit(1).offset(keep - 1).tuples().first())
            if keep == 0:
                plan.append(RunRow.run_id.is_null(False))
            elif last_kept is not None:
                started, run_id = last_kept
                if started is None:
                    plan.append(RunRow.started_at_ms.is_null() & (RunRow.run_id < run_id))
                else:
                    plan += [RunRow.started_at_ms < started, RunRow.started_at_ms.is_null(),
                             (RunRow.started_at_ms == started) & (RunRow.run_id < run_id)]
        # A run still executing is never pruned: its final record would come back without its start.
        finished = RunRow.status != RunStatus.RUNNING
        return [condition & finished for condition in plan]

    @_on_own_database
    def prune_preview(self, plan: list[Any]) -> dict[str, Any]:
        """What a `prune_plan` deletes, deleting nothing: `runs`, the `oldest_started_at_ms` and
        `newest_started_at_ms` among them, and how many have no start time (`without_start`)."""
        if not plan:
            return {"runs": 0, "oldest_started_at_ms": None, "newest_started_at_ms": None, "without_start": 0}
        matching = functools.reduce(operator.or_, plan)
        runs, oldest, newest = RunRow.select(fn.COUNT(RunRow.run_id), fn.MIN(RunRow.started_at_ms),
                                             fn.MAX(RunRow.started_at_ms)).where(matching).tuples().first()
        without_start = RunRow.select().where(matching & RunRow.started_at_ms.is_null()).count() if runs else 0
        return {"runs": runs or 0, "oldest_started_at_ms": oldest, "newest_started_at_ms": newest,
                "without_start": without_start}

    @_on_own_database
    def prune_batch(self, plan: list[Any]) -> int:
        """One batch of a `prune_plan`: at most one transaction, sized (from the last ones) to take about
        PRUNE_BATCH_TARGET_S. Returns runs deleted (0: nothing left to prune)."""
        size = self._prune_batch
        ids: list[str] = []
        for condition in plan:
            ids = [r for (r,) in RunRow.select(RunRow.run_id).where(condition).limit(size).tuples()]
            if ids:
                break
        if not ids:
            return 0
        timings: dict[str, float] = {}
        with checkpoint_after(self.db, timings):
            began = time.perf_counter()
            self._delete_runs(ids)
            elapsed = self.last_prune_transaction_s = time.perf_counter() - began
        self.last_prune_checkpoint_s = timings.get("checkpoint_s")
        # Grow slowly, shrink at once: a batch that took too long makes the next one smaller.
        scale = PRUNE_BATCH_TARGET_S / elapsed if elapsed > 0 else 1.5
        self._prune_batch = int(max(_PRUNE_BATCH_MIN, min(_PRUNE_BATCH_MAX, size * min(1.5, max(0.1, scale)))))
        return len(ids)

    def _delete_runs(self, run_ids: list[str]) -> int:
        with self._runs_transaction():
            removed = rollups.stored_keys(run_ids)
            old_nodes = node_type_rollups.aggregates(run_ids)
            for model in (NodeRunRow, RunOutputRow, GpuSampleRow, RunLabelRow):
                model.delete().where(model.run.in_(run_ids)).execute()
            RunRow.delete().where(RunRow.run_id.in_(run_ids)).execute()
            rollups.apply(self.db, removed, [])
            node_type_rollups.apply(self.db, old_nodes, {})
        return len(run_ids)

    def _known_workflow_names(self, workflow_ids: set[str]) -> dict[str, str]:
        if not workflow_ids:
            return {}
        rows = WorkflowNameRow.select().where(WorkflowNameRow.workflow_id.in_(list(workflow_ids)))
        return {row.workflow_id: row.name for row in rows}

    # -- reads (REST, analysis) ------------------------------------------------------------------------------

    def filtered(self, filters: RunFilters, query=None, counting: bool = False, sort: str | None = None):
        """`query` narrowed to the runs `filters` match; `counting`: `q` in the form that counts fastest (in no
        order; it may join the search index) rather than the one that finds a sorted page fastest (`run_search`),
        and `label` joined to its rows (`run_labels`); `sort`: the query is read in that order, a page or an
        export (`label` in the form that finds such a page fastest: `_label_narrowed`)."""
        query = query if query is not None else RunRow.select()
        if filters.status:
            query = query.where(RunRow.status.in_(filters.status))
        if filters.workflow:
            query = query.where(_workflow_condition(filters.workflow))
        if filters.since_ms is not None:
            query = query.where(RunRow.started_at_ms >= filters.since_ms)
        if filters.until_ms is not None:
            query = query.where(RunRow.started_at_ms <= filters.until_ms)
        if filters.instance:
            query = query.where(RunRow.instance == filters.instance)
        if filters.label:
            query = self._label_narrowed(query, filters, counting, sort)
        if filters.q:
            if self.search is None:
                query = query.where(run_search.substring_condition(filters.q))
            else:
                query = self.search.narrow(query, filters.q, counting)
        return query

    @_on_own_database
    def query_runs(self, filters: RunFilters, page: Page) -> RunsPage:
        """One page of the matching runs (`run_pages`: by cursor or offset) and their count, capped at
        COUNT_CAP unless the page asks for the exact total. A first page without a next one holds every match,
        so its length is the count: a rare match (a 1-2 character term no index serves, a rare workflow) is
        read once, not again to be counted."""
        by_label = self._label_order(filters, page.sort)
        rows, next_cursor = run_pages.page_of_runs(self.filtered(filters, sort=page.sort), page, by_label)
        if page.cursor is None and page.offset == 0 and next_cursor is None:
            total, capped = len(rows), False
        else:
            cap = None if page.exact_total else COUNT_CAP
            alone = None
            if self.search is not None and filters.q and dataclasses.replace(filters, q=None) == RunFilters():
                alone = self.search.count_alone(filters.q, cap)
            if alone is not None:
                total, capped = alone
            else:
                with self.search.count_scope(filters.q) if self.search else contextlib.nullcontext():
                    total, capped = run_pages.capped_count(
                        self.filtered(filters, RunRow.select(RunRow.run_id), counting=True), cap)
        return RunsPage([mapping.row_to_run(row) for row in rows], total, capped, next_cursor)

    def _label_narrowed(self, query: Any, filters: RunFilters, counting: bool, sort: str | None) -> Any:
        """A count, or a page in start order: the label's rows joined (their index in that order); a page in
        another order of a dense label on SQLite: the query's own order, each run looked up (`run_labels`);
        anything else (aggregates, a rare label): the label's runs by their key."""
        label = filters.label
        if counting and run_labels.joinable(filters) or sort is not None and self._label_order(filters, sort):
            return run_labels.joined(query, label)
        scan = sort is not None and self.kind == "sqlite" and run_labels.usable(label) and run_labels.dense(label)
        return query.where(run_labels.condition(label, scan))

    @staticmethod
    def _label_order(filters: RunFilters, sort: str) -> tuple[Any, Any] | None:
        """The label's own columns to sort a page by, where they can (`run_labels.ORDER`), else None."""
        if run_labels.joinable(filters):
            return run_labels.ORDER.get(sort.lstrip("-"))
        return None

    def iter_runs(self, filters: RunFilters, sort: str = "-started_at_ms", chunk: int = 500) -> Iterator[Run]:
        """Every matching run, in chunks of keyset pages (export): each chunk costs what the first does, and runs
        written meanwhile neither repeat nor push a run out of the export."""
        cursor = None
        by_label = self._label_order(filters, sort)
        while True:
            with self.bound():
                rows, cursor = run_pages.page_of_runs(self.filtered(filters, sort=sort),
                                                      Page(sort, chunk, cursor=cursor), by_label)
            for row in rows:
                yield mapping.row_to_run(row)
            if cursor is None:
                return

    @_on_own_database
    def get_run(self, run_id: str) -> Run | None:
        row = RunRow.get_or_none(RunRow.run_id == run_id)
        if row is None:
            return None
        run = mapping.row_to_run(row)
        run.nodes = [mapping.row_to_node(r) for r in
                     NodeRunRow.select().where(NodeRunRow.run == run_id).order_by(NodeRunRow.position)]
        run.outputs = [mapping.row_to_output(r) for r in
                       RunOutputRow.select().where(RunOutputRow.run == run_id).order_by(RunOutputRow.id)]
        run.gpu_samples = [mapping.row_to_sample(r) for r in
                           GpuSampleRow.select().where(GpuSampleRow.run == run_id).order_by(GpuSampleRow.t_ms)]
        return run

    @_on_own_database
    def count_runs(self) -> int:
        return RunRow.select().count()

    @_on_own_database
    def run_exists(self, run_id: str) -> bool:
        return RunRow.select().where(RunRow.run_id == run_id).exists()

    @_on_own_database
    def stats(self, filters: RunFilters, price_per_kwh: float | None = None) -> dict[str, Any]:
        """Totals, by status and by workflow, plus percentiles of duration. From the rollups where the filters
        allow (`rollup_reads`), else from one grouped scan of the matching runs; the same answer either way,
        except p50/p95 of more than EXACT_PERCENTILES_MAX durations from the rollups, which come from their
        histogram: within rollups.HISTOGRAM_RELATIVE_ERROR (4.4 %) of the exact value.
        Energy (`total_energy_wh`, per workflow `energy_wh`) sums the runs that have one (null when none has);
        `total_cost` / `cost` price it at `price_per_kwh` (null without a price). A workflow's name is that of
        its newest run."""
        plan = rollup_reads.plan(filters)
        if plan is None:
            groups = {}
            for row in self.grouped_runs(filters):
                agg = rollups.Agg(row["runs"], row["durations"] or 0, float(row["duration_sum"] or 0.0),
                                  row["frames"] or 0, row["energies"] or 0, float(row["energy_j"] or 0.0),
                                  row["gpu_peak"], row["ram_peak"])
                groups.setdefault((row["workflow_key"] or None, row["status"]), rollups.Agg()).add(agg)
        else:
            groups = rollup_reads.groups(self, plan, filters)
        durations = sum(agg.durations for agg in groups.values())
        if plan is None or durations <= EXACT_PERCENTILES_MAX:
            p50, p95 = self._duration_percentiles(filters, durations, (0.50, 0.95))
        else:
            p50, p95 = rollups.percentiles(rollup_reads.histogram(self, plan, filters), (0.50, 0.95))
        return self._stats_of(groups, p50, p95, price_per_kwh)

    def grouped_runs(self, filters: RunFilters) -> list[dict[str, Any]]:
        """The matching runs' totals per (workflow_key, status), by one grouped scan."""
        grouped = self.filtered(filters, RunRow.select(
            RunRow.workflow_key,
            RunRow.status,
            fn.COUNT(RunRow.run_id).alias("runs"),
            fn.SUM(RunRow.frame_count).alias("frames"),
            fn.SUM(RunRow.duration_ms).alias("duration_sum"),
            fn.COUNT(RunRow.duration_ms).alias("durations"),
            fn.MAX(RunRow.gpu_peak_bytes).alias("gpu_peak"),
            fn.MAX(RunRow.ram_peak_bytes).alias("ram_peak"),
            fn.SUM(RunRow.energy_j).alias("energy_j"),
            fn.COUNT(RunRow.energy_j).alias("energies"),
        )).group_by(RunRow.workflow_key, RunRow.status)
        return list(grouped.dicts())

    def _workflow_names(self, keys: list[str | None]) -> dict[str | None, str | None]:
        """The name of each key's newest run: one statement of one index probe per key (the (workflow_key,
        started_at_ms) index), plain SQL (building a peewee query per key costs more than the probe)."""
        p = self.db.param
        newest = ('(SELECT "workflow_name" FROM "runs" WHERE "workflow_key" {cond} {extra} LIMIT 1)')
        names: dict[str | None, str | None] = {}
        for extra in ('AND "started_at_ms" IS NOT NULL ORDER BY "started_at_ms" DESC', ""):
            todo = [k for k in keys if k not in names]
            if not todo:
                break
            if self.kind == "postgresql" and None not in todo:
                # One subplan run per key: PostgreSQL plans a UNION ALL of 300 probes for longer than it runs it
                # (170 ms against 4 ms at a million runs).
                sql = (f"SELECT k.i, {newest.format(cond='= k.key', extra=extra)} FROM "
                       f"unnest({p}::text[]) WITH ORDINALITY AS k(key, i)")
                rows = self.db.execute_sql(sql, [todo]).fetchall()
                todo = [None, *todo]  # WITH ORDINALITY counts from 1
            else:
                parts, args = [], []
                for i, key in enumerate(todo):
                    cond = "IS NULL" if key is None else f"= {p}"
                    parts.append(f"SELECT {i}, " + newest.format(cond=cond, extra=extra))
                    args += [] if key is None else [key]
                rows = self.db.execute_sql(" UNION ALL ".join(parts), args).fetchall()
            for i, name in rows:
                if name is not None or extra == "":
                    names[todo[int(i)]] = name
        return names

    def _stats_of(self, groups: dict[tuple[str | None, str], rollups.Agg], p50: float | None, p95: float | None,
                  price_per_kwh: float | None) -> dict[str, Any]:
        by_status = {s: 0 for s in sorted(RunStatus.ALL)}
        workflows: dict[Any, dict[str, Any]] = {}
        total = rollups.Agg()
        for (wk, status), agg in groups.items():
            total.add(agg)
            by_status[status] = by_status.get(status, 0) + agg.runs
            entry = workflows.setdefault(wk, {"workflow": wk, "runs": 0, "ok": 0, "finished": 0, "agg": rollups.Agg()})
            entry["agg"].add(agg)
            entry["runs"] += agg.runs
            entry["ok"] += agg.runs if status == RunStatus.SUCCESS else 0
            entry["finished"] += agg.runs if status in RunStatus.FINAL else 0
        top = sorted(workflows.values(), key=lambda e: (-e["runs"], e["workflow"] is None, e["workflow"] or ""))
        by_workflow = []
        names = self._workflow_names([e["workflow"] for e in top[:100]])
        for e in top[:100]:
            agg = e["agg"]
            energy_j = agg.energy_sum if agg.energies else None
            by_workflow.append({
                "workflow": e["workflow"], "workflow_name": names.get(e["workflow"]), "runs": e["runs"],
                "success_rate": e["ok"] / e["finished"] if e["finished"] else None,
                "avg_duration_ms": agg.duration_sum / agg.durations if agg.durations else None,
                "total_frames": agg.frames,
                "energy_wh": _wh(energy_j),
                "cost": _cost(energy_j, price_per_kwh),
            })
        finished = sum(by_status[s] for s in RunStatus.FINAL)
        energy_j = total.energy_sum if total.energies else None
        return {
            "total_runs": sum(by_status.values()),
            "success_rate": by_status[RunStatus.SUCCESS] / finished if finished else None,
            "total_frames": total.frames,
            "avg_duration_ms": total.duration_sum / total.durations if total.durations else None,
            "p50_duration_ms": p50,
            "p95_duration_ms": p95,
            "max_gpu_peak_bytes": total.gpu_peak,
            "max_ram_peak_bytes": total.ram_peak,
            "total_energy_wh": _wh(energy_j),
            "total_cost": _cost(energy_j, price_per_kwh),
            "energy_price_per_kwh": price_per_kwh,
            "by_status": by_status,
            "by_workflow": by_workflow,
        }

    def _duration_percentiles(self, filters: RunFilters, count: int, qs: tuple[float, ...]) -> list[float | None]:
        """Nearest-rank percentiles of duration. A bounded set is fetched through the filter's own index and
        ranked here; a large one is ranked by the database along the duration index (OFFSET)."""
        if not count:
            return [None for _ in qs]
        with_duration = self.filtered(filters, RunRow.select(RunRow.duration_ms)).where(
            RunRow.duration_ms.is_null(False))
        indexes = [min(count - 1, int(round(q * (count - 1)))) for q in qs]
        if count <= _PERCENTILE_IN_MEMORY_MAX:
            values = sorted(v for (v,) in with_duration.tuples())
            return [values[min(i, len(values) - 1)] if values else None for i in indexes]
        result = []
        for index in indexes:
            row = with_duration.order_by(RunRow.duration_ms.asc()).limit(1).offset(index).tuples().first()
            result.append(row[0] if row else None)
        return result

    @_on_own_database
    def node_type_stats(self, filters: RunFilters, limit: int = 50) -> list[dict[str, Any]]:
        """Per class type, the executed node rows of the matching runs: executions, average duration (longest
        first; none last, then by class type) and the largest GPU peak. From the node-type rollups where the
        filters allow (`node_type_reads`), else by a scan; the same answer either way."""
        return node_type_reads.node_type_stats(self, filters, limit)

    @_on_own_database
    def instances(self) -> list[dict[str, Any]]:
        """Runs per instance from the all-time rollups, and each instance's newest start along its
        (instance, started_at_ms) index: a few rows read, however many runs there are."""
        counts = (RollupRow.select(RollupRow.instance, fn.SUM(RollupRow.runs).alias("runs"))
                  .where(RollupRow.grain == rollups.GRAIN_ALL).group_by(RollupRow.instance).tuples())
        out = []
        for key, runs in counts:
            instance = key or None  # the rollups key a run without an instance as ''
            if not runs:
                continue
            same = RunRow.instance.is_null() | (RunRow.instance == "") if instance is None else \
                RunRow.instance == instance
            last = RunRow.select(fn.MAX(RunRow.started_at_ms)).where(same).scalar()
            out.append({"instance": instance, "runs": int(runs), "last_started_at_ms": last})
        return out

    # -- instances (heartbeats) -----------------------------------------------------------------------------

    @_on_own_database
    def save_heartbeat(self, row: dict[str, Any]) -> None:
        """Insert or update the heartbeat row of (row["instance"], row["source"])."""
        keep = [f for f in InstanceRow._meta.sorted_fields if f.name not in ("instance", "source", "started_at_ms")]
        with self.db.atomic():
            (InstanceRow.insert(**row)
             .on_conflict(conflict_target=[InstanceRow.instance, InstanceRow.source], preserve=keep)
             .execute())

    @_on_own_database
    def heartbeats(self) -> list[dict[str, Any]]:
        return list(InstanceRow.select().order_by(InstanceRow.instance, InstanceRow.source).dicts())

    # -- presets ---------------------------------------------------------------------------------------------

    @_on_own_database
    def list_presets(self) -> list[Preset]:
        return [Preset(r.id, r.name, json.loads(r.filters), r.created_at_ms)
                for r in FilterPresetRow.select().order_by(FilterPresetRow.name)]

    @_on_own_database
    def save_preset(self, name: str, filters: dict[str, Any]) -> Preset:
        stamp = now_ms()
        with self.db.atomic():
            existing = FilterPresetRow.get_or_none(FilterPresetRow.name == name)
            if existing is not None:
                existing.filters = json.dumps(filters, ensure_ascii=False)
                existing.save()
                return Preset(existing.id, name, filters, existing.created_at_ms)
            row = FilterPresetRow.create(name=name, filters=json.dumps(filters, ensure_ascii=False),
                                         created_at_ms=stamp)
        return Preset(row.id, name, filters, stamp)

    @_on_own_database
    def delete_preset(self, preset_id: int) -> bool:
        return FilterPresetRow.delete().where(FilterPresetRow.id == preset_id).execute() > 0


def _workflow_condition(w: str):
    """Runs whose workflow id, UI name, fingerprint or key is `w`, as the fewest index-friendly branches.

    A run's key is its workflow id, else its fingerprint (`mapping.workflow_key`), so `workflow_key == w` already
    holds every run of id `w` and every run of fingerprint `w` without an id; what is left are runs named `w` and
    runs of fingerprint `w` that have an id. A branch no run matches is dropped (one index probe each), so the usual
    filter (one key, or one name) is a single equality that pages and counts along its (column, started_at_ms)
    index instead of a four-way OR that collects and sorts every match."""
    branches = [RunRow.workflow_key == w, RunRow.workflow_name == w,
                (RunRow.fingerprint == w) & RunRow.workflow_id.is_null(False)]
    present = [b for b in branches if RunRow.select(RunRow.run_id).where(b).limit(1).exists()]
    return functools.reduce(operator.or_, present) if present else branches[0]


def _wh(energy_j: float | None) -> float | None:
    return None if energy_j is None else energy_j / 3600.0


def _cost(energy_j: float | None, price_per_kwh: float | None) -> float | None:
    if energy_j is None or price_per_kwh is None:
        return None
    return energy_j / 3_600_000.0 * price_per_kwh
