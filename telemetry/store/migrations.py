"""Schema versions. The pack creates and migrates its own schema on start, on SQLite and PostgreSQL alike.

Append a migration for every schema change; never edit a released one. On PostgreSQL several ComfyUI instances
may start at once against one database, so migrations run under an advisory lock.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

from peewee import Database, PostgresqlDatabase, SqliteDatabase

from .schema import ALL_TABLES, SchemaVersionRow

log = logging.getLogger("run_telemetry.store")

_PG_LOCK_KEY = 0x52_54_4C_4D  # "RTLM"


def _create_v1(db: Database) -> None:
    db.create_tables(ALL_TABLES, safe=True)


# Indexes for analysis (telemetry.analysis.queries): a fingerprint's latest successful runs (predictions), a
# labelled scene's latest runs (retries), and one row per recommendation condition.
_V2_INDEXES = (
    "CREATE INDEX IF NOT EXISTS runs_fingerprint_status_started ON runs (fingerprint, status, started_at_ms)",
    "CREATE INDEX IF NOT EXISTS runs_scene_started ON runs (scene, started_at_ms)",
    "CREATE UNIQUE INDEX IF NOT EXISTS recommendations_condition_key_unique ON recommendations (condition_key)",
)


# The timeline reads a time window of runs from one covering index; names resolve without a scan.
_V3_INDEXES = (
    "CREATE INDEX IF NOT EXISTS runs_started_timeline ON runs "
    "(started_at_ms, status, duration_ms, gpu_peak_bytes, frame_count)",
    "CREATE INDEX IF NOT EXISTS runs_workflow_name ON runs (workflow_name)",
)


# The workflow filter (id, name, fingerprint or key) and name lookups read one time range per column: each
# column gets an index with started_at_ms, so the OR of the four stays an index union over that range.
_V4_INDEXES = (
    "CREATE INDEX IF NOT EXISTS runs_workflow_name_started ON runs (workflow_name, started_at_ms)",
    "CREATE INDEX IF NOT EXISTS runs_workflow_id_started ON runs (workflow_id, started_at_ms)",
    "CREATE INDEX IF NOT EXISTS runs_fingerprint_started ON runs (fingerprint, started_at_ms)",
    "DROP INDEX IF EXISTS runs_workflow_name",
)


def _add_v5_columns(db: Database) -> None:
    """`runs.gpu_peak_source` and `runs.dynamic_vram` (newest ComfyUI: DynamicVRAM peaks). A database created at
    version 1 by this code already has them (create_tables uses the current models), so only missing ones are
    added."""
    from playhouse.migrate import SchemaMigrator
    from playhouse.migrate import migrate as run_migration

    from .schema import RunRow

    present = {column.name for column in db.get_columns(RunRow._meta.table_name)}
    migrator = SchemaMigrator.from_database(db)
    steps = [migrator.add_column(RunRow._meta.table_name, name, RunRow._meta.fields[name])
             for name in ("gpu_peak_source", "dynamic_vram") if name not in present]
    if steps:
        run_migration(*steps)


def _create_v6_outbox(db: Database) -> None:
    """The webhook outbox (`telemetry.webhooks.outbox`); not in ALL_TABLES, so version 1 never creates it."""
    from .schema import WebhookDeliveryRow

    db.create_tables([WebhookDeliveryRow], safe=True)


_V8_COLUMNS = {"runs": ("energy_j", "energy_source", "gpus"), "node_runs": ("energy_j",),
               "gpu_samples": ("gpu_index",)}


def _add_v8_columns(db: Database) -> None:
    """Energy and every GPU (issue 12): `runs.energy_j`, `runs.energy_source`, `runs.gpus` (JSON),
    `node_runs.energy_j`, `gpu_samples.gpu_index`. Only missing columns are added (a database created by this code
    at version 1 has them), so the step is safe to run whatever happened before."""
    from playhouse.migrate import SchemaMigrator
    from playhouse.migrate import migrate as run_migration

    from .schema import GpuSampleRow, NodeRunRow, RunRow

    migrator = SchemaMigrator.from_database(db)
    steps = []
    for model in (RunRow, NodeRunRow, GpuSampleRow):
        table = model._meta.table_name
        present = {column.name for column in db.get_columns(table)}
        steps += [migrator.add_column(table, name, model._meta.fields[name])
                  for name in _V8_COLUMNS[table] if name not in present]
    if steps:
        run_migration(*steps)


def _create_v9_instances(db: Database) -> None:
    """The `instances` table: one heartbeat row per recording process (fleets)."""
    from .schema import InstanceRow

    db.create_tables([InstanceRow], safe=True)


def _create_v7_comfy_history(db: Database) -> None:
    """`comfy_history`: ComfyUI's own history record of each run, minus secrets (telemetry.store.comfy_history)."""
    from .comfy_history import ComfyHistoryRow

    db.create_tables([ComfyHistoryRow], safe=True)


def _statements(*statements: str) -> Callable[[Database], None]:
    def step(db: Database) -> None:
        for statement in statements:
            db.execute_sql(statement)
    return step


# Keyset pages of /runs (telemetry.store.run_pages) read these in either direction from a cursor on.
_V12_INDEXES = (
    "CREATE INDEX IF NOT EXISTS runs_started_run_id ON runs (started_at_ms, run_id)",
    "CREATE INDEX IF NOT EXISTS runs_duration_run_id ON runs (duration_ms, run_id)",
)


MIGRATIONS: list[tuple[int, Callable[[Database], None]]] = [
    (1, _create_v1),
    (2, _statements(*_V2_INDEXES)),
    (3, _statements(*_V3_INDEXES)),
    (4, _statements(*_V4_INDEXES)),
    (5, _add_v5_columns),
    (6, _create_v6_outbox),
    (7, _create_v7_comfy_history),
    (8, _add_v8_columns),
    (9, _create_v9_instances),
    (12, _statements(*_V12_INDEXES)),
]

LATEST_VERSION = MIGRATIONS[-1][0]


def current_version(db: Database) -> int:
    if not db.table_exists(SchemaVersionRow._meta.table_name):
        return 0
    row = SchemaVersionRow.select(SchemaVersionRow.version).order_by(SchemaVersionRow.version.desc()).first()
    return row.version if row else 0


def migrate(db: Database) -> int:
    """Bring the schema to the latest version; returns the version now in place."""
    is_pg = isinstance(db, PostgresqlDatabase)
    if is_pg:
        db.execute_sql("SELECT pg_advisory_lock(%s)", (_PG_LOCK_KEY,))
    try:
        # SQLite: several processes may share one file (and start together): the whole migration holds the
        # file's write lock (BEGIN IMMEDIATE; the others wait on busy_timeout), so the version is read and
        # written by one of them at a time.
        with db.atomic(lock_type="IMMEDIATE") if isinstance(db, SqliteDatabase) else contextlib.nullcontext():
            db.create_tables([SchemaVersionRow], safe=True)
            version = current_version(db)
            # Every migration not yet recorded runs, not only those above the highest: numbers are handed out to
            # parallel work, so a database may hold 8 before 6 exists. Every step is safe to run on any schema.
            applied = {v for (v,) in SchemaVersionRow.select(SchemaVersionRow.version).tuples()}
            for target, step in MIGRATIONS:
                if target in applied:
                    continue
                with db.atomic():
                    step(db)
                    SchemaVersionRow.create(version=target, applied_at_ms=int(time.time() * 1000))
                log.info("telemetry schema migrated to version %d", target)
                version = max(version, target)
        return version
    finally:
        if is_pg:
            db.execute_sql("SELECT pg_advisory_unlock(%s)", (_PG_LOCK_KEY,))
