"""The tables, as peewee models. One row of `runs` is one `telemetry.model.Run`; `store.mapping` converts.

The schema is created and changed only by `store.migrations`, from its own frozen DDL and steps, never from these
models; never call `create_tables` elsewhere. A change here needs a migration that makes the same change
(tests/test_migrations.py compares a migrated database with these models).

How models find their database: they are bound to `database_router`, which resolves, per thread, to the database
of the `Store` bound on that thread (`Store.bound()`; the store's recorder thread and its REST thread pool are
bound for their whole life). Several stores in one process therefore never write into each other's database.
A thread that no store has bound falls back to the database of the most recently created store (scripts and
tests with a single store).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from peewee import (
    AutoField,
    BigIntegerField,
    BooleanField,
    CharField,
    CompositeKey,
    Database,
    DatabaseProxy,
    DoubleField,
    FloatField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)


class DatabaseRouter(DatabaseProxy):
    """A peewee proxy whose target is chosen per thread (see the module docstring)."""

    __slots__ = ("_default",)
    _local = threading.local()

    def __setattr__(self, attr: str, value: object) -> None:
        object.__setattr__(self, attr, value)

    @property
    def obj(self) -> Database | None:  # type: ignore[override]
        return getattr(self._local, "db", None) or self._default

    @obj.setter
    def obj(self, value: Database | None) -> None:
        object.__setattr__(self, "_default", value)

    def bound_database(self) -> Database | None:
        """The database bound on this thread (None: the fallback is used)."""
        return getattr(self._local, "db", None)

    @contextmanager
    def bind(self, db: Database) -> Iterator[None]:
        """Route this thread's model queries to `db` until the block ends (nests)."""
        previous = getattr(self._local, "db", None)
        self._local.db = db
        try:
            yield
        finally:
            self._local.db = previous

    def bind_thread(self, db: Database) -> None:
        """Route this thread's model queries to `db` for the rest of the thread's life."""
        self._local.db = db


database_router = DatabaseRouter()
database_proxy = database_router  # the old name


class BaseModel(Model):
    class Meta:
        database = database_router


class RunRow(BaseModel):
    run_id = CharField(primary_key=True, max_length=128)
    status = CharField(max_length=16, index=True)
    queued_at_ms = BigIntegerField(null=True)
    started_at_ms = BigIntegerField(null=True, index=True)
    finished_at_ms = BigIntegerField(null=True)
    # Times and energy are DOUBLE PRECISION on PostgreSQL (migration 13; SQLite's REAL is 8 bytes anyway): a cursor
    # carries a duration back as a Python float, which a 4-byte REAL would not equal, and sums keep their digits.
    duration_ms = DoubleField(null=True, index=True)
    queue_wait_ms = DoubleField(null=True)
    workflow_id = CharField(max_length=128, null=True, index=True)
    workflow_name = TextField(null=True)
    workflow_name_source = CharField(max_length=16, default="derived")
    # The key that groups runs of "the same workflow" for analysis: the UI workflow id, else the fingerprint.
    workflow_key = CharField(max_length=128, null=True)
    fingerprint = CharField(max_length=64, null=True, index=True)
    node_count = IntegerField(default=0)
    executed_node_count = IntegerField(default=0)
    cached_node_count = IntegerField(default=0)
    image_count = IntegerField(default=0)
    video_count = IntegerField(default=0)
    audio_count = IntegerField(default=0)
    other_output_count = IntegerField(default=0)
    frame_count = IntegerField(default=0)
    error_node_id = CharField(max_length=128, null=True)
    error_node_type = CharField(max_length=256, null=True)
    error_exception_type = CharField(max_length=256, null=True)
    error_message = TextField(null=True)
    error_kind = CharField(max_length=16, null=True)
    error_traceback = TextField(null=True)
    interrupted_reason = TextField(null=True)
    gpu_name = CharField(max_length=256, null=True)
    gpu_total_bytes = BigIntegerField(null=True)
    gpu_peak_bytes = BigIntegerField(null=True)
    gpu_reserved_peak_bytes = BigIntegerField(null=True)
    gpu_used_peak_bytes = BigIntegerField(null=True)
    ram_peak_bytes = BigIntegerField(null=True)
    # Added by migration 5: where gpu_peak_bytes came from, and whether DynamicVRAM (comfy-aimdo) was on.
    gpu_peak_source = CharField(max_length=32, null=True)
    dynamic_vram = BooleanField(null=True)
    # Added by migration 8: the run's energy (joules) and its source, and every GPU sampled (JSON list of
    # model.RunGpu).
    energy_j = DoubleField(null=True)
    energy_source = CharField(max_length=16, null=True)
    gpus = TextField(null=True)
    story_title = TextField(null=True)
    scene = TextField(null=True)
    tags = TextField(null=True)  # JSON list
    instance = CharField(max_length=256, null=True)
    source = CharField(max_length=16, default="plugin")
    parameters = TextField(null=True)  # JSON object
    # Denormalised from parameters for fast analysis queries.
    pixels = BigIntegerField(null=True)
    steps = IntegerField(null=True)
    updated_at_ms = BigIntegerField(null=True)

    class Meta:
        table_name = "runs"
        indexes = (
            (("workflow_key", "started_at_ms"), False),
            (("status", "started_at_ms"), False),
            (("instance", "started_at_ms"), False),
            (("workflow_name", "workflow_key"), False),
            (("workflow_key", "workflow_name"), False),
        )


