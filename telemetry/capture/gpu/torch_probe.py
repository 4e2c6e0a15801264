"""torch's own per-device peak counters, reset and read around a run and each node.

ComfyUI keeps no per-run memory statistic (docs/comfyui-integration.md section 6); the counters are process-wide,
so another pack may reset them too: the values are best effort. They see only what torch's caching allocator
holds: see `device_memory` for what they miss under DynamicVRAM.
"""

from __future__ import annotations

from typing import Any

from ._util import _import_torch, logger
from .devices import DeviceInfo


class TorchMemoryProbe:
    """Resets and reads torch's peak memory counters for one device. O(1), worker-thread safe, never raises."""

    def __init__(self, device: DeviceInfo, *, torch_module: Any | None = None) -> None:
        self._device = device
        self._torch = torch_module

    def _api(self) -> Any | None:
        """The torch submodule with the counters for this backend, or None (cpu, or torch missing)."""
        backend = self._device.backend
        if backend not in ("cuda", "rocm", "xpu", "mps"):
            return None
        if self._torch is None:
            self._torch = _import_torch()
        if self._torch is None:
            return None
        return getattr(self._torch, {"rocm": "cuda"}.get(backend, backend), None)

    def reset_peak(self) -> None:
        try:
            api = self._api()
            if api is not None and self._device.backend != "mps":
                api.reset_peak_memory_stats(self._device.torch_index)
        except Exception:
            logger.debug("reset_peak_memory_stats failed", exc_info=True)

    def read_peak(self) -> tuple[int | None, int | None]:
        """(max_memory_allocated, max_memory_reserved) since `reset_peak`. On MPS, which keeps no peaks, the
        current (allocated, driver-allocated) bytes. (None, None) on cpu or failure."""
        try:
            api = self._api()
            if api is None:
                return None, None
            if self._device.backend == "mps":
                return int(api.current_allocated_memory()), int(api.driver_allocated_memory())
            index = self._device.torch_index
            return int(api.max_memory_allocated(index)), int(api.max_memory_reserved(index))
        except Exception:
            logger.debug("reading torch peak memory failed", exc_info=True)
            return None, None
