"""Advice you can apply: the graph changes a recommendation offers (`telemetry.analysis.actions`), on API prompts
shaped like ComfyUI's own exports (the default SD txt2img graph, a Wan text-to-video graph), and their arrival
on GET /telemetry/recommendations from runs whose ComfyUI history record is stored."""

from __future__ import annotations

import copy
import json

import test_analysis_support as support
from test_analysis_routes import call
from test_analysis_support import GIB, HOUR, T0, make_run, store_and_evaluate

from telemetry.analysis import actions, queries
from telemetry.analysis.actions import ActionRun, derive, split_lengths, tile_size_for
from telemetry.model import ErrorKind
from telemetry.prompt_info import extract_parameters
from telemetry.store.comfy_history import save_record

service = support.service

# "Export (API)" of ComfyUI's default workflow, batch 4 at 1024x1024.
TXT2IMG = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 156680208700286, "steps": 30, "cfg": 8.0,
                                               "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
                                               "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
                                               "latent_image": ["5", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 4}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a castle at dawn", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
}

# Wan 2.1 text-to-video (ComfyUI's template), 81 frames, labelled with a Run Label node listing three scenes.
WAN_T2V = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 82628696717253, "steps": 30, "cfg": 6.0,
                                               "sampler_name": "uni_pc", "scheduler": "simple", "denoise": 1.0,
                                               "model": ["48", 0], "positive": ["6", 0], "negative": ["7", 0],
                                               "latent_image": ["40", 0]}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a fox runs through snow", "clip": ["38", 0]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "static", "clip": ["38", 0]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["39", 0]}},
    "37": {"class_type": "UNETLoader", "inputs": {"unet_name": "wan2.1_t2v_1.3B_fp16.safetensors",
                                                  "weight_dtype": "default"}},
    "38": {"class_type": "CLIPLoader", "inputs": {"clip_name": "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
                                                  "type": "wan", "device": "default"}},
    "39": {"class_type": "VAELoader", "inputs": {"vae_name": "wan_2.1_vae.safetensors"}},
    "40": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 832, "height": 480, "length": 81,
                                                               "batch_size": 1}},
    "48": {"class_type": "ModelSamplingSD3", "inputs": {"shift": 8.0, "model": ["37", 0]}},
    "28": {"class_type": "SaveAnimatedWEBP", "inputs": {"filename_prefix": "ComfyUI", "fps": 16.0,
                                                        "lossless": False, "quality": 90, "method": "default",
                                                        "images": ["8", 0]}},
    "50": {"class_type": "RunTelemetryLabel", "inputs": {"story_title": "Winter", "scene": "intro, chase, finale",
                                                         "tags": "fox"}},
}


def run_of(prompt: dict, **kw) -> ActionRun:
    return ActionRun("run-1", prompt, extract_parameters(prompt), **kw)


def apply_to_prompt(prompt: dict, changes: list[dict]) -> dict:
    """What a script does with an action: replace classes, set inputs."""
    out = copy.deepcopy(prompt)
    for change in changes:
        node = out[change["node_id"]]
        if "replace_class_type" in change:
            node["class_type"] = change["replace_class_type"]
        else:
            node["inputs"][change["input"]] = change["to"]
    return out


def test_an_oom_in_vae_decode_offers_tiled_decoding_sized_from_the_image():
    found = {a["kind"]: a for a in derive("oom", {}, run_of(TXT2IMG, error_node_id="8", gpu_total_bytes=24 * GIB))}
    tiled = found["vae_tiled"]
    assert tiled["run_id"] == "run-1" and "512 px" in tiled["title"]
    assert tiled["changes"][0] == {"node_id": "8", "class_type": "VAEDecode", "replace_class_type": "VAEDecodeTiled"}
    inputs = {c["input"]: c["to"] for c in tiled["changes"][1:]}
    assert inputs == {"tile_size": 512, "overlap": 64, "temporal_size": 64, "temporal_overlap": 8}
    applied = apply_to_prompt(TXT2IMG, tiled["changes"])
    assert applied["8"] == {"class_type": "VAEDecodeTiled", "inputs": {"samples": ["3", 0], "vae": ["4", 2],
                                                                       **inputs}}
    assert TXT2IMG["8"]["class_type"] == "VAEDecode"
    json.dumps(found, allow_nan=False)


def test_the_tile_size_follows_the_image_and_the_device():
    assert tile_size_for(1024, 1024, 24 * GIB) == 512
    assert tile_size_for(1024, 1024, 8 * GIB) == 256
    assert tile_size_for(3840, 2160, 80 * GIB) == 1024
    assert tile_size_for(1500, 700, None) == 704
    assert tile_size_for(256, 256, None) == 256
    assert tile_size_for(None, None, None) == 512


def test_an_oom_elsewhere_offers_no_tiled_decoding_but_a_halved_batch():
    found = {a["kind"]: a for a in derive("oom", {}, run_of(TXT2IMG, error_node_id="3"))}
    assert "vae_tiled" not in found
    assert found["halve_batch"]["changes"] == [
        {"node_id": "5", "class_type": "EmptyLatentImage", "input": "batch_size", "from": 4, "to": 2}]
    assert "(4 → 2)" in found["halve_batch"]["title"]
    assert "split_scenes" not in found and "lower_steps" not in found


