"""Schema migrations: a fresh database (version 1's frozen DDL, then every step) has every column of the current
models, and each database that an earlier release made (tests/fixtures/schema, made by make_fixtures.py with the
pack's own code of that release) upgrades to the same schema with every run, node row, output, preset and
recommendation still there, readable through the store. SQLite files, and on PostgreSQL the dumps of the same
releases loaded into a scratch schema."""

from __future__ import annotations

import json
import shutil
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

from telemetry.filters import Page, RunFilters
from telemetry.store import run_search
from telemetry.store.comfy_history import latest_records
from telemetry.store.database import sqlite_url
from telemetry.store.migrations import LATEST_VERSION, MIGRATIONS
from telemetry.store.schema import SchemaVersionRow
from telemetry.store.store import Store

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "schema"
LABELS = ("v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v9-all", "v10")


def _all_models() -> list[type]:
    """Every table model of the pack: each module that defines one is imported, then schema.BaseModel's
    subclasses are collected (a model added later is checked without editing this test)."""
    import importlib
    import re

    from telemetry.store.schema import BaseModel

    package = Path(__file__).resolve().parents[1] / "telemetry"
    for path in package.rglob("*.py"):
        if re.search(r"^class \w+\(BaseModel\):", path.read_text(), re.M):
            importlib.import_module(".".join(path.relative_to(package.parent).with_suffix("").parts))
    found, todo = [], list(BaseModel.__subclasses__())
    while todo:
        model = todo.pop()
        found.append(model)
        todo += model.__subclasses__()
    return sorted(found, key=lambda m: m._meta.table_name)


MODELS = _all_models()
RUN_IDS = {"fx-success", "fx-failed", "fx-interrupted"}
# The versions each fixture's release had applied (make_fixtures.py): 6..9 came from parallel branches.
FIXTURE_VERSIONS = {"v1": {1}, "v2": {1, 2}, "v3": {1, 2, 3}, "v4": {1, 2, 3, 4}, "v5": {1, 2, 3, 4, 5},
                    "v6": {1, 2, 3, 4, 5, 6}, "v7": {1, 2, 3, 4, 5, 7}, "v8": {1, 2, 3, 4, 5, 6, 8},
                    "v9": {1, 2, 3, 4, 5, 6, 8, 9}, "v9-all": set(range(1, 10)), "v10": set(range(1, 11))}
_PG_TYPES = {"VARCHAR": "character varying", "BIGINT": "bigint", "INTEGER": "integer", "SERIAL": "integer",
             "REAL": "real", "DOUBLE PRECISION": "double precision", "TEXT": "text", "BOOLEAN": "boolean"}


# -- schema introspection ------------------------------------------------------------------------------------

def schema_of(db) -> dict[str, Any]:
    """Tables -> their columns (type, null, primary key), indexes (columns, unique) and foreign keys."""
    out = {}
    for table in db.get_tables():
        out[table] = {
            "columns": {c.name: (c.full_type, c.null, c.primary_key) for c in db.get_columns(table)},
            "indexes": {i.name: (tuple(i.columns), i.unique) for i in db.get_indexes(table)},
            "foreign_keys": sorted((f.column, f.dest_table, f.dest_column) for f in db.get_foreign_keys(table)),
        }
    return out


def expected_type(db, field) -> str:
    ctx = db.get_sql_context()
    sql = ctx.sql(field.ddl_datatype(ctx)).query()[0]
    if db.__class__.__name__.lower().find("postgres") < 0:
        return sql
    base, _, rest = sql.partition("(")
    return _PG_TYPES[base] + (f"({rest}" if rest else "")


def check_matches_models(db, schema: dict[str, Any]) -> None:
    """Every model column exists with the model's type and nullability, and every model index exists."""
    for model in MODELS:
        table = model._meta.table_name
        assert table in schema, f"table {table} missing"
        columns = schema[table]["columns"]
        for field in model._meta.sorted_fields:
            assert field.column_name in columns, f"{table}.{field.column_name} missing"
            full_type, null, _ = columns[field.column_name]
            assert full_type == expected_type(db, field), (table, field.column_name, full_type)
            assert null == (field.null and not field.primary_key), (table, field.column_name, null)
        indexed = {cols for cols, _ in schema[table]["indexes"].values()}
        for index in model._meta.fields_to_index():
            wanted = tuple(getattr(part, "column_name", None) or str(part) for part in index._expressions)
            assert wanted in indexed, f"index {table}{wanted} missing"


