"""Schema versions. The pack creates and migrates its own schema on start, on SQLite and PostgreSQL alike.

Append a migration for every schema change; never edit a released one. On PostgreSQL several ComfyUI instances
may start at once against one database, so migrations run under an advisory lock.

Every step is frozen: literal DDL or `playhouse.migrate` steps with their own field definitions, never the current
models (`telemetry.store.schema`), so a fresh database (1 -> latest) and an upgraded one end with the same schema
whatever the models look like later (tests/test_migrations.py compares them). Version 1 is the DDL that peewee
emitted for the models of commit 079bb45, the first release, per dialect. Databases created before the DDL was
frozen got the models of their day at version 1 (e.g. the columns of version 5 already), so the steps that add
columns or tables add only what is missing.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

from peewee import (
    BooleanField,
    CharField,
    Database,
    DatabaseError,
    FloatField,
    IntegerField,
    OperationalError,
    PostgresqlDatabase,
    SqliteDatabase,
    TextField,
)

from .schema import SchemaVersionRow

log = logging.getLogger("run_telemetry.store")

_PG_LOCK_KEY = 0x52_54_4C_4D  # "RTLM"

# The column types peewee gives each field class per dialect; the DDL below is written with these names.
_TYPES = {
    "sqlite": {"BIGINT": "INTEGER", "SERIAL": "INTEGER", "DOUBLE": "REAL", "WITHOUT_ROWID": " WITHOUT ROWID"},
    "postgresql": {"BIGINT": "BIGINT", "SERIAL": "SERIAL", "DOUBLE": "DOUBLE PRECISION", "WITHOUT_ROWID": ""},
}


class UnsupportedDatabaseError(RuntimeError):
    pass


def _dialect(db: Database) -> str:
    if isinstance(db, PostgresqlDatabase):
        return "postgresql"
    if isinstance(db, SqliteDatabase):
        return "sqlite"
    raise UnsupportedDatabaseError(
        f"the telemetry schema is kept for SQLite and PostgreSQL only, not {type(db).__name__}")


def _ddl(*statements: str) -> Callable[[Database], None]:
    """A step of literal statements; BIGINT and SERIAL are written per dialect (see _TYPES)."""
    def step(db: Database) -> None:
        types = _TYPES[_dialect(db)]
        for statement in statements:
            db.execute_sql(statement.format(**types))
    return step


_SCHEMA_VERSION_TABLE = ('CREATE TABLE IF NOT EXISTS "schema_version" ("version" INTEGER NOT NULL PRIMARY KEY, '
                         '"applied_at_ms" {BIGINT} NOT NULL)')

_V1 = (
    'CREATE TABLE IF NOT EXISTS "filter_presets" ("id" {SERIAL} NOT NULL PRIMARY KEY, "name" VARCHAR(200) NOT NULL, '
    '"filters" TEXT NOT NULL, "created_at_ms" {BIGINT} NOT NULL)',
    'CREATE UNIQUE INDEX IF NOT EXISTS "filterpresetrow_name" ON "filter_presets" ("name")',
    'CREATE TABLE IF NOT EXISTS "runs" ("run_id" VARCHAR(128) NOT NULL PRIMARY KEY, "status" VARCHAR(16) NOT NULL, '
    '"queued_at_ms" {BIGINT}, "started_at_ms" {BIGINT}, "finished_at_ms" {BIGINT}, "duration_ms" REAL, '
    '"queue_wait_ms" REAL, "workflow_id" VARCHAR(128), "workflow_name" TEXT, '
    '"workflow_name_source" VARCHAR(16) NOT NULL, "workflow_key" VARCHAR(128), "fingerprint" VARCHAR(64), '
    '"node_count" INTEGER NOT NULL, "executed_node_count" INTEGER NOT NULL, "cached_node_count" INTEGER NOT NULL, '
    '"image_count" INTEGER NOT NULL, "video_count" INTEGER NOT NULL, "audio_count" INTEGER NOT NULL, '
    '"other_output_count" INTEGER NOT NULL, "frame_count" INTEGER NOT NULL, "error_node_id" VARCHAR(128), '
    '"error_node_type" VARCHAR(256), "error_exception_type" VARCHAR(256), "error_message" TEXT, '
    '"error_kind" VARCHAR(16), "error_traceback" TEXT, "interrupted_reason" TEXT, "gpu_name" VARCHAR(256), '
    '"gpu_total_bytes" {BIGINT}, "gpu_peak_bytes" {BIGINT}, "gpu_reserved_peak_bytes" {BIGINT}, '
    '"gpu_used_peak_bytes" {BIGINT}, "ram_peak_bytes" {BIGINT}, "story_title" TEXT, "scene" TEXT, "tags" TEXT, '
    '"instance" VARCHAR(256), "source" VARCHAR(16) NOT NULL, "parameters" TEXT, "pixels" {BIGINT}, '
    '"steps" INTEGER, "updated_at_ms" {BIGINT})',
    'CREATE INDEX IF NOT EXISTS "runrow_status" ON "runs" ("status")',
    'CREATE INDEX IF NOT EXISTS "runrow_started_at_ms" ON "runs" ("started_at_ms")',
    'CREATE INDEX IF NOT EXISTS "runrow_duration_ms" ON "runs" ("duration_ms")',
    'CREATE INDEX IF NOT EXISTS "runrow_workflow_id" ON "runs" ("workflow_id")',
    'CREATE INDEX IF NOT EXISTS "runrow_fingerprint" ON "runs" ("fingerprint")',
    'CREATE INDEX IF NOT EXISTS "runrow_workflow_key_started_at_ms" ON "runs" ("workflow_key", "started_at_ms")',
    'CREATE INDEX IF NOT EXISTS "runrow_status_started_at_ms" ON "runs" ("status", "started_at_ms")',
    'CREATE INDEX IF NOT EXISTS "runrow_instance_started_at_ms" ON "runs" ("instance", "started_at_ms")',
    'CREATE TABLE IF NOT EXISTS "gpu_samples" ("id" {SERIAL} NOT NULL PRIMARY KEY, "run_id" VARCHAR(128) NOT NULL, '
    '"t_ms" {BIGINT} NOT NULL, "used_bytes" {BIGINT}, "util_percent" REAL, "temperature_c" REAL, "power_w" REAL, '
    '"ram_rss_bytes" {BIGINT}, FOREIGN KEY ("run_id") REFERENCES "runs" ("run_id") ON DELETE CASCADE)',
    'CREATE INDEX IF NOT EXISTS "gpusamplerow_run_id" ON "gpu_samples" ("run_id")',
    'CREATE TABLE IF NOT EXISTS "node_runs" ("id" {SERIAL} NOT NULL PRIMARY KEY, "run_id" VARCHAR(128) NOT NULL, '
    '"position" INTEGER NOT NULL, "node_id" VARCHAR(128) NOT NULL, "class_type" VARCHAR(256) NOT NULL, '
    '"status" VARCHAR(16) NOT NULL, "started_at_ms" {BIGINT}, "duration_ms" REAL, "gpu_peak_bytes" {BIGINT}, '
    '"display_node_id" VARCHAR(128), "parent_node_id" VARCHAR(128), '
    'FOREIGN KEY ("run_id") REFERENCES "runs" ("run_id") ON DELETE CASCADE)',
    'CREATE INDEX IF NOT EXISTS "noderunrow_run_id" ON "node_runs" ("run_id")',
    'CREATE INDEX IF NOT EXISTS "noderunrow_class_type" ON "node_runs" ("class_type")',
    'CREATE TABLE IF NOT EXISTS "recommendations" ("id" {SERIAL} NOT NULL PRIMARY KEY, "kind" VARCHAR(64) NOT NULL, '
    '"condition_key" VARCHAR(512) NOT NULL, "severity" VARCHAR(16) NOT NULL, "workflow_key" VARCHAR(128), '
    '"workflow_name" TEXT, "evidence_run_ids" TEXT NOT NULL, "message" TEXT NOT NULL, "action" TEXT, '
    '"details" TEXT, "state" VARCHAR(16) NOT NULL, "created_at_ms" {BIGINT} NOT NULL, '
    '"updated_at_ms" {BIGINT} NOT NULL)',
    'CREATE INDEX IF NOT EXISTS "recommendationrow_kind" ON "recommendations" ("kind")',
    'CREATE INDEX IF NOT EXISTS "recommendationrow_condition_key" ON "recommendations" ("condition_key")',
    'CREATE INDEX IF NOT EXISTS "recommendationrow_workflow_key" ON "recommendations" ("workflow_key")',
    'CREATE INDEX IF NOT EXISTS "recommendationrow_state" ON "recommendations" ("state")',
    'CREATE TABLE IF NOT EXISTS "run_outputs" ("id" {SERIAL} NOT NULL PRIMARY KEY, "run_id" VARCHAR(128) NOT NULL, '
    '"node_id" VARCHAR(128) NOT NULL, "kind" VARCHAR(16) NOT NULL, "filename" TEXT, "subfolder" TEXT, '
    '"type" VARCHAR(32), "frame_count" INTEGER NOT NULL, "format" VARCHAR(64), '
    'FOREIGN KEY ("run_id") REFERENCES "runs" ("run_id") ON DELETE CASCADE)',
    'CREATE INDEX IF NOT EXISTS "runoutputrow_run_id" ON "run_outputs" ("run_id")',
    'CREATE TABLE IF NOT EXISTS "workflow_names" ("workflow_id" VARCHAR(128) NOT NULL PRIMARY KEY, '
    '"name" TEXT NOT NULL, "updated_at_ms" {BIGINT} NOT NULL)',
)
_create_v1 = _ddl(*_V1)


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


ColumnSpec = tuple[str, str, Callable[[], object]]  # (table, column, a fresh peewee field of that column)


def _add_missing_columns(*columns: ColumnSpec) -> Callable[[Database], None]:
    """A step that adds each column through `playhouse.migrate`, unless the table has it already (a database
    created at version 1 before the DDL was frozen got the models of its day)."""
    def step(db: Database) -> None:
        from playhouse.migrate import SchemaMigrator
        from playhouse.migrate import migrate as run_migration

        migrator = SchemaMigrator.from_database(db)
        present: dict[str, set[str]] = {}
        steps = []
        for table, name, field in columns:
            if table not in present:
                present[table] = {column.name for column in db.get_columns(table)}
            if name not in present[table]:
                steps.append(migrator.add_column(table, name, field()))
        if steps:
            run_migration(*steps)
    return step


# `runs.gpu_peak_source` and `runs.dynamic_vram` (newest ComfyUI: DynamicVRAM peaks).
_V5_COLUMNS: tuple[ColumnSpec, ...] = (
    ("runs", "gpu_peak_source", lambda: CharField(max_length=32, null=True)),
    ("runs", "dynamic_vram", lambda: BooleanField(null=True)),
)
_add_v5_columns = _add_missing_columns(*_V5_COLUMNS)

# The webhook outbox (`telemetry.webhooks.outbox`).
_V6_OUTBOX = (
    'CREATE TABLE IF NOT EXISTS "webhook_deliveries" ("id" {SERIAL} NOT NULL PRIMARY KEY, '
    '"event_id" VARCHAR(64) NOT NULL, "event" VARCHAR(32) NOT NULL, "subject" VARCHAR(256), '
    '"target_key" VARCHAR(64) NOT NULL, "target_label" TEXT NOT NULL, "instance" VARCHAR(256), '
    '"body" TEXT NOT NULL, "state" VARCHAR(16) NOT NULL, "attempts" INTEGER NOT NULL, '
    '"created_at_ms" {BIGINT} NOT NULL, "next_attempt_at_ms" {BIGINT} NOT NULL, "expires_at_ms" {BIGINT} NOT NULL, '
    '"last_attempt_at_ms" {BIGINT}, "last_status" INTEGER, "last_error" TEXT, "delivered_at_ms" {BIGINT})',
    'CREATE UNIQUE INDEX IF NOT EXISTS "webhookdeliveryrow_event_id" ON "webhook_deliveries" ("event_id")',
    'CREATE INDEX IF NOT EXISTS "webhookdeliveryrow_instance_state_next_attempt_at_ms" ON "webhook_deliveries" '
    '("instance", "state", "next_attempt_at_ms")',
)
_create_v6_outbox = _ddl(*_V6_OUTBOX)

# `comfy_history`: ComfyUI's own history record of each run, minus secrets (telemetry.store.comfy_history).
_V7_COMFY_HISTORY = (
    'CREATE TABLE IF NOT EXISTS "comfy_history" ("run_id" VARCHAR(128) NOT NULL PRIMARY KEY, '
    '"recorded_at_ms" {BIGINT} NOT NULL, "record" TEXT NOT NULL)',
    'CREATE INDEX IF NOT EXISTS "comfyhistoryrow_recorded_at_ms" ON "comfy_history" ("recorded_at_ms")',
)
_create_v7_comfy_history = _ddl(*_V7_COMFY_HISTORY)

# Energy and every GPU (issue 12): the run's energy and its source, its GPUs (JSON), each node's energy, and the
# NVML index of each sample's GPU.
_V8_COLUMNS: tuple[ColumnSpec, ...] = (
    ("runs", "energy_j", lambda: FloatField(null=True)),
    ("runs", "energy_source", lambda: CharField(max_length=16, null=True)),
    ("runs", "gpus", lambda: TextField(null=True)),
    ("node_runs", "energy_j", lambda: FloatField(null=True)),
    ("gpu_samples", "gpu_index", lambda: IntegerField(null=True)),
)
_add_v8_columns = _add_missing_columns(*_V8_COLUMNS)

# The `instances` table: one heartbeat row per recording process (fleets).
_V9_INSTANCES = (
    'CREATE TABLE IF NOT EXISTS "instances" ("instance" VARCHAR(256) NOT NULL, "source" VARCHAR(16) NOT NULL, '
    '"pack_version" VARCHAR(64), "comfyui_version" VARCHAR(64), "frontend_version" VARCHAR(64), '
    '"gpu_name" VARCHAR(256), "queue_depth" INTEGER, "health" VARCHAR(16), "details" TEXT, '
    '"started_at_ms" {BIGINT}, "last_seen_ms" {BIGINT} NOT NULL, PRIMARY KEY ("instance", "source"))',
)
_create_v9_instances = _ddl(*_V9_INSTANCES)


def _statements(*statements: str) -> Callable[[Database], None]:
    def step(db: Database) -> None:
        for statement in statements:
            db.execute_sql(statement)
    return step


# Keyset pages of /runs (telemetry.store.run_pages) read these in either direction from a cursor on.
_V10_INDEXES = (
    "CREATE INDEX IF NOT EXISTS runs_started_run_id ON runs (started_at_ms, run_id)",
    "CREATE INDEX IF NOT EXISTS runs_duration_run_id ON runs (duration_ms, run_id)",
)


# Rollups of runs (telemetry.store.rollups), built once from the runs there are. Keyed time first, so a window's
# rows lie together (SQLite stores the table in that order: WITHOUT ROWID); a group's rows by the index.
_V11_ROLLUPS = (
    'CREATE TABLE IF NOT EXISTS "run_rollups" ("grain" INTEGER NOT NULL, "bucket_ms" {BIGINT} NOT NULL, '
    '"workflow_key" VARCHAR(128) NOT NULL, "instance" VARCHAR(256) NOT NULL, "status" VARCHAR(16) NOT NULL, '
    '"runs" INTEGER NOT NULL, "durations" INTEGER NOT NULL, "duration_sum" {DOUBLE} NOT NULL, '
    '"frames" {BIGINT} NOT NULL, "energies" INTEGER NOT NULL, "energy_sum" {DOUBLE} NOT NULL, '
    '"gpu_peak_max" {BIGINT}, "ram_peak_max" {BIGINT}, "hist" TEXT NOT NULL, '
    'PRIMARY KEY ("grain", "bucket_ms", "workflow_key", "instance", "status")){WITHOUT_ROWID}',
    'CREATE INDEX IF NOT EXISTS "rolluprow_workflow_key_instance_status_grain_bucket_ms" ON "run_rollups" '
    '("workflow_key", "instance", "status", "grain", "bucket_ms")',
)


def _create_v11_rollups(db: Database) -> None:
    from .rollups import backfill

    _ddl(*_V11_ROLLUPS)(db)
    backfill(db)


# The text search index (telemetry.store.run_search queries these names and this very expression).
V12_SEARCH_TABLE = "runs_search"
V12_SEARCH_COLUMNS = ("workflow_name", "run_id", "error_message", "error_node_type", "story_title", "scene", "tags")
V12_PG_INDEX = "runs_search_trgm"


def v12_pg_expression() -> str:
    """PostgreSQL's indexed text: the searched columns joined with U+001F, which no searched `q` holds."""
    return "(" + " || E'\\x1f' || ".join(f"COALESCE({name}, '')" for name in V12_SEARCH_COLUMNS) + ")"


