"""Shared fixtures. Tests that need a real ComfyUI, PostgreSQL or Chromium are marked and skip with a clear
reason when the part is missing locally; CI provisions all of them (scripts/provision.sh), so there they run.

Every real-ComfyUI test runs once per ComfyUI version of the matrix (`comfy_tree`, ids `comfy0.3.75`,
`comfy0.8.0`); a version whose tree is not provisioned skips with the reason (fails under
RUN_TELEMETRY_REQUIRE_ALL=1, unless RUN_TELEMETRY_COMFYUI_VERSIONS leaves it out of the matrix)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_harness import Result, run_main  # noqa: E402
from comfy_harness import ComfyServer, ComfyTree, matrix_versions, tree_version  # noqa: E402
from matrix import matrix_header, require_tree, skip_or_fail  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PG_URL = os.environ.get("TELEMETRY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
_skip_or_fail = skip_or_fail


@pytest.fixture(scope="session")
def recorded_runs() -> dict:
    import json

    path = FIXTURES / "comfyui-0.3.75-runs.json"
    if not path.is_file():
        _skip_or_fail(f"recorded fixture {path} is missing")
    return json.loads(path.read_text())


def pytest_report_header(config) -> list[str]:
    return [matrix_header()]


@pytest.fixture(scope="session", params=matrix_versions(), ids=lambda v: f"comfy{v}")
def comfy_tree(request) -> ComfyTree:
    """The ComfyUI tree of this matrix leg: every test that starts a real ComfyUI runs once per version."""
    return require_tree(request.param)


@pytest.fixture(scope="session")
def comfy_available(comfy_tree) -> Path:
    return comfy_tree.root


@pytest.fixture(scope="session")
def comfy(comfy_tree, tmp_path_factory) -> ComfyServer:
    """One real ComfyUI with the pack, shared by the integration tests (SQLite, default configuration)."""
    server = ComfyServer.for_tree(comfy_tree, tmp_path_factory.mktemp(f"comfy-shared-{comfy_tree.version}"))
    server.start()
    yield server
    server.stop()
    _keep_log(server)


def _keep_log(server: ComfyServer) -> None:
    out = os.environ.get("RUN_TELEMETRY_TEST_OUTPUT")
    if out and server.log_path.exists():
        target = Path(out) / "comfyui-logs"
        target.mkdir(parents=True, exist_ok=True)
        version = tree_version(server.root) if server.root else "unknown"
        shutil.copy(server.log_path, target / f"{version}-{server.log_path.name}")


@pytest.fixture
def comfy_factory(comfy_tree, tmp_path):
    """Starts dedicated servers (on this leg's ComfyUI) for tests that restart, kill or reconfigure ComfyUI."""
    servers: list[ComfyServer] = []

    def make(env: dict[str, str] | None = None, base_dir: Path | None = None, port: int | None = None,
             **kwargs) -> ComfyServer:
        server = ComfyServer.for_tree(comfy_tree, base_dir or tmp_path / f"comfy-{len(servers)}", env=env, port=port,
                                      **kwargs)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop(kill=True)
        _keep_log(server)


@pytest.fixture(scope="session")
def pg_url() -> str:
    try:
        import psycopg2

        psycopg2.connect(PG_URL, connect_timeout=3).close()
    except Exception as exc:
        _skip_or_fail(f"PostgreSQL at {PG_URL} is not reachable: {exc}")
    _pg_trgm_in_public(PG_URL)
    return PG_URL


def _pg_trgm_in_public(url: str) -> None:
    """pg_trgm once in `public`, so that migration 12 in a scratch schema finds it there: created in a scratch
    schema, it would be dropped with that schema and take the search indexes of the other schemas with it."""
    import psycopg2

    conn = psycopg2.connect(url, connect_timeout=3)
    conn.autocommit = True
    try:
        conn.cursor().execute("CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public")
    except psycopg2.Error:
        pass  # the search tests then see the fallback and say so
    finally:
        conn.close()


@pytest.fixture
def pg_schema_url(pg_url):
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    import uuid

    import psycopg2

    schema = "rt_" + uuid.uuid4().hex[:10]
    conn = psycopg2.connect(pg_url)
    conn.autocommit = True
    conn.cursor().execute(f"CREATE SCHEMA {schema}")
    yield _search_path_url(pg_url, schema)
    conn.cursor().execute(f"DROP SCHEMA {schema} CASCADE")
    conn.close()


def _search_path_url(pg_url: str, schema: str) -> str:
    sep = "&" if "?" in pg_url else "?"
    return f"{pg_url}{sep}options=-csearch_path%3D{schema}"


# What a test may change in the shared schema beyond its rows: columns, indexes, constraints, the applied versions.
_SCHEMA_SHAPE = """
SELECT (SELECT string_agg(table_name || '.' || ordinal_position || '.' || column_name || ':' || data_type || ':'
                          || is_nullable || ':' || coalesce(column_default, ''), ',' ORDER BY table_name, column_name)
          FROM information_schema.columns WHERE table_schema = %(s)s),
       (SELECT string_agg(indexname || ':' || indexdef, ',' ORDER BY indexname) FROM pg_indexes
         WHERE schemaname = %(s)s),
       (SELECT string_agg(conname || ':' || pg_get_constraintdef(c.oid), ',' ORDER BY conname)
          FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = %(s)s)
"""


class _SharedPgSchema:
    """One schema migrated once for the PostgreSQL leg of `store`, emptied before each test (rows deleted,
    sequences restarted): creating and migrating a schema per test cost about 0.5 s each. A test that changed
    the schema itself (dropped a column, a version row) gets it made afresh for the next test."""

    def __init__(self, pg_url: str) -> None:
        import psycopg2

        self.pg_url = pg_url
        self.conn = psycopg2.connect(pg_url)
        self.conn.autocommit = True
        self.schema = ""
        self._create()

    def _create(self) -> None:
        import uuid

        from telemetry.store.store import Store

        self.schema = "rt_store_" + uuid.uuid4().hex[:10]
        self.conn.cursor().execute(f"CREATE SCHEMA {self.schema}")
        migrated = Store(self.url)
        migrated.open()
        migrated.shutdown()
        self.shape = self._shape()

    @property
    def url(self) -> str:
        return _search_path_url(self.pg_url, self.schema)

    def _shape(self) -> tuple:
        cur = self.conn.cursor()
        cur.execute(_SCHEMA_SHAPE, {"s": self.schema})
        shape = cur.fetchone()
        cur.execute(f"SELECT version FROM {self.schema}.schema_version ORDER BY version")
        return (*shape, tuple(v for (v,) in cur.fetchall()))

    def fresh(self) -> str:
        """The URL of the schema, as a fresh migrated one: no rows but the applied versions."""
        cur = self.conn.cursor()
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename <> 'schema_version'",
                    (self.schema,))
        tables = [t for (t,) in cur.fetchall()]
        cur.execute("SELECT sequencename FROM pg_sequences WHERE schemaname = %s", (self.schema,))
        sequences = [q for (q,) in cur.fetchall()]
        # DELETE, not TRUNCATE: on tables this small it is far quicker (TRUNCATE makes new files for each table).
        statements = [f'DELETE FROM {self.schema}."{t}"' for t in tables]
        statements += [f'ALTER SEQUENCE {self.schema}."{q}" RESTART' for q in sequences]
        try:
            cur.execute("BEGIN; " + "; ".join(statements) + "; COMMIT")
        except Exception:  # e.g. a foreign key without ON DELETE CASCADE, in an order it refuses: start afresh
            cur.execute("ROLLBACK")
            self.drop()
            self._create()
        return self.url

    def check(self) -> None:
        """After a test: a schema it changed is dropped, and the next test gets a new one."""
        if self._shape() != self.shape:
            self.drop()
            self._create()

    def drop(self) -> None:
        self.conn.cursor().execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")


