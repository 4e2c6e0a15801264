"""A test double for `pynvml` that replays recorded NVML readings, on machines with no NVIDIA GPU (it lives with
the tests, not in the pack). `ResourceSampler(device, nvml=ReplayNvml.from_file(path))` samples it like the real
library.

The replay file (tests/fixtures/nvml_h100_replay.json, or a bench/gpu_proof.py file in tests/fixtures/gpu/) lists
devices with their identity and a sequence of
readings; every query function walks its own cursor through the sequence and then holds the last reading. The
error class mirrors pynvml's: `NVMLError(value)` becomes the subclass for that code (`NVMLError_NotSupported`
for 3) and carries `.value`, so code that handles the real library handles this one.

Energy: `nvmlDeviceGetTotalEnergyConsumption` answers in NVML's unit, millijoules since the driver loaded. The
replay has no recorded counter, so the fake derives one from the replayed power: it starts at the device's
`energy_base_mj` and each call adds one step of `energy_step_ms` (default 100 ms) at the power of the reading its
cursor is on (W x ms = mJ). Every value it answers is kept in `energy_answers`. List "energy" under
`unsupported` for a GPU without the counter (pre-Volta), as NVML answers NOT_SUPPORTED there.

Other processes: `nvmlDeviceGetComputeRunningProcesses` / `...GraphicsRunningProcesses` answer from a device's
`processes` (`[{"pid": int | "self", "used_mib": int | None, "kind": "compute" | "graphics"}]`; "self" is this
process), or the `processes` option. Two GPUs: the fixture's two H100s are NVML devices 0 and 1.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999
NVML_TEMPERATURE_GPU = 0

BYTES_PER_MIB = 1024 * 1024
QUERY_FIELDS = {"memory": "used_mib", "utilization": "util_percent", "temperature": "temperature_c", "power": "power_w",
                "energy": "power_w"}
DEFAULT_ENERGY_STEP_MS = 100


class NVMLError(Exception):
    """Same shape as `pynvml.NVMLError`: constructing it with a code returns the subclass for that code."""

    _value_class: dict[int, type[NVMLError]] = {}
    _messages = {
        NVML_ERROR_UNINITIALIZED: "Uninitialized",
        NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
        NVML_ERROR_NOT_SUPPORTED: "Not Supported",
        NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
        NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
        NVML_ERROR_GPU_IS_LOST: "GPU is lost",
        NVML_ERROR_UNKNOWN: "Unknown Error",
    }
    value: int

    def __new__(cls, value: int = NVML_ERROR_UNKNOWN) -> NVMLError:
        if cls is NVMLError:
            cls = NVMLError._value_class.get(value, cls)
        obj = Exception.__new__(cls)
        obj.value = value
        return obj

    def __init__(self, value: int = NVML_ERROR_UNKNOWN) -> None:
        super().__init__(value)

    def __str__(self) -> str:
        return self._messages.get(self.value, f"NVML Error with code {self.value}")


def _error_class(name: str, value: int) -> type[NVMLError]:
    def new(cls: type[NVMLError], *args: Any) -> NVMLError:
        return NVMLError.__new__(cls, value)

    cls = type(name, (NVMLError,), {"__new__": new})
    NVMLError._value_class[value] = cls
    return cls


NVMLError_Uninitialized = _error_class("NVMLError_Uninitialized", NVML_ERROR_UNINITIALIZED)
NVMLError_InvalidArgument = _error_class("NVMLError_InvalidArgument", NVML_ERROR_INVALID_ARGUMENT)
NVMLError_NotSupported = _error_class("NVMLError_NotSupported", NVML_ERROR_NOT_SUPPORTED)
NVMLError_DriverNotLoaded = _error_class("NVMLError_DriverNotLoaded", NVML_ERROR_DRIVER_NOT_LOADED)
NVMLError_LibraryNotFound = _error_class("NVMLError_LibraryNotFound", NVML_ERROR_LIBRARY_NOT_FOUND)
NVMLError_GpuIsLost = _error_class("NVMLError_GpuIsLost", NVML_ERROR_GPU_IS_LOST)
NVMLError_Unknown = _error_class("NVMLError_Unknown", NVML_ERROR_UNKNOWN)


@dataclass(frozen=True)
class ReplayMemory:
    total: int
    free: int
    used: int


@dataclass(frozen=True)
class ReplayUtilization:
    gpu: int
    memory: int


@dataclass(frozen=True)
class ReplayPciInfo:
    busId: bytes  # noqa: N815 - pynvml's field name
    busIdLegacy: bytes  # noqa: N815
    domain: int
    bus: int
    device: int


@dataclass(frozen=True)
class _Handle:
    index: int


@dataclass(frozen=True)
class ReplayProcessInfo:
    """pynvml's c_nvmlProcessInfo_t fields the pack reads (usedGpuMemory None: NVML_VALUE_NOT_AVAILABLE)."""

    pid: int
    usedGpuMemory: int | None  # noqa: N815 - pynvml's field name


