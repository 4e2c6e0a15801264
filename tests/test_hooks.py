"""The hooks wrap ComfyUI's classes idempotently, pass everything through, and never let an error escape.

The ComfyUI side is tests/fakes/comfy.py, shaped on ComfyUI's own progress.py, graph.py, execution.py and
caching.py (files and versions named there), and tests/fakes/lifecycle.py for the proposed lifecycle API.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import sys
import types
import warnings
from pathlib import Path

import pytest
from fakes import comfy as fake
from fakes.lifecycle import CancelledEvent, ExecutionLifecycleApi, SucceededEvent

from telemetry.capture import hooks, lifecycle
from telemetry.collector import BuildContext
from telemetry.model import GpuPeakSource, RunStatus

REPO = Path(__file__).resolve().parents[1]


class FakeRecorder:
    def __init__(self, fail=False):
        self.jobs, self.fail = [], fail

    def submit(self, job, reason="run", **kwargs):
        if self.fail:
            raise RuntimeError("recorder exploded")
        self.jobs.append((reason, job))
        return True

    def runs(self, reason=None):
        """Run the submitted jobs as the recorder thread would; the runs they built."""
        built = []
        for job_reason, job in self.jobs:
            if reason is None or job_reason == reason:
                built.extend(job())
        return built


def installed(expand=False, **capture_options):
    progress = fake.ProgressModule()
    execution = fake.make_execution(progress, expand=expand)
    capture = hooks.Capture(FakeRecorder(), BuildContext(), **capture_options)
    result = hooks.install(capture, execution, progress)
    return capture, execution, result


def run_prompt(execution, prompt, prompt_id, extra=None):
    """Queue a prompt, let the worker take it, execute it and mark it done, as main.py's prompt_worker does."""
    queue = execution.PromptQueue()
    queue.put((0, prompt_id, prompt, extra or {}, sorted(prompt)))
    item, item_id = queue.get()
    executor = execution.PromptExecutor()
    result = executor.execute(item[2], item[1], item[3], item[4])
    queue.task_done(item_id, executor.history_result, {"status_str": "success", "completed": True,
                                                        "messages": executor.status_messages})
    return result


def test_install_is_idempotent_and_chains():
    capture, execution, first = installed()
    wrapped = execution.PromptExecutor.execute, execution.PromptQueue.delete_queue_item
    assert hooks.install(capture, execution, fake.ProgressModule()) == first
    assert first == {"executor": True, "task_done": True, "progress_handler": True, "queue_cancel": True}
    assert (execution.PromptExecutor.execute, execution.PromptQueue.delete_queue_item) == wrapped
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {}}}
    assert run_prompt(execution, prompt, "p1", {"api_key_comfy_org": "k"}) == "result"
    final = capture.recorder.runs("run end")[0]
    assert final.run_id == "p1" and [n.status for n in final.nodes if n.node_id == "1"] == ["executed"]


def test_an_exception_from_comfyui_propagates_unchanged_and_the_run_is_still_recorded():
    capture, execution, _ = installed()
    with pytest.raises(ValueError, match="node code failed"):
        execution.PromptExecutor().execute({"1": {"class_type": "X", "raise": True}}, "p2", {})
    run = capture.recorder.runs("run end")[-1]
    assert run.status == "failed" and run.error.exception_type == "ValueError"


def test_a_broken_recorder_never_breaks_comfyui():
    capture, execution, _ = installed()
    capture.recorder.fail = True
    capture.probe = types.SimpleNamespace(reset_peak=lambda: 1 / 0, read_peak=lambda: 1 / 0)
    assert run_prompt(execution, {"1": {"class_type": "X", "inputs": {}}}, "p3") == "result"
    queue = execution.PromptQueue()
    queue.put((1, "p4", {}, {}, []))
    assert queue.delete_queue_item(lambda item: item[1] == "p4") is True
    assert capture.hook_errors >= 3