@pytest.fixture(scope="session")
def _pg_store_schema(pg_url):
    shared = _SharedPgSchema(pg_url)
    yield shared
    shared.drop()
    shared.conn.close()


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory):
    """`migrated_sqlite(path)`: a SQLite file at `path` as a fresh Store leaves it (every migration applied, no
    rows), copied from one migrated once per session (running every migration for each test's store cost tens of
    milliseconds each); returns its URL. The copy keeps the file's mode (0600, as the store creates it). Opening
    it still runs the store's migration check, which finds every version applied."""
    from telemetry.store.database import sqlite_url
    from telemetry.store.store import Store

    template = tmp_path_factory.mktemp("migrated-sqlite") / "telemetry.db"
    made = Store(sqlite_url(str(template)))
    made.open()
    made.shutdown()  # every connection closed: the WAL is checkpointed into the file and removed
    assert not Path(f"{template}-wal").exists(), "the template's WAL was not folded into the file"

    def copy_to(path: Path) -> str:
        shutil.copy(template, path)
        return sqlite_url(str(path))

    return copy_to


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    """An opened Store on a real SQLite file (a copy of a migrated empty one: `migrated_sqlite`), and again on the
    real PostgreSQL server (a migrated schema, empty: `_SharedPgSchema`)."""
    from telemetry.store.store import Store

    shared = request.getfixturevalue("_pg_store_schema") if request.param == "postgresql" else None
    if shared is None:
        url = request.getfixturevalue("migrated_sqlite")(tmp_path / "telemetry.db")
    else:
        url = shared.fresh()
    opened = Store(url)
    opened.open()
    yield opened
    opened.close()
    if shared is not None:
        shared.check()


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """`cli(*args, env=...)`: `python -m telemetry ARGS` run in this process (cli_harness.py), as a process started
    for the test would run: no TELEMETRY_* variables but `env`, HOME (so the default data dir, ~/.run_telemetry)
    in tmp_path. Returns its exit status, stdout and stderr."""
    from telemetry.commands import common

    for key in [k for k in os.environ if k.startswith("TELEMETRY_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path))
    # computed from HOME when imported, as a process does when it starts (test_the_default_data_dir_is_under_home)
    monkeypatch.setattr(common, "DEFAULT_DATA_DIR", str(tmp_path / ".run_telemetry"))

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        capsys.readouterr()
        with monkeypatch.context() as scoped:
            for key, value in (env or {}).items():
                scoped.setenv(key, value)
            code = run_main(args)
        out = capsys.readouterr()
        return Result(code, out.out, out.err)

    return run


def pytest_configure(config) -> None:
    """The Python processes the tests start (`python -m telemetry`, bench scripts, racing writers: dozens) may cache
    the pack's compiled modules (__pycache__, ignored by git): where PYTHONDONTWRITEBYTECODE is set, each of them
    compiled every module it imports from source again, a third of a second or more apiece."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


# Folders every test of which carries a marker (checked below whenever they are collected): a run whose -m leaves
# out every test with that marker (the fast suite: "not comfyui and not browser ...") does not import them at all.
MARKED_FOLDERS = {"integration": "comfyui", "browser": "browser"}


def _deselects_every_test_marked(markexpr: str, marker: str) -> bool:
    """Whether `-m markexpr` is false for every set of marks that holds `marker` (only the names the expression
    names can change its value). Anything not understood here: False, and the folder is collected as usual."""
    if not markexpr or "(" in markexpr:
        return False
    try:
        from _pytest.mark.expression import Expression

        expression = Expression.compile(markexpr)
    except Exception:
        return False
    import itertools
    import re

    names = sorted(set(re.findall(r"[\w.+-]+", markexpr)) - {"and", "or", "not", marker})
    for picked in itertools.product((False, True), repeat=len(names)):
        marks = {marker} | {name for name, on in zip(names, picked, strict=True) if on}
        if expression.evaluate(lambda name, /, marks=marks, **kwargs: name in marks):
            return False
    return True


def pytest_ignore_collect(collection_path, config):
    if collection_path.parent != Path(__file__).parent or collection_path.name not in MARKED_FOLDERS:
        return None
    if _deselects_every_test_marked(config.option.markexpr, MARKED_FOLDERS[collection_path.name]):
        return True
    return None


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        folder = Path(str(item.path)).relative_to(Path(__file__).parent).parts[0]
        marker = MARKED_FOLDERS.get(folder)
        if marker and item.get_closest_marker(marker) is None:
            raise pytest.UsageError(f"{item.nodeid}: every test in tests/{folder}/ needs the {marker!r} marker "
                                    "(runs that leave that marker out do not collect the folder)")


def pytest_collection_finish(session) -> None:
    """The processes that selected tests only wait for start now, beside the tests before them (early_process.py)."""
    import early_process

    if session.config.option.collectonly:
        return
    import functools

    for item in session.items:
        make = getattr(getattr(item, "module", None), "EARLY_PROCESSES", {}).get(getattr(item, "originalname", ""))
        if make is not None:
            callspec = getattr(item, "callspec", None)
            early_process.start(item.name, functools.partial(make, **callspec.params) if callspec else make)


def pytest_sessionfinish(session) -> None:
    import early_process

    early_process.stop_all()


def pytest_terminal_summary(terminalreporter) -> None:
    """The fault report (tests/fault_report.py): one table of every fault injected and what was lost."""
    from fault_report import write_report

    table = write_report()
    if table:
        terminalreporter.section("fault report")
        terminalreporter.write_line(table)