# -- databases -----------------------------------------------------------------------------------------------

def sqlite_fixture(label: str, tmp_path: Path) -> str:
    path = tmp_path / f"{label}.db"
    shutil.copyfile(FIXTURES / f"{label}.db", path)
    return sqlite_url(str(path))


def raw_rows_sqlite(url: str) -> dict[str, list[dict[str, Any]]]:
    conn = sqlite3.connect(url.split("://", 1)[1][1:])
    conn.row_factory = sqlite3.Row
    tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    rows = {t: [dict(r) for r in conn.execute(f'SELECT * FROM "{t}"')] for t in tables if t != "schema_version"}
    conn.close()
    return rows


def load_pg_dump(label: str, pg_url: str) -> tuple[str, str]:
    """The dump of `label` loaded into a fresh schema: (its name, a URL whose search_path is it)."""
    import psycopg2

    schema = "rt_fx_" + uuid.uuid4().hex[:10]
    sql = (FIXTURES / f"{label}.pg.sql").read_text().replace("rt_fixture", schema)
    conn = psycopg2.connect(pg_url)
    conn.autocommit = True
    conn.cursor().execute(sql)
    conn.close()
    sep = "&" if "?" in pg_url else "?"
    return schema, f"{pg_url}{sep}options=-csearch_path%3D{schema}"


def raw_rows_pg(pg_url: str, schema: str) -> dict[str, list[dict[str, Any]]]:
    import psycopg2
    import psycopg2.extras

    conn = psycopg2.connect(pg_url)
    cur = conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor)
    cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))
    tables = [r["tablename"] for r in cur.fetchall()]
    rows = {}
    for table in tables:
        if table != "schema_version":
            cur.execute(f'SELECT * FROM "{schema}"."{table}"')
            rows[table] = [dict(r) for r in cur.fetchall()]
    conn.close()
    return rows


def _pg_rows(pg_url: str, schema: str, table: str) -> list[dict[str, Any]]:
    import psycopg2
    import psycopg2.extras

    conn = psycopg2.connect(pg_url)
    cur = conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor)
    cur.execute(f'SELECT * FROM "{schema}"."{table}"')
    rows = [dict(r) for r in cur.fetchall()]
    conn.close()
    return rows


def drop_pg_schema(pg_url: str, schema: str) -> None:
    import psycopg2

    conn = psycopg2.connect(pg_url)
    conn.autocommit = True
    conn.cursor().execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    conn.close()


def _key(table: str, row: dict[str, Any]) -> Any:
    return (row["instance"], row["source"]) if table == "instances" else row.get("id", row.get("run_id",
                                                                                              row.get("workflow_id")))


def check_rows_kept(before: dict[str, list[dict]], after: dict[str, list[dict]]) -> None:
    """Every row is still there with every value it had; columns the upgrade added are NULL."""
    for table, rows in before.items():
        kept = {_key(table, r): r for r in after[table]}
        assert len(after[table]) == len(rows), table
        for row in rows:
            now = kept[_key(table, row)]
            assert {c: now[c] for c in row} == row, (table, row)
            assert all(now[c] is None for c in set(now) - set(row)), (table, now)