def test_node_events_of_another_prompt_are_ignored():
    capture = hooks.Capture(FakeRecorder(), BuildContext())
    trace = capture.run_started({}, "mine", {}, [])
    capture.node_started(None, "1", "other")
    capture.node_finished("1", "other")
    assert trace.nodes == {}


# --- expanded nodes (set_registry) ---------------------------------------------------------------------------


def test_nodes_created_by_node_expansion_keep_their_class_type_and_the_node_that_expanded_them():
    """ComfyUI's base ProgressHandler.set_registry is `pass` (comfy_execution/progress.py:44, 0.3.75 and 0.8.0);
    without the handler's own override the registry, and with it the DynamicPrompt that knows expanded nodes, is
    never seen, and these nodes are recorded as 'unknown' with no parent."""
    capture, execution, _ = installed(expand=True)
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {}}, "2": {"class_type": "Expander", "inputs": {}}}
    run_prompt(execution, prompt, "exp")
    run = capture.recorder.runs("run end")[0]
    inner = {n.node_id: n for n in run.nodes if n.node_id.startswith("2.")}
    assert sorted(inner) == ["2.0.0.1", "2.0.0.2"]
    assert {(n.class_type, n.parent_node_id, n.display_node_id, n.status) for n in inner.values()} == {
        ("ImageInvert", "2", "2", "executed")}


# --- cancelled prompts ------------------------------------------------------------------------------------------


def queued(execution, *items):
    queue = execution.PromptQueue()
    for number, prompt_id, create_time in items:
        extra = {"create_time": create_time, "api_key_comfy_org": "secret"}
        queue.put((number, prompt_id, {"1": {"class_type": "EmptyImage", "inputs": {}}}, extra, ["1"]))
    return queue


def test_a_prompt_deleted_from_the_queue_is_recorded_as_cancelled_with_its_queue_time():
    capture, execution, _ = installed()
    queue = queued(execution, (1, "a", 1_000), (2, "b", 2_000))
    assert queue.delete_queue_item(lambda item: item[1] == "b") is True  # POST /queue {"delete": ["b"]}
    assert [item[1] for item in queue.queue] == ["a"]
    [run] = capture.recorder.runs("run cancelled")
    assert run.run_id == "b" and run.status == RunStatus.CANCELLED
    assert run.queued_at_ms == 2_000 and run.queue_wait_ms == run.finished_at_ms - 2_000
    assert run.duration_ms is None and [n.status for n in run.nodes] == ["not_run"]
    assert "secret" not in repr(run.to_dict())


def test_clearing_the_queue_cancels_every_waiting_prompt_once():
    capture, execution, _ = installed()
    queue = queued(execution, (1, "a", 1_000), (2, "b", 2_000), (3, "c", 3_000))
    queue.wipe_queue()  # POST /queue {"clear": true}
    assert sorted(r.run_id for r in capture.recorder.runs("run cancelled")) == ["a", "b", "c"]
    assert len(capture.recorder.jobs) == 1  # one job handed over, whatever the queue's length


def test_deleting_the_only_queued_prompt_records_it_once():
    """ComfyUI's delete_queue_item calls wipe_queue when the item is the last one: both wrappers see it."""
    capture, execution, _ = installed()
    queue = queued(execution, (1, "only", 1_000))
    assert queue.delete_queue_item(lambda item: item[1] == "only") is True
    assert [r.run_id for r in capture.recorder.runs("run cancelled")] == ["only"]


def test_deleting_an_unknown_prompt_records_nothing_and_a_failing_predicate_raises_unchanged():
    capture, execution, _ = installed()
    queue = queued(execution, (1, "a", 1_000))
    assert queue.delete_queue_item(lambda item: item[1] == "zzz") is False
    with pytest.raises(ZeroDivisionError):
        queue.delete_queue_item(lambda item: 1 / 0)
    assert capture.recorder.runs("run cancelled") == [] and capture.hook_errors == 0


def test_a_run_that_started_is_not_cancelled_by_a_later_delete():
    capture, execution, _ = installed()
    run_prompt(execution, {"1": {"class_type": "X", "inputs": {}}}, "ran")
    capture.queue_items_cancelled([(0, "ran", {}, {}, [])])
    assert capture.recorder.runs("run cancelled") == []


