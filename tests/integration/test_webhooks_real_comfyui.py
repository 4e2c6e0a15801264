"""A real ComfyUI with webhooks configured: a failed run reaches a real loopback receiver as a signed `failed`
event carrying the run's error and node, and the API key the client sent in extra_data never reaches it."""

from __future__ import annotations

import time

import pytest
from comfy_harness import failing_workflow
from webhook_receiver import Receiver

pytestmark = pytest.mark.comfyui

SECRET = "whsec-comfy-7d1e"
API_KEY = "comfyui-2f8d7c1b9a0e4f5d-api-key"


def test_a_failed_run_triggers_a_signed_failed_webhook(comfy_factory):
    receiver = Receiver().start()
    try:
        server = comfy_factory(env={"TELEMETRY_WEBHOOK_URLS": receiver.url("/render-alerts"),
                                    "TELEMETRY_WEBHOOK_SECRET": SECRET,
                                    "TELEMETRY_PUBLIC_URL": "http://127.0.0.1:8188"}).start()
        prompt_id, history, run = server.run_and_wait(failing_workflow(),
                                                      extra_data={"api_key_comfy_org": API_KEY})
        assert history["status"]["status_str"] == "error" and run["status"] == "failed"
        received = receiver.wait_for(lambda r: any(g.json.get("event") == "failed" for g in r), timeout=30)
        (got,) = [g for g in received if g.json["event"] == "failed"]
        assert got.path == "/render-alerts" and got.signed_with(SECRET)
        body = got.json
        assert got.event_id == body["event_id"]
        summary = body["run"]
        assert summary["run_id"] == prompt_id and summary["status"] == "failed"
        assert summary["error"]["node_id"] == "1" and summary["error"]["node_type"] == "EmptyImage"
        assert summary["error"]["message"] and summary["url"].endswith(f"?telemetry_run={prompt_id}")
        # The target takes every event, so the analysis after the run may add `recommendation` events: wait until
        # the outbox has delivered all that the receiver got and nothing is left pending.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            health = server.get("/telemetry/health")["webhooks"]
            got_all = list(receiver.received)
            if health["pending"] == 0 and health["delivered"] == len(got_all):
                break
            time.sleep(0.1)
        events = sorted(g.json["event"] for g in got_all)
        assert events.count("failed") == 1 and set(events) <= {"failed", "recommendation"}, events
        assert all(g.signed_with(SECRET) for g in got_all)
        assert all(API_KEY.encode() not in g.body and SECRET.encode() not in g.body for g in got_all)
        assert health["delivered"] == len(events) and health["pending"] == 0 and health["failed"] == 0
        assert health["signed"] is True
        assert SECRET not in str(server.get("/telemetry/health")) and SECRET not in server.log_tail(200_000)
    finally:
        receiver.stop()
