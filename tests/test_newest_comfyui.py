"""The points of docs/newest-comfyui.md that the hook tests (tests/test_hooks.py) do not already cover, each against
a fake shaped on the newest ComfyUI code it names (tests/fakes/comfy.py): the newest prompt worker and executor
constructor, node activity ("loading"), `put` refusing a duplicate prompt id, `wipe_queue` returning what it
removed, `interrupt_if_running` (the Jobs API's cancel), hook_breaker_ac10a0, and the RAM_PRESSURE cache."""

from __future__ import annotations

import types
from types import MappingProxyType

from fakes import comfy as fake
from fakes.lifecycle import CancelledEvent, ExecutionLifecycleApi, FailedEvent
from test_hooks import FakeRecorder

from telemetry.capture import hooks, lifecycle
from telemetry.capture.gpu import dynamic_vram_enabled
from telemetry.capture.history_restore import RECORD_ATTRIBUTE
from telemetry.collector import BuildContext, build_run
from telemetry.model import NodeStatus, RunStatus


def newest():
    progress = fake.ProgressModule()
    execution = fake.make_execution(progress, newest=True)
    capture = hooks.Capture(FakeRecorder(), BuildContext())
    assert hooks.install(capture, execution, progress) == {
        "executor": True, "task_done": True, "progress_handler": True, "queue_cancel": True}
    return capture, execution


class ExecutionServer:
    """Only what comfy_execution/server_protocol.py's ExecutionServer offers the executor: no PromptServer."""

    def __init__(self):
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.sent = []

    def send_sync(self, event, data, sid=None):
        self.sent.append((event, sid))

    def queue_updated(self):
        pass


def item(number, prompt_id, prompt, create_time=1_000):
    return (number, prompt_id, prompt, {"create_time": create_time}, sorted(prompt), {"api_key_comfy_org": "secret"})


def work_once(execution, queue, server, asset_manager=None):
    """One turn of Comfy-Org/ComfyUI app/prompt_worker.py @280bc659 (and main.py @02018c7e): the executor is made
    with `asset_manager=`, the sensitive keys of the 6-tuple go back into extra_data for execute, and task_done
    strips them with `process_item`."""
    executor = execution.PromptExecutor(server, cache_type="RAM_PRESSURE", cache_args={"lru": 0, "ram": 4.0},
                                        asset_manager=asset_manager or object())
    got, item_id = queue.get(timeout=1)
    server.last_prompt_id = got[1]
    extra_data = got[3].copy()
    for key in got[5]:
        extra_data[key] = got[5][key]
    executor.execute(got[2], got[1], extra_data, got[4])
    queue.task_done(item_id, executor.history_result,
                    status={"status_str": "success" if executor.success else "error", "completed": executor.success,
                            "messages": executor.status_messages},
                    process_item=lambda prompt: prompt[:5] + prompt[6:])
    return executor


def test_the_newest_prompt_worker_records_one_run_without_its_api_keys():
    capture, execution = newest()
    server = ExecutionServer()
    queue = execution.PromptQueue(server)
    assert queue.put(item(0, "new", {"1": {"class_type": "EmptyImage", "inputs": {}}})) is True
    work_once(execution, queue, server)
    [run] = capture.recorder.runs("run end")
    assert (run.run_id, run.status, [(n.node_id, n.status) for n in run.nodes]) == (
        "new", RunStatus.SUCCESS, [("1", NodeStatus.EXECUTED)])
    assert run.queued_at_ms == 1_000 and "secret" not in repr(run.to_dict())
    record = getattr(run, RECORD_ATTRIBUTE)  # ComfyUI's own history record, kept for its history after a restart
    assert record is queue.history["new"] and "secret" not in repr(record)
    assert capture.hook_errors == 0


