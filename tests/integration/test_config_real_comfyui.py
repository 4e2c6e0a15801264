"""A real ComfyUI with a bad config file: values written as strings are used as numbers and booleans, what
cannot be used is reported in /telemetry/health and never makes a hook raise, `"enabled": "false"` turns capture
off, and a config file that does not parse is never overwritten by `PUT /telemetry/config` (409)."""

from __future__ import annotations

import json
import time

import pytest
from comfy_harness import image_workflow

pytestmark = pytest.mark.comfyui


def test_a_bad_config_file_never_costs_a_run_and_is_never_overwritten(comfy_factory, tmp_path):
    base = tmp_path / "comfy-config"
    config_file = base / "user" / "__run_telemetry" / "config.json"
    config_file.parent.mkdir(parents=True)
    config_file.write_text(json.dumps({
        "queue_max_events": "50000", "buffer_max_runs": "100", "gpu_sample_interval_ms": "50",
        "gpu_samples_per_run": "many", "enabled": "true",
        "analysis": {"duration_threshold_ms": "90000", "history_runs": -1}}))
    server = comfy_factory(base_dir=base).start()

    # strings are read as numbers: every hand-off works, the run is recorded as ComfyUI ended it
    prompt_id, history, run = server.run_and_wait(image_workflow(prefix="cfg", color=31))
    assert history["status"]["status_str"] == "success" and run["status"] == "success"
    health = server.get("/telemetry/health")
    assert health["hooks"]["hook_errors"] == 0 and health["dropped"] == 0
    warnings = {w["key"]: w for w in health["config_warnings"]}
    assert set(warnings) == {"gpu_samples_per_run", "analysis.history_runs"}
    assert warnings["gpu_samples_per_run"]["value"] == '"many"' and warnings["gpu_samples_per_run"]["used"] == 600
    assert server.get("/telemetry/config")["duration_threshold_ms"] == 90_000
    server.stop()

    # "enabled": "false" turns capture off; the history is still served
    config_file.write_text(json.dumps({"enabled": "false"}))
    server.start()
    off_id = server.submit(image_workflow(prefix="cfg-off", color=32))
    assert server.wait_history(off_id)["status"]["status_str"] == "success"
    time.sleep(2.0)
    assert server.request("GET", f"/telemetry/runs/{off_id}")[0] == 404
    assert server.request("GET", f"/telemetry/runs/{prompt_id}")[0] == 200
    hooks = server.get("/telemetry/health")["hooks"]
    assert not any(hooks.get(k) for k in ("executor", "task_done", "progress_handler"))
    server.stop()

    # a file that does not parse: defaults, a warning, and the PUT refuses to overwrite it
    broken = '{"database_url": "postgresql://telemetry@db:5432/telemetry", "instance": "render-1",,}'
    config_file.write_text(broken)
    server.start()
    broken_id, history, run = server.run_and_wait(image_workflow(prefix="cfg-broken", color=33))
    assert run["status"] == "success"
    (warning,) = server.get("/telemetry/health")["config_warnings"]
    assert warning["key"] == "(file)" and "cannot be read as JSON" in warning["message"]
    status, body = server.request("PUT", "/telemetry/config", {"duration_threshold_ms": 120_000})
    assert status == 409 and "left unchanged" in body["error"] and str(config_file) in body["error"]
    assert config_file.read_text() == broken
    assert server.get("/telemetry/config")["duration_threshold_ms"] == 60_000