def test_a_batch_of_one_or_a_linked_batch_is_not_halved():
    single = copy.deepcopy(TXT2IMG)
    single["5"]["inputs"]["batch_size"] = 1
    assert [a["kind"] for a in derive("gpu_peak", {}, run_of(single))] == ["vae_tiled"]
    linked = copy.deepcopy(TXT2IMG)
    linked["5"]["inputs"]["batch_size"] = ["12", 0]
    assert "halve_batch" not in {a["kind"] for a in derive("gpu_peak", {}, run_of(linked))}


def test_a_duration_rule_lowers_the_sampler_steps():
    (steps,) = derive("long_duration", {}, run_of(TXT2IMG))
    assert steps["kind"] == "lower_steps"
    assert steps["changes"] == [{"node_id": "3", "class_type": "KSampler", "input": "steps", "from": 30, "to": 15}]
    assert derive("duration_above_baseline", {}, run_of(TXT2IMG))[0]["changes"] == steps["changes"]
    few = copy.deepcopy(TXT2IMG)
    few["3"]["inputs"]["steps"] = actions.MIN_STEPS
    assert derive("long_duration", {}, run_of(few)) == []


def test_the_dominant_node_gets_its_own_parameters_lowered():
    upscaled = {**copy.deepcopy(TXT2IMG),
                "10": {"class_type": "ImageScaleBy", "inputs": {"upscale_method": "lanczos", "scale_by": 3.0,
                                                                "image": ["8", 0]}}}
    (by_sampler,) = derive("dominant_node", {"node_type": "KSampler"}, run_of(upscaled))
    assert [c["node_id"] for c in by_sampler["changes"]] == ["3"]
    (by_scale,) = derive("dominant_node", {"node_type": "ImageScaleBy"}, run_of(upscaled))
    assert by_scale["changes"] == [{"node_id": "10", "class_type": "ImageScaleBy", "input": "scale_by",
                                    "from": 3.0, "to": 2.0}]
    assert "upscale factor" in by_scale["title"]
    assert derive("dominant_node", {"node_type": "SaveImage"}, run_of(upscaled)) == []


def test_a_long_video_is_split_into_the_run_labels_scenes():
    found = {a["kind"]: a for a in derive("oom", {}, run_of(WAN_T2V, error_node_id="3"))}
    split = found["split_scenes"]
    assert split["title"] == "Split the 81 frames into 3 scenes" and split["changes"] == []
    assert [c["scene"] for c in split["copies"]] == ["intro", "chase", "finale"]
    lengths = [c["changes"][0]["to"] for c in split["copies"]]
    assert lengths == [29, 29, 25] and all(n % 4 == 1 for n in lengths)
    first = split["copies"][0]["changes"]
    assert first[0] == {"node_id": "40", "class_type": "EmptyHunyuanLatentVideo", "input": "length", "from": 81,
                        "to": 29}
    assert first[1] == {"node_id": "50", "class_type": "RunTelemetryLabel", "input": "scene",
                        "from": "intro, chase, finale", "to": "intro"}
    copies = [apply_to_prompt(WAN_T2V, c["changes"]) for c in split["copies"]]
    assert [(c["40"]["inputs"]["length"], c["50"]["inputs"]["scene"]) for c in copies] == [
        (29, "intro"), (29, "chase"), (25, "finale")]


def test_one_scene_name_becomes_numbered_parts_and_no_label_node_changes_nothing_else():
    one = copy.deepcopy(WAN_T2V)
    one["50"]["inputs"]["scene"] = "chase"
    split = next(a for a in derive("long_duration", {}, run_of(one)) if a["kind"] == "split_scenes")
    assert [c["scene"] for c in split["copies"]] == ["chase (part 1/3)", "chase (part 2/3)", "chase (part 3/3)"]
    unlabelled = {k: v for k, v in WAN_T2V.items() if k != "50"}
    split = next(a for a in derive("long_duration", {}, run_of(unlabelled, scene="from the API"))
                 if a["kind"] == "split_scenes")
    assert [c["scene"] for c in split["copies"]][0] == "from the API (part 1/3)"
    assert all(len(c["changes"]) == 1 for c in split["copies"])


