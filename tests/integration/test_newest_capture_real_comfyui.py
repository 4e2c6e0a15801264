"""Capture points of issue 8 on a real ComfyUI (0.3.75 by default; COMFYUI_DIR selects another tree, e.g. 0.8.0):
nodes created by node expansion, and prompts cancelled before they start. The nodes come from the tests' own
node pack (tests/node_pack), which the harness links into every test server."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.comfyui


def _unique_seconds(base: float) -> float:
    # ComfyUI caches a node whose inputs did not change: each sleep gets inputs of its own.
    return round(base + (time.time_ns() % 1000) / 100_000, 5)


def _cancellable(tag: int) -> dict:
    # A structure of its own (its fingerprint is no other test's workflow), model-free.
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": tag}},
            "2": {"class_type": "TelemetryTestExpand", "inputs": {"image": ["1", 0], "count": 1}},
            "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}}


def test_nodes_created_by_node_expansion_are_recorded_with_their_class_type_and_parent(comfy):
    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1,
                                                     "color": int(time.time_ns() % 1000)}},
        "2": {"class_type": "TelemetryTestExpand", "inputs": {"image": ["1", 0], "count": 2}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }
    prompt_id, history, run = comfy.run_and_wait(prompt)
    assert history["status"]["status_str"] == "success", history["status"]
    nodes = {n["node_id"]: n for n in run["nodes"]}
    inner = [n for n in run["nodes"] if n["parent_node_id"] == "2"]
    assert nodes["2"]["class_type"] == "TelemetryTestExpand" and nodes["2"]["status"] == "executed"
    assert len(inner) == 2, run["nodes"]
    assert {(n["class_type"], n["status"], n["display_node_id"]) for n in inner} == {("ImageInvert", "executed", "2")}
    assert all(n["node_id"] not in prompt and n["duration_ms"] is not None for n in inner)


def test_prompts_deleted_or_cleared_from_the_queue_are_recorded_as_cancelled_with_their_queue_time(comfy):
    blocker = comfy.submit({"1": {"class_type": "TelemetryTestSleep", "inputs": {"seconds": _unique_seconds(3)}}})
    comfy.wait_running(blocker)
    deleted = comfy.submit(_cancellable(1))
    cleared = [comfy.submit(_cancellable(2 + i)) for i in range(2)]
    time.sleep(0.5)
    status, _ = comfy.request("POST", "/queue", {"delete": [deleted]})  # what the frontend's cancel sends
    assert status == 200
    status, _ = comfy.request("POST", "/queue", {"clear": True})
    assert status == 200

    for prompt_id in (deleted, *cleared):
        run = comfy.wait_run(prompt_id, status="cancelled")
        assert run["queue_wait_ms"] >= 400 and run["duration_ms"] is None
        assert run["queued_at_ms"] + run["queue_wait_ms"] == run["finished_at_ms"]
        assert run["node_count"] == 3 and {n["status"] for n in run["nodes"]} == {"not_run"}
        assert comfy.get(f"/history/{prompt_id}") == {}  # ComfyUI itself keeps nothing of it
    assert comfy.wait_run(blocker)["status"] == "success"

    listed = comfy.get("/telemetry/runs?status=cancelled&limit=500")["runs"]
    assert {deleted, *cleared} <= {r["run_id"] for r in listed}
    stats = comfy.get("/telemetry/stats")
    assert stats["by_status"]["cancelled"] >= 3
    assert "cancelled" in comfy.request("GET", "/telemetry/metrics")[1]
