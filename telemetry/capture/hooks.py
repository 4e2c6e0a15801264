"""The in-process hooks on ComfyUI's execution, per docs/comfyui-integration.md §2 and §7.

- `PromptExecutor.execute` (class attribute): brackets every run, headless or not, on the worker thread.
- `execution.reset_progress_state`: re-adds our `ProgressHandler` for each prompt (ComfyUI makes a new registry
  per prompt); it times nodes and marks cached ones.
- `PromptQueue.task_done`: hands the authoritative history record, once ComfyUI has written it, to the recorder.
- `PromptQueue.delete_queue_item` / `wipe_queue`: a prompt deleted from the queue before it started
  (`POST /queue {"delete": [...]}` or `{"clear": true}`, the frontend's cancel) is recorded as `cancelled`. These
  run on ComfyUI's MainThread event loop: they only keep a reference to the removed items and queue one job.

Every wrapper is idempotent (marked, never applied twice), chains to the saved original with *args/**kwargs,
feature-detects with getattr, and never lets an exception of ours escape. On the worker thread they only copy
references, read clocks and counters, and put work on the recorder's queue.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ..collector import BuildContext, RunTrace, build_cancelled_run, build_run, build_started_run, now_ms
from ..privacy import without_sensitive
from ..recorder import Recorder
from .history_restore import attach_record

log = logging.getLogger("run_telemetry.capture")

MARK = "__run_telemetry_wrapped__"
HANDLER_NAME = "run_telemetry"
ORPHAN_AFTER_S = 5.0
START_RECORD_DELAY_S = 0.3
SEEN_PROMPTS_KEPT = 4096
"""Prompt ids the hooks recorded lately, so that another way in (ExecutionLifecycle) never records them twice."""


class Capture:
    """The per-process capture state shared by the hooks. Methods called by hooks never raise."""

    def __init__(self, recorder: Recorder, context: BuildContext, *, sampler: Any = None, probe: Any = None,
                 device: Any = None, samples_per_run: int = 600,
                 downsample: Callable[[list, int], list] | None = None, mem_probe: Any = None,
                 dynamic_vram: Callable[[], bool | None] | None = None) -> None:
        self.recorder = recorder
        self.context = context
        self.sampler = sampler
        # Torch keeps no peak counters for CPU: no probe calls at all there.
        self.probe = probe if getattr(device, "backend", None) not in ("cpu",) else None
        self.device = device
        self.samples_per_run = samples_per_run
        self.downsample = downsample
        # Device-level used memory (torch.cuda.mem_get_info), where NVML cannot sample the device.
        self.mem_probe = mem_probe
        self.dynamic_vram = dynamic_vram
        self.current: RunTrace | None = None
        # (prompt id, node id, perf_counter at its start) of the node executing now, for telemetry.live (O(1)).
        self.live_node: tuple[str, str, float] | None = None
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.cancelled_seen = 0
        self.lifecycle_registered = False
        self.last_finished_monotonic = 0.0
        self._awaiting_history: dict[str, tuple[RunTrace, float]] = {}
        self._lock = threading.Lock()  # held only for dict operations, never around I/O
        self.hook_errors = 0
        self.runs_seen = 0
        # Time spent in our hooks on ComfyUI's worker thread: the pack's own overhead, reported by /health.
        self.worker_ns = 0

    # -- run level (worker thread) ---------------------------------------------------------------------------

    def run_started(self, prompt: Any, prompt_id: Any, extra_data: Any, execute_outputs: Any) -> RunTrace | None:
        began = time.perf_counter_ns()
        try:
            trace = RunTrace(
                prompt_id=str(prompt_id),
                started_at_ms=now_ms(),
                started_perf=time.perf_counter(),
                prompt=prompt,
                extra_data=without_sensitive(extra_data),
                execute_outputs=[str(o) for o in (execute_outputs or [])],
            )
            self._mark_seen(trace.prompt_id)
            if self.device is not None:
                trace.gpu_name = self.device.name
                trace.gpu_total_bytes = self.device.total_bytes
            if self.dynamic_vram is not None:
                trace.dynamic_vram = self.dynamic_vram()
            if self.probe is not None:
                self.probe.reset_peak()
            if self.mem_probe is not None:
                self.mem_probe.reset()
            if self.sampler is not None:
                self.sampler.run_started()
            self.current = trace
            self.runs_seen += 1
            context = self.context
            # Evidence for a crash: written once the run has executed START_RECORD_DELAY_S, on the recorder's next
            # tick (within about a second). Short runs never pay for it: their final record supersedes it.
            self.recorder.submit(lambda: [build_started_run(trace, context)], "run start",
                                 max_delay_s=START_RECORD_DELAY_S, key="start:" + trace.prompt_id, wake=False)
            return trace
        except Exception:
            self._hook_failed("run start")
            return None
        finally:
            self.worker_ns += time.perf_counter_ns() - began

    def run_finished(self, executor: Any, trace: RunTrace | None, exception: BaseException | None) -> None:
        if trace is None:
            return
        began = time.perf_counter_ns()
        try:
            trace.finished_perf = time.perf_counter()
            trace.finished_at_ms = now_ms()
            trace.success = getattr(executor, "success", None)
            trace.status_messages = list(getattr(executor, "status_messages", None) or [])
            if exception is None:
                trace.history_result = getattr(executor, "history_result", None) or {}
                trace.output_input_frames = animation_input_frames(executor, trace.prompt, trace.history_result)
            else:
                trace.exception = (type(exception).__name__, str(exception)[:5000])
            try:  # a failing probe or sampler costs the run its resource figures, never its record
                if self.probe is not None:
                    allocated, reserved = self.probe.read_peak()
                    trace.gpu_peak_bytes, trace.gpu_reserved_peak_bytes = allocated, reserved
                if self.mem_probe is not None:
                    self.mem_probe.read_used()
                    trace.gpu_mem_info_peak_bytes = self.mem_probe.peak_bytes
                if self.sampler is not None:
                    summary = self.sampler.run_finished()
                    trace.gpu_used_peak_bytes = summary.gpu_used_peak_bytes
                    trace.ram_peak_bytes = summary.ram_peak_bytes
                    trace.gpu_samples = summary.samples
                    trace.resources = summary  # per-GPU peaks and energy, read on the recorder thread
            except Exception:
                self._hook_failed("run end (resources)")
            self.current = None
            self.live_node = None
            self.last_finished_monotonic = time.monotonic()
            if exception is not None:
                # The worker thread is about to die with this exception: task_done will never come.
                self._submit_final(trace, None)
            else:
                with self._lock:
                    self._awaiting_history[trace.prompt_id] = (trace, time.monotonic())
        except Exception:
            self._hook_failed("run end")
        finally:
            self.worker_ns += time.perf_counter_ns() - began

    def history_written(self, prompt_id: Any, history_item: Any) -> None:
        began = time.perf_counter_ns()
        try:
            with self._lock:
                entry = self._awaiting_history.pop(str(prompt_id), None)
            trace = entry[0] if entry else None
            self._submit_final(trace, history_item, str(prompt_id))
        except Exception:
            self._hook_failed("task_done")
        finally:
            self.worker_ns += time.perf_counter_ns() - began

    def queue_items_cancelled(self, items: Any, cancelled_at_ms: int | None = None) -> None:
        """Prompts removed from ComfyUI's queue before they started. Called on ComfyUI's MainThread event loop
        with a reference to the removed items (never copied here): O(1), one job for the recorder thread, which
        builds the `cancelled` runs. Never raises."""
        began = time.perf_counter_ns()
        try:
            at_ms = now_ms() if cancelled_at_ms is None else cancelled_at_ms
            context = self.context

            def job() -> list:
                runs = []
                for item in items:
                    run = build_cancelled_run(item, at_ms, context)
                    if run is not None and self._mark_seen(run.run_id):
                        runs.append(run)
                self.cancelled_seen += len(runs)
                return runs

            self.recorder.submit(job, "run cancelled", wake=False)
        except Exception:
            self._hook_failed("queue delete")
        finally:
            self.worker_ns += time.perf_counter_ns() - began

    def _mark_seen(self, prompt_id: str) -> bool:
        """Remember a prompt id the hooks record; False when it was already there. Dict operations only."""
        with self._lock:
            if prompt_id in self._seen:
                return False
            self._seen[prompt_id] = None
            if len(self._seen) > SEEN_PROMPTS_KEPT:
                self._seen.popitem(last=False)
            return True

    def seen(self, prompt_id: Any) -> bool:
        """True when the hooks recorded (or are recording) this prompt."""
        with self._lock:
            return str(prompt_id) in self._seen

    def flush_orphans(self, max_age_s: float = ORPHAN_AFTER_S) -> int:
        """Finish runs whose history record never came (hosts without PromptQueue). Recorder thread."""
        cutoff = time.monotonic() - max_age_s
        with self._lock:
            stale = [pid for pid, (_, t) in self._awaiting_history.items() if t < cutoff]
            traces = [self._awaiting_history.pop(pid)[0] for pid in stale]
        for trace in traces:
            self._submit_final(trace, None)
        return len(traces)

    def _submit_final(self, trace: RunTrace | None, history_item: Any, prompt_id: str | None = None) -> None:
        context = self.context
        pid = prompt_id or (trace.prompt_id if trace else None)
        if pid is None:
            return

        def job() -> list:
            item = history_item if isinstance(history_item, dict) else (trace.synthesized_history() if trace
                                                                         else {})
            run = build_run(pid, item, trace, context)
            attach_record(run, history_item)  # ComfyUI's own record, kept for its history after a restart
            if self.downsample is not None and len(run.gpu_samples) > self.samples_per_run:
                run.gpu_samples = self.downsample(run.gpu_samples, self.samples_per_run)
            return [run]

        self.recorder.submit(job, "run end", replaces="start:" + pid, wake=False)

    # -- node level (worker thread, through the progress handler) --------------------------------------------

    def node_started(self, registry: Any, node_id: Any, prompt_id: Any) -> None:
        trace = self.current
        if trace is None or trace.prompt_id != str(prompt_id):
            return
        began = time.perf_counter_ns()
        try:
            if trace.node_info is None and registry is not None:
                trace.node_info = _node_info_reader(getattr(registry, "dynprompt", None))
            if self.probe is not None:
                self.probe.reset_peak()
            perf = time.perf_counter()
            trace.node_started(str(node_id), perf, now_ms())
            self.live_node = (trace.prompt_id, str(node_id), perf)
        except Exception:
            self._hook_failed("node start")
        finally:
            self.worker_ns += time.perf_counter_ns() - began

    def node_finished(self, node_id: Any, prompt_id: Any) -> None:
        trace = self.current
        if trace is None or trace.prompt_id != str(prompt_id):
            return
        began = time.perf_counter_ns()
        try:
            node_id = str(node_id)
            peak = None
            node = trace.nodes.get(node_id)
            if self.probe is not None and node is not None and node.started_perf is not None:
                peak = self.probe.read_peak()[0]
            if self.mem_probe is not None:
                self.mem_probe.read_used()
            trace.node_finished(node_id, time.perf_counter(), peak)
            live = self.live_node
            if live is not None and live[1] == node_id:
                self.live_node = None
        except Exception:
            self._hook_failed("node finish")
        finally:
            self.worker_ns += time.perf_counter_ns() - began

    def _hook_failed(self, where: str) -> None:
        self.hook_errors += 1
        log.exception("run telemetry hook failed at %s (ComfyUI is not affected)", where)


def _node_info_reader(dynprompt: Any) -> Any:
    """Class type, display node and parent node of a node id, read from ComfyUI's DynamicPrompt later, on the
    recorder thread (subgraph expansions live only there). None when the prompt has no such object."""
    if dynprompt is None:
        return None

    def read(node_id: str) -> tuple[str | None, str | None, str | None]:
        try:
            class_type = dynprompt.get_node(node_id).get("class_type")
            display = dynprompt.get_display_node_id(node_id)
            parent = dynprompt.get_parent_node_id(node_id)
        except Exception:
            return None, None, None
        return (class_type, str(display) if display is not None else None,
                str(parent) if parent is not None else None)

    return read


_VIDEO_UI_KEYS = ("gifs", "video", "videos")


def animation_input_frames(executor: Any, prompt: Any, history_result: Any) -> dict[str, int]:
    """For each animation/video output node, the batch size of the image input it was fed.

    Read from the executor's output cache (references and `.shape` only: O(number of output nodes)); encoders may
    merge identical frames, so the file alone can under-count. Best effort: any surprise gives no entry.
    The newest ComfyUI's cache `get` is a coroutine function (Comfy-Org/ComfyUI comfy_execution/caching.py
    @dec8fb2, `async def get` beside a sync `get_local`): `cache_reader` picks the sync one and never calls a
    coroutine function.
    """
    found: dict[str, int] = {}
    outputs = history_result.get("outputs") if isinstance(history_result, dict) else None
    cache = getattr(getattr(executor, "caches", None), "outputs", None)
    if not isinstance(outputs, dict) or cache is None or not isinstance(prompt, dict):
        return found
    read = cache_reader(cache)
    if read is None:
        return found
    for node_id, ui in outputs.items():
        if not isinstance(ui, dict):
            continue
        animated = any(bool(a) for a in (ui.get("animated") or ()) if isinstance(a, bool))
        if not (animated or any(k in ui for k in _VIDEO_UI_KEYS)):
            continue
        try:
            inputs = prompt[node_id]["inputs"]
            for name in ("images", "image", "frames"):
                link = inputs.get(name)
                if isinstance(link, list) and len(link) == 2:
                    entry = read(str(link[0]))
                    slots = getattr(entry, "outputs", entry)
                    values = slots[link[1]]
                    total = sum(int(v.shape[0]) for v in values if hasattr(v, "shape") and len(v.shape) == 4)
                    if total:
                        found[str(node_id)] = total
                    break
        except Exception:
            continue
    return found


def cache_reader(cache: Any) -> Callable[[str], Any] | None:
    """The synchronous lookup of ComfyUI's output cache: `get_local` where it exists (newest cores, whose `get`
    is async), else `get` unless it is a coroutine function. None when there is no synchronous lookup."""
    for name in ("get_local", "get"):
        method = getattr(cache, name, None)
        if callable(method) and not _is_coroutine_function(method):
            return method
    return None


def _is_coroutine_function(func: Any) -> bool:
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(getattr(func, "__func__", None))


# -- installing the wrappers ---------------------------------------------------------------------------------


def _guarded(capture: Capture, where: str, method: Callable[..., Any], *args: Any) -> None:
    """Call a Capture method from a hook. The methods catch their own errors; this is the last line, so that
    nothing of ours (a bug, a patched method) can ever fail ComfyUI's node or run: counted in hook_errors."""
    try:
        method(*args)
    except Exception:
        capture._hook_failed(where)


