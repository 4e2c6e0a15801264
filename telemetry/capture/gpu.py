"""GPU and RAM measurement around each ComfyUI run, for the capture hooks.

Three parts, all safe to call from ComfyUI's worker thread:

* `detect_device()` names the device ComfyUI computes on and finds the same physical GPU in NVML (by UUID or PCI
  bus id, because `CUDA_VISIBLE_DEVICES` renumbers torch's devices but not NVML's).
* `TorchMemoryProbe` resets and reads torch's per-device peak counters around a run. ComfyUI keeps no per-run
  memory statistic (docs/comfyui-integration.md section 6); the counters are process-wide, so another pack may
  reset them too: the values are best effort.
* `ResourceSampler` owns one daemon thread that samples NVML (used memory, utilisation, temperature, power) and
  the process RSS while a run is active, and sleeps on an event between runs.

Rules of this module: the worker-thread calls are O(1), never wait for the sampler thread, never make an NVML
call and never raise. Neither torch, pynvml nor ComfyUI is imported at module import time.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..model import GpuSample

logger = logging.getLogger("run_telemetry.gpu")

BACKENDS = frozenset({"cuda", "rocm", "mps", "xpu", "cpu"})
MAX_SAMPLES_PER_RUN = 20_000
"""A run keeps at most this many samples in memory; when full, the resolution halves (peaks are kept)."""
NVML_ERROR_NOT_SUPPORTED = 3
NVML_TEMPERATURE_GPU = 0
_MILLIWATTS_PER_WATT = 1000.0


# --- which device ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceInfo:
    backend: str  # "cuda" | "rocm" | "mps" | "xpu" | "cpu"
    torch_index: int | None
    nvml_index: int | None  # NVML index of the same physical GPU; None when NVML is unusable or no match
    name: str | None
    total_bytes: int | None


CPU_DEVICE = DeviceInfo(backend="cpu", torch_index=None, nvml_index=None, name=None, total_bytes=None)


@dataclass(frozen=True)
class NvmlGpuIdentity:
    """What NVML says about one GPU, enough to find it again from torch's side."""

    index: int
    uuid: str | None
    pci_bus_id: str | None


def detect_device(
    *, torch_module: Any | None = None, nvml: Any | None = None, environ: Mapping[str, str] | None = None
) -> DeviceInfo:
    """The device ComfyUI computes on (`comfy.model_management.get_torch_device()` when loaded, else torch's
    default). ROCm is a CUDA device with `torch.version.hip` set. Returns `CPU_DEVICE` on any problem.

    The keyword arguments replace torch, pynvml and `os.environ` (tests); when `torch_module` is given, ComfyUI
    is not consulted."""
    try:
        torch = torch_module if torch_module is not None else _import_torch()
        if torch is None:
            return CPU_DEVICE
        device = _comfy_torch_device() if torch_module is None else None
        return _describe_device(torch, device, nvml, os.environ if environ is None else environ)
    except Exception:
        logger.warning("GPU detection failed; recording RAM only", exc_info=True)
        return CPU_DEVICE


def _import_torch() -> Any | None:
    try:
        import torch
    except Exception:
        return None
    return torch


def _comfy_torch_device() -> Any | None:
    module = sys.modules.get("comfy.model_management")
    try:
        if module is None:
            import comfy.model_management as module
        return module.get_torch_device()
    except (Exception, SystemExit):
        logger.debug("comfy.model_management unavailable; using torch's default device", exc_info=True)
        return None


def _describe_device(torch: Any, device: Any | None, nvml: Any | None, environ: Mapping[str, str]) -> DeviceInfo:
    kind = getattr(device, "type", None) if device is not None else _default_device_type(torch)
    index = getattr(device, "index", None)
    if kind == "cuda":
        index = torch.cuda.current_device() if index is None else index
        props = torch.cuda.get_device_properties(index)
        is_rocm = bool(getattr(getattr(torch, "version", None), "hip", None))
        nvml_index = None if is_rocm else _nvml_index_for(torch, index, props, nvml, environ)
        return DeviceInfo("rocm" if is_rocm else "cuda", index, nvml_index, props.name, int(props.total_memory))
    if kind == "xpu":
        index = torch.xpu.current_device() if index is None else index
        props = torch.xpu.get_device_properties(index)
        return DeviceInfo("xpu", index, None, props.name, int(props.total_memory))
    if kind == "mps":
        recommended = getattr(torch.mps, "recommended_max_memory", None)
        total = int(recommended()) if recommended is not None else None
        return DeviceInfo("mps", 0, None, "Apple MPS", total)
    return CPU_DEVICE