def test_node_activity_updates_never_break_node_timing_and_loading_counts_as_node_time():
    """progress.py @1b71f27: `set_activity(node_id, "loading")` / `(node_id, None)` call every handler's
    update_handler with five positional arguments. The pack ignores activity on purpose: a node's duration is
    its whole span, loading included (see docs/newest-comfyui.md)."""
    capture, execution = newest()
    server = ExecutionServer()
    queue = execution.PromptQueue(server)
    prompt = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {}, "loading_s": 0.03},
              "2": {"class_type": "EmptyImage", "inputs": {}}}
    queue.put(item(0, "load", prompt))
    work_once(execution, queue, server)
    [run] = capture.recorder.runs("run end")
    nodes = {n.node_id: n for n in run.nodes}
    assert nodes["1"].status == NodeStatus.EXECUTED and nodes["1"].duration_ms >= 30
    assert nodes["2"].status == NodeStatus.EXECUTED and capture.hook_errors == 0


def test_an_activity_for_a_node_that_has_not_started_changes_nothing():
    capture, execution = newest()

    def during():  # while node 1 runs, node 2 (still pending) gets an activity and loses it again
        registry = execution.progress.get_progress_state()
        registry.set_activity("2", "loading")
        registry.set_activity("2", None)

    prompt = {"1": {"class_type": "A", "inputs": {}, "during": during}, "2": {"class_type": "B", "inputs": {}}}
    server = ExecutionServer()
    queue = execution.PromptQueue(server)
    queue.put(item(0, "pending-activity", prompt))
    work_once(execution, queue, server)
    run = capture.recorder.runs("run end")[0]
    assert [(n.node_id, n.status) for n in run.nodes] == [("1", NodeStatus.EXECUTED), ("2", NodeStatus.EXECUTED)]
    assert all(n.duration_ms is not None for n in run.nodes) and capture.hook_errors == 0


def test_a_prompt_id_that_put_refuses_creates_no_phantom_and_no_second_run():
    """server.py @5e14d797: `queued = self.prompt_queue.put(...)`; on False it answers 409 "prompt_id already
    exists" and nothing is queued. No hook of the pack sees that item: no run, no cancellation, no start record."""
    capture, execution = newest()
    server = ExecutionServer()
    queue = execution.PromptQueue(server)
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {}}}
    assert queue.put(item(0, "dup", prompt, 1_000)) is True
    assert queue.put(item(1, "dup", prompt, 2_000)) is False  # queued already
    work_once(execution, queue, server)
    assert queue.put(item(2, "dup", prompt, 3_000)) is False  # in history already
    queue.wipe_queue()  # nothing is queued: nothing to cancel
    assert queue.delete_queue_item(lambda i: i[1] == "dup") is False
    runs = capture.recorder.runs()
    assert [(r.run_id, r.status, r.queued_at_ms) for r in runs if r.status != RunStatus.RUNNING] == [
        ("dup", RunStatus.SUCCESS, 1_000)]
    assert [reason for reason, _ in capture.recorder.jobs] == ["run start", "run end"]


def test_clearing_the_newest_queue_cancels_the_items_wipe_queue_returns_once():
    capture, execution = newest()
    queue = execution.PromptQueue(ExecutionServer())
    for number, prompt_id in ((1, "a"), (2, "b")):
        queue.put(item(number, prompt_id, {"1": {"class_type": "EmptyImage", "inputs": {}}}))
    removed = queue.wipe_queue()
    assert [i[1] for i in removed] == ["a", "b"]  # ComfyUI still gets its return value
    runs = capture.recorder.runs("run cancelled")
    assert sorted((r.run_id, r.status) for r in runs) == [("a", "cancelled"), ("b", "cancelled")]
    assert "secret" not in repr([r.to_dict() for r in runs])


def test_a_wipe_queue_that_clears_in_place_and_returns_the_removed_items_is_still_seen():
    class InPlace(fake.NewestPromptQueue):
        def wipe_queue(self):
            with self.mutex:
                removed = list(self.queue)
                self.queue.clear()
                return removed

    progress = fake.ProgressModule()
    execution = fake.make_execution(progress, newest=True)
    execution.PromptQueue = InPlace
    capture = hooks.Capture(FakeRecorder(), BuildContext())
    hooks.install(capture, execution, progress)
    queue = InPlace(ExecutionServer())
    for number, prompt_id in ((1, "c"), (2, "d")):
        queue.put(item(number, prompt_id, {"1": {"class_type": "EmptyImage", "inputs": {}}}))
    waiting = queue.queue
    assert [i[1] for i in queue.wipe_queue()] == ["c", "d"] and queue.queue is waiting == []
    assert sorted(r.run_id for r in capture.recorder.runs("run cancelled")) == ["c", "d"]


