"""The collector turns ComfyUI's recorded /history items (real 0.3.75 runs) into the right Runs."""

from __future__ import annotations

import pytest

from telemetry.collector import BuildContext, RunTrace, build_run, build_started_run, classify_error
from telemetry.prompt_info import extract_labels, extract_parameters, fingerprint


def _case(recorded_runs, name):
    case = next(c for c in recorded_runs["cases"] if c["case"] == name)
    (prompt_id, item), = case["history"].items()
    return prompt_id, item


def test_a_successful_run_has_timestamps_nodes_and_outputs(recorded_runs):
    prompt_id, item = _case(recorded_runs, "success")
    run = build_run(prompt_id, item, context=BuildContext(instance="host:8188", source="watcher"))
    messages = dict((m[0], m[1]) for m in item["status"]["messages"])
    assert run.status == "success" and run.error is None
    assert run.started_at_ms == messages["execution_start"]["timestamp"]
    assert run.finished_at_ms == messages["execution_success"]["timestamp"]
    assert run.duration_ms == run.finished_at_ms - run.started_at_ms
    assert run.queue_wait_ms == run.started_at_ms - item["prompt"][3]["create_time"]
    assert run.workflow_id is not None and run.instance == "host:8188" and run.source == "watcher"
    assert run.output_counts["images"] == 2 and run.frame_count == 2
    assert [n.status for n in run.nodes] == ["executed"] * 4


def test_a_cached_rerun_has_every_node_cached(recorded_runs):
    run = build_run(*_case(recorded_runs, "cached_rerun"))
    assert run.cached_node_count == 4 and run.executed_node_count == 0


def test_a_runtime_error_is_failed_with_node_and_oom_kind(recorded_runs):
    run = build_run(*_case(recorded_runs, "runtime_error"))
    assert run.status == "failed"
    assert (run.error.node_id, run.error.node_type, run.error.kind) == ("1", "EmptyImage", "oom")
    assert {n.node_id: n.status for n in run.nodes} == {"1": "failed", "2": "not_run"}


def test_an_interrupt_marks_the_running_node_and_leaves_the_rest_not_run(recorded_runs):
    run = build_run(*_case(recorded_runs, "interrupted"))
    statuses = {n.node_id: n.status for n in run.nodes}
    assert run.status == "interrupted" and run.error is None
    assert statuses["1"] == statuses["2"] == "executed" and statuses["3"] == "interrupted"
    assert statuses["14"] == "not_run"


def test_several_outputs_count_previews_and_saves(recorded_runs):
    run = build_run(*_case(recorded_runs, "preview_multi_output"))
    assert run.output_counts == {"images": 6, "videos": 0, "audio": 0, "other": 0}
    assert {o.type for o in run.outputs} == {"temp", "output"}


def test_an_in_process_trace_adds_node_times_and_gpu(recorded_runs):
    prompt_id, item = _case(recorded_runs, "success")
    trace = RunTrace(prompt_id, started_at_ms=1, started_perf=10.0, prompt=item["prompt"][2])
    trace.node_started("1", 10.0, 1000, "EmptyImage")
    trace.node_finished("1", 10.25, gpu_peak_bytes=4096)
    trace.node_started("2", 10.25, 1250)
    trace.node_finished("2", 10.5, gpu_peak_bytes=8192)
    trace.finished_perf, trace.gpu_peak_bytes, trace.gpu_name = 11.0, 1024, "H100"
    run = build_run(prompt_id, item, trace)
    nodes = {n.node_id: n for n in run.nodes}
    assert nodes["1"].duration_ms == 250.0 and nodes["2"].gpu_peak_bytes == 8192
    assert run.gpu_peak_bytes == 8192 and run.gpu_name == "H100"


def test_a_run_without_history_is_built_from_the_trace():
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}}
    trace = RunTrace("p1", started_at_ms=100, started_perf=1.0, prompt=prompt, execute_outputs=["1"],
                     extra_data={"create_time": 90, "api_key_comfy_org": "secret"})
    trace.exception = ("RuntimeError", "CUDA error: out of memory")
    trace.finished_perf, trace.finished_at_ms = 1.5, 600
    run = build_run("p1", trace.synthesized_history(), trace)
    assert run.status == "failed" and run.error.kind == "oom" and run.queued_at_ms == 90
    assert "secret" not in str(run.to_dict()) and "secret" not in str(trace.synthesized_history())
    started = build_started_run(trace)
    assert started.status == "running" and started.queue_wait_ms == 10


@pytest.mark.parametrize("exception_type,message,kind", [
    ("torch.OutOfMemoryError", "CUDA out of memory. Tried to allocate 2.00 GiB", "oom"),
    ("RuntimeError", "HIP out of memory", "oom"),
    ("RuntimeError", "MPS backend out of memory", "oom"),
    ("ValueError", "bad input", "error"),
])
def test_error_kinds(exception_type, message, kind):
    assert classify_error(exception_type, message) == kind


def test_fingerprint_ignores_values_but_not_structure():
    a = {"1": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 20, "model": ["2", 0]}},
         "2": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "a.safetensors"}}}
    b = {"1": {"class_type": "KSampler", "inputs": {"seed": 99, "steps": 30, "model": ["2", 0]}},
         "2": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "b.safetensors"}}}
    c = {"1": {"class_type": "KSamplerAdvanced", "inputs": {"seed": 1, "steps": 20, "model": ["2", 0]}},
         "2": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "a.safetensors"}}}
    assert fingerprint(a) == fingerprint(b) != fingerprint(c)


def test_parameters_from_a_typical_graph():
    prompt = {
        "3": {"class_type": "KSampler", "inputs": {"steps": 25, "cfg": 6.5, "sampler_name": "euler",
                                                   "scheduler": "karras", "denoise": 1.0, "model": ["10", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl/base.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 1024, "height": 768, "batch_size": 4}},
        "10": {"class_type": "LoraLoader", "inputs": {"lora_name": "style.safetensors", "model": ["4", 0]}},
    }
    params = extract_parameters(prompt)
    assert params == {"width": 1024, "height": 768, "batch": 4, "steps": 25, "cfg": 6.5, "denoise": 1.0,
                      "sampler": "euler", "scheduler": "karras", "checkpoint": "sdxl/base.safetensors",
                      "loras": ["style.safetensors"], "pixels": 786432}


@pytest.mark.parametrize("prompt", [None, [], "text", {"1": "not a node"}, {"1": {"inputs": None}},
                                    {"1": {"class_type": 5, "inputs": {"x": [1, 2, 3]}}}])
def test_odd_prompts_are_recorded_not_rejected(prompt):
    item = {"prompt": [0, "odd", prompt, {}, []], "outputs": None, "status": None}
    run = build_run("odd", item)
    assert run.run_id == "odd" and run.status == "interrupted" and run.fingerprint


def test_labels_from_label_nodes_and_api():
    prompt = {"7": {"class_type": "RunTelemetryLabel", "inputs": {"story_title": " Saga ", "scene": "",
                                                                  "tags": "a, b,a"}}}
    labels = extract_labels(prompt, {"scene": "S1", "tags": ["c"]})
    assert (labels.story_title, labels.scene, labels.tags) == ("Saga", "S1", ["a", "b", "c"])