def _default_device_type(torch: Any) -> str:
    if torch.cuda.is_available():
        return "cuda"
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        return "xpu"
    mps = getattr(getattr(torch, "backends", None), "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def _nvml_index_for(torch: Any, index: int, props: Any, nvml: Any | None, environ: Mapping[str, str]) -> int | None:
    nvml = nvml if nvml is not None else _import_pynvml()
    if nvml is None:
        return None
    try:
        nvml.nvmlInit()
    except Exception as exc:
        logger.info("NVML unavailable (%r); GPU sampling disabled", exc)
        return None
    try:
        gpus = list_nvml_gpus(nvml)
        uuid = getattr(props, "uuid", None)
        pci = _attempt(lambda: _pci_text(getattr(props, "pci_domain_id", 0), props.pci_bus_id, props.pci_device_id))
        return match_nvml_index(
            gpus,
            torch_index=index,
            uuid=None if uuid is None else str(uuid),
            pci_bus_id=pci,
            visible_devices=environ.get("CUDA_VISIBLE_DEVICES"),
            device_order=environ.get("CUDA_DEVICE_ORDER"),
            torch_device_count=_attempt(torch.cuda.device_count),
        )
    except Exception:
        logger.warning("could not match the torch device to an NVML device", exc_info=True)
        return None
    finally:
        _quietly(nvml.nvmlShutdown)


def _import_pynvml() -> Any | None:
    try:
        import pynvml
    except Exception:
        return None
    return pynvml


def list_nvml_gpus(nvml: Any) -> list[NvmlGpuIdentity]:
    """UUID and PCI bus id of every GPU NVML sees (NVML ignores `CUDA_VISIBLE_DEVICES`). NVML must be initialised."""
    return [_nvml_identity(nvml, i) for i in range(nvml.nvmlDeviceGetCount())]


def _nvml_identity(nvml: Any, index: int) -> NvmlGpuIdentity:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    uuid = _attempt(lambda: _text(nvml.nvmlDeviceGetUUID(handle)))
    pci = _attempt(lambda: _text(nvml.nvmlDeviceGetPciInfo(handle).busId))
    return NvmlGpuIdentity(index, uuid, pci)


def match_nvml_index(
    gpus: Sequence[NvmlGpuIdentity],
    *,
    torch_index: int,
    uuid: str | None = None,
    pci_bus_id: str | None = None,
    visible_devices: str | None = None,
    device_order: str | None = None,
    torch_device_count: int | None = None,
) -> int | None:
    """The NVML index of torch's device `torch_index`, or None when it cannot be known. Tried in order: the
    device UUID, the PCI bus id, a `GPU-<uuid prefix>` entry of `CUDA_VISIBLE_DEVICES`, a numeric entry when
    `CUDA_DEVICE_ORDER=PCI_BUS_ID` (NVML enumerates in PCI order; CUDA's default order is "fastest first", so a
    number alone proves nothing), and finally a machine with one GPU. Indexes are never assumed equal."""
    if uuid:
        wanted = _uuid_key(uuid)
        for gpu in gpus:
            if gpu.uuid and _uuid_key(gpu.uuid) == wanted:
                return gpu.index
    wanted_pci = _pci_key(pci_bus_id)
    if wanted_pci is not None:
        for gpu in gpus:
            if _pci_key(gpu.pci_bus_id) == wanted_pci:
                return gpu.index
    entries = [e.strip() for e in visible_devices.split(",")] if visible_devices is not None else None
    entry = entries[torch_index] if entries is not None and 0 <= torch_index < len(entries) else None
    if entry and entry.upper().startswith("GPU-"):
        prefix = _uuid_key(entry)
        found = [gpu.index for gpu in gpus if gpu.uuid and _uuid_key(gpu.uuid).startswith(prefix)]
        return found[0] if len(found) == 1 else None
    if (device_order or "").upper() == "PCI_BUS_ID":
        if entries is None:
            return torch_index if torch_index < len(gpus) else None
        if entry is not None and entry.isdigit() and int(entry) < len(gpus):
            return int(entry)
    if len(gpus) == 1 and torch_device_count in (None, 1) and entry in (None, "0"):
        return gpus[0].index
    return None


def _uuid_key(uuid: str) -> str:
    text = uuid.strip().lower()
    return text[4:] if text.startswith("gpu-") else text


def _pci_key(bus_id: str | None) -> tuple[int, int, int] | None:
    """'00000000:19:00.0' or '0000:19:00.0' -> (domain, bus, device)."""
    if not bus_id:
        return None
    try:
        domain, bus, rest = bus_id.strip().split(":")
        return int(domain, 16), int(bus, 16), int(rest.split(".")[0], 16)
    except ValueError:
        return None


def _pci_text(domain: int, bus: int, device: int) -> str:
    return f"{int(domain):08x}:{int(bus):02x}:{int(device):02x}.0"


def _text(value: Any) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)