def _is_wrapped(func: Any) -> bool:
    return bool(getattr(func, MARK, False))


def _wrap_execute(original: Callable[..., Any], capture: Capture) -> Callable[..., Any]:
    @functools.wraps(original)
    def execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        trace = None
        try:
            prompt = args[0] if len(args) > 0 else kwargs.get("prompt")
            prompt_id = args[1] if len(args) > 1 else kwargs.get("prompt_id")
            extra_data = args[2] if len(args) > 2 else kwargs.get("extra_data", {})
            outputs = args[3] if len(args) > 3 else kwargs.get("execute_outputs", [])
            trace = capture.run_started(prompt, prompt_id, extra_data, outputs)
        except Exception:
            capture._hook_failed("execute wrapper")
        try:
            result = original(self, *args, **kwargs)
        except BaseException as exc:
            _guarded(capture, "run end", capture.run_finished, self, trace, exc)
            raise
        _guarded(capture, "run end", capture.run_finished, self, trace, None)
        return result

    setattr(execute, MARK, True)
    return execute


def _wrap_task_done(original: Callable[..., Any], capture: Capture) -> Callable[..., Any]:
    @functools.wraps(original)
    def task_done(self: Any, item_id: Any, *args: Any, **kwargs: Any) -> Any:
        prompt_id = None
        try:
            with self.mutex:
                item = self.currently_running.get(item_id)
            prompt_id = item[1] if item is not None else None
        except Exception:
            capture._hook_failed("task_done (before)")
        result = original(self, item_id, *args, **kwargs)
        if prompt_id is not None:
            try:
                with self.mutex:
                    history_item = self.history.get(prompt_id)
                capture.history_written(prompt_id, history_item)
            except Exception:
                capture._hook_failed("task_done (after)")
        return result

    setattr(task_done, MARK, True)
    return task_done


