"""Every kind of run, executed by a real ComfyUI with the pack installed, is recorded and agrees with ComfyUI's
own /history record of the same run."""

from __future__ import annotations

import time

import pytest
from comfy_harness import (
    animated_workflow,
    failing_workflow,
    image_workflow,
    multi_output_workflow,
    new_client_id,
    slow_workflow,
)

pytestmark = pytest.mark.comfyui


def _messages(history: dict) -> dict:
    return {name: data for name, data in history["status"]["messages"]}


def _assert_matches_history(run: dict, history: dict) -> None:
    messages = _messages(history)
    assert run["started_at_ms"] == messages["execution_start"]["timestamp"]
    end = next(messages[k] for k in ("execution_success", "execution_error", "execution_interrupted")
               if k in messages)
    assert run["finished_at_ms"] == end["timestamp"]
    assert run["queued_at_ms"] == history["prompt"][3]["create_time"]
    assert run["duration_ms"] == end["timestamp"] - messages["execution_start"]["timestamp"]
    assert run["queue_wait_ms"] == messages["execution_start"]["timestamp"] - history["prompt"][3]["create_time"]
    history_files = sorted(entry["filename"] for ui in history["outputs"].values()
                           for entry in ui.get("images", []))
    assert sorted(o["filename"] for o in run["outputs"] if o["kind"] in ("images", "videos")) == history_files


def test_headless_run_is_recorded_with_nodes_and_outputs(comfy):
    prompt_id, history, run = comfy.run_and_wait(image_workflow(prefix="headless"))
    assert run["status"] == "success"
    _assert_matches_history(run, history)
    assert run["node_count"] == 3 and run["executed_node_count"] == 3 and run["cached_node_count"] == 0
    assert run["output_counts"] == {"images": 2, "videos": 0, "audio": 0, "other": 0}
    assert run["frame_count"] == 2
    assert run["parameters"]["width"] == 64 and run["parameters"]["batch"] == 2
    assert run["instance"].endswith(f":{comfy.port}")
    assert run["ram_peak_bytes"] and run["ram_peak_bytes"] > 10_000_000
    nodes = {n["node_id"]: n for n in run["nodes"]}
    assert [nodes[i]["class_type"] for i in "123"] == ["EmptyImage", "ImageBlur", "SaveImage"]
    assert all(nodes[i]["status"] == "executed" and nodes[i]["duration_ms"] > 0 for i in "123")
    assert all(run["started_at_ms"] <= nodes[i]["started_at_ms"] <= run["finished_at_ms"] for i in "123")
    assert run["gpu_peak_bytes"] is None  # CPU-only server: null, not a failure


def test_fully_cached_rerun_marks_every_node_cached(comfy):
    client = new_client_id()
    workflow = image_workflow(prefix="cached", color=123)
    first_id, _, first = comfy.run_and_wait(workflow, client_id=client)
    second_id, history, second = comfy.run_and_wait(workflow, client_id=client)
    assert first["executed_node_count"] == 3
    assert second["status"] == "success"
    assert second["cached_node_count"] == 3 and second["executed_node_count"] == 0
    assert {n["status"] for n in second["nodes"]} == {"cached"}
    assert second["fingerprint"] == first["fingerprint"]
    _assert_matches_history(second, history)


def test_same_graph_with_other_values_keeps_its_fingerprint(comfy):
    _, _, a = comfy.run_and_wait(image_workflow(width=48, color=1, prefix="fpa"))
    _, _, b = comfy.run_and_wait(image_workflow(width=80, color=2, prefix="fpb"))
    _, _, c = comfy.run_and_wait(multi_output_workflow())
    assert a["fingerprint"] == b["fingerprint"] != c["fingerprint"]


def test_runtime_error_is_recorded_as_failed_with_the_failing_node(comfy):
    prompt_id, history, run = comfy.run_and_wait(failing_workflow(), client_id=new_client_id())
    error = _messages(history)["execution_error"]
    assert run["status"] == "failed"
    assert run["error"]["node_id"] == error["node_id"] == "1"
    assert run["error"]["node_type"] == "EmptyImage"
    assert run["error"]["exception_type"] == error["exception_type"]
    assert run["error"]["kind"] == "oom"  # "can't allocate memory"
    assert "allocate" in run["error"]["message"]
    statuses = {n["node_id"]: n["status"] for n in run["nodes"]}
    assert statuses == {"1": "failed", "2": "not_run"}
    _assert_matches_history(run, history)


def test_interrupted_run_is_recorded_as_interrupted(comfy):
    prompt_id = comfy.submit(slow_workflow(blurs=14, size=1024, batch=4), client_id=new_client_id())
    comfy.wait_running(prompt_id)
    time.sleep(1.0)
    comfy.interrupt()
    history = comfy.wait_history(prompt_id, timeout=120)
    run = comfy.wait_run(prompt_id)
    assert "execution_interrupted" in _messages(history)
    assert run["status"] == "interrupted"
    assert run["error"] is None
    statuses = [n["status"] for n in run["nodes"]]
    assert "interrupted" in statuses and "not_run" in statuses
    _assert_matches_history(run, history)


def test_several_output_nodes_are_all_counted(comfy):
    _, history, run = comfy.run_and_wait(multi_output_workflow(batch=3), client_id=new_client_id())
    assert run["output_counts"]["images"] == 6
    assert run["frame_count"] == 6
    assert {o["node_id"] for o in run["outputs"]} == {"2", "4"}
    assert {o["type"] for o in run["outputs"]} == {"temp", "output"}
    _assert_matches_history(run, history)


