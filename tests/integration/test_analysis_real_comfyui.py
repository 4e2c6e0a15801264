"""Recommendations and predictions from real runs of a real ComfyUI with the pack."""

from __future__ import annotations

import time

import pytest
from comfy_harness import failing_workflow, image_workflow, new_client_id, slow_workflow

pytestmark = pytest.mark.comfyui


def _wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"condition not met within {timeout}s (last value: {value!r})")


def test_real_runs_produce_success_rate_duration_retry_and_oom_recommendations(comfy_factory):
    server = comfy_factory().start()
    status, config = server.request("PUT", "/telemetry/config", {"duration_threshold_ms": 1, "success_min_runs": 3})
    assert status == 200, config
    flaky = {"extra_pnginfo": {"workflow": {"id": "wf-flaky", "nodes": []}},
             "telemetry": {"workflow_name": "Flaky upscale"}}
    for _ in range(3):
        server.run_and_wait(failing_workflow(), extra_data=flaky)
    _, _, ok = server.run_and_wait(image_workflow(prefix="flaky"), extra_data=flaky)
    assert ok["status"] == "success"

    def open_kinds():
        recs = server.get("/telemetry/recommendations?state=open&workflow=wf-flaky")["recommendations"]
        kinds = {r["kind"] for r in recs}
        return recs if {"low_success_rate", "long_duration", "retry", "oom"} <= kinds else None

    recommendations = {r["kind"]: r for r in _wait_for(open_kinds)}
    low = recommendations["low_success_rate"]
    assert low["severity"] in ("warning", "critical") and "Flaky upscale" in low["message"]
    assert set(low["evidence_run_ids"]) <= {r["run_id"] for r in server.get("/telemetry/runs?limit=500")["runs"]}
    assert "EmptyImage" in recommendations["oom"]["message"] + recommendations["oom"]["action"]
    assert len(recommendations["retry"]["evidence_run_ids"]) >= 3
    assert all(r["actions"] == [] for k, r in recommendations.items() if k in ("low_success_rate", "retry"))

    def oom_actions():  # ComfyUI's history record of a run is stored once ComfyUI is idle
        recs = server.get("/telemetry/recommendations?state=open&workflow=wf-flaky")["recommendations"]
        return next((r["actions"] for r in recs if r["kind"] == "oom" and r["actions"]), None)

    actions = {a["kind"]: a for a in _wait_for(oom_actions)}
    assert actions["halve_batch"]["changes"] == [
        {"node_id": "1", "class_type": "EmptyImage", "input": "batch_size", "from": 4096, "to": 2048}]
    assert sum(c["changes"][0]["to"] for c in actions["split_scenes"]["copies"]) == 4096
    evidence = actions["halve_batch"]["run_id"]
    assert evidence in recommendations["oom"]["evidence_run_ids"]
    graph = server.get(f"/telemetry/runs/{evidence}/workflow")
    assert graph["prompt"] == failing_workflow() and graph["workflow"]["id"] == "wf-flaky"
    assert server.request("GET", "/telemetry/runs/no-such-run/workflow")[0] == 404

    status, dismissed = server.request("POST", f"/telemetry/recommendations/{low['id']}/dismiss")
    assert status == 200 and dismissed["state"] == "dismissed"
    assert server.request("POST", "/telemetry/recommendations/999999/dismiss")[0] == 404


def test_a_queued_prompt_gets_a_predicted_duration(comfy_factory):
    server = comfy_factory().start()
    for i in range(6):
        server.run_and_wait(image_workflow(width=128 + 32 * i, height=128, batch=1, color=i, prefix="predict"))
    candidate = image_workflow(width=160, height=128, batch=1, color=200, prefix="predict")

    status, prediction = server.request("POST", "/telemetry/predict", {"prompt": candidate})
    assert status == 200, prediction
    duration = prediction["duration_ms"]
    assert prediction["enough_history"] and duration["value"] > 0
    assert duration["low"] <= duration["value"] <= duration["high"]

    status, unknown = server.request("POST", "/telemetry/predict", {"prompt": slow_workflow(blurs=3)})
    assert status == 200 and "not enough history" in str(unknown)
    status, bad = server.request("POST", "/telemetry/predict", {"prompt": "not a prompt"})
    assert status == 400

    blocker = server.submit(slow_workflow(blurs=30, size=1024, batch=4), client_id=new_client_id())
    server.wait_running(blocker)
    queued = server.submit(candidate)
    eta = server.get("/telemetry/queue/eta")
    items = {item["prompt_id"]: item for item in eta["items"]}
    assert queued in items and items[queued]["predicted_duration_ms"] is not None
    server.interrupt()
    server.wait_history(queued, timeout=120)