class NodeRunRow(BaseModel):
    id = AutoField()
    run = ForeignKeyField(RunRow, backref="node_rows", on_delete="CASCADE", column_name="run_id")
    position = IntegerField(default=0)
    node_id = CharField(max_length=128)
    class_type = CharField(max_length=256, index=True)
    status = CharField(max_length=16)
    started_at_ms = BigIntegerField(null=True)
    duration_ms = DoubleField(null=True)
    gpu_peak_bytes = BigIntegerField(null=True)
    display_node_id = CharField(max_length=128, null=True)
    parent_node_id = CharField(max_length=128, null=True)
    energy_j = DoubleField(null=True)  # migration 8

    class Meta:
        table_name = "node_runs"


class RunOutputRow(BaseModel):
    id = AutoField()
    run = ForeignKeyField(RunRow, backref="output_rows", on_delete="CASCADE", column_name="run_id")
    node_id = CharField(max_length=128)
    kind = CharField(max_length=16)
    filename = TextField(null=True)
    subfolder = TextField(null=True)
    type = CharField(max_length=32, null=True)
    frame_count = IntegerField(default=1)
    format = CharField(max_length=64, null=True)

    class Meta:
        table_name = "run_outputs"


class GpuSampleRow(BaseModel):
    id = AutoField()
    run = ForeignKeyField(RunRow, backref="sample_rows", on_delete="CASCADE", column_name="run_id")
    t_ms = BigIntegerField()
    used_bytes = BigIntegerField(null=True)
    util_percent = FloatField(null=True)
    temperature_c = FloatField(null=True)
    power_w = FloatField(null=True)
    ram_rss_bytes = BigIntegerField(null=True)
    gpu_index = IntegerField(null=True)  # migration 8: NVML index of the GPU read (one series per device)

    class Meta:
        table_name = "gpu_samples"


class RecommendationRow(BaseModel):
    id = AutoField()
    kind = CharField(max_length=64, index=True)
    # Identifies "the same condition" so that re-evaluation updates instead of duplicating.
    condition_key = CharField(max_length=512, index=True)
    severity = CharField(max_length=16)
    workflow_key = CharField(max_length=128, null=True, index=True)
    workflow_name = TextField(null=True)
    evidence_run_ids = TextField(default="[]")  # JSON list
    message = TextField()
    action = TextField(null=True)
    details = TextField(null=True)  # JSON object
    state = CharField(max_length=16, index=True, default="open")
    created_at_ms = BigIntegerField()
    updated_at_ms = BigIntegerField()

    class Meta:
        table_name = "recommendations"


class FilterPresetRow(BaseModel):
    id = AutoField()
    name = CharField(max_length=200, unique=True)
    filters = TextField()  # JSON object
    created_at_ms = BigIntegerField()

    class Meta:
        table_name = "filter_presets"


class WorkflowNameRow(BaseModel):
    workflow_id = CharField(primary_key=True, max_length=128)
    name = TextField()
    updated_at_ms = BigIntegerField()

    class Meta:
        table_name = "workflow_names"


class WebhookDeliveryRow(BaseModel):
    """The webhook outbox (migration 6): one row per event and target, kept until delivered or given up
    (`telemetry.webhooks.outbox`). The target's URL is not stored (it may hold a token): `target_key` is its hash,
    `target_label` its redacted form; the signature is computed at send time, so the secret is not stored."""

    id = AutoField()
    event_id = CharField(max_length=64, unique=True)  # the idempotency key (X-Run-Telemetry-Event)
    event = CharField(max_length=32)
    subject = CharField(max_length=256, null=True)  # the run id or recommendation id
    target_key = CharField(max_length=64)
    target_label = TextField()
    instance = CharField(max_length=256, null=True)
    body = TextField()  # the exact bytes sent (UTF-8), the same on every retry
    state = CharField(max_length=16, default="pending")  # pending | delivered | failed
    attempts = IntegerField(default=0)
    created_at_ms = BigIntegerField()
    next_attempt_at_ms = BigIntegerField()
    expires_at_ms = BigIntegerField()
    last_attempt_at_ms = BigIntegerField(null=True)
    last_status = IntegerField(null=True)
    last_error = TextField(null=True)
    delivered_at_ms = BigIntegerField(null=True)

    class Meta:
        table_name = "webhook_deliveries"
        indexes = ((("instance", "state", "next_attempt_at_ms"), False),)