def _create_v12_search_index(db: Database) -> None:
    """The text search index, built from the runs already there. Where the database cannot have it (no FTS5
    trigram tokenizer; pg_trgm not creatable) the step adds nothing: search scans."""
    if _dialect(db) == "sqlite":
        columns = ", ".join(V12_SEARCH_COLUMNS)
        new = ", ".join(f"new.{c}" for c in V12_SEARCH_COLUMNS)
        old = ", ".join(f"old.{c}" for c in V12_SEARCH_COLUMNS)
        delete_old = (f"INSERT INTO {V12_SEARCH_TABLE}({V12_SEARCH_TABLE}, rowid, {columns}) "
                      f"VALUES ('delete', old.rowid, {old});")
        insert_new = f"INSERT INTO {V12_SEARCH_TABLE}(rowid, {columns}) VALUES (new.rowid, {new});"
        try:
            with db.atomic():
                db.execute_sql(f"CREATE VIRTUAL TABLE IF NOT EXISTS {V12_SEARCH_TABLE} USING fts5({columns}, "
                               "content='runs', content_rowid='rowid', tokenize='trigram')")
        except OperationalError as exc:  # no FTS5, or no trigram tokenizer (SQLite < 3.34)
            log.warning("telemetry: no text search index (%s); search scans the runs", exc)
            return
        db.execute_sql(f"CREATE TRIGGER IF NOT EXISTS {V12_SEARCH_TABLE}_insert AFTER INSERT ON runs BEGIN "
                       f"{insert_new} END")
        db.execute_sql(f"CREATE TRIGGER IF NOT EXISTS {V12_SEARCH_TABLE}_delete AFTER DELETE ON runs BEGIN "
                       f"{delete_old} END")
        db.execute_sql(f"CREATE TRIGGER IF NOT EXISTS {V12_SEARCH_TABLE}_update AFTER UPDATE OF {columns} ON runs "
                       f"BEGIN {delete_old} {insert_new} END")
        db.execute_sql(f"INSERT INTO {V12_SEARCH_TABLE}({V12_SEARCH_TABLE}) VALUES ('rebuild')")
        return
    found = db.execute_sql("SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
                           "WHERE e.extname = 'pg_trgm'").fetchone()
    if found is None:
        try:
            with db.atomic():
                db.execute_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        except DatabaseError as exc:  # not installed on the server, or not permitted
            log.warning("telemetry: pg_trgm could not be created (%s); text search scans the runs", exc)
            return
        found = db.execute_sql("SELECT n.nspname FROM pg_extension e JOIN pg_namespace n "
                               "ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm'").fetchone()
    # The operator class by its schema: the extension may live outside this schema's search_path.
    opclass = '"' + found[0].replace('"', '""') + '".gin_trgm_ops'
    db.execute_sql(f"CREATE INDEX IF NOT EXISTS {V12_PG_INDEX} ON runs USING gin ({v12_pg_expression()} {opclass})")



