"""The sampler thread: NVML and the process RSS while a run is active, asleep between runs.

`ResourceSampler` owns one daemon thread that samples NVML (used memory, utilisation, temperature, power) and the
process RSS while a run is active, and blocks on an event between runs. Its worker-thread calls are O(1), never
wait for the sampler thread, never make an NVML call and never raise.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ...model import GpuSample
from ._util import _import_pynvml, _quietly, logger
from .devices import DeviceInfo
from .downsample import downsample_samples
from .nvml_reader import _NvmlReader
from .rss import read_process_rss_bytes

MAX_SAMPLES_PER_RUN = 20_000
"""A run keeps at most this many samples in memory; when full, the resolution halves (peaks are kept)."""


@dataclass
class ResourceSummary:
    samples: list[GpuSample] = field(default_factory=list)
    gpu_used_peak_bytes: int | None = None  # max NVML memory used during the run (all processes on the GPU)
    ram_peak_bytes: int | None = None  # max RSS of this process during the run
    util_peak_percent: float | None = None
    temperature_peak_c: float | None = None
    power_peak_w: float | None = None


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