def test_the_jobs_api_cancel_interrupts_a_running_prompt_and_dequeues_a_waiting_one():
    """server.py @5e14d797 `_cancel_job_by_id`: a running job goes through `interrupt_if_running(prompt_id)`
    (execution.py @04e2a914), a pending one through `delete_queue_item`. The first is `interrupted` at its node,
    the second `cancelled`; an id that is not running interrupts nothing."""
    capture, execution = newest()
    server = ExecutionServer()
    queue = execution.PromptQueue(server, interrupt=execution.interrupt_processing)
    fired = []

    def cancel_from_the_server():
        fired.append(queue.interrupt_if_running("waiting"))  # not running: False, no interrupt
        fired.append(queue.interrupt_if_running("running"))

    prompt = {"1": {"class_type": "EmptyImage", "inputs": {}}, "2": {"class_type": "KSampler", "inputs": {},
                                                                      "during": cancel_from_the_server}}
    queue.put(item(0, "running", prompt))
    queue.put(item(1, "waiting", {"1": {"class_type": "EmptyImage", "inputs": {}}}))
    work_once(execution, queue, server)
    assert fired == [False, True]
    assert queue.delete_queue_item(lambda i: i[1] == "waiting") is True
    by_id = {r.run_id: r for r in capture.recorder.runs() if r.status != RunStatus.RUNNING}
    running = by_id["running"]
    assert running.status == RunStatus.INTERRUPTED
    assert {n.node_id: n.status for n in running.nodes} == {"1": NodeStatus.EXECUTED, "2": NodeStatus.INTERRUPTED}
    assert by_id["waiting"].status == RunStatus.CANCELLED


def test_hook_breaker_restores_only_its_own_list_and_the_hooks_stay():
    """hook_breaker_ac10a0 (unchanged, comfyanonymous @bcd1b1c): `HOOK_BREAK = [(comfy.model_management,
    "cast_to")]`; the worker saves them before custom nodes load and restores them after each gc. The pack
    patches nothing on that list, so a restore leaves every hook in place."""
    model_management = types.SimpleNamespace(cast_to=lambda *a: "cast")
    hook_break = [(model_management, "cast_to")]
    saved = [(m, name, getattr(m, name)) for m, name in hook_break]  # save_functions()
    capture, execution = newest()
    wrapped = (execution.PromptExecutor.execute, execution.PromptQueue.task_done,
               execution.PromptQueue.delete_queue_item, execution.PromptQueue.wipe_queue,
               execution.reset_progress_state)
    for module, name, func in saved:  # restore_functions()
        setattr(module, name, func)
    assert all(getattr(f, hooks.MARK, False) for f in wrapped)
    assert model_management.cast_to is saved[0][2]
    server = ExecutionServer()
    queue = execution.PromptQueue(server)
    queue.put(item(0, "after-restore", {"1": {"class_type": "EmptyImage", "inputs": {}}}))
    work_once(execution, queue, server)
    assert [r.run_id for r in capture.recorder.runs("run end")] == ["after-restore"]