def test_a_large_image_batch_is_split_when_there_is_no_frame_count():
    batch = {"1": {"class_type": "EmptyImage", "inputs": {"width": 16384, "height": 16384, "batch_size": 4096,
                                                          "color": 0}},
             "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
    found = {a["kind"]: a for a in derive("oom", {}, run_of(batch, error_node_id="1"))}
    assert set(found) == {"halve_batch", "split_scenes"}
    assert found["halve_batch"]["changes"][0]["to"] == 2048
    split = found["split_scenes"]
    assert len(split["copies"]) == actions.MAX_SCENES
    assert sum(c["changes"][0]["to"] for c in split["copies"]) == 4096


def test_split_lengths():
    assert split_lengths(81, 3) == [29, 29, 25]
    assert split_lengths(100, 3) == [34, 33, 33]
    assert split_lengths(5, 8) == [1, 1, 1, 1, 1]
    assert sum(split_lengths(4096, 8)) == 4096


def test_kinds_without_graph_changes_and_odd_prompts_offer_nothing():
    for kind in ("low_success_rate", "retry", "regression", "queue_memory"):
        assert derive(kind, {}, run_of(TXT2IMG)) == []
    assert derive("oom", {}, None) == []
    assert derive("oom", {}, ActionRun("r", {})) == []
    odd = {"1": "not a node", "2": {"class_type": "EmptyLatentImage", "inputs": "bad"},
           "3": {"class_type": "KSampler", "inputs": {"steps": True}}, "8": {"inputs": {}}}
    assert derive("oom", {}, ActionRun("r", odd, error_node_id="8")) == []
    assert derive("long_duration", {}, ActionRun("r", odd)) == []


def _history_item(run_id: str, prompt: dict, workflow: dict | None = None) -> dict:
    extra = {"client_id": "c", "extra_pnginfo": {"workflow": workflow}} if workflow else {"client_id": "c"}
    return {"prompt": [1, run_id, prompt, extra, ["9"]], "outputs": {}, "status": {"status_str": "error"}}


def test_recommendations_list_the_actions_of_their_latest_stored_run(store, service):
    oom_params = extract_parameters(TXT2IMG)
    runs = [make_run(f"ok-{i}", "wf-oom", T0 + i * HOUR, params=oom_params) for i in range(3)]
    runs.append(make_run("oom-1", "wf-oom", T0 + 3 * HOUR, status="failed", error_kind=ErrorKind.OOM,
                         error_node="VAEDecode", params=oom_params))
    runs += [make_run(f"slow-{i}", "wf-slow", T0 + i * HOUR, duration_ms=700_000) for i in range(2)]
    store_and_evaluate(store, service, runs)
    ui = {"id": "wf-oom", "nodes": [{"id": 8, "type": "VAEDecode"}], "links": []}
    save_record(store, "oom-1", _history_item("oom-1", TXT2IMG, ui))
    (status, listing), = call(service, [("GET", "/telemetry/recommendations?state=open", None)])
    assert status == 200
    by_kind = {(r["workflow"], r["kind"]): r for r in listing["recommendations"]}
    assert all(isinstance(r["actions"], list) for r in listing["recommendations"])
    oom_actions = {a["kind"]: a for a in by_kind[("wf-oom", "oom")]["actions"]}
    assert set(oom_actions) == {"vae_tiled", "halve_batch"}
    assert {a["run_id"] for a in oom_actions.values()} == {"oom-1"}
    assert oom_actions["vae_tiled"]["changes"][0]["node_id"] == "8"
    # no stored prompt behind these: no actions, still listed
    assert by_kind[("wf-slow", "long_duration")]["actions"] == []
    json.dumps(listing, allow_nan=False)
    with store.bound():  # ids beyond one IN (...) list
        found = queries.action_runs([f"gone-{i}" for i in range(1200)] + ["oom-1", "ok-0"])
    assert list(found) == ["oom-1"] and found["oom-1"].error_node_id == "8"
    assert found["oom-1"].prompt == TXT2IMG and found["oom-1"].gpu_total_bytes == 24 * GIB


def test_a_runs_stored_graph_is_served_with_its_ui_workflow(tmp_path):
    from test_api_input import call as call_core

    from telemetry.model import Run
    from telemetry.store.database import sqlite_url
    from telemetry.store.store import Store

    store = Store(sqlite_url(str(tmp_path / "graph.db")))
    store.open()
    try:
        store.save_runs([Run("with-graph", "failed", started_at_ms=1_000, workflow_id="wf-oom"),
                         Run("scripted", "success", started_at_ms=2_000)])
        ui = {"id": "wf-oom", "nodes": [{"id": 8, "type": "VAEDecode"}], "links": []}
        save_record(store, "with-graph", _history_item("with-graph", TXT2IMG, ui))
        save_record(store, "scripted", _history_item("scripted", TXT2IMG))
        answers = call_core(store, [("GET", "/telemetry/runs/with-graph/workflow"),
                                    ("GET", "/telemetry/runs/scripted/workflow"),
                                    ("GET", "/telemetry/runs/nope/workflow"),
                                    ("GET", "/telemetry/runs/" + "x" * 201 + "/workflow")])
    finally:
        store.close()
    (s1, with_graph), (s2, scripted), (s3, missing), (s4, too_long) = [(s, json.loads(t)) for s, t in answers]
    assert s1 == 200 and with_graph == {"run_id": "with-graph", "prompt": TXT2IMG, "workflow": ui}
    assert s2 == 200 and scripted["prompt"] == TXT2IMG and scripted["workflow"] is None
    assert (s3, missing) == (404, {"error": "no run with id 'nope'"})
    assert s4 == 400 and "at most 200 characters" in too_long["error"]