class ReplayNvml:
    """The pynvml functions the pack uses, answering from a replay file.

    `unsupported` maps an NVML index to queries ("memory", "utilization", "temperature", "power") that raise
    NVMLError_NotSupported, on top of those the file lists. `fail_init` makes nvmlInit raise that error code.
    `fail_calls` maps a function name to the 0-based call numbers that raise NVMLError(`fail_code`)."""

    NVMLError = NVMLError
    NVML_ERROR_NOT_SUPPORTED = NVML_ERROR_NOT_SUPPORTED
    NVML_ERROR_UNINITIALIZED = NVML_ERROR_UNINITIALIZED
    NVML_TEMPERATURE_GPU = NVML_TEMPERATURE_GPU

    def __init__(
        self,
        replay: Mapping[str, Any],
        *,
        unsupported: Mapping[int, Collection[str]] | None = None,
        fail_init: int | None = None,
        fail_calls: Mapping[str, Collection[int]] | None = None,
        fail_code: int = NVML_ERROR_UNKNOWN,
        processes: Mapping[int, list[dict[str, Any]]] | None = None,
    ) -> None:
        self.devices = list(replay["devices"])
        self._processes = {i: list((processes or {}).get(i, device.get("processes", ())))
                           for i, device in enumerate(self.devices)}
        self._energy_mj = {i: float(device.get("energy_base_mj", 0)) for i, device in enumerate(self.devices)}
        self.energy_answers: dict[int, list[int]] = {i: [] for i in range(len(self.devices))}
        self._unsupported = {
            i: set(device.get("unsupported", ())) | set((unsupported or {}).get(i, ()))
            for i, device in enumerate(self.devices)
        }
        self._fail_init = fail_init
        self._fail_calls = {name: set(numbers) for name, numbers in (fail_calls or {}).items()}
        self._fail_code = fail_code
        self._init_count = 0
        self.calls: Counter[str] = Counter()
        self._cursor: Counter[tuple[int, str]] = Counter()
        self._changed = threading.Condition()

    @classmethod
    def from_file(cls, path: str | Path, **options: Any) -> ReplayNvml:
        return cls(json.loads(Path(path).read_text(encoding="utf-8")), **options)

    def wait_for_calls(self, name: str, count: int, timeout_s: float) -> bool:
        """Blocks until `name` has been called at least `count` times (tests)."""
        with self._changed:
            return self._changed.wait_for(lambda: self.calls[name] >= count, timeout_s)

    def _enter(self, name: str, needs_init: bool = True) -> None:
        with self._changed:
            number = self.calls[name]
            self.calls[name] += 1
            self._changed.notify_all()
        if needs_init and self._init_count <= 0:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        if number in self._fail_calls.get(name, ()):
            raise NVMLError(self._fail_code)

    def _device(self, handle: _Handle) -> dict[str, Any]:
        if not isinstance(handle, _Handle) or not 0 <= handle.index < len(self.devices):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return self.devices[handle.index]

    def _reading(self, handle: _Handle, query: str) -> Any:
        device = self._device(handle)
        if query in self._unsupported[handle.index]:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        readings = device["readings"]
        key = (handle.index, query)
        position = min(self._cursor[key], len(readings) - 1)
        self._cursor[key] += 1
        value = readings[position].get(QUERY_FIELDS[query])
        if value is None:  # "[N/A]" in the source
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return value

    # pynvml API ----------------------------------------------------------------------------------------------

    def nvmlInit(self) -> None:  # noqa: N802 - pynvml's names
        self._enter("nvmlInit", needs_init=False)
        if self._fail_init is not None:
            raise NVMLError(self._fail_init)
        self._init_count += 1

    def nvmlShutdown(self) -> None:  # noqa: N802
        self._enter("nvmlShutdown")
        self._init_count -= 1

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        self._enter("nvmlDeviceGetCount")
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:  # noqa: N802
        self._enter("nvmlDeviceGetHandleByIndex")
        handle = _Handle(int(index))
        self._device(handle)
        return handle

    def nvmlDeviceGetName(self, handle: _Handle) -> str:  # noqa: N802
        self._enter("nvmlDeviceGetName")
        return self._device(handle)["name"]

    def nvmlDeviceGetUUID(self, handle: _Handle) -> str:  # noqa: N802
        self._enter("nvmlDeviceGetUUID")
        return self._device(handle)["uuid"]

    def nvmlDeviceGetPciInfo(self, handle: _Handle) -> ReplayPciInfo:  # noqa: N802
        self._enter("nvmlDeviceGetPciInfo")
        bus_id = self._device(handle)["pci_bus_id"]
        domain, bus, rest = bus_id.split(":")
        legacy = f"{int(domain, 16):04x}:{bus}:{rest}".upper()
        return ReplayPciInfo(bus_id.encode(), legacy.encode(), int(domain, 16), int(bus, 16), int(rest[:2], 16))

    def nvmlDeviceGetMemoryInfo(self, handle: _Handle) -> ReplayMemory:  # noqa: N802
        self._enter("nvmlDeviceGetMemoryInfo")
        total = int(self._device(handle)["memory_total_mib"]) * BYTES_PER_MIB
        used = int(self._reading(handle, "memory")) * BYTES_PER_MIB
        return ReplayMemory(total=total, free=total - used, used=used)

    def nvmlDeviceGetUtilizationRates(self, handle: _Handle) -> ReplayUtilization:  # noqa: N802
        self._enter("nvmlDeviceGetUtilizationRates")
        return ReplayUtilization(gpu=int(self._reading(handle, "utilization")), memory=0)

    def nvmlDeviceGetTemperature(self, handle: _Handle, sensor: int) -> int:  # noqa: N802
        self._enter("nvmlDeviceGetTemperature")
        if sensor != NVML_TEMPERATURE_GPU:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return int(self._reading(handle, "temperature"))

    def nvmlDeviceGetPowerUsage(self, handle: _Handle) -> int:  # noqa: N802
        """Milliwatts, like NVML."""
        self._enter("nvmlDeviceGetPowerUsage")
        return int(round(float(self._reading(handle, "power")) * 1000))

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: _Handle) -> int:  # noqa: N802
        """Millijoules since the driver loaded, like NVML (derived from the replayed power; see the module)."""
        self._enter("nvmlDeviceGetTotalEnergyConsumption")
        device = self._device(handle)
        watts = float(self._reading(handle, "energy"))
        with self._changed:
            value = int(round(self._energy_mj[handle.index]))
            self._energy_mj[handle.index] += watts * float(device.get("energy_step_ms", DEFAULT_ENERGY_STEP_MS))
            self.energy_answers[handle.index].append(value)
        return value

    def _process_list(self, handle: _Handle, kind: str) -> list[ReplayProcessInfo]:
        self._device(handle)
        if "processes" in self._unsupported[handle.index]:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        found = []
        for entry in self._processes[handle.index]:
            if entry.get("kind", "compute") != kind:
                continue
            pid = os.getpid() if entry["pid"] == "self" else int(entry["pid"])
            used = entry.get("used_mib")
            found.append(ReplayProcessInfo(pid, None if used is None else int(used) * BYTES_PER_MIB))
        return found

    def nvmlDeviceGetComputeRunningProcesses(self, handle: _Handle) -> list[ReplayProcessInfo]:  # noqa: N802
        self._enter("nvmlDeviceGetComputeRunningProcesses")
        return self._process_list(handle, "compute")

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: _Handle) -> list[ReplayProcessInfo]:  # noqa: N802
        self._enter("nvmlDeviceGetGraphicsRunningProcesses")
        return self._process_list(handle, "graphics")