def _attempt(read: Callable[[], Any]) -> Any | None:
    try:
        return read()
    except Exception:
        return None


def _quietly(call: Callable[[], Any]) -> None:
    try:
        call()
    except Exception:
        logger.debug("ignored failure in %r", call, exc_info=True)


# --- torch's own peak counters ----------------------------------------------------------------------------------


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


# --- sampling during a run ---------------------------------------------------------------------------------------


@dataclass
class ResourceSummary:
    samples: list[GpuSample] = field(default_factory=list)
    gpu_used_peak_bytes: int | None = None  # max NVML memory used during the run (all processes on the GPU)
    ram_peak_bytes: int | None = None  # max RSS of this process during the run
    util_peak_percent: float | None = None
    temperature_peak_c: float | None = None
    power_peak_w: float | None = None


_psutil_process: Any | None = None
_psutil_checked = False


_STATM_FD: int | None = None
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def read_process_rss_bytes() -> int | None:
    """Resident set size of this process. On Linux one pread of a /proc/self/statm descriptor kept open (a single
    cheap syscall, safe on the worker thread); elsewhere psutil when installed (imported once); else None."""
    global _psutil_process, _psutil_checked, _STATM_FD
    try:
        if _STATM_FD is None and os.path.exists("/proc/self/statm"):
            _STATM_FD = os.open("/proc/self/statm", os.O_RDONLY)
        if _STATM_FD is not None:
            return int(os.pread(_STATM_FD, 128, 0).split()[1]) * _PAGE_SIZE
        if not _psutil_checked:
            _psutil_checked = True
            import psutil

            _psutil_process = psutil.Process()
        if _psutil_process is not None:
            return int(_psutil_process.memory_info().rss)
    except Exception:
        return None
    return None


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


def _peak(current: float | None, value: float | None) -> Any:
    if value is None:
        return current
    return value if current is None or value > current else current


class _RunBuffer:
    """One run's samples and running peaks. Appended to by the sampler thread while it is the current run, and
    by the worker thread only before it is published and after it is detached."""

    def __init__(self, first: GpuSample, interval_s: float) -> None:
        self.samples: list[GpuSample] = []
        self.interval_s = interval_s
        self.summary = ResourceSummary(samples=self.samples)
        self.add(first)

    def add(self, sample: GpuSample) -> None:
        self.samples.append(sample)
        s = self.summary
        s.gpu_used_peak_bytes = _peak(s.gpu_used_peak_bytes, sample.used_bytes)
        s.ram_peak_bytes = _peak(s.ram_peak_bytes, sample.ram_rss_bytes)
        s.util_peak_percent = _peak(s.util_peak_percent, sample.util_percent)
        s.temperature_peak_c = _peak(s.temperature_peak_c, sample.temperature_c)
        s.power_peak_w = _peak(s.power_peak_w, sample.power_w)

    def replace_samples(self, samples: list[GpuSample]) -> None:
        self.samples = self.summary.samples = samples


