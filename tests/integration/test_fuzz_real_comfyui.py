"""schemathesis against a real ComfyUI with the pack: every route of /telemetry/openapi.json fuzzed with valid and
invalid input (bounded examples per operation). No answer >= 500, every answer as the description says; the
counts go to the fault report. Also here: the cross-origin refusal, which ComfyUI's own check leaves to us for
hosts other than loopback."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from comfy_harness import ComfyServer, failing_workflow, image_workflow
from fault_report import record_fuzz_result
from fuzz_openapi import fuzz

pytestmark = pytest.mark.comfyui

EXAMPLES_PER_OPERATION = 12


@pytest.fixture(scope="module")
def server(comfy_available, tmp_path_factory):
    server = ComfyServer(tmp_path_factory.mktemp("comfy-fuzz")).start()
    server.run_and_wait(image_workflow(prefix="fuzz", color=41),
                        extra_data={"telemetry": {"workflow_name": "fuzz \u202e", "tags": ["a"]}})
    server.run_and_wait(failing_workflow())
    yield server
    server.stop()


def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_description(server):
    outcome = fuzz(server.url, max_examples=EXAMPLES_PER_OPERATION)
    record_fuzz_result("schemathesis on /telemetry", requests=outcome.requests, responses_5xx=outcome.responses_5xx)
    assert outcome.operations >= 23 and outcome.requests > 300
    assert outcome.responses_5xx == 0, outcome.summary()
    assert outcome.failures == [], outcome.summary()
    health = server.get("/telemetry/health")
    assert health["hooks"]["hook_errors"] == 0


def post(server, path: str, body, headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(server.url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_cross_origin_writes_are_refused_for_any_host(server):
    preset = {"name": "cross-origin", "filters": {"status": ["failed"]}}
    lan_host = f"comfy.lan:{server.port}"  # not loopback: ComfyUI's own origin check does not look
    status, body = post(server, "/telemetry/presets", preset, {"Host": lan_host, "Origin": "http://evil.example"})
    assert status == 403 and json.loads(body)["error"].startswith("cross-origin request refused")
    status, body = post(server, "/api/telemetry/presets", preset,
                        {"Host": lan_host, "Origin": f"http://{lan_host}"})
    assert status == 201
    status, _ = post(server, "/telemetry/presets", preset, {})  # curl and scripts send no Origin
    assert status == 201
    assert "cross-origin" in [p["name"] for p in server.get("/telemetry/presets")["presets"]]


def test_prune_on_a_loopback_comfyui_needs_no_token(server):
    runs = server.get("/telemetry/runs?limit=500")["runs"]
    status, body = server.request("DELETE", f"/telemetry/runs?keep={max(len(runs) - 1, 0)}")
    assert status == 200 and body["deleted"] == min(1, len(runs)) and body["keep"] == max(len(runs) - 1, 0)