# --- the async output cache of the newest ComfyUI -----------------------------------------------------------------


def animated(cache):
    executor = types.SimpleNamespace(caches=types.SimpleNamespace(outputs=cache))
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {}},
              "2": {"class_type": "SaveAnimatedWEBP", "inputs": {"images": ["1", 0]}}}
    history = {"outputs": {"2": {"images": [{"filename": "a.webp"}], "animated": [True]}}}
    entries = {"1": fake.CacheEntry(ui=None, outputs=[[fake.Tensor(7, 32, 32, 3)]])}
    return executor, prompt, history, entries


def test_frames_from_the_output_cache_use_get_local_when_get_is_a_coroutine_function():
    """Comfy-Org/ComfyUI comfy_execution/caching.py @dec8fb2: `async def get` and a sync `get_local`."""
    executor, prompt, history, entries = animated(None)
    cache = executor.caches.outputs = fake.AsyncOutputCache(entries)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert hooks.animation_input_frames(executor, prompt, history) == {"2": 7}
        gc.collect()  # a coroutine created and dropped warns "was never awaited" when collected
    assert cache.async_calls == 0 and not [w for w in caught if "never awaited" in str(w.message)]


def test_a_cache_with_only_an_async_get_is_never_called():
    executor, prompt, history, entries = animated(None)
    cache = fake.AsyncOutputCache(entries)
    cache.get_local = None
    executor.caches.outputs = cache
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert hooks.animation_input_frames(executor, prompt, history) == {}
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]


def test_frames_from_the_classic_sync_cache():
    executor, prompt, history, entries = animated(None)
    executor.caches.outputs = fake.SyncOutputCache(entries)
    assert hooks.animation_input_frames(executor, prompt, history) == {"2": 7}


# --- DynamicVRAM: which peak ---------------------------------------------------------------------------------------


class Probe:
    def __init__(self, peak):
        self.peak = peak

    def reset_peak(self):
        pass

    def read_peak(self):
        return self.peak, self.peak


class Sampler:
    def __init__(self, used_peak):
        self.used_peak = used_peak

    def run_started(self):
        pass

    def run_finished(self):
        return types.SimpleNamespace(gpu_used_peak_bytes=self.used_peak, ram_peak_bytes=1, samples=[])


GIB = 1 << 30


@pytest.mark.parametrize("dynamic, peak, source", [
    (True, 20 * GIB, GpuPeakSource.NVML_DEVICE),  # torch's counters miss weights held by comfy-aimdo
    (False, 2 * GIB, GpuPeakSource.TORCH_ALLOCATOR),
    (None, 2 * GIB, GpuPeakSource.TORCH_ALLOCATOR),  # a ComfyUI with no DynamicVRAM at all
])
def test_the_run_says_whether_dynamic_vram_was_on_and_where_its_gpu_peak_came_from(dynamic, peak, source):
    device = types.SimpleNamespace(backend="cuda", name="GPU", total_bytes=80 * GIB)
    capture, execution, _ = installed(probe=Probe(2 * GIB), sampler=Sampler(20 * GIB), device=device,
                                      dynamic_vram=lambda: dynamic)
    run_prompt(execution, {"1": {"class_type": "X", "inputs": {}}}, "dv")
    run = capture.recorder.runs("run end")[0]
    assert (run.dynamic_vram, run.gpu_peak_bytes, run.gpu_peak_source) == (dynamic, peak, source)
    assert run.gpu_used_peak_bytes == 20 * GIB


