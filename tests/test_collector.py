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


# --- newest ComfyUI: partial success, output metadata, cancelled prompts --------------------------------------


def _history(status_str, messages, outputs=None):
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {}}, "2": {"class_type": "SaveImage",
                                                                   "inputs": {"images": ["1", 0]}},
              "3": {"class_type": "Broken", "inputs": {}}}
    return {"prompt": [0, "p", prompt, {"create_time": 900}, ["2", "3"]], "outputs": outputs or {},
            "status": {"status_str": status_str, "completed": False, "messages": messages}}


def test_a_partial_success_keeps_its_own_status_and_the_failed_node():
    """Comfy-Org/ComfyUI PR #14918 (open): with node_failure_policy continue_independent, history's status_str is
    `partial_success` and per-node errors are reported; independent branches keep their outputs."""
    item = _history("partial_success", [
        ["execution_start", {"timestamp": 1000}],
        ["execution_error", {"node_id": "3", "node_type": "Broken", "exception_type": "ValueError",
                             "exception_message": "bad input", "executed": ["1", "2"], "timestamp": 1500}],
    ], outputs={"2": {"images": [{"filename": "a.png", "type": "output"}]}})
    run = build_run("p", item)
    assert run.status == "partial_success"
    assert (run.error.node_id, run.error.exception_type) == ("3", "ValueError")
    assert {n.node_id: n.status for n in run.nodes} == {"1": "executed", "2": "executed", "3": "failed"}
    assert run.output_counts["images"] == 1


def test_output_metadata_frame_count_comes_first():
    """Comfy-Org/ComfyUI PR #15417 (comfy_execution/media_enrichment.py): file outputs carry metadata with
    frame_count; it wins over the fed batch and over counting the file."""
    outputs = {"2": {"images": [{"filename": "clip.webp", "type": "output",
                                 "metadata": {"kind": "video", "width": 32, "height": 32, "frame_count": 48}}],
                     "animated": [True]}}
    item = _history("success", [["execution_start", {"timestamp": 1}], ["execution_success", {"timestamp": 2}]],
                    outputs)
    counted = []
    run = build_run("p", item, context=BuildContext(frame_counter=lambda o: counted.append(o) or 3))
    assert [o.frame_count for o in run.outputs] == [48] and counted == []


def test_a_cancelled_prompt_has_its_queue_time_and_no_duration():
    from telemetry.collector import build_cancelled_run

    item = (5, "gone", {"1": {"class_type": "EmptyImage", "inputs": {}}}, {"create_time": 1_000}, ["1"])
    run = build_cancelled_run(item, 4_500, BuildContext(instance="i"))
    assert (run.status, run.queued_at_ms, run.started_at_ms, run.queue_wait_ms, run.duration_ms) == (
        "cancelled", 1_000, 4_500, 3_500.0, None)
    assert run.instance == "i" and run.workflow_name and run.node_count == 1
    assert build_cancelled_run(("bad",), 1) is None


@pytest.mark.parametrize("dynamic, torch_peak, nvml, mem_info, expected", [
    (True, 1, 5, 4, (5, "nvml_device")),
    (True, 1, None, 4, (4, "mem_get_info")),
    (True, 1, None, None, (1, "torch_allocator")),
    (False, 1, 5, 4, (1, "torch_allocator")),
    (None, None, 5, 4, (5, "nvml_device")),
    (None, None, None, 4, (4, "mem_get_info")),
    (None, None, None, None, (None, None)),
])
def test_the_gpu_peak_source_follows_its_documented_priority(dynamic, torch_peak, nvml, mem_info, expected):
    from telemetry.collector import choose_gpu_peak

    assert choose_gpu_peak(torch_peak, nvml, mem_info, dynamic) == expected


def test_new_statuses_flow_through_filters_stats_and_metrics(store):
    from telemetry.collector import build_cancelled_run
    from telemetry.filters import FilterError, Page, parse_run_filters
    from telemetry.metrics import RunMetrics, exposition

    ok = build_run("ok", _history("success", [["execution_start", {"timestamp": 1000}],
                                               ["execution_success", {"timestamp": 2000}]]))
    partial = build_run("part", _history("partial_success", [["execution_start", {"timestamp": 3000}]]))
    cancelled = build_cancelled_run((1, "gone", {}, {"create_time": 500}, []), 4_000)
    ok.gpu_peak_bytes, ok.gpu_peak_source, ok.dynamic_vram = 123, "nvml_device", True
    store.save_runs([ok, partial, cancelled])
    runs, total, _, _ = store.query_runs(parse_run_filters({"status": "cancelled"}), Page())
    assert total == 1 and runs[0].run_id == "gone" and runs[0].queue_wait_ms == 3500.0
    stored = store.get_run("ok")
    assert (stored.gpu_peak_bytes, stored.gpu_peak_source, stored.dynamic_vram) == (123, "nvml_device", True)
    stats = store.stats(parse_run_filters({}))
    assert stats["by_status"]["cancelled"] == 1 and stats["by_status"]["partial_success"] == 1
    assert stats["success_rate"] == 0.5  # cancelled prompts never ran: not in the denominator
    with pytest.raises(FilterError, match="cancelled"):
        parse_run_filters({"status": "nope"})
    metrics = RunMetrics("i")
    for run in (ok, partial, cancelled):
        metrics.observe(run)
    text = exposition(metrics.registry)[0].decode()
    assert 'status="cancelled"' in text and 'status="partial_success"' in text


def test_migration_5_adds_the_gpu_peak_source_and_dynamic_vram_columns_to_an_older_database(tmp_path):
    import sqlite3

    from telemetry.store.database import sqlite_url
    from telemetry.store.migrations import LATEST_VERSION
    from telemetry.store.store import Store

    path = tmp_path / "old.db"
    store = Store(sqlite_url(str(path)))
    store.open()
    store.close()
    with sqlite3.connect(path) as db:  # the schema as version 4 left it
        db.execute("ALTER TABLE runs DROP COLUMN gpu_peak_source")
        db.execute("ALTER TABLE runs DROP COLUMN dynamic_vram")
        db.execute("DELETE FROM schema_version WHERE version >= 5")
    store = Store(sqlite_url(str(path)))
    store.open()
    run = build_run("r", _history("success", [["execution_start", {"timestamp": 1}],
                                             ["execution_success", {"timestamp": 2}]]))
    run.gpu_peak_source, run.dynamic_vram = "mem_get_info", False
    store.save_runs([run])
    assert (store.get_run("r").gpu_peak_source, store.get_run("r").dynamic_vram) == ("mem_get_info", False)
    store.close()
    with sqlite3.connect(path) as db:
        versions = {v for (v,) in db.execute("SELECT version FROM schema_version")}
        assert max(versions) == LATEST_VERSION and 5 in versions