def check_public_reads(store: Store, before: dict[str, list[dict]]) -> None:
    """The store reads the upgraded rows through its public API, and writes a new run with every new column."""
    assert {r["run_id"] for r in before["runs"]} == RUN_IDS
    runs, total, _, _ = store.query_runs(RunFilters(), _page())
    assert total == 3 and {r.run_id for r in runs} == RUN_IDS
    success = store.get_run("fx-success")
    assert (success.status, success.duration_ms, success.workflow_id) == ("success", 5200.5, "wf-portrait")
    assert success.workflow_name == "Portrait (renamed)"
    assert (success.labels.story_title, success.labels.scene, success.labels.tags) == ("Saga", "Scene 3",
                                                                                      ["hero", "night"])
    assert success.parameters["steps"] == 30 and success.parameters["sampler"] == "euler"
    assert [(n.node_id, n.class_type, n.status) for n in success.nodes] == [
        ("4", "CheckpointLoaderSimple", "cached"), ("3", "KSampler", "executed"), ("8", "VAEDecode", "executed"),
        ("9", "SaveImage", "executed")]
    assert success.nodes[1].duration_ms == 4800.25 and success.nodes[2].parent_node_id == "20"
    assert [(o.kind, o.filename, o.frame_count) for o in success.outputs] == [
        ("images", "ComfyUI_00001_.png", 1), ("images", "ComfyUI_00002_.png", 1), ("videos", "clip.mp4", 16)]
    assert len(success.gpu_samples) == 3 and success.gpu_samples[2].power_w == 302.0
    failed = store.get_run("fx-failed")
    assert (failed.error.kind, failed.error.node_type, failed.error.exception_type) == (
        "oom", "KSampler", "torch.OutOfMemoryError")
    assert [n.status for n in failed.nodes] == ["executed", "failed"]
    assert store.get_run("fx-interrupted").interrupted_reason == "ComfyUI stopped"
    for label in ("Saga", "Scene 3", "NIGHT", "hero"):  # from the label rows migration 15 filled
        assert [r.run_id for r in store.query_runs(RunFilters(label=label), _page()).runs] == ["fx-success"], label
    assert store.query_runs(RunFilters(label="scene 3"), _page()).total == 0  # titles and scenes: exact case
    stats = store.stats(RunFilters())  # from the rollups migration 11 built
    assert (stats["total_runs"], stats["by_status"]["failed"], stats["total_frames"]) == (3, 1, 18)
    check_rollups_backfilled(store)
    check_node_type_rollups_backfilled(store)
    presets = {p.name: p.filters for p in store.list_presets()}
    assert presets == {"failed portraits": {"status": "failed", "workflow": "wf-portrait"},
                       "long runs": {"min_duration_ms": 5000}}
    from telemetry.analysis.recommendations import listing

    with store.bound():
        recommendations = listing(None, None, None)
    assert [(r["kind"], r["workflow"], r["evidence_run_ids"], r["state"]) for r in recommendations] == [
        ("oom_risk", "wf-portrait", ["fx-failed"], "open")]
    if before.get("instances"):
        assert [(h["instance"], h["comfyui_version"]) for h in store.heartbeats()] == [("fixture:8188", "0.3.75")]
    if before.get("comfy_history"):
        assert [run_id for run_id, _ in latest_records(store, 10)] == ["fx-success"]

    new = store.get_run("fx-success")
    new.run_id, new.energy_j, new.energy_source, new.dynamic_vram = "fx-after", 99.5, "power_samples", True
    new.nodes[1].energy_j = 42.0
    store.save_runs([new])
    again = store.get_run("fx-after")
    assert (again.energy_j, again.energy_source, again.dynamic_vram, again.nodes[1].energy_j) == (
        99.5, "power_samples", True, 42.0)
    assert len(again.nodes) == 4 and len(again.outputs) == 3
    assert store.stats(RunFilters())["total_runs"] == 4
    assert store.query_runs(RunFilters(label="Hero"), _page()).total == 2
    check_rollups_backfilled(store)
    check_node_type_rollups_backfilled(store)


def check_rollups_backfilled(store: Store) -> None:
    """Migration 11 built the rollups of the runs there were: each grain adds up to them."""
    from peewee import fn

    from telemetry.store import rollup_reads
    from telemetry.store.rollups import DAY_MS, GRAIN_ALL, HOUR_MS
    from telemetry.store.schema import RollupRow, RunRow

    with store.bound():
        assert rollup_reads.plan(RunFilters()) is not None
        runs = RunRow.select().count()
        for grain in (HOUR_MS, DAY_MS, GRAIN_ALL):
            in_grain = RollupRow.select(fn.SUM(RollupRow.runs)).where(RollupRow.grain == grain).scalar()
            without_start = RunRow.select().where(RunRow.started_at_ms.is_null()).count() if grain == DAY_MS else 0
            assert in_grain + without_start == runs, grain
        frames = RollupRow.select(fn.SUM(RollupRow.frames)).where(RollupRow.grain == GRAIN_ALL).scalar()
        assert frames == RunRow.select(fn.SUM(RunRow.frame_count)).scalar()


def check_node_type_rollups_backfilled(store: Store) -> None:
    """Migration 14 built the node-type rollups of the node rows there were: /stats/node_types from them equals
    the scan of node rows."""
    from telemetry.store import node_type_reads

    filters = RunFilters()
    with store.bound():
        assert node_type_reads.plan(filters) is not None
        raw = node_type_reads.ranked(node_type_reads.scanned(store, filters), 50)
    assert raw and store.node_type_stats(filters) == raw


