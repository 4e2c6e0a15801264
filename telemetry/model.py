"""The Run: the one domain model of the pack.

A "run" is one ComfyUI prompt execution. The collector builds it, the store maps it to tables, the REST layer
serialises it with `to_dict`, and the panel reads exactly that shape. Nothing else invents its own shape.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


class RunStatus:
    """Status values of a run. `running` exists only while the run executes (a crash leaves it behind and the
    next start closes it as `interrupted`).

    `partial_success`: ComfyUI ran with a failure policy that keeps independent branches going (PR #14918,
    `node_failure_policy: continue_independent`) and reported that some outputs failed; it counts as a finished
    run that did not succeed. `cancelled`: the prompt was deleted from the queue before it started (ComfyUI's
    `/api/jobs` word); it never executed, so `started_at_ms` is when it left the queue, `queue_wait_ms` is its
    time in the queue (create_time to deletion), `duration_ms` is None, and it is not in FINAL: success rates and
    analysis count executed runs only.
    """

    SUCCESS = "success"
    PARTIAL_SUCCESS = "partial_success"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"
    RUNNING = "running"

    FINAL = frozenset({SUCCESS, PARTIAL_SUCCESS, FAILED, INTERRUPTED})
    """Runs that executed and ended: the denominator of every success rate."""
    STORED_FINAL = FINAL | {CANCELLED}
    """Every status a run keeps once recorded (nothing supersedes it)."""
    ALL = frozenset({SUCCESS, PARTIAL_SUCCESS, FAILED, INTERRUPTED, CANCELLED, RUNNING})


class GpuPeakSource:
    """Where a run's `gpu_peak_bytes` came from (stored as `gpu_peak_source`)."""

    TORCH_ALLOCATOR = "torch_allocator"  # torch.cuda.max_memory_allocated: this process's tensors only
    NVML_DEVICE = "nvml_device"  # NVML used memory, sampled during the run: the whole device, every process
    MEM_GET_INFO = "mem_get_info"  # torch.cuda.mem_get_info at node and run ends: the whole device, snapshots

    ALL = frozenset({TORCH_ALLOCATOR, NVML_DEVICE, MEM_GET_INFO})


class NodeStatus:
    EXECUTED = "executed"
    CACHED = "cached"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    NOT_RUN = "not_run"

    ALL = frozenset({EXECUTED, CACHED, FAILED, INTERRUPTED, NOT_RUN})


class ErrorKind:
    OOM = "oom"
    ERROR = "error"


class OutputKind:
    IMAGES = "images"
    VIDEOS = "videos"
    AUDIO = "audio"
    OTHER = "other"

    ALL = (IMAGES, VIDEOS, AUDIO, OTHER)


@dataclass
class RunError:
    node_id: str | None
    node_type: str | None
    exception_type: str
    message: str
    kind: str = ErrorKind.ERROR
    traceback: list[str] = field(default_factory=list)


@dataclass
class RunLabels:
    story_title: str | None = None
    scene: str | None = None
    tags: list[str] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.story_title or self.scene or self.tags)


@dataclass
class NodeRun:
    node_id: str
    class_type: str
    status: str
    started_at_ms: int | None = None
    duration_ms: float | None = None
    gpu_peak_bytes: int | None = None
    display_node_id: str | None = None
    parent_node_id: str | None = None
    # Energy of ComfyUI's GPU while the node ran (joules; see `Run.energy_source`); None without a GPU reading.
    energy_j: float | None = None


@dataclass
class RunOutput:
    node_id: str
    kind: str
    filename: str | None = None
    subfolder: str | None = None
    type: str | None = None
    frame_count: int = 1
    format: str | None = None


@dataclass
class GpuSample:
    t_ms: int
    used_bytes: int | None = None
    util_percent: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    ram_rss_bytes: int | None = None
    # NVML index of the GPU the GPU readings come from (one series per device); None on RAM-only samples.
    gpu_index: int | None = None