def _wrap_delete_queue_item(original: Callable[..., Any], capture: Capture) -> Callable[..., Any]:
    """ComfyUI passes a predicate and removes the first queued item it accepts (`POST /queue {"delete"}`). The
    predicate is wrapped to keep a reference to that item; its own exceptions pass through unchanged."""
    @functools.wraps(original)
    def delete_queue_item(self: Any, function: Any, *args: Any, **kwargs: Any) -> Any:
        matched: list[Any] = []

        def predicate(item: Any) -> Any:
            accepted = function(item)
            if accepted:
                matched.append(item)
            return accepted

        target = predicate if callable(function) else function
        result = original(self, target, *args, **kwargs)
        if result and matched:
            _guarded(capture, "queue delete", capture.queue_items_cancelled, matched[-1:])
        return result

    setattr(delete_queue_item, MARK, True)
    return delete_queue_item


def _wrap_wipe_queue(original: Callable[..., Any], capture: Capture) -> Callable[..., Any]:
    """`POST /queue {"clear": true}`. The newest cores return the removed items (Comfy-Org/ComfyUI server.py
    @5e14d797: `removed = self.prompt_queue.wipe_queue()`), which are used when given; 0.3.75 and 0.8.0 return
    None and rebind `self.queue` to a new list, so the old list is exactly what was removed. Either is kept by
    reference (under ComfyUI's own re-entrant mutex), never copied here."""
    @functools.wraps(original)
    def wipe_queue(self: Any, *args: Any, **kwargs: Any) -> Any:
        mutex = getattr(self, "mutex", None)
        if mutex is None:
            return original(self, *args, **kwargs)
        with mutex:
            before = getattr(self, "queue", None)
            result = original(self, *args, **kwargs)
            still = getattr(self, "queue", None)
        if isinstance(result, (list, tuple)):
            removed = result
        else:
            removed = before if before is not still else None
        if removed:
            _guarded(capture, "queue clear", capture.queue_items_cancelled, removed)
        return result

    setattr(wipe_queue, MARK, True)
    return wipe_queue


