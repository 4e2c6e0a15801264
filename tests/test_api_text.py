"""Text that JSON can carry but UTF-8 and PostgreSQL cannot (lone surrogates, NUL) never costs a run: the
collector makes every string of a Run storable, and every payload we serve stays valid UTF-8 JSON. Against a real
SQLite file and the real PostgreSQL server."""

from __future__ import annotations

import json

from telemetry.collector import build_run
from telemetry.jsonsafe import json_safe, storable_text

ODD = "name \ud800 lone, \udfff low, \x00 nul, \u202e bidi, \x07 bell, \U0001f600 ok"


def history_item(prompt_id: str) -> dict:
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1,
                                                           "color": 0, "note\ud800": "\x00"}},
              "2": {"class_type": "SaveImage\ud800", "inputs": {"images": ["1", 0], "filename_prefix": ODD}}}
    extra = {"telemetry": {"workflow_name": ODD, "story_title": ODD, "scene": "\ud800", "tags": [ODD]},
             "extra_pnginfo": {"workflow": {"id": "wf\ud800\x00"}}}
    return {"prompt": [0, prompt_id, prompt, extra, ["2"]], "outputs": {},
            "status": {"status_str": "error", "completed": False, "messages": [
                ["execution_start", {"prompt_id": prompt_id, "timestamp": 1_000}],
                ["execution_error", {"prompt_id": prompt_id, "node_id": "2", "node_type": "SaveImage\ud800",
                                     "exception_type": "ValueError", "exception_message": ODD,
                                     "traceback": [ODD], "timestamp": 2_000}]]}}


def test_a_run_with_lone_surrogates_and_nul_is_stored_and_served(store):
    run = build_run("odd-1", history_item("odd-1"))
    store.save_runs([run])
    stored = store.get_run("odd-1")
    expected = storable_text(ODD)
    assert "\ufffd" in expected and "\x00" not in expected and "\U0001f600" in expected and "\u202e" in expected
    assert stored.status == "failed" and stored.workflow_name == expected
    assert stored.labels.story_title == expected and stored.labels.scene == "\ufffd"
    assert stored.error.message == expected and stored.workflow_id == "wf\ufffd\ufffd"
    body = json.dumps(json_safe(stored.to_dict()), ensure_ascii=False).encode("utf-8")
    assert json.loads(body)["workflow_name"] == expected


def test_served_payloads_are_valid_utf8_whatever_they_hold():
    payload = json_safe({"k\ud800": ["\udfff", {"x": "\x00"}], "n": float("nan")})
    assert json.loads(json.dumps(payload, ensure_ascii=False).encode("utf-8")) == {
        "k\ufffd": ["\ufffd", {"x": "\ufffd"}], "n": None}
