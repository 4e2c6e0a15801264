"""ComfyUI keeps working whatever happens to telemetry, and telemetry loses nothing it can keep:
restarts keep history, a killed run is closed as interrupted, a locked database is caught up later,
and PostgreSQL works the same as SQLite."""

from __future__ import annotations

import sqlite3
import time

import pytest
from comfy_harness import image_workflow, new_client_id, slow_workflow

pytestmark = pytest.mark.comfyui


def test_history_survives_a_restart_and_a_killed_run_is_closed_as_interrupted(comfy_factory, tmp_path):
    server = comfy_factory().start()
    done_id, _, done = server.run_and_wait(image_workflow(prefix="before-restart"))
    killed_id = server.submit(slow_workflow(blurs=40, size=1024, batch=4), client_id=new_client_id())
    server.wait_running(killed_id)
    server.wait_run(killed_id, status="running")  # the start was recorded while it ran
    server.stop(kill=True)

    # History restore off, so that ComfyUI's own /history shows what ComfyUI itself kept: nothing
    # (tests/integration/test_history_restore_real_comfyui.py puts it back).
    restarted = comfy_factory(base_dir=server.base_dir, env={"TELEMETRY_HISTORY_RESTORE_RUNS": "0"}).start()
    assert restarted.get(f"/history/{done_id}") == {}  # ComfyUI itself forgot everything
    kept = restarted.get(f"/telemetry/runs/{done_id}")
    assert kept["status"] == "success" and kept["started_at_ms"] == done["started_at_ms"]
    closed = restarted.wait_run(killed_id)
    assert closed["status"] == "interrupted"
    assert "stopped while the run was executing" in closed["interrupted_reason"]
    assert restarted.get("/telemetry/health")["recorder"]["closed_stale_runs"] == 1
    _, _, after = restarted.run_and_wait(image_workflow(prefix="after-restart"))
    assert after["status"] == "success"


def test_runs_complete_while_the_database_is_locked_and_are_written_once_it_is_free(comfy_factory):
    server = comfy_factory(env={"TELEMETRY_RETRY_INITIAL_S": "0.5", "TELEMETRY_RETRY_MAX_S": "2"}).start()
    server.run_and_wait(image_workflow(prefix="warm"))

    lock = sqlite3.connect(server.database_path, timeout=1, isolation_level=None, check_same_thread=False)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        ids = [server.submit(image_workflow(prefix=f"locked{i}", color=i)) for i in range(3)]
        for prompt_id in ids:  # ComfyUI is not slowed or stopped by the unwritable database
            assert server.wait_history(prompt_id, timeout=30)["status"]["status_str"] == "success"
        deadline = time.monotonic() + 40
        health = server.get("/telemetry/health")
        while time.monotonic() < deadline and health["recorder"]["write_failures"] == 0:
            time.sleep(0.5)
            health = server.get("/telemetry/health")
        assert health["recorder"]["write_failures"] >= 1
        assert health["buffered"] >= 1 and health["status"] == "degraded"
        assert health["dropped"] == 0
    finally:
        lock.execute("ROLLBACK")
        lock.close()

    for prompt_id in ids:
        assert server.wait_run(prompt_id, timeout=60)["status"] == "success"
    health = server.get("/telemetry/health")
    assert health["buffered"] == 0 and health["dropped"] == 0 and health["status"] == "ok"


@pytest.mark.postgres
def test_postgresql_records_the_same_runs(comfy_factory, pg_schema_url):
    server = comfy_factory(env={"TELEMETRY_DATABASE_URL": pg_schema_url}).start()
    health = server.get("/telemetry/health")
    assert health["database"]["kind"] == "postgresql" and health["database"]["state"] == "ok"
    _, history, run = server.run_and_wait(image_workflow(prefix="pg"), client_id=new_client_id())
    assert run["status"] == "success" and run["executed_node_count"] == 3
    assert run["started_at_ms"] == history["status"]["messages"][0][1]["timestamp"]
    _, _, failed = server.run_and_wait({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 16384, "height": 16384, "batch_size": 4096,
                                                     "color": 0}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    })
    assert failed["status"] == "failed" and failed["error"]["kind"] == "oom"
    stats = server.get("/telemetry/stats")
    assert stats["total_runs"] == 2 and stats["by_status"]["failed"] == 1
    listed = server.get("/telemetry/runs?status=failed")
    assert [r["run_id"] for r in listed["runs"]] == [failed["run_id"]]
