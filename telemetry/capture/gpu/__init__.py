"""GPU and RAM measurement around each ComfyUI run, for the capture hooks. One module per concern:

* `devices`: which device ComfyUI computes on, and the same physical GPU in NVML (`detect_device`,
  `match_nvml_index`).
* `torch_probe`: torch's per-device peak counters around a run and each node (`TorchMemoryProbe`).
* `device_memory`: device-level memory (`torch.cuda.mem_get_info`), whether DynamicVRAM (comfy-aimdo) is on, and
  which reading becomes the run's GPU peak (`choose_gpu_peak`, with its priority order).
* `sampler`, `nvml_reader`, `rss`: the sampler thread (NVML and RSS while a run is active, asleep between runs).
* `downsample`: reducing a run's series to what is stored, keeping its peaks.

Rules of the package: the worker-thread calls are O(1), never wait for the sampler thread, never make an NVML
call and never raise. Neither torch, pynvml nor ComfyUI is imported at import time.
"""

from __future__ import annotations

from .device_memory import (
    PEAK_SOURCES,
    DeviceMemoryProbe,
    GpuPeakSource,
    choose_gpu_peak,
    dynamic_vram_enabled,
)
from .devices import (
    BACKENDS,
    CPU_DEVICE,
    DeviceInfo,
    NvmlGpuIdentity,
    detect_device,
    list_nvml_gpus,
    match_nvml_index,
)
from .downsample import downsample_samples
from .rss import read_process_rss_bytes
from .sampler import MAX_SAMPLES_PER_RUN, ResourceSampler, ResourceSummary
from .torch_probe import TorchMemoryProbe

__all__ = [
    "BACKENDS", "CPU_DEVICE", "MAX_SAMPLES_PER_RUN", "PEAK_SOURCES", "DeviceInfo", "DeviceMemoryProbe",
    "GpuPeakSource", "NvmlGpuIdentity", "ResourceSampler", "ResourceSummary", "TorchMemoryProbe",
    "choose_gpu_peak", "detect_device", "downsample_samples", "dynamic_vram_enabled", "list_nvml_gpus",
    "match_nvml_index", "read_process_rss_bytes",
]
