"""Odd prompts are recorded as ComfyUI ended them, never rejected: 5,000 nodes in a wide graph, control
characters and bidi overrides in names and labels, malformed `extra_pnginfo`, outputs that are not JSON. Each run
is compared with ComfyUI's own `/history`, and what the pack serves stays strict JSON."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from comfy_harness import image_workflow

pytestmark = pytest.mark.comfyui

HOSTILE_NODES = Path(__file__).resolve().parent / "hostile_nodes"
NASTY = "A\u202egnp.exe\u202c \u2066iso\u2069 \x07bell\x1b[31m red\x00nul \ufeffbom \U0001f600 Z"


@pytest.fixture(scope="module")
def server(comfy_available, tmp_path_factory):
    from comfy_harness import ComfyServer

    server = ComfyServer(tmp_path_factory.mktemp("comfy-hostile"))
    (server.base_dir / "custom_nodes" / "rt_hostile_nodes").symlink_to(HOSTILE_NODES, target_is_directory=True)
    server.start()
    yield server
    server.stop()


def strict_json(server, path: str):
    """GET `path` and parse it as strict JSON (no NaN/Infinity)."""
    with urllib.request.urlopen(server.url + path, timeout=30) as response:
        text = response.read().decode("utf-8")
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"{path} answered non-JSON {c}"))


def ours_matches_history(server, prompt_id: str, history: dict) -> dict:
    run = server.wait_run(prompt_id, timeout=120)
    comfy_status = history["status"]["status_str"]
    assert (comfy_status, run["status"]) in {("success", "success"), ("error", "failed"), ("error", "interrupted")}
    detail = strict_json(server, f"/telemetry/runs/{prompt_id}")
    assert detail["run_id"] == prompt_id
    return detail


def wide_prompt(pairs: int) -> dict:
    """`pairs` independent EmptyImage -> PreviewImage chains: 2 x pairs nodes, no chain deeper than 2."""
    prompt = {}
    for i in range(pairs):
        prompt[str(2 * i + 1)] = {"class_type": "EmptyImage",
                                  "inputs": {"width": 1, "height": 1, "batch_size": 1, "color": i % 255}}
        prompt[str(2 * i + 2)] = {"class_type": "PreviewImage", "inputs": {"images": [str(2 * i + 1), 0]}}
    return prompt


def test_a_prompt_of_5000_nodes_is_recorded_node_by_node(server):
    prompt_id = server.submit(wide_prompt(2500))
    history = server.wait_history(prompt_id, timeout=600)
    detail = ours_matches_history(server, prompt_id, history)
    assert history["status"]["status_str"] == "success" and detail["status"] == "success"
    assert detail["node_count"] == 5000 and len(detail["nodes"]) == 5000
    assert detail["executed_node_count"] + detail["cached_node_count"] == 5000
    assert detail["output_counts"]["images"] == len(history["outputs"]) > 0  # ComfyUI merges identical nodes
    listed = strict_json(server, f"/telemetry/runs?q={prompt_id}")
    assert [r["run_id"] for r in listed["runs"]] == [prompt_id]


def test_control_characters_and_bidi_overrides_in_names_and_labels_are_kept_and_served_as_json(server):
    extra = {"telemetry": {"workflow_name": NASTY, "story_title": NASTY, "scene": "\u202escene\x1f",
                           "tags": [NASTY, "\x00"]},
             "extra_pnginfo": {"workflow": {"id": "wf-\u202e-\x07", "extra": {"name": "ignored"}}}}
    prompt = image_workflow(prefix="bidi", color=11)
    prompt["3"]["inputs"]["filename_prefix"] = "bidi\u202e"
    prompt_id = server.submit(prompt, extra_data=extra)
    detail = ours_matches_history(server, prompt_id, server.wait_history(prompt_id))
    stored_label = NASTY.replace("\x00", "\ufffd")  # PostgreSQL cannot store NUL
    assert detail["workflow_name"] == stored_label and detail["labels"]["story_title"] == stored_label
    assert stored_label in detail["labels"]["tags"] and detail["workflow_id"] == "wf-\u202e-\x07"
    assert detail["status"] == "success"
    assert detail["labels"]["scene"] == "\u202escene"  # trimmed like any label
    found = strict_json(server, "/telemetry/runs?label=" + urllib.parse.quote("\u202escene"))
    assert prompt_id in [r["run_id"] for r in found["runs"]]
    status, refused = server.request("GET", "/telemetry/runs?label=" + urllib.parse.quote(NASTY))
    assert status == 400 and "NUL" in refused["error"]  # PostgreSQL cannot compare NUL: refused up front
    export = urllib.request.urlopen(server.url + "/telemetry/export?format=jsonl").read()
    assert prompt_id in [json.loads(line)["run_id"] for line in export.decode("utf-8").splitlines()]


@pytest.mark.parametrize("pnginfo", [
    "not a dict",
    ["a", "list"],
    {"workflow": "a string"},
    {"workflow": {"id": 12345, "extra": ["not", "a", "dict"], "nodes": "no"}},
    {"workflow": {"id": ["x"], "extra": {"name": 5, "workflow_name": None}}},
    {"workflow": {"id": "x" * 10_000}},
    {"workflow": None, "other": {"deep": [[[[[[[[[[1]]]]]]]]]]}},
])
def test_malformed_extra_pnginfo_is_recorded_as_comfyui_ended_the_run(server, pnginfo):
    prompt_id = server.submit(image_workflow(prefix="pnginfo", color=21), extra_data={"extra_pnginfo": pnginfo})
    history = server.wait_history(prompt_id)
    detail = ours_matches_history(server, prompt_id, history)
    if isinstance(pnginfo, dict) and isinstance(pnginfo.get("workflow"), dict) and isinstance(
            pnginfo["workflow"].get("id"), str):
        assert detail["workflow_id"] == pnginfo["workflow"]["id"][:128]
    else:
        assert detail["workflow_id"] is None


def test_outputs_that_are_not_json_are_recorded_and_served_as_json(server):
    prompt = {"1": {"class_type": "RunTelemetryHostileOutput", "inputs": {"seed": 7}}}
    prompt_id = server.submit(prompt)
    history = server.wait_history(prompt_id)
    assert history["status"]["status_str"] == "success"
    detail = ours_matches_history(server, prompt_id, history)
    assert detail["status"] == "success" and detail["node_count"] == 1
    assert strict_json(server, "/telemetry/health")["hooks"]["hook_errors"] == 0
    strict_json(server, "/telemetry/runs?limit=500")
    strict_json(server, "/telemetry/stats")


def test_lone_surrogates_in_names_and_labels_do_not_cost_the_run(server):
    # json.dumps escapes them as "\ud800"; ComfyUI's JSON parser hands the pack a str that UTF-8 cannot encode
    extra = {"telemetry": {"workflow_name": "half \ud83d emoji", "story_title": "\udfff", "tags": ["t\ud800"]}}
    prompt_id = server.submit(image_workflow(prefix="surrogate", color=12), extra_data=extra)
    detail = ours_matches_history(server, prompt_id, server.wait_history(prompt_id))
    assert detail["status"] == "success" and detail["workflow_name"] == "half \ufffd emoji"
    assert detail["labels"]["story_title"] == "\ufffd" and detail["labels"]["tags"] == ["t\ufffd"]
    assert server.get("/telemetry/health")["dropped"] == 0