def test_an_output_the_ram_pressure_cache_evicted_takes_its_frames_from_metadata_then_the_file():
    """Default cache of the newest cores (app/prompt_worker.py @280bc659 `CacheType.RAM_PRESSURE`): between nodes
    `ram_release` may evict outputs, and `get_local` then returns None. The fed-batch count is simply absent;
    the output's `metadata.frame_count` (PR #15417) is used, else the file is counted."""
    entries = {"1": fake.CacheEntry(ui=None, outputs=[[fake.Tensor(7, 32, 32, 3)]])}
    cache = fake.RamPressureOutputCache(entries)
    executor = types.SimpleNamespace(caches=types.SimpleNamespace(outputs=cache))
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {}},
              "2": {"class_type": "SaveAnimatedWEBP", "inputs": {"images": ["1", 0]}},
              "3": {"class_type": "SaveAnimatedWEBP", "inputs": {"images": ["1", 0]}}}
    outputs = {"2": {"images": [{"filename": "a.webp", "type": "output",
                                 "metadata": {"kind": "image", "width": 32, "height": 32, "frame_count": 7}}],
                     "animated": [True]},
               "3": {"images": [{"filename": "b.webp", "type": "output"}], "animated": [True]}}
    assert hooks.animation_input_frames(executor, prompt, {"outputs": outputs}) == {"2": 7, "3": 7}
    cache.ram_release()
    fed = hooks.animation_input_frames(executor, prompt, {"outputs": outputs})
    assert fed == {} and cache.async_calls == 0
    counted = []
    context = BuildContext(frame_counter=lambda output: counted.append(output.filename) or 5)
    item_ = {"prompt": [0, "ram", prompt, {}, ["2", "3"]], "outputs": outputs,
             "status": {"status_str": "success", "completed": True, "messages": []}}
    run = build_run("ram", item_, None, context)
    assert {o.filename: o.frame_count for o in run.outputs} == {"a.webp": 7, "b.webp": 5} and counted == ["b.webp"]


# --- DynamicVRAM flag and the ExecutionLifecycle semantics not covered in test_hooks.py -------------------------


def test_dynamic_vram_is_read_from_comfy_memory_management_aimdo_enabled():
    """main.py @02018c7e sets `comfy.memory_management.aimdo_enabled` once "DynamicVRAM support detected and
    enabled"; 0.3.75 and 0.8.0 have no such attribute (None: that ComfyUI has no such mode)."""
    def module(**attrs):
        return {"comfy.memory_management": types.SimpleNamespace(**attrs)}

    assert dynamic_vram_enabled(module(aimdo_enabled=True)) is True
    assert dynamic_vram_enabled(module(aimdo_enabled=False)) is False
    assert dynamic_vram_enabled(module()) is None and dynamic_vram_enabled({}) is None
    assert dynamic_vram_enabled(module(aimdo_enabled="yes")) is None


def test_a_frozen_lifecycle_snapshot_of_a_failed_run_becomes_a_plain_failed_run():
    """_execution_lifecycle.py @6d4e9b3: events are frozen dataclasses whose history snapshot is read-only
    (mappings and tuples); the run built from it is plain data, failed at the node the event names."""
    capture = hooks.Capture(FakeRecorder(), BuildContext())
    api = ExecutionLifecycleApi()
    assert lifecycle.register_lifecycle(capture, BuildContext(), api.make_class()) is True
    api.freeze()
    snapshot = MappingProxyType({"outputs": MappingProxyType({"9": MappingProxyType({"images": (
        MappingProxyType({"filename": "x.png", "subfolder": "", "type": "output"}),)})}), "meta": MappingProxyType({})})
    api.publish(FailedEvent("f", MappingProxyType({}), "execute", "5", "KSampler", "RuntimeError", "boom",
                            ("tb",), ("1",), snapshot, True, 100, 200, 800, 900, 700))
    [run] = capture.recorder.runs()
    assert (run.run_id, run.status, run.error.node_id, run.error.exception_type) == ("f", "failed", "5",
                                                                                     "RuntimeError")
    assert [o.filename for o in run.outputs] == ["x.png"] and capture.hook_errors == 0


def test_a_recorder_failure_on_the_lifecycle_thread_is_counted_and_never_raised_there():
    capture = hooks.Capture(FakeRecorder(fail=True), BuildContext())
    api = ExecutionLifecycleApi()
    lifecycle.register_lifecycle(capture, BuildContext(), api.make_class())
    api.freeze()
    api.publish(CancelledEvent("c", {}, 1, 2))
    assert capture.hook_errors == 1


def test_the_queue_eta_reads_a_newest_six_element_queue_item_without_its_sensitive_part():
    """server.py @5e14d797 queues `(number, prompt_id, prompt, extra_data, outputs, sensitive)`; the pack's ETA
    and queue-memory checks read ComfyUI's queue through `item_parts`, which takes id, prompt and extra_data only."""
    from telemetry.analysis.queue import item_parts

    prompt = {"1": {"class_type": "EmptyImage", "inputs": {}}}
    assert item_parts(item(3, "six", prompt, 5_000)) == ("six", prompt, {"create_time": 5_000})