def test_without_nvml_the_device_peak_comes_from_mem_get_info():
    from telemetry.capture.gpu import DeviceInfo, DeviceMemoryProbe

    free = iter([70, 60, 40, 65, 66, 67, 68])  # GiB free at run start, node ends and run end
    torch = types.SimpleNamespace(cuda=types.SimpleNamespace(mem_get_info=lambda i: (next(free) * GIB, 80 * GIB)))
    device = DeviceInfo("cuda", 0, None, "GPU", 80 * GIB)
    capture, execution, _ = installed(probe=Probe(2 * GIB), device=device, dynamic_vram=lambda: True,
                                      mem_probe=DeviceMemoryProbe(device, torch_module=torch))
    run_prompt(execution, {"1": {"class_type": "X", "inputs": {}}, "2": {"class_type": "Y", "inputs": {}}}, "mi")
    run = capture.recorder.runs("run end")[0]
    assert (run.gpu_peak_bytes, run.gpu_peak_source) == (40 * GIB, GpuPeakSource.MEM_GET_INFO)


# --- ExecutionLifecycle (proposed API) ------------------------------------------------------------------------


def test_lifecycle_records_a_cancellation_the_hooks_never_saw_and_nothing_they_did():
    capture, execution, _ = installed()
    api = ExecutionLifecycleApi()
    assert lifecycle.register_lifecycle(capture, BuildContext(), api.make_class()) is True
    assert lifecycle.register_lifecycle(capture, BuildContext(), api.make_class()) is True
    assert len(api.handlers) == 1
    api.freeze()
    run_prompt(execution, {"1": {"class_type": "X", "inputs": {}}}, "hooked")
    queue = queued(execution, (1, "deleted", 1_000))
    queue.delete_queue_item(lambda item: item[1] == "deleted")
    hook_runs = capture.recorder.runs()
    api.publish(SucceededEvent("hooked", {}, {"outputs": {}}, 0, 1, 2, 1))
    api.publish(CancelledEvent("deleted", {}, 1_000, 1_500))
    api.publish(CancelledEvent("elsewhere", {}, 5_000, 9_000))  # e.g. a core whose queue could not be wrapped
    lifecycle_runs = [run for reason, job in capture.recorder.jobs if reason.startswith("lifecycle") for run in job()]
    assert sorted(r.run_id for r in hook_runs) == ["deleted", "hooked", "hooked"]  # start + final, cancel
    assert [(r.run_id, r.status, r.queue_wait_ms) for r in lifecycle_runs] == [("elsewhere", "cancelled", 4000.0)]


def test_lifecycle_records_a_run_the_hooks_did_not_see():
    capture = hooks.Capture(FakeRecorder(), BuildContext())
    api = ExecutionLifecycleApi()
    lifecycle.register_lifecycle(capture, BuildContext(), api.make_class())
    api.publish(SucceededEvent("headless", {}, {"outputs": {}}, 100, 200, 900, 700))
    [run] = capture.recorder.runs()
    assert (run.run_id, run.status, run.started_at_ms, run.duration_ms, run.queue_wait_ms) == (
        "headless", "success", 200, 700.0, 100.0)


def test_lifecycle_registration_is_optional_and_never_raises():
    capture = hooks.Capture(FakeRecorder(), BuildContext())
    api = ExecutionLifecycleApi()
    api.freeze()  # registered too late: ComfyUI refuses
    assert lifecycle.register_lifecycle(capture, BuildContext(), api.make_class()) is False
    assert lifecycle.register_lifecycle(capture, BuildContext(), None) is False  # no such API (every release)


def test_the_v3_entry_point_returns_an_extension_beside_the_v1_mappings(monkeypatch):
    class ComfyExtension:
        async def on_load(self):
            pass

    monkeypatch.setitem(sys.modules, "comfy_api", types.ModuleType("comfy_api"))
    monkeypatch.setitem(sys.modules, "comfy_api.latest", types.SimpleNamespace(ComfyExtension=ComfyExtension))
    spec = importlib.util.spec_from_file_location("run_telemetry_pack", REPO / "__init__.py",
                                                  submodule_search_locations=[str(REPO)])
    pack = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "run_telemetry_pack", pack)
    spec.loader.exec_module(pack)
    assert "RunTelemetryLabel" in pack.NODE_CLASS_MAPPINGS
    extension = asyncio.run(pack.comfy_entrypoint())
    assert isinstance(extension, ComfyExtension) and asyncio.run(extension.get_node_list()) == []
