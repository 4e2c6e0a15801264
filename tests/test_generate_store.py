"""bench/generate_store.py: a realistic store through the store's own schema, read back through the Store."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import early_process
import pytest

from telemetry.filters import Page, RunFilters, parse_run_filters
from telemetry.store.database import sqlite_url
from telemetry.store.store import Store

ROOT = Path(__file__).resolve().parents[1]
END_MS = 1_796_000_000_000
DAY_MS = 86_400_000


def generate(*args: str) -> str:
    done = subprocess.run(_generate_argv(*args), capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _generate_argv(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "bench" / "generate_store.py"), "--end-ms", str(END_MS), *args]


def _generated(done: subprocess.CompletedProcess) -> tuple[str, Path]:
    """The output of a generate_store.py process started early, and the file it wrote."""
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, Path(done.args[done.args.index("--db") + 1])


# generate_store.py writes thousands of rows in a process of its own: these start as soon as the tests are
# collected (early_process.py) and run beside the tests before them; each writes into a folder of its own.
def _realistic_store() -> tuple[list[str], dict]:
    path = Path(tempfile.mkdtemp(prefix="generate-store-")) / "telemetry.db"
    return _generate_argv("--runs", "2000", "--db", str(path), "--seed", "7"), {"cwd": ROOT}


def _three_seeded_stores() -> list[tuple[list[str], dict]]:
    folder = Path(tempfile.mkdtemp(prefix="generate-store-seeds-"))
    return [(_generate_argv("--runs", "300", "--db", str(folder / name), "--seed", seed), {"cwd": ROOT})
            for name, seed in (("a.db", "3"), ("b.db", "3"), ("c.db", "4"))]


def _onto_an_existing_file() -> tuple[list[str], dict]:
    path = Path(tempfile.mkdtemp(prefix="generate-store-exists-")) / "telemetry.db"
    path.write_bytes(b"not empty")
    return [sys.executable, str(ROOT / "bench" / "generate_store.py"), "--runs", "10", "--db", str(path)], {"cwd": ROOT}


def check_store(store: Store, runs: int) -> None:
    stats = store.stats(RunFilters())
    assert stats["total_runs"] == runs == store.count_runs()
    shares = {status: count / runs for status, count in stats["by_status"].items() if count}
    assert set(shares) == {"success", "failed", "interrupted"}
    assert 0.80 < shares["success"] < 0.90 and 0.07 < shares["failed"] < 0.13 and 0.03 < shares["interrupted"] < 0.08
    assert 0.80 < stats["success_rate"] < 0.90 and stats["p50_duration_ms"] < stats["p95_duration_ms"]
    instances = {row["instance"]: row["runs"] for row in store.instances()}
    assert len(instances) == 5 and max(instances.values()) > 2 * min(instances.values())
    assert len(store.heartbeats()) == 5
    by_workflow = sorted((w["runs"] for w in stats["by_workflow"]), reverse=True)
    assert len(by_workflow) >= 50 and by_workflow[0] > 5 * by_workflow[len(by_workflow) // 2]  # a long tail

    page, total, _, _ = store.query_runs(RunFilters(), Page(sort="-started_at_ms", limit=200, offset=0))
    assert total == runs and len(page) == 200
    starts = [r.started_at_ms for r in page]
    assert starts == sorted(starts, reverse=True) and END_MS - 365 * DAY_MS <= min(starts) <= max(starts) <= END_MS
    for summary in page[:40]:
        run = store.get_run(summary.run_id)
        assert 3 <= len(run.nodes) <= 40 and run.node_count == len(run.nodes)
        assert run.executed_node_count + run.cached_node_count <= run.node_count
        assert run.workflow_name and run.fingerprint and run.gpu_name and run.parameters.get("steps")
        if run.status == "success":
            # Frames count images and video frames, as the collector counts them: an audio run has none.
            assert run.outputs and (run.frame_count >= 1 or all(o.kind == "audio" for o in run.outputs))
            assert all(n.status in ("executed", "cached") for n in run.nodes)
        if run.status == "failed":
            assert run.error and run.error.node_id in {n.node_id for n in run.nodes if n.status == "failed"}
    week = store.stats(parse_run_filters({"since_ms": str(END_MS - 7 * DAY_MS), "status": "failed"}))
    assert week["total_runs"] == week["by_status"]["failed"] > 0
    assert store.node_type_stats(RunFilters())[0]["class_type"]
    name = page[0].workflow_name
    found, count, _, _ = store.query_runs(parse_run_filters({"q": name.upper()}), Page(limit=50, exact_total=True))
    assert count == stats_runs_named(store, name) and all(name in r.workflow_name for r in found)
    scene = next(r.labels.scene for r in page if r.labels.scene)  # stories' runs are labelled with scenes
    labelled, count, _, _ = store.query_runs(parse_run_filters({"label": scene}), Page(sort="-started_at_ms", limit=50))
    assert count >= 1 and all(r.labels.scene == scene and r.labels.story_title for r in labelled)


def stats_runs_named(store: Store, name: str) -> int:
    from telemetry.store.run_search import substring_condition
    from telemetry.store.schema import RunRow

    with store.bound():
        return RunRow.select().where(substring_condition(name)).count()


def test_generate_store_makes_a_realistic_sqlite_store_read_through_the_store(tmp_path):
    out, path = _generated(early_process.finished(
        "test_generate_store_makes_a_realistic_sqlite_store_read_through_the_store", _realistic_store))
    try:
        _check_realistic(out, path, tmp_path)
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)


def _check_realistic(out: str, path: Path, tmp_path: Path) -> None:
    assert "runs/s" in out and "2,000 runs" in out
    store = Store(sqlite_url(str(path)))
    store.open()
    try:
        check_store(store, 2000)
    finally:
        store.close()
    conn = sqlite3.connect(path)
    hours = Counter(datetime.fromtimestamp(t / 1000, timezone.utc).hour
                    for (t,) in conn.execute("SELECT started_at_ms FROM runs"))
    assert sum(hours[h] for h in range(14, 22)) > 4 * sum(hours[h] for h in range(1, 6))  # the daily rhythm
    nodes = conn.execute("SELECT COUNT(*), COUNT(DISTINCT run_id) FROM node_runs").fetchone()
    assert nodes[1] == 2000 and 3 * 2000 <= nodes[0] <= 40 * 2000
    assert conn.execute("SELECT COUNT(*) FROM run_outputs").fetchone()[0] > 1500
    # The indexes the load set aside are back, as the schema made them.
    fresh = tmp_path / "fresh.db"
    Store(sqlite_url(str(fresh))).open()
    indexes = "SELECT name, sql FROM sqlite_master WHERE type = 'index' ORDER BY name"
    assert conn.execute(indexes).fetchall() == sqlite3.connect(fresh).execute(indexes).fetchall()
    # So are the search index's triggers, and the index holds every run (filled once after the load).
    triggers = "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' ORDER BY name"
    assert conn.execute(triggers).fetchall() == sqlite3.connect(fresh).execute(triggers).fetchall() != []
    assert conn.execute("SELECT COUNT(*) FROM runs_search_docsize").fetchone()[0] == 2000  # one row per run
    # And the label filter's rows: every run with a label has them.
    labelled = "SELECT COUNT(*) FROM runs WHERE story_title IS NOT NULL OR scene IS NOT NULL OR tags IS NOT NULL"
    assert conn.execute("SELECT COUNT(DISTINCT run_id) FROM run_labels").fetchone()[0] == \
        conn.execute(labelled).fetchone()[0] > 0
    conn.close()


def _digest(path: Path) -> str:
    conn = sqlite3.connect(path)
    digest = hashlib.sha256()
    for table in ("runs", "node_runs", "run_outputs", "workflow_names", "instances"):
        for row in conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2"):
            digest.update(repr(row).encode())
    conn.close()
    return digest.hexdigest()


def test_generate_store_is_deterministic_with_a_seed():
    """Three processes (each its own hash seed), two with one seed, one with another."""
    done = early_process.finished("test_generate_store_is_deterministic_with_a_seed", _three_seeded_stores)
    a, b, c = (_generated(process)[1] for process in done)
    try:
        assert _digest(a) == _digest(b) != _digest(c)
    finally:
        shutil.rmtree(a.parent, ignore_errors=True)


def test_generate_store_refuses_an_existing_file():
    done = early_process.finished("test_generate_store_refuses_an_existing_file", _onto_an_existing_file)
    path = Path(done.args[done.args.index("--db") + 1])
    try:
        assert done.returncode == 2 and "exists" in done.stderr
        assert path.read_bytes() == b"not empty"
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)


EARLY_PROCESSES = {
    "test_generate_store_makes_a_realistic_sqlite_store_read_through_the_store": _realistic_store,
    "test_generate_store_is_deterministic_with_a_seed": _three_seeded_stores,
    "test_generate_store_refuses_an_existing_file": _onto_an_existing_file,
}


@pytest.mark.postgres
def test_generate_store_writes_a_postgresql_store(pg_schema_url):
    generate("--runs", "2000", "--database-url", pg_schema_url, "--seed", "7")
    store = Store(pg_schema_url)
    store.open()
    try:
        check_store(store, 2000)
    finally:
        store.close()