class EnergySource:
    """Where a run's `energy_j` came from (`energy_source`)."""

    NVML_COUNTER = "nvml_counter"  # nvmlDeviceGetTotalEnergyConsumption (mJ since driver load, Volta and newer)
    POWER_SAMPLES = "power_samples"  # nvmlDeviceGetPowerUsage samples, integrated with the trapezoid rule

    ALL = frozenset({NVML_COUNTER, POWER_SAMPLES})


@dataclass
class RunGpu:
    """One GPU seen during a run. `index` is NVML's (not torch's: CUDA_VISIBLE_DEVICES renumbers torch's);
    `external_bytes` is the largest memory other processes held on it during the run (None when NVML cannot
    tell processes apart); `comfyui_device` marks the device ComfyUI computes on."""

    index: int
    name: str | None = None
    uuid: str | None = None
    peak_used_bytes: int | None = None
    external_bytes: int | None = None
    comfyui_device: bool = False
    energy_j: float | None = None


@dataclass
class Run:
    run_id: str
    status: str
    queued_at_ms: int | None = None
    started_at_ms: int | None = None
    finished_at_ms: int | None = None
    duration_ms: float | None = None
    queue_wait_ms: float | None = None
    workflow_id: str | None = None
    workflow_name: str | None = None
    # Where the name came from: "api" (extra_data), "ui" (the panel reported it), "label", or "derived".
    workflow_name_source: str = "derived"
    fingerprint: str | None = None
    node_count: int = 0
    executed_node_count: int = 0
    cached_node_count: int = 0
    output_counts: dict[str, int] = field(default_factory=lambda: {k: 0 for k in OutputKind.ALL})
    frame_count: int = 0
    error: RunError | None = None
    interrupted_reason: str | None = None
    gpu_name: str | None = None
    gpu_total_bytes: int | None = None
    # The run's GPU peak and where it came from (`gpu_peak_source`: torch_allocator, nvml_device or
    # mem_get_info; see telemetry.capture.gpu.device_memory.choose_gpu_peak). Node peaks are torch's allocator.
    gpu_peak_bytes: int | None = None
    gpu_peak_source: str | None = None
    gpu_reserved_peak_bytes: int | None = None
    gpu_used_peak_bytes: int | None = None
    ram_peak_bytes: int | None = None
    # Whether ComfyUI ran with DynamicVRAM (comfy-aimdo); None where that ComfyUI has no such mode.
    dynamic_vram: bool | None = None
    # Energy of ComfyUI's GPU over the run, in joules, and where it came from (an `EnergySource`); both None
    # without a GPU that reports energy or power. Never estimated from anything else.
    energy_j: float | None = None
    energy_source: str | None = None
    labels: RunLabels = field(default_factory=RunLabels)
    instance: str | None = None
    source: str = "plugin"
    parameters: dict[str, Any] = field(default_factory=dict)
    nodes: list[NodeRun] = field(default_factory=list)
    outputs: list[RunOutput] = field(default_factory=list)
    gpu_samples: list[GpuSample] = field(default_factory=list)
    # Every GPU sampled during the run (empty without NVML).
    gpus: list[RunGpu] = field(default_factory=list)

    @property
    def energy_per_frame_j(self) -> float | None:
        """Energy per image or video frame produced; None without energy or frames."""
        if self.energy_j is None or not self.frame_count:
            return None
        return self.energy_j / self.frame_count

    def to_dict(self, detail: bool = True) -> dict[str, Any]:
        """The JSON shape served over REST and pushed to the panel. `detail=False` drops the per-node,
        per-output and per-sample lists (the runs table and the websocket summary); `gpus`, one entry per
        device, is always there."""
        data: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "gpus":
                data[f.name] = [asdict(item) for item in value]
            elif f.name in _LIST_FIELDS:
                if detail:
                    data[f.name] = [asdict(item) for item in value]
            elif f.name in ("error", "labels"):
                data[f.name] = asdict(value) if value is not None else None
            elif isinstance(value, dict):
                data[f.name] = dict(value)
            else:
                data[f.name] = value
        data["energy_per_frame_j"] = self.energy_per_frame_j
        return data


_LIST_FIELDS = frozenset({"nodes", "outputs", "gpu_samples"})