def _page() -> Page:
    return Page(sort="-started_at_ms", limit=50, offset=0)


def versions_of(store: Store) -> list[int]:
    with store.bound():
        return sorted(v for (v,) in SchemaVersionRow.select(SchemaVersionRow.version).tuples())


# -- tests ---------------------------------------------------------------------------------------------------

def test_every_fixture_of_an_earlier_version_is_committed():
    assert all((FIXTURES / f"{label}.db").is_file() and (FIXTURES / f"{label}.pg.sql").is_file()
               for label in LABELS)
    assert [v for v, _ in MIGRATIONS] == list(range(1, LATEST_VERSION + 1))


@pytest.mark.parametrize("dialect", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_fresh_database_has_every_column_and_index_of_the_models(dialect, tmp_path, request):
    url = sqlite_url(str(tmp_path / "fresh.db")) if dialect == "sqlite" else request.getfixturevalue("pg_schema_url")
    store = Store(url)
    store.open()
    try:
        assert versions_of(store) == [v for v, _ in MIGRATIONS]
        with store.bound():
            schema = schema_of(store.db)
            check_matches_models(store.db, schema)
        # SQLite's search index is a virtual table (FTS5, no model) with its shadow tables and its vocabulary;
        # PostgreSQL's two indexes.
        search = {t for t in schema if t.startswith(run_search.SQLITE_TABLE)}
        assert search == ({run_search.SQLITE_TABLE} | {f"{run_search.SQLITE_TABLE}_{s}" for s in
                                                       ("data", "idx", "docsize", "config", "terms")}
                          if dialect == "sqlite"
                          else set())
        assert set(schema) - search == {m._meta.table_name for m in MODELS} >= {
            "runs", "node_runs", "run_outputs", "gpu_samples", "recommendations", "filter_presets", "workflow_names",
            "webhook_deliveries", "comfy_history", "instances", "schema_version"}
    finally:
        store.close()


@pytest.mark.parametrize("dialect", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_version_1_is_exactly_the_schema_the_first_release_made(dialect, tmp_path, request):
    """The frozen DDL of version 1 alone against the database the first release's own code made (v1 fixture)."""
    from telemetry.store.database import open_database

    if dialect == "sqlite":
        release_url = sqlite_fixture("v1", tmp_path)
        frozen_url = sqlite_url(str(tmp_path / "frozen.db"))
    else:
        pg_url = request.getfixturevalue("pg_url")
        schema, release_url = load_pg_dump("v1", pg_url)
        request.addfinalizer(lambda: drop_pg_schema(pg_url, schema))
        frozen_url = request.getfixturevalue("pg_schema_url")
    schemas = []
    for url, make in ((release_url, None), (frozen_url, MIGRATIONS[0][1])):
        db = open_database(url)
        db.connect()
        if make:
            from telemetry.store.migrations import _SCHEMA_VERSION_TABLE, _TYPES

            db.execute_sql(_SCHEMA_VERSION_TABLE.format(**_TYPES[dialect]))
            make(db)
        schemas.append(schema_of(db))
        db.close()
    assert schemas[0] == schemas[1]
    assert "instances" not in schemas[1] and "energy_j" not in schemas[1]["runs"]["columns"]


def _fresh_schema(url: str) -> dict[str, Any]:
    store = Store(url)
    store.open()
    try:
        return schema_of(store.db)
    finally:
        store.close()


@pytest.mark.parametrize("label", LABELS)
def test_a_sqlite_database_of_an_earlier_version_upgrades_with_every_row(label, tmp_path):
    url = sqlite_fixture(label, tmp_path)
    before = raw_rows_sqlite(url)
    with sqlite3.connect(url.split("://", 1)[1][1:]) as conn:
        assert {v for (v,) in conn.execute("SELECT version FROM schema_version")} == FIXTURE_VERSIONS[label]
    store = Store(url)
    store.open()
    try:
        assert versions_of(store) == [v for v, _ in MIGRATIONS]
        upgraded = schema_of(store.db)
        check_rows_kept(before, raw_rows_sqlite(url))
        check_public_reads(store, before)
    finally:
        store.close()
    assert upgraded == _fresh_schema(sqlite_url(str(tmp_path / "fresh.db")))


@pytest.fixture(scope="module")
def fresh_pg_schema(pg_url) -> dict[str, Any]:
    """The schema a fresh PostgreSQL database gets, made once for the upgrade tests of every release."""
    import psycopg2

    schema = "rt_fresh_" + uuid.uuid4().hex[:10]
    conn = psycopg2.connect(pg_url)
    conn.autocommit = True
    conn.cursor().execute(f"CREATE SCHEMA {schema}")
    conn.close()
    sep = "&" if "?" in pg_url else "?"
    try:
        return _fresh_schema(f"{pg_url}{sep}options=-csearch_path%3D{schema}")
    finally:
        drop_pg_schema(pg_url, schema)


@pytest.mark.postgres
@pytest.mark.parametrize("label", LABELS)
def test_a_postgresql_database_of_an_earlier_version_upgrades_with_every_row(label, pg_url, fresh_pg_schema):
    schema, url = load_pg_dump(label, pg_url)
    try:
        before = raw_rows_pg(pg_url, schema)
        assert {r["run_id"] for r in before["runs"]} == RUN_IDS
        assert {r["version"] for r in _pg_rows(pg_url, schema, "schema_version")} == FIXTURE_VERSIONS[label]
        store = Store(url)
        store.open()
        try:
            assert versions_of(store) == [v for v, _ in MIGRATIONS]
            upgraded = schema_of(store.db)
            check_rows_kept(before, raw_rows_pg(pg_url, schema))
            check_public_reads(store, before)
        finally:
            store.close()
        assert upgraded == fresh_pg_schema
    finally:
        drop_pg_schema(pg_url, schema)


def test_a_database_that_already_has_a_later_column_upgrades(tmp_path):
    """The fixtures of 5..9 were created at version 1 with the models of their day (their version 1 made the
    columns of 5 and 8): the steps that add columns only add missing ones. Here the reverse: a step is recorded
    as missing but its columns are there."""
    url = sqlite_fixture("v9-all", tmp_path)
    conn = sqlite3.connect(url.split("://", 1)[1][1:])
    with conn:
        conn.execute("DELETE FROM schema_version WHERE version IN (5, 8)")
    conn.close()
    store = Store(url)
    store.open()
    try:
        assert versions_of(store) == [v for v, _ in MIGRATIONS]
        assert json.loads(json.dumps(store.get_run("fx-success").to_dict()))["run_id"] == "fx-success"
    finally:
        store.close()


def test_a_database_the_schema_is_not_kept_for_is_refused_before_any_statement(tmp_path):
    from peewee import MySQLDatabase

    from telemetry.config import load_config
    from telemetry.store.migrations import UnsupportedDatabaseError, migrate

    with pytest.raises(UnsupportedDatabaseError, match="SQLite and PostgreSQL"):
        migrate(MySQLDatabase("telemetry", host="127.0.0.1"))  # never connects
    config = load_config(str(tmp_path), environ={"TELEMETRY_DATABASE_URL": "mysql://render:hunter2@db/t"})
    assert config.database_url is None and [w["key"] for w in config.warning_dicts()] == ["database_url"]


def test_migration_15_gives_its_indexes_statistics_where_the_file_has_them(tmp_path):
    """An ANALYZEd file: without statistics of their own the new indexes look far more selective than the old
    ones, and SQLite read a workflow's runs by (workflow_key, workflow_name) and sorted them (1 s at 1,000,000)."""
    url = sqlite_fixture("v10", tmp_path)
    path = url.split("://", 1)[1][1:]
    with sqlite3.connect(path) as conn:
        conn.execute("ANALYZE")
    store = Store(url)
    store.open()
    store.close()
    with sqlite3.connect(path) as conn:
        analyzed = {idx for (idx,) in conn.execute("SELECT idx FROM sqlite_stat1")}
        plan = " ".join(row[-1] for row in conn.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM runs WHERE workflow_key = 'wf-portrait' ORDER BY started_at_ms DESC"))
    assert {"runs_workflow_name_key", "runs_workflow_key_name", "runlabelrow_folded_started_at_ms_run_id"} <= analyzed
    assert "runrow_workflow_key_started_at_ms" in plan and "TEMP B-TREE" not in plan, plan