class InstanceRow(BaseModel):
    """One row per recording process (plugin or watcher) and instance name: its heartbeat (migration 9).
    Written by the recorder thread every 30 s; an instance not seen for 2 minutes is offline."""

    instance = CharField(max_length=256)
    source = CharField(max_length=16)
    pack_version = CharField(max_length=64, null=True)
    comfyui_version = CharField(max_length=64, null=True)
    frontend_version = CharField(max_length=64, null=True)
    gpu_name = CharField(max_length=256, null=True)
    queue_depth = IntegerField(null=True)
    health = CharField(max_length=16, null=True)
    details = TextField(null=True)  # JSON object: the rest of the heartbeat (hooks, buffered, dropped, url)
    started_at_ms = BigIntegerField(null=True)
    last_seen_ms = BigIntegerField()

    class Meta:
        table_name = "instances"
        primary_key = CompositeKey("instance", "source")


class RollupRow(BaseModel):
    """Rollups of runs per group (workflow_key, instance, status) and hour, day or all time (migration 11),
    kept by the store with every write of runs (`store.rollups`). A missing workflow_key or instance is ''."""

    grain = IntegerField()  # bucket size in ms: 3600000 (hour), 86400000 (day), 0 (all time); < 0: totals
    bucket_ms = BigIntegerField()  # bucket start; -1: runs without a start (hour grain)
    workflow_key = CharField(max_length=128)
    instance = CharField(max_length=256)
    status = CharField(max_length=16)
    runs = IntegerField()
    durations = IntegerField()  # runs with a duration
    duration_sum = DoubleField()
    frames = BigIntegerField()
    energies = IntegerField()  # runs with an energy
    energy_sum = DoubleField()
    gpu_peak_max = BigIntegerField(null=True)
    ram_peak_max = BigIntegerField(null=True)
    hist = TextField()  # JSON {bin: count} of durations (store.rollups.duration_bin)

    class Meta:
        table_name = "run_rollups"
        primary_key = CompositeKey("grain", "bucket_ms", "workflow_key", "instance", "status")
        without_rowid = True
        indexes = ((("workflow_key", "instance", "status", "grain", "bucket_ms"), False),)


class RunLabelRow(BaseModel):
    """The labels of each run (story title, scene, tags) case-folded by the database, one row per run and folded
    label (migration 15), kept by the store with every write of runs (`store.run_labels`)."""

    folded = TextField()  # lower() of the label, by the database: the case LIKE / ILIKE fold
    run = ForeignKeyField(RunRow, on_delete="CASCADE", column_name="run_id")
    tagged = IntegerField()  # 1: a tag of the run folds to it
    title = TextField(null=True)  # the run's story title, when it folds to it
    scene = TextField(null=True)  # the run's scene, when it folds to it
    started_at_ms = BigIntegerField(null=True)  # the run's, for pages of one label in start order

    class Meta:
        table_name = "run_labels"
        primary_key = CompositeKey("folded", "run")
        without_rowid = True
        indexes = ((("folded", "started_at_ms", "run_id"), False),)


class NodeTypeRollupRow(BaseModel):
    """Rollups of executed node rows per class type and group of their runs (migration 14), kept by the store
    with every write of runs (`store.node_type_rollups`). grain 0: per (workflow_key, instance, status) of the
    run, all time; -1: every workflow (workflow_key ''), all time; 86400000 / 3600000: every workflow per day /
    hour of the run's start (bucket -1 at the hour grain: runs without a start). A missing key or instance is ''."""

    grain = IntegerField()
    bucket_ms = BigIntegerField()
    instance = CharField(max_length=256)
    status = CharField(max_length=16)  # the run's status
    workflow_key = CharField(max_length=128)
    class_type = CharField(max_length=256)
    executions = IntegerField()
    durations = IntegerField()  # executions with a duration
    duration_sum = DoubleField()
    gpu_peak_max = BigIntegerField(null=True)

    class Meta:
        table_name = "node_type_rollups"
        primary_key = CompositeKey("grain", "bucket_ms", "instance", "status", "workflow_key", "class_type")
        without_rowid = True
        indexes = ((("workflow_key", "class_type", "instance", "status", "grain", "bucket_ms"), False),)


class SchemaVersionRow(BaseModel):
    version = IntegerField(primary_key=True)
    applied_at_ms = BigIntegerField()

    class Meta:
        table_name = "schema_version"


# The tables of the data (every model but the outbox, ComfyUI's history records and the version table).
ALL_TABLES = (
    RunRow,
    NodeRunRow,
    RunOutputRow,
    GpuSampleRow,
    RecommendationRow,
    FilterPresetRow,
    WorkflowNameRow,
    InstanceRow,
    RollupRow,
    NodeTypeRollupRow,
)