def _widen_v13_times_and_energy(db: Database) -> None:
    """PostgreSQL: the runs' and nodes' durations, queue wait and energy as DOUBLE PRECISION (SQLite's REAL is
    8 bytes already). As REAL, the duration a cursor carries back (a float8 parsed from REAL's shortest text) did
    not equal the stored one, so paging by duration repeated a run, and sums lost digits."""
    if _dialect(db) == "postgresql":
        db.execute_sql("ALTER TABLE runs ALTER COLUMN duration_ms TYPE DOUBLE PRECISION, "
                       "ALTER COLUMN queue_wait_ms TYPE DOUBLE PRECISION, ALTER COLUMN energy_j TYPE DOUBLE PRECISION")
        db.execute_sql("ALTER TABLE node_runs ALTER COLUMN duration_ms TYPE DOUBLE PRECISION, "
                       "ALTER COLUMN energy_j TYPE DOUBLE PRECISION")


# Rollups of node types (telemetry.store.node_type_rollups), built once from the node rows there are. Keyed time
# first like run_rollups; a workflow's rows and a class type's totals by the index.
_V14_NODE_TYPE_ROLLUPS = (
    'CREATE TABLE IF NOT EXISTS "node_type_rollups" ("grain" INTEGER NOT NULL, "bucket_ms" {BIGINT} NOT NULL, '
    '"instance" VARCHAR(256) NOT NULL, "status" VARCHAR(16) NOT NULL, "workflow_key" VARCHAR(128) NOT NULL, '
    '"class_type" VARCHAR(256) NOT NULL, "executions" INTEGER NOT NULL, "durations" INTEGER NOT NULL, '
    '"duration_sum" {DOUBLE} NOT NULL, "gpu_peak_max" {BIGINT}, '
    'PRIMARY KEY ("grain", "bucket_ms", "instance", "status", "workflow_key", "class_type")){WITHOUT_ROWID}',
    'CREATE INDEX IF NOT EXISTS "node_type_rollups_workflow_class" ON "node_type_rollups" '
    '("workflow_key", "class_type", "instance", "status", "grain", "bucket_ms")',
)


