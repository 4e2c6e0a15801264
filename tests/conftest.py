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
    sep = "&" if "?" in pg_url else "?"
    yield f"{pg_url}{sep}options=-csearch_path%3D{schema}"
    conn.cursor().execute(f"DROP SCHEMA {schema} CASCADE")
    conn.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    """An opened Store on a real SQLite file, and again on the real PostgreSQL server (a fresh schema)."""
    from telemetry.store.database import sqlite_url
    from telemetry.store.store import Store

    url = sqlite_url(str(tmp_path / "telemetry.db")) if request.param == "sqlite" else request.getfixturevalue(
        "pg_schema_url")
    opened = Store(url)
    opened.open()
    yield opened
    opened.close()


def pytest_terminal_summary(terminalreporter) -> None:
    """The fault report (tests/fault_report.py): one table of every fault injected and what was lost."""
    from fault_report import write_report

    table = write_report()
    if table:
        terminalreporter.section("fault report")
        terminalreporter.write_line(table)
