"""ComfyUI's own history survives a restart (issue 11, item 1), on every ComfyUI of the matrix: runs made before
a restart are listed again by ComfyUI's `/history` (and `/api/jobs` on 0.8.0) with the same outputs and status,
in ComfyUI's order (oldest first, before the runs of the new process); outputs whose files are gone are left out;
no API key ComfyUI was given comes back; `history_restore_runs` bounds how many, and 0 switches it off."""

from __future__ import annotations

import json
import time

import pytest
from comfy_harness import ComfyServer, failing_workflow, image_workflow
from history_records import wait_history_records

pytestmark = pytest.mark.comfyui

SECRET = "sk-test-never-stored-0123456789"


def _wait_for(server: ComfyServer, prompt_ids: list[str], timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    history: dict = {}
    while time.monotonic() < deadline:
        history = server.get("/history")
        if all(pid in history for pid in prompt_ids):
            return history
        time.sleep(0.2)
    raise AssertionError(f"not in /history after the restart: {[p for p in prompt_ids if p not in history]}; "
                         f"log:\n{server.log_tail()}")


def test_comfyui_history_lists_runs_from_before_a_restart(comfy_factory, comfy_tree, tmp_path):
    server = comfy_factory(base_dir=tmp_path / "comfy-history").start()
    saved_id, saved, _ = server.run_and_wait(image_workflow(prefix="restore", color=41, batch=1),
                                             extra_data={"api_key_comfy_org": SECRET})
    failed_id = server.submit(failing_workflow())
    failed = server.wait_history(failed_id)
    server.wait_run(failed_id)
    gone_id, gone, _ = server.run_and_wait(image_workflow(prefix="gone", color=42, batch=1))
    wait_history_records(server, 3)
    before = list(server.get("/history"))
    server.stop()

    # the file of one run's output is deleted while ComfyUI is down
    (gone_file,) = [img for node in gone["outputs"].values() for img in node.get("images", [])]
    (server.base_dir / "output" / gone_file["subfolder"] / gone_file["filename"]).unlink()

    server.start()
    history = _wait_for(server, [saved_id, failed_id, gone_id])
    assert list(history)[:3] == before, "ComfyUI's order (oldest first) is kept"
    assert history[saved_id]["outputs"] == saved["outputs"] and history[saved_id]["status"] == saved["status"]
    assert history[saved_id]["meta"] == saved["meta"]
    assert history[saved_id]["prompt"][1:] == [saved_id, *saved["prompt"][2:5]]
    assert history[failed_id]["status"] == failed["status"]
    assert history[failed_id]["status"]["status_str"] == "error"
    assert history[gone_id]["outputs"] == {}, "an output whose file is gone is left out"
    assert SECRET not in json.dumps(history) and SECRET not in server.database_path.read_bytes().decode("latin-1")

    # a run of the new process comes after the restored ones and is never replaced by them
    new_id, new_item, _ = server.run_and_wait(image_workflow(prefix="after", color=43))
    history = server.get("/history")
    assert list(history)[-1] == new_id and list(history)[:3] == before
    assert history[new_id]["prompt"][0] > history[saved_id]["prompt"][0]

    if comfy_tree.version != "0.3.75":  # /api/jobs is 0.8.0's
        jobs = {job["id"]: job for job in server.get("/api/jobs?status=completed,failed&limit=50")["jobs"]}
        assert {saved_id, failed_id, gone_id, new_id} <= set(jobs)
        assert jobs[saved_id]["status"] == "completed" and jobs[failed_id]["status"] == "failed"
        assert jobs[saved_id]["outputs_count"] == 1 and jobs[gone_id]["outputs_count"] == 0
        detail = server.get(f"/api/jobs/{saved_id}")
        assert detail["outputs"] == saved["outputs"]

    # a second restart with history_restore_runs=1 brings back only the newest run; 0 switches it off
    wait_history_records(server, 4)
    server.stop()
    server.env = {"TELEMETRY_HISTORY_RESTORE_RUNS": "1"}
    server.start()
    history = _wait_for(server, [new_id])
    time.sleep(1.0)
    assert list(server.get("/history")) == [new_id]
    server.stop()
    server.env = {"TELEMETRY_HISTORY_RESTORE_RUNS": "0"}
    server.start()
    time.sleep(3.0)
    assert server.get("/history") == {}
    assert server.request("GET", f"/telemetry/runs/{saved_id}")[0] == 200
