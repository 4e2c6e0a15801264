"""NVML queries for one GPU, made on the sampler thread only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._util import logger

NVML_ERROR_NOT_SUPPORTED = 3
NVML_TEMPERATURE_GPU = 0
_MILLIWATTS_PER_WATT = 1000.0


class _NvmlReader:
    """NVML queries for one GPU, on the sampler thread only. A query that answers "not supported" (power on some
    boards, utilisation under MIG) is not asked again; other failures give None for that sample."""

    QUERIES = ("memory", "utilization", "temperature", "power", "energy", "processes")

    def __init__(self, nvml: Any, handle: Any) -> None:
        self._nvml = nvml
        self._handle = handle
        self._unsupported: set[str] = set()
        self._warned: set[str] = set()
        self._not_supported = getattr(nvml, "NVML_ERROR_NOT_SUPPORTED", NVML_ERROR_NOT_SUPPORTED)
        self._temperature_gpu = getattr(nvml, "NVML_TEMPERATURE_GPU", NVML_TEMPERATURE_GPU)

    def read(self) -> tuple[int | None, float | None, float | None, float | None]:
        nvml, handle = self._nvml, self._handle
        used = self._query("memory", lambda: int(nvml.nvmlDeviceGetMemoryInfo(handle).used))
        util = self._query("utilization", lambda: float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu))
        temp = self._query("temperature", lambda: float(nvml.nvmlDeviceGetTemperature(handle, self._temperature_gpu)))
        power = self._query("power", lambda: nvml.nvmlDeviceGetPowerUsage(handle) / _MILLIWATTS_PER_WATT)
        return used, util, temp, power

    def read_energy_mj(self) -> float | None:
        """NVML's total energy counter, millijoules since the driver loaded (Volta and newer); None elsewhere."""
        nvml, handle = self._nvml, self._handle
        return self._query("energy", lambda: float(nvml.nvmlDeviceGetTotalEnergyConsumption(handle)))

    def read_power_w(self) -> float | None:
        nvml, handle = self._nvml, self._handle
        return self._query("power", lambda: nvml.nvmlDeviceGetPowerUsage(handle) / _MILLIWATTS_PER_WATT)

    def read_processes(self) -> dict[int, int | None] | None:
        """Used GPU memory by PID of the compute and graphics processes on this GPU (the larger figure when a PID
        is in both lists; None where NVML cannot say, e.g. under WDDM). None when the lists are unavailable."""
        nvml, handle = self._nvml, self._handle

        def read() -> dict[int, int | None]:
            found: dict[int, int | None] = {}
            for name in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
                query = getattr(nvml, name, None)
                if query is None:
                    continue
                for process in query(handle) or ():
                    pid, used = int(process.pid), getattr(process, "usedGpuMemory", None)
                    used = int(used) if isinstance(used, int) and 0 <= used < 1 << 62 else None
                    before = found.get(pid)
                    found[pid] = used if before is None else max(before, used or 0)
            return found

        return self._query("processes", read)

    def _query(self, name: str, read: Callable[[], Any]) -> Any:
        if name in self._unsupported:
            return None
        try:
            return read()
        except Exception as exc:
            if getattr(exc, "value", None) == self._not_supported:
                self._unsupported.add(name)
                logger.debug("NVML %s query not supported on this GPU; not asking again", name)
            elif name not in self._warned:
                self._warned.add(name)
                logger.warning("NVML %s query failed (%r); will keep trying", name, exc)
            else:
                logger.debug("NVML %s query failed again (%r)", name, exc)
            return None