def _create_v14_node_type_rollups(db: Database) -> None:
    from .node_type_rollups import backfill

    _ddl(*_V14_NODE_TYPE_ROLLUPS)(db)
    backfill(db)


# The label filter's table (telemetry.store.run_labels), filled from the runs there are; and the two indexes that
# let the rollups answer a workflow filter by name (telemetry.store.rollup_reads): a name's keys by a loose index
# scan, and whether a key's runs carry another name, each a few index probes.
_V15_LABELS_AND_NAMES = (
    'CREATE TABLE IF NOT EXISTS "run_labels" ("folded" TEXT NOT NULL, "run_id" VARCHAR(128) NOT NULL, '
    '"tagged" INTEGER NOT NULL, "title" TEXT, "scene" TEXT, "started_at_ms" {BIGINT}, '
    'PRIMARY KEY ("folded", "run_id"), '
    'FOREIGN KEY ("run_id") REFERENCES "runs" ("run_id") ON DELETE CASCADE){WITHOUT_ROWID}',
    'CREATE INDEX IF NOT EXISTS "runlabelrow_folded_started_at_ms_run_id" ON "run_labels" '
    '("folded", "started_at_ms", "run_id")',
    'CREATE INDEX IF NOT EXISTS "runlabelrow_run_id" ON "run_labels" ("run_id")',
    'CREATE INDEX IF NOT EXISTS "runs_workflow_name_key" ON "runs" ("workflow_name", "workflow_key")',
    'CREATE INDEX IF NOT EXISTS "runs_workflow_key_name" ON "runs" ("workflow_key", "workflow_name")',
)