def make_progress_handler_class(base: type, capture: Capture) -> type:
    class TelemetryProgressHandler(base):  # type: ignore[misc, valid-type]
        """Times nodes. Exceptions here would fail the node or kill the worker, so none escape."""

        def __init__(self) -> None:
            super().__init__(HANDLER_NAME)
            self.registry: Any = None

        def set_registry(self, registry: Any) -> None:
            # ComfyUI's base ProgressHandler.set_registry does nothing (comfy_execution/progress.py:44 in 0.3.75
            # and 0.8.0); add_progress_handler calls it with the prompt's registry, whose `dynprompt` knows the
            # class type and parent of nodes created by node expansion.
            self.registry = registry

        def start_handler(self, node_id: str, state: Any, prompt_id: str) -> None:
            _guarded(capture, "node start", capture.node_started, self.registry, node_id, prompt_id)

        def update_handler(self, node_id: str, value: float, max_value: float, state: Any, prompt_id: str,
                           image: Any = None) -> None:
            return None

        def finish_handler(self, node_id: str, state: Any, prompt_id: str) -> None:
            _guarded(capture, "node finish", capture.node_finished, node_id, prompt_id)

    return TelemetryProgressHandler


def _wrap_reset_progress_state(original: Callable[..., Any], capture: Capture, progress_module: Any,
                               handler_class: type) -> Callable[..., Any]:
    @functools.wraps(original)
    def reset_progress_state(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        try:
            progress_module.add_progress_handler(handler_class())
        except Exception:
            capture._hook_failed("progress handler")
        return result

    setattr(reset_progress_state, MARK, True)
    return reset_progress_state


def install(capture: Capture, execution: Any = None, progress: Any = None) -> dict[str, bool]:
    """Install the hooks into ComfyUI's `execution` module. Returns which hooks are in place."""
    installed = {"executor": False, "task_done": False, "progress_handler": False, "queue_cancel": False}
    try:
        if execution is None:
            import execution  # type: ignore[no-redef]  # ComfyUI's module
    except Exception as exc:
        log.warning("run telemetry: ComfyUI's execution module is not importable (%s); capture is off", exc)
        return installed

    executor_cls = getattr(execution, "PromptExecutor", None)
    if executor_cls is not None and callable(getattr(executor_cls, "execute", None)):
        if not _is_wrapped(executor_cls.execute):
            executor_cls.execute = _wrap_execute(executor_cls.execute, capture)
        installed["executor"] = True

    queue_cls = getattr(execution, "PromptQueue", None)
    if queue_cls is not None and callable(getattr(queue_cls, "task_done", None)):
        if not _is_wrapped(queue_cls.task_done):
            queue_cls.task_done = _wrap_task_done(queue_cls.task_done, capture)
        installed["task_done"] = True
    delete = getattr(queue_cls, "delete_queue_item", None) if queue_cls is not None else None
    wipe = getattr(queue_cls, "wipe_queue", None) if queue_cls is not None else None
    if callable(delete) and callable(wipe):
        if not _is_wrapped(delete):
            queue_cls.delete_queue_item = _wrap_delete_queue_item(delete, capture)
        if not _is_wrapped(wipe):
            queue_cls.wipe_queue = _wrap_wipe_queue(wipe, capture)
        installed["queue_cancel"] = True

    try:
        if progress is None:
            import comfy_execution.progress as progress  # type: ignore[no-redef]
        base = getattr(progress, "ProgressHandler", None)
        reset = getattr(execution, "reset_progress_state", None)
        if base is not None and callable(reset) and hasattr(progress, "add_progress_handler"):
            if not _is_wrapped(reset):
                handler_class = make_progress_handler_class(base, capture)
                execution.reset_progress_state = _wrap_reset_progress_state(reset, capture, progress, handler_class)
            installed["progress_handler"] = True
    except Exception as exc:
        log.info("run telemetry: no per-node progress hook on this ComfyUI (%s); runs are still recorded", exc)
    return installed
