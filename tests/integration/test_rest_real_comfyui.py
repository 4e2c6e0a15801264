"""The REST routes and the websocket push, served by a real ComfyUI (also under /api)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time

import aiohttp
import pytest
from comfy_harness import failing_workflow, image_workflow, new_client_id
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.comfyui


@pytest.mark.parametrize("path,message", [
    ("/telemetry/runs?limit=abc", "'limit' must be an integer"),
    ("/telemetry/runs?limit=900", "'limit' must be at most 500"),
    ("/telemetry/runs?status=ok", "'status' has unknown value"),
    ("/api/telemetry/runs?sort=name", "'sort' must be one of"),
    ("/telemetry/stats?since_ms=x", "'since_ms' must be an integer"),
    ("/telemetry/export?format=xml", "'format' must be csv or jsonl"),
])
def test_malformed_requests_get_a_400_that_says_what_is_wrong(comfy, path, message):
    status, body = comfy.request("GET", path)
    assert status == 400 and message in body["error"]


def test_unknown_run_and_preset_are_404(comfy):
    assert comfy.request("GET", "/telemetry/runs/no-such-run")[0] == 404
    assert comfy.request("DELETE", "/telemetry/presets/999999")[0] == 404


def test_presets_round_trip_and_validate(comfy):
    status, body = comfy.request("POST", "/telemetry/presets", b"{not json")
    assert status == 400 and "not valid JSON" in body["error"]
    status, body = comfy.request("POST", "/telemetry/presets", {"name": "x", "filters": {"colour": "red"}})
    assert status == 400 and "unknown key" in body["error"]
    status, preset = comfy.request("POST", "/telemetry/presets",
                                   {"name": "Failures 🚨", "filters": {"status": ["failed"], "q": "VAE"}})
    assert status == 201 and preset["filters"] == {"status": ["failed"], "q": "VAE"}
    assert "Failures 🚨" in [p["name"] for p in comfy.get("/api/telemetry/presets")["presets"]]
    assert comfy.request("DELETE", f"/telemetry/presets/{preset['id']}")[0] == 200


def test_runs_stats_and_exports_agree(comfy):
    ok_id, _, _ = comfy.run_and_wait(image_workflow(prefix="rest", color=77))
    bad_id, _, _ = comfy.run_and_wait(failing_workflow())
    runs = comfy.get("/telemetry/runs?limit=500")
    stats = comfy.get("/telemetry/stats")
    assert runs["total"] == stats["total_runs"] == sum(stats["by_status"].values())
    assert [r["run_id"] for r in comfy.get("/telemetry/runs?status=failed&limit=500")["runs"]].count(bad_id) == 1
    newest = comfy.get("/telemetry/runs?limit=2")["runs"]
    assert newest[0]["run_id"] == bad_id and newest[1]["run_id"] == ok_id
    status, text = comfy.request("GET", "/telemetry/export?format=csv&status=failed")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert status == 200 and bad_id in [r["run_id"] for r in rows] and all(r["status"] == "failed" for r in rows)
    status, text = comfy.request("GET", "/telemetry/export?format=jsonl")
    lines = [json.loads(line) for line in text.splitlines()] if isinstance(text, str) else [text]
    assert len(lines) == runs["total"]


def test_each_stored_run_is_pushed_to_browsers_as_json(comfy):
    # The run holds the worker a few seconds without using the CPU (a sleep, its own inputs so ComfyUI does not
    # cache it): long enough that its `running` record is written (runs under START_RECORD_DELAY_S only get their
    # final one), and as long on a loaded machine as on an idle one. A CPU-bound workflow took over 2 minutes on a
    # shared 2-core CI machine, past any wait for its final push.
    seconds = round(2 + (time.time_ns() % 1000) / 100_000, 5)

    async def scenario():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{comfy.url}/ws?clientId={new_client_id()}") as ws:
                prompt_id = await asyncio.to_thread(
                    comfy.submit, {"1": {"class_type": "TelemetryTestSleep", "inputs": {"seconds": seconds}}})
                seen = []
                async with asyncio.timeout(120):  # a generous bound for a loaded machine, not a timing claim
                    async for message in ws:
                        if message.type != aiohttp.WSMsgType.TEXT:
                            continue
                        data = json.loads(message.data)
                        if data["type"] == "telemetry.run" and data["data"]["run_id"] == prompt_id:
                            seen.append(data["data"]["status"])
                            if data["data"]["status"] != "running":
                                return prompt_id, seen

    prompt_id, seen = asyncio.run(scenario())
    assert seen == ["running", "success"]
    # pushed after the write: a browser that fetches the run on the push finds it stored
    assert comfy.get(f"/telemetry/runs/{prompt_id}")["status"] == "success"


def test_prometheus_metrics_count_runs_for_fleets(comfy):
    comfy.run_and_wait(image_workflow(prefix="metrics", color=55), extra_data={"telemetry": {
        "workflow_name": 'quote " and \\ slash'}})
    status, text = comfy.request("GET", "/telemetry/metrics")
    assert status == 200
    instance = f"{comfy.get('/telemetry/health')['instance']}"
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    runs = (("comfyui_instance", instance), ("status", "success"), ("workflow", 'quote " and \\ slash'))
    assert samples[("comfyui_telemetry_runs_total", runs)] == 1
    assert samples[("comfyui_telemetry_database_up", (("comfyui_instance", instance),))] == 1
    assert samples[("comfyui_telemetry_run_duration_seconds_count", (("comfyui_instance", instance),))] >= 1
    assert "# TYPE comfyui_telemetry_run_duration_seconds histogram" in text
