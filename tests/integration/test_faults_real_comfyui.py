"""Faults a real ComfyUI meets, one test each: a full SQLite database, the database file deleted while ComfyUI
runs, two ComfyUI processes sharing one SQLite file, and a capture hook that raises. Every test compares the
runs with ComfyUI's own `/history` (read before anything is changed back) and adds its counts to the fault
report (tests/fault_report.py) that the session prints at its end."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from comfy_harness import ComfyServer, failing_workflow, image_workflow
from fault_checks import compare_with_history, histories, wait_health, with_fault_pack
from fault_report import record_fault_result

pytestmark = pytest.mark.comfyui

QUICK_RETRY = {"TELEMETRY_RETRY_INITIAL_S": "0.5", "TELEMETRY_RETRY_MAX_S": "2"}


def _stored_ids(path) -> set[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return {row[0] for row in conn.execute("SELECT run_id FROM runs WHERE status != 'running'")}
    finally:
        conn.close()


def test_a_full_sqlite_database_buffers_runs_says_so_in_health_and_writes_them_once_there_is_room(
        comfy_factory, tmp_path):
    server = comfy_factory(env=QUICK_RETRY, base_dir=with_fault_pack(tmp_path / "full")).start()
    warm_id, _, _ = server.run_and_wait(image_workflow(prefix="warm"))

    # SQLite's own limit: "database or disk is full", exactly what a full disk answers (root ignores modes).
    status, _ = server.request("POST", "/rt_fault/sqlite_max_page_count", {"pages": 1})
    assert status == 200
    ids: list[str] = []
    health = server.get("/telemetry/health")
    for i in range(8):  # the first runs may still fit into free space of the file's pages: 3 KB of tags each
        tags = [f"run {i} tag {k} " + "x" * 80 for k in range(30)]
        ids.append(server.submit(image_workflow(prefix=f"full{i}", color=i), extra_data={"telemetry": {"tags": tags}}))
        health = wait_health(server, lambda h: h["buffered"] >= 1, timeout=3 if i < 7 else 30)
        if health["buffered"] >= 1 and len(ids) >= 3:
            break
    expected = histories(server, ids)  # ComfyUI ran every one of them
    assert set(expected.values()) == {"success"}
    health = wait_health(server, lambda h: h["buffered"] + h["recorder"]["stored"] >= len(ids) + 1)

    assert health["status"] == "degraded"
    assert health["buffered"] >= 1 and health["dropped"] == 0
    assert health["database"]["state"] == "not writable"
    assert "database or disk is full" in health["database"]["write_error"]
    assert f"{health['buffered']} run(s) buffered" in health["database"]["write_error"]
    buffered = health["buffered"]
    failures = health["recorder"]["write_failures"]
    assert failures >= 1
    # Reads keep working while writes cannot.
    assert server.get(f"/telemetry/runs/{warm_id}")["status"] == "success"

    status, _ = server.request("POST", "/rt_fault/sqlite_max_page_count", {"pages": None})
    assert status == 200
    comparison = compare_with_history(server, expected)
    health = wait_health(server, lambda h: h["buffered"] == 0 and h["status"] == "ok")
    record_fault_result("SQLite database full (max_page_count)", faults_injected=failures,
                        runs_executed=comparison.executed, runs_recorded=comparison.recorded,
                        lost=len(comparison.lost), mislabelled=len(comparison.mislabelled))
    assert not comparison.lost and not comparison.mislabelled, comparison.describe()
    assert buffered >= 1
    assert health["status"] == "ok" and health["dropped"] == 0
    assert health["database"]["state"] == "ok" and "write_error" not in health["database"]


def test_a_deleted_database_file_is_recreated_and_the_runs_after_it_are_written_there(comfy_factory):
    server = comfy_factory().start()
    before, _, _ = server.run_and_wait(image_workflow(prefix="before-delete"))
    db = server.database_path
    executed = recorded = lost = mislabelled = deletions = 0
    # First only the main file (its -wal and -shm stay behind, open in the pack), then all three. Each round's
    # runs are compared right away: the next deletion takes them with it (the user's deletion, not a loss).
    for round_no, suffixes in enumerate([("",), ("", "-wal", "-shm")]):
        for suffix in suffixes:
            db.with_name(db.name + suffix).unlink(missing_ok=True)
        deletions += 1
        ids = [server.submit(image_workflow(prefix=f"deleted{round_no}-{i}", color=i)) for i in range(2)]
        ids.append(server.submit(failing_workflow()))
        comparison = compare_with_history(server, histories(server, ids))
        executed, recorded = executed + comparison.executed, recorded + comparison.recorded
        lost, mislabelled = lost + len(comparison.lost), mislabelled + len(comparison.mislabelled)
        assert not comparison.lost and not comparison.mislabelled, comparison.describe()
        # Written into the file at the database's path, not into the unlinked one.
        assert db.exists() and set(ids) <= _stored_ids(db)
        listed = server.get("/telemetry/runs?limit=100")
        assert {r["run_id"] for r in listed["runs"]} == set(ids) and listed["total"] == len(ids)
        if round_no == 0:
            assert server.request("GET", f"/telemetry/runs/{before}")[0] == 404  # deleted with the file

    record_fault_result("SQLite file deleted while running", faults_injected=deletions, runs_executed=executed,
                        runs_recorded=recorded, lost=lost, mislabelled=mislabelled)
    health = server.get("/telemetry/health")
    assert health["database"]["recreated"] == deletions
    assert "deleted" in health["database"]["recreated_reason"]
    assert health["status"] == "ok" and health["dropped"] == 0
    assert server.log_tail(200_000).count("telemetry database file") >= deletions
    assert (db.stat().st_mode & 0o777) == 0o600


def test_two_comfyui_processes_share_one_sqlite_file_without_lost_writes_or_locked_errors(comfy_factory, tmp_path):
    from telemetry.store.database import sqlite_url

    url = sqlite_url(str(tmp_path / "shared.db"))
    release = tmp_path / "release-alpha"
    alpha = comfy_factory(env={"TELEMETRY_DATABASE_URL": url, "TELEMETRY_INSTANCE": "alpha"},
                          base_dir=with_fault_pack(tmp_path / "alpha")).start()
    # A run executing on alpha while beta starts: beta must not close it as interrupted.
    waiting = alpha.submit({"1": {"class_type": "RTFaultWaitForFile",
                                  "inputs": {"path": str(release), "timeout_s": 300.0}}})
    alpha.wait_run(waiting, status="running")
    beta = comfy_factory(env={"TELEMETRY_DATABASE_URL": url, "TELEMETRY_INSTANCE": "beta"},
                         base_dir=tmp_path / "beta").start()
    assert beta.get("/telemetry/health")["recorder"]["closed_stale_runs"] == 0
    assert beta.wait_run(waiting, status="running")["instance"] == "alpha"
    release.touch()

    servers = {"alpha": alpha, "beta": beta}
    ids: dict[str, list[str]] = {"alpha": [waiting], "beta": []}
    rest_errors: list[str] = []
    stop = threading.Event()

    def read_while_writing(server: ComfyServer) -> None:
        while not stop.is_set():
            for path in ("/telemetry/runs?limit=5", "/telemetry/stats", "/telemetry/health"):
                code, body = server.request("GET", path)
                if code != 200 or "locked" in str(body):
                    rest_errors.append(f"{server.port} {path}: {code} {str(body)[:200]}")
            time.sleep(0.05)

    def submit_burst(name: str) -> None:
        for i in range(6):
            prompt = failing_workflow() if i == 3 else image_workflow(prefix=f"{name}{i}", color=i, batch=1)
            ids[name].append(servers[name].submit(prompt))

    readers = [threading.Thread(target=read_while_writing, args=(s,)) for s in servers.values()]
    bursts = [threading.Thread(target=submit_burst, args=(name,)) for name in servers]
    for thread in readers + bursts:
        thread.start()
    for thread in bursts:
        thread.join()
    expected = {name: histories(servers[name], ids[name]) for name in servers}
    comparisons = {name: compare_with_history(servers[name], expected[name]) for name in servers}
    stop.set()
    for thread in readers:
        thread.join()

    executed = sum(c.executed for c in comparisons.values())
    recorded = sum(c.recorded for c in comparisons.values())
    lost = sum(len(c.lost) for c in comparisons.values())
    mislabelled = sum(len(c.mislabelled) for c in comparisons.values())
    record_fault_result("two ComfyUI processes on one SQLite file", faults_injected=1, runs_executed=executed,
                        runs_recorded=recorded, lost=lost, mislabelled=mislabelled)
    for comparison in comparisons.values():
        assert not comparison.lost and not comparison.mislabelled, comparison.describe()
    for name, server in servers.items():
        listed = server.get("/telemetry/runs?limit=100")
        assert listed["total"] == executed  # both see every run of both
        mine = server.get(f"/telemetry/runs?limit=100&instance={name}")
        assert {r["run_id"] for r in mine["runs"]} == set(ids[name])
        health = server.get("/telemetry/health")
        assert health["status"] == "ok" and health["dropped"] == 0 and health["recorder"]["closed_stale_runs"] == 0
        assert "locked" not in str(health["recorder"]["last_error"])
        assert "database is locked" not in server.log_tail(500_000)
    assert not rest_errors, rest_errors[:5]
    assert alpha.get(f"/telemetry/runs/{waiting}")["status"] == "success"


def test_a_capture_hook_that_raises_leaves_the_run_to_comfyui_and_records_what_it_can(comfy_factory, tmp_path):
    raising = ["capture.hooks:Capture.node_started", "capture.hooks:Capture.node_finished",
               "capture.gpu:ResourceSampler.run_finished"]
    server = comfy_factory(env={"RT_FAULT_RAISE": ";".join(raising)},
                           base_dir=with_fault_pack(tmp_path / "raising")).start()
    ids = [server.submit(image_workflow(prefix=f"raising{i}", color=i)) for i in range(3)]
    ids.append(server.submit(failing_workflow()))
    expected = histories(server, ids)
    assert list(expected.values()) == ["success", "success", "success", "failed"]  # ComfyUI is not affected
    comparison = compare_with_history(server, expected)
    injected = server.get("/rt_fault/state")
    assert sorted(injected["patched"]) == sorted(raising) and injected["raised"] >= 3 * 4

    health = server.get("/telemetry/health")
    assert health["hooks"]["hook_errors"] == injected["raised"]
    assert health["dropped"] == 0
    record_fault_result("capture hooks raising", faults_injected=injected["raised"],
                        runs_executed=comparison.executed, runs_recorded=comparison.recorded,
                        lost=len(comparison.lost), mislabelled=len(comparison.mislabelled))
    assert not comparison.lost and not comparison.mislabelled, comparison.describe()
    # As far as possible: the outputs and the failing node come from ComfyUI's history record.
    ok = server.get(f"/telemetry/runs/{ids[0]}")
    assert ok["output_counts"]["images"] == 2 and ok["executed_node_count"] == 3
    failed = server.get(f"/telemetry/runs/{ids[3]}")
    assert failed["error"]["node_type"] == "EmptyImage"