def test_animation_counts_its_frames(comfy):
    _, history, run = comfy.run_and_wait(animated_workflow(frames=5))
    assert run["output_counts"]["videos"] == 1 and run["output_counts"]["images"] == 0
    assert run["frame_count"] == 5


def test_unicode_names_and_labels_from_api_and_label_node(comfy):
    workflow = image_workflow(prefix="unicode")
    workflow["9"] = {"class_type": "RunTelemetryLabel",
                     "inputs": {"story_title": "Le Voyage — 夢", "scene": "Szene 3 🎬", "tags": "雨, night,  wide "}}
    extra = {"telemetry": {"workflow_name": "Портрет ✨ <b>bold</b>", "tags": ["api-tag"]},
             "extra_pnginfo": {"workflow": {"id": "6c1d0a7e-wf-unicode", "nodes": []}}}
    _, _, run = comfy.run_and_wait(workflow, extra_data=extra)
    assert run["workflow_name"] == "Портрет ✨ <b>bold</b>"
    assert run["workflow_id"] == "6c1d0a7e-wf-unicode"
    assert run["labels"] == {"story_title": "Le Voyage — 夢", "scene": "Szene 3 🎬",
                             "tags": ["雨", "night", "wide", "api-tag"]}
    found = comfy.get("/telemetry/runs?label=%E9%9B%A8&limit=5")
    assert run["run_id"] in [r["run_id"] for r in found["runs"]]


def test_api_keys_never_reach_the_database_or_rest(comfy):
    secret = "sk-telemetry-test-" + new_client_id()
    extra = {"api_key_comfy_org": secret, "auth_token_comfy_org": secret,
             "telemetry": {"workflow_name": "with secrets"}}
    prompt_id, _, run = comfy.run_and_wait(image_workflow(prefix="secret"), client_id=new_client_id(),
                                           extra_data=extra)
    assert secret not in str(run)
    assert secret not in str(comfy.get("/telemetry/runs?limit=500"))
    status, export = comfy.request("GET", "/telemetry/export?format=jsonl")
    assert status == 200 and secret not in str(export)
    db = comfy.database_path
    # every file of the store: the database, its -wal/-shm, and the instance lock files in `telemetry.db.instances/`
    files = [p for p in db.parent.rglob("*")
             if p.is_file() and p.relative_to(db.parent).parts[0].startswith("telemetry.db")]
    assert db in files
    blob = b"".join(p.read_bytes() for p in files)
    assert secret.encode() not in blob
    assert secret not in comfy.log_tail(10**7)


def test_workflow_name_reported_by_the_panel_renames_its_runs(comfy):
    extra = {"extra_pnginfo": {"workflow": {"id": "wf-rename-me", "nodes": []}}}
    _, _, run = comfy.run_and_wait(image_workflow(prefix="rename"), extra_data=extra)
    assert run["workflow_name_source"] == "derived"
    status, body = comfy.request("POST", "/api/telemetry/workflows", {"id": "wf-rename-me", "name": "Portrait v2"})
    assert status == 200 and body["runs_renamed"] >= 1
    assert comfy.get(f"/telemetry/runs/{run['run_id']}")["workflow_name"] == "Portrait v2"
    _, _, again = comfy.run_and_wait(image_workflow(prefix="rename2"), extra_data=extra)
    assert again["workflow_name"] == "Portrait v2"


def test_rejected_prompt_is_a_400_from_comfyui_and_records_nothing(comfy):
    before = comfy.get("/telemetry/runs?limit=1")["total"]
    bad = image_workflow()
    bad["1"]["inputs"]["width"] = "not a number"
    status, body = comfy.request("POST", "/prompt", {"prompt": bad})
    assert status == 400
    time.sleep(0.5)
    assert comfy.get("/telemetry/runs?limit=1")["total"] == before


def test_health_reports_hooks_and_database(comfy):
    health = comfy.get("/telemetry/health")
    assert health["hooks"]["executor"] and health["hooks"]["task_done"] and health["hooks"]["progress_handler"]
    assert health["hooks"]["hook_errors"] == 0
    assert health["hooks"]["runs_seen"] >= 1 and health["hooks"]["worker_ms_per_run"] > 0
    assert health["database"]["kind"] == "sqlite" and health["database"]["state"] == "ok"
    assert health["dropped"] == 0


def test_nodes_inside_a_subgraph_keep_their_parent_and_are_summed(comfy):
    # The frontend flattens a subgraph's inner nodes into "<subgraph node id>:<inner id>" in the API prompt.
    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 5}},
        "12:1": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 3, "sigma": 1.0}},
        "12:2": {"class_type": "ImageInvert", "inputs": {"image": ["12:1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["12:2", 0], "filename_prefix": "subgraph"}},
    }
    _, _, run = comfy.run_and_wait(prompt)
    parents = {n["node_id"]: n["parent_node_id"] for n in run["nodes"]}
    assert parents == {"1": None, "12:1": "12", "12:2": "12", "3": None}
    subgraph, = run["subgraphs"]
    inner = [n["duration_ms"] for n in run["nodes"] if n["parent_node_id"] == "12"]
    assert subgraph["parent_node_id"] == "12" and subgraph["nodes"] == 2
    assert subgraph["duration_ms"] == pytest.approx(sum(inner))
