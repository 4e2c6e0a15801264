"""Device-level GPU memory, DynamicVRAM, and which reading becomes a run's GPU peak.

torch's peak counters (`torch_probe`) see only what torch's caching allocator holds. Under ComfyUI's DynamicVRAM
(comfy-aimdo, on by default on NVIDIA with torch >= 2.8 in the newest cores) model weights live in aimdo's
virtual ranges and are faulted in on demand, outside that allocator, so the counters can miss the weights. What
the device itself reports then tells the truth: NVML's used memory (sampled on the sampler thread) or
`torch.cuda.mem_get_info` (free/total from the driver; used = total - free).

Modelled on Comfy-Org/ComfyUI main.py @02018c7e, which sets `comfy.memory_management.aimdo_enabled = True` once
"DynamicVRAM support detected and enabled"; older cores (0.3.75, 0.8.0) have no such attribute.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from ...collector import choose_gpu_peak
from ...model import GpuPeakSource
from ._util import _import_torch, logger
from .devices import DeviceInfo

PEAK_SOURCES = GpuPeakSource.ALL
__all__ = ["PEAK_SOURCES", "DeviceMemoryProbe", "GpuPeakSource", "choose_gpu_peak", "dynamic_vram_enabled"]


def dynamic_vram_enabled(modules: Mapping[str, Any] | None = None) -> bool | None:
    """True when ComfyUI runs with DynamicVRAM (comfy-aimdo), False when its memory module says it does not,
    None when this ComfyUI has no such notion (0.3.75, 0.8.0) or is not loaded. One dict lookup and one
    attribute read: safe on the worker thread."""
    module = (sys.modules if modules is None else modules).get("comfy.memory_management")
    if module is None:
        return None
    value = getattr(module, "aimdo_enabled", None)
    return value if isinstance(value, bool) else None


class DeviceMemoryProbe:
    """Used memory of the whole device from `torch.cuda.mem_get_info` (one driver query, no I/O, no device
    synchronisation): O(1), worker-thread safe, never raises. Only CUDA and ROCm devices answer; elsewhere None.
    Keeps the largest reading since `reset`."""

    def __init__(self, device: DeviceInfo, *, torch_module: Any | None = None) -> None:
        self._device = device
        self._torch = torch_module
        self.peak_bytes: int | None = None

    def read_used(self) -> int | None:
        if self._device.backend not in ("cuda", "rocm"):
            return None
        try:
            if self._torch is None:
                self._torch = _import_torch()
            if self._torch is None:
                return None
            free, total = self._torch.cuda.mem_get_info(self._device.torch_index)
            used = int(total) - int(free)
        except Exception:
            logger.debug("torch.cuda.mem_get_info failed", exc_info=True)
            return None
        if self.peak_bytes is None or used > self.peak_bytes:
            self.peak_bytes = used
        return used

    def reset(self) -> None:
        self.peak_bytes = None
        self.read_used()