def _create_v15_labels_and_names(db: Database) -> None:
    from .run_labels import backfill

    if db.table_exists("run_labels"):  # a step recorded as missing whose table is there: filled afresh
        db.execute_sql('DELETE FROM "run_labels"')
    _ddl(*_V15_LABELS_AND_NAMES)(db)
    backfill(db)
    # A file someone ANALYZEd has statistics for the other indexes: without their own, these look far more
    # selective than they are, and SQLite would read a workflow's runs by them and sort instead of in start order.
    if _dialect(db) == "sqlite" and db.execute_sql(
            "SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone():
        for name in ("runs_workflow_name_key", "runs_workflow_key_name", "run_labels"):
            db.execute_sql(f'ANALYZE "{name}"')



# Search terms of 1 and 2 characters (telemetry.store.run_search). SQLite: the trigram index is built again over each
# column followed by two end marks (U+0003), so every character and every pair of the text starts a trigram and a
# short term's runs are the union of the trigrams that begin with it (listed by the vocabulary table). PostgreSQL:
# a GIN index of every 1- and 2-character substring of the lower-cased searched text.
V16_END_MARKS = "char(3, 3)"
V16_SEARCH_TEXT = "runs_search_text"  # the FTS table's external content: the runs' columns with their end marks
V16_SEARCH_TERMS = "runs_search_terms"  # fts5vocab 'row' of the FTS table: its trigrams, in order
V16_PG_SHORT_INDEX = "runs_search_short"
V16_PG_GRAMS = "run_telemetry_short_grams"


def v16_pg_grams_expression() -> str:
    """The indexed array: every 1- and 2-character substring of the lower-cased searched text (v12's expression)."""
    return f"{V16_PG_GRAMS}(lower({v12_pg_expression()}))"


def _create_v16_short_term_search(db: Database) -> None:
    if _dialect(db) == "sqlite":
        _create_v16_sqlite(db)
        return
    if not db.execute_sql("SELECT 1 FROM pg_indexes WHERE schemaname = current_schema() AND indexname = %s",
                          (V12_PG_INDEX,)).fetchone():
        return  # no pg_trgm either (migration 12 said why): search scans
    db.execute_sql(
        f"CREATE OR REPLACE FUNCTION {V16_PG_GRAMS}(t text) RETURNS text[] LANGUAGE sql IMMUTABLE STRICT "
        "PARALLEL SAFE AS $$ SELECT ARRAY(SELECT DISTINCT substr(t, i, n) FROM generate_series(1, length(t)) AS i, "
        "(VALUES (1), (2)) AS k(n)) $$")
    # ~80 keys a run: a GIN build that spills in PostgreSQL's default 64 MB takes several times longer at 1M runs.
    db.execute_sql("SET LOCAL maintenance_work_mem = '256MB'")
    db.execute_sql(f"CREATE INDEX IF NOT EXISTS {V16_PG_SHORT_INDEX} ON runs USING gin ({v16_pg_grams_expression()})")
    db.execute_sql("ANALYZE runs")  # the statistics of the indexed array, by which run_search picks its way


def _create_v16_sqlite(db: Database) -> None:
    columns = ", ".join(V12_SEARCH_COLUMNS)

    def marked(row: str) -> str:
        return ", ".join(f"{row}{c} || {V16_END_MARKS}" for c in V12_SEARCH_COLUMNS)

    if not db.execute_sql("SELECT 1 FROM sqlite_master WHERE name = ?", (V12_SEARCH_TABLE,)).fetchone():
        return  # this SQLite has no FTS5 trigram tokenizer (migration 12 made nothing): search scans
    for trigger in ("insert", "delete", "update"):
        db.execute_sql(f"DROP TRIGGER IF EXISTS {V12_SEARCH_TABLE}_{trigger}")
    db.execute_sql(f"DROP TABLE IF EXISTS {V16_SEARCH_TERMS}")
    db.execute_sql(f"DROP TABLE {V12_SEARCH_TABLE}")
    db.execute_sql(f"DROP VIEW IF EXISTS {V16_SEARCH_TEXT}")
    db.execute_sql(f"CREATE VIEW {V16_SEARCH_TEXT} AS SELECT rowid AS run_rowid, "
                   + ", ".join(f"{c} || {V16_END_MARKS} AS {c}" for c in V12_SEARCH_COLUMNS) + " FROM runs")
    db.execute_sql(f"CREATE VIRTUAL TABLE {V12_SEARCH_TABLE} USING fts5({columns}, content='{V16_SEARCH_TEXT}', "
                   "content_rowid='run_rowid', tokenize='trigram')")
    db.execute_sql(f"CREATE VIRTUAL TABLE {V16_SEARCH_TERMS} USING fts5vocab({V12_SEARCH_TABLE}, 'row')")
    delete_old = (f"INSERT INTO {V12_SEARCH_TABLE}({V12_SEARCH_TABLE}, rowid, {columns}) "
                  f"VALUES ('delete', old.rowid, {marked('old.')});")
    insert_new = f"INSERT INTO {V12_SEARCH_TABLE}(rowid, {columns}) VALUES (new.rowid, {marked('new.')});"
    db.execute_sql(f"CREATE TRIGGER {V12_SEARCH_TABLE}_insert AFTER INSERT ON runs BEGIN {insert_new} END")
    db.execute_sql(f"CREATE TRIGGER {V12_SEARCH_TABLE}_delete AFTER DELETE ON runs BEGIN {delete_old} END")
    db.execute_sql(f"CREATE TRIGGER {V12_SEARCH_TABLE}_update AFTER UPDATE OF {columns} ON runs "
                   f"BEGIN {delete_old} {insert_new} END")
    db.execute_sql(f"INSERT INTO {V12_SEARCH_TABLE}({V12_SEARCH_TABLE}) VALUES ('rebuild')")

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
    (10, _statements(*_V10_INDEXES)),
    (11, _create_v11_rollups),
    (12, _create_v12_search_index),
    (13, _widen_v13_times_and_energy),
    (14, _create_v14_node_type_rollups),
    (15, _create_v15_labels_and_names),
    (16, _create_v16_short_term_search),
]

LATEST_VERSION = MIGRATIONS[-1][0]


def current_version(db: Database) -> int:
    if not db.table_exists(SchemaVersionRow._meta.table_name):
        return 0
    row = SchemaVersionRow.select(SchemaVersionRow.version).order_by(SchemaVersionRow.version.desc()).first()
    return row.version if row else 0


def migrate(db: Database) -> int:
    """Bring the schema to the latest version; returns the version now in place."""
    dialect = _dialect(db)
    is_pg = dialect == "postgresql"
    if is_pg:
        db.execute_sql("SELECT pg_advisory_lock(%s)", (_PG_LOCK_KEY,))
    try:
        # SQLite: several processes may share one file (and start together): the whole migration holds the
        # file's write lock (BEGIN IMMEDIATE; the others wait on busy_timeout), so the version is read and
        # written by one of them at a time.
        with db.atomic(lock_type="IMMEDIATE") if not is_pg else contextlib.nullcontext():
            db.execute_sql(_SCHEMA_VERSION_TABLE.format(**_TYPES[dialect]))
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