class _NvmlReader:
    """NVML queries for one GPU, on the sampler thread only. A query that answers "not supported" (power on some
    boards, utilisation under MIG) is not asked again; other failures give None for that sample."""

    QUERIES = ("memory", "utilization", "temperature", "power")

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


class ResourceSampler:
    """Samples NVML and the process RSS every `interval_s` while a run is active, on one daemon thread that
    blocks on an event between runs (no polling when idle). NVML is opened on that thread; when it cannot be
    (pynvml missing, no NVIDIA driver, AMD, Apple) or `device.nvml_index` is None, only RAM is sampled."""

    def __init__(
        self,
        device: DeviceInfo,
        interval_s: float = 0.1,
        nvml: Any | None = None,
        rss_reader: Callable[[], int | None] | None = None,
        clock_ms: Callable[[], int] | None = None,
        *,
        max_samples: int = MAX_SAMPLES_PER_RUN,
    ) -> None:
        self._device = device
        self._interval_s = max(0.001, float(interval_s))
        self._nvml_given = nvml
        self._rss_reader = rss_reader or read_process_rss_bytes
        self._clock_ms = clock_ms or _wall_clock_ms
        self._max_samples = max(4, int(max_samples))
        self._lock = threading.Lock()
        self._active = threading.Event()  # set exactly while a run is current (or on close)
        self._tick = threading.Event()  # cuts the sleep between two samples short
        self._idle = threading.Event()  # set while the thread waits for a run
        self._run: _RunBuffer | None = None
        self._closed = False
        self._thread: threading.Thread | None = None

    # worker-thread side ----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Starts the sampler thread (idempotent). Call it at load time, not from the worker thread."""
        try:
            if self._rss_reader is read_process_rss_bytes:
                self._read_rss()  # resolves the RSS source (a one-time import) before the first run
            with self._lock:
                if self._closed or self._thread is not None:
                    return
                self._thread = threading.Thread(target=self._loop, name="run-telemetry-gpu", daemon=True)
            self._thread.start()
        except Exception:
            logger.warning("could not start the GPU sampler thread", exc_info=True)

    def run_started(self) -> None:
        """Begins a new sample list (with one RAM reading now) and wakes the sampler thread."""
        try:
            run = _RunBuffer(self._boundary_sample(), self._interval_s)
            with self._lock:
                if self._run is not None:
                    logger.debug("run_started twice without run_finished; the earlier samples are dropped")
                self._run = run
                self._idle.clear()
                self._active.set()
        except Exception:
            logger.warning("run_started failed", exc_info=True)

    def run_finished(self) -> ResourceSummary:
        """Stops sampling this run and hands back what was gathered (with one more RAM reading now), without
        waiting for the sampler thread. An empty summary when no run was started."""
        try:
            with self._lock:
                run, self._run = self._run, None
                if not self._closed:
                    self._active.clear()
            self._tick.set()
            if run is None:
                return ResourceSummary()
            run.add(self._boundary_sample())
            return run.summary
        except Exception:
            logger.warning("run_finished failed", exc_info=True)
            return ResourceSummary()

    def close(self, timeout_s: float = 2.0) -> None:
        try:
            with self._lock:
                self._closed = True
                self._run = None
                thread = self._thread
            self._active.set()
            self._tick.set()
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout_s)
        except Exception:
            logger.debug("closing the GPU sampler failed", exc_info=True)

    def wait_idle(self, timeout_s: float) -> bool:
        """True once the thread is blocked waiting for the next run (diagnostics and tests)."""
        return self._idle.wait(timeout_s)

    def _boundary_sample(self) -> GpuSample:
        """RAM-only sample taken on the worker thread: no NVML call there."""
        return GpuSample(t_ms=int(self._clock_ms()), ram_rss_bytes=self._read_rss())

    def _read_rss(self) -> int | None:
        try:
            return self._rss_reader()
        except Exception:
            logger.debug("reading RSS failed", exc_info=True)
            return None

    # sampler-thread side ---------------------------------------------------------------------------------------

    def _loop(self) -> None:
        nvml, reader = self._open_nvml()
        try:
            while not self._closed:
                try:
                    self._step(reader)
                except Exception:
                    logger.warning("GPU sampler step failed; continuing", exc_info=True)
                    self._tick.wait(self._interval_s)
        finally:
            if nvml is not None:
                _quietly(nvml.nvmlShutdown)

    def _step(self, reader: _NvmlReader | None) -> None:
        with self._lock:
            run = self._run
            if run is None:
                if not self._closed:
                    self._idle.set()
            else:
                self._idle.clear()
                self._tick.clear()
                t_ms = int(self._clock_ms())
        if run is None:
            # `_active` is clear exactly while no run is current: this blocks until run_started() or close().
            self._active.wait()
            # run_started() took a RAM reading on the worker; the first sample here comes one interval in, so a
            # short run never wakes this thread (each wake-up takes the GIL from ComfyUI's worker).
            self._tick.clear()
            self._tick.wait(self._interval_s)
            return
        used, util, temp, power = reader.read() if reader is not None else (None, None, None, None)
        sample = GpuSample(t_ms, used, util, temp, power, self._read_rss())
        with self._lock:
            if self._run is not run:
                return
            run.add(sample)
            samples = run.samples if len(run.samples) >= self._max_samples else None
        if samples is not None:
            halved = downsample_samples(samples, self._max_samples // 2)
            with self._lock:
                if self._run is run:
                    run.replace_samples(halved)
                    run.interval_s *= 2
        self._tick.wait(run.interval_s)

    def _open_nvml(self) -> tuple[Any | None, _NvmlReader | None]:
        index = self._device.nvml_index
        if index is None:
            return None, None
        nvml = self._nvml_given if self._nvml_given is not None else _import_pynvml()
        if nvml is None:
            logger.info("pynvml not installed; sampling RAM only")
            return None, None
        try:
            nvml.nvmlInit()
        except Exception as exc:
            logger.info("NVML unavailable (%r); sampling RAM only", exc)
            return None, None
        try:
            return nvml, _NvmlReader(nvml, nvml.nvmlDeviceGetHandleByIndex(index))
        except Exception as exc:
            logger.warning("NVML device %s unavailable (%r); sampling RAM only", index, exc)
            _quietly(nvml.nvmlShutdown)
            return None, None


# --- reducing a series ---------------------------------------------------------------------------------------------


def downsample_samples(samples: list[GpuSample], max_points: int) -> list[GpuSample]:
    """At most `max_points` samples, in time order, keeping the first, the last and the peaks of `used_bytes`
    and `ram_rss_bytes`: the interior is cut into buckets and each bucket keeps its max-used and max-RSS sample.
    With fewer than 4 points allowed, the peak wins over the ends. Pure."""
    n = len(samples)
    if max_points <= 0:
        return []
    if n <= max_points:
        return list(samples)
    if max_points < 4:
        priority = dict.fromkeys([_argmax(samples, "used_bytes"), _argmax(samples, "ram_rss_bytes"), 0, n - 1])
        return [samples[i] for i in sorted(list(priority)[:max_points])]
    interior = n - 2
    buckets = (max_points - 2) // 2
    kept = [samples[0]]
    for b in range(buckets):
        lo, hi = 1 + b * interior // buckets, 1 + (b + 1) * interior // buckets
        if lo >= hi:
            continue
        chunk = samples[lo:hi]
        picks = {lo + _argmax(chunk, "used_bytes"), lo + _argmax(chunk, "ram_rss_bytes")}
        kept.extend(samples[i] for i in sorted(picks))
    kept.append(samples[-1])
    return kept


def _argmax(samples: Sequence[GpuSample], attr: str) -> int:
    best, best_value = 0, None
    for i, sample in enumerate(samples):
        value = getattr(sample, attr)
        if value is not None and (best_value is None or value > best_value):
            best, best_value = i, value
    return best
