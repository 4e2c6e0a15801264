"""The sampler thread: NVML and the process RSS while a run is active, asleep between runs.

`ResourceSampler` owns one daemon thread that samples NVML (used memory, utilisation, temperature, power, the
energy counter and the other processes' memory) on every GPU this process can use, and the process RSS, while a
run is active, and blocks on an event between runs. Its worker-thread calls are O(1), never wait for the sampler
thread, never make an NVML call and never raise.

Energy: the worker only notes a run's start and end times (its RAM boundary samples). The sampler thread reads
the energy counter when it wakes for a run, at every sample, and once more when the run has ended; both
boundary readings carry the worker's boundary times. Where a GPU has no counter, the power at those moments is
read instead, so power samples cover the run from end to end. `ResourceSummary` turns the readings into the
run's and its nodes' energy (`energy`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ...model import EnergySource, GpuSample, RunGpu
from ._util import _attempt, _import_pynvml, _quietly, _text, logger
from .devices import DeviceInfo
from .downsample import downsample_samples
from .energy import Reading, counter_energy_j, power_energy_j
from .nvml_reader import _NvmlReader
from .rss import read_process_rss_bytes

FINAL_READING_WAIT_S = 1.0
"""How long the recorder thread waits, at most, for the sampler's reading after a run's end."""

MAX_SAMPLES_PER_RUN = 20_000
"""A run keeps at most this many samples in memory; when full, the resolution halves (peaks are kept)."""


class _DeviceTrack:
    """One GPU's readings during one run: peaks, other processes' memory, energy counter and power."""

    def __init__(self, index: int, name: str | None, uuid: str | None, comfyui_device: bool) -> None:
        self.index, self.name, self.uuid, self.comfyui_device = index, name, uuid, comfyui_device
        self.peak_used_bytes: int | None = None
        self.external_bytes: int | None = None
        self.counter: list[Reading] = []
        self.power: list[Reading] = []

    def source(self) -> str | None:
        if len(self.counter) >= 2:
            return EnergySource.NVML_COUNTER
        if len(self.power) >= 2:
            return EnergySource.POWER_SAMPLES
        return None

    def energy_between(self, start_ms: float, end_ms: float) -> float | None:
        source = self.source()
        if source == EnergySource.NVML_COUNTER:
            return counter_energy_j(list(self.counter), start_ms, end_ms)
        if source == EnergySource.POWER_SAMPLES:
            return power_energy_j(list(self.power), start_ms, end_ms)
        return None


@dataclass
class ResourceSummary:
    samples: list[GpuSample] = field(default_factory=list)
    gpu_used_peak_bytes: int | None = None  # max NVML memory used during the run (all processes on the GPU)
    ram_peak_bytes: int | None = None  # max RSS of this process during the run
    util_peak_percent: float | None = None
    temperature_peak_c: float | None = None
    power_peak_w: float | None = None
    start_ms: int | None = field(default=None, compare=False)
    end_ms: int | None = field(default=None, compare=False)
    devices: list[_DeviceTrack] = field(default_factory=list, compare=False)
    _final: threading.Event = field(default_factory=threading.Event, compare=False, repr=False)

    def wait_final(self, timeout_s: float = FINAL_READING_WAIT_S) -> bool:
        """Blocks (recorder thread only) until the sampler took its reading after the run's end; False on timeout,
        and the readings so far are used."""
        return self._final.wait(timeout_s)

    def _comfyui_track(self) -> _DeviceTrack | None:
        return next((d for d in self.devices if d.comfyui_device), None)

    def run_energy(self) -> tuple[float | None, str | None]:
        """Joules ComfyUI's GPU used over the run and the `EnergySource`, or (None, None)."""
        track = self._comfyui_track()
        if track is None or self.start_ms is None or self.end_ms is None:
            return None, None
        source = track.source()
        energy = track.energy_between(self.start_ms, self.end_ms)
        return (energy, source) if energy is not None else (None, None)

    def energy_between(self, start_ms: float, end_ms: float) -> float | None:
        """Joules ComfyUI's GPU used between two wall-clock times inside the run (a node), or None."""
        track = self._comfyui_track()
        if track is None:
            return None
        lo = max(start_ms, self.start_ms) if self.start_ms is not None else start_ms
        hi = min(end_ms, self.end_ms) if self.end_ms is not None else end_ms
        return track.energy_between(lo, max(lo, hi))

    def gpus(self) -> list[RunGpu]:
        """Every GPU sampled during the run, ComfyUI's marked."""
        result = []
        for track in self.devices:
            energy = None
            if self.start_ms is not None and self.end_ms is not None:
                energy = track.energy_between(self.start_ms, self.end_ms)
            result.append(RunGpu(track.index, track.name, track.uuid, track.peak_used_bytes, track.external_bytes,
                                 track.comfyui_device, energy))
        return result


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


def _peak(current: float | None, value: float | None) -> Any:
    if value is None:
        return current
    return value if current is None or value > current else current


class _RunBuffer:
    """One run's samples and running peaks. Appended to by the sampler thread while it is the current run, and
    by the worker thread only before it is published and after it is detached."""

    def __init__(self, first: GpuSample, interval_s: float, comfyui_index: int | None = None) -> None:
        self.samples: list[GpuSample] = []
        self.interval_s = interval_s
        self.comfyui_index = comfyui_index
        self.summary = ResourceSummary(samples=self.samples, start_ms=first.t_ms)
        self.opened = False  # the sampler thread took its run-start readings
        self.tracks: dict[int, _DeviceTrack] = {}
        self.add(first)

    def add(self, sample: GpuSample) -> None:
        self.samples.append(sample)
        if sample.gpu_index is not None:
            track = self.tracks.get(sample.gpu_index)
            if track is not None:
                track.peak_used_bytes = _peak(track.peak_used_bytes, sample.used_bytes)
            if sample.gpu_index != self.comfyui_index:
                return  # the run's own peaks are those of ComfyUI's device
        s = self.summary
        s.gpu_used_peak_bytes = _peak(s.gpu_used_peak_bytes, sample.used_bytes)
        s.ram_peak_bytes = _peak(s.ram_peak_bytes, sample.ram_rss_bytes)
        s.util_peak_percent = _peak(s.util_peak_percent, sample.util_percent)
        s.temperature_peak_c = _peak(s.temperature_peak_c, sample.temperature_c)
        s.power_peak_w = _peak(s.power_peak_w, sample.power_w)

    def replace_samples(self, samples: list[GpuSample]) -> None:
        self.samples = self.summary.samples = samples
        for track in self.tracks.values():
            track.counter[:] = _thinned(track.counter)
            track.power[:] = _thinned(track.power)


def _thinned(points: list[Reading]) -> list[Reading]:
    """Every other reading, keeping the first and the last (the counter interpolates across the gaps)."""
    if len(points) <= 2:
        return points
    return [*points[:-1:2], points[-1]] if (len(points) - 1) % 2 else points[::2]


class _Device:
    """An open NVML device on the sampler thread."""

    def __init__(self, index: int, reader: _NvmlReader, name: str | None, uuid: str | None,
                 comfyui_device: bool) -> None:
        self.index, self.reader, self.name, self.uuid, self.comfyui_device = index, reader, name, uuid, comfyui_device


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
        self._ending: _RunBuffer | None = None  # ended, waiting for the sampler's last reading
        self._closed = False
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

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
            run = _RunBuffer(self._boundary_sample(), self._interval_s, self._device.nvml_index)
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
            try:
                end: GpuSample | None = self._boundary_sample()
            except Exception:  # a broken clock: the run still ends here, without an end time (so no energy)
                logger.debug("run-end reading failed", exc_info=True)
                end = None
            with self._lock:
                run, self._run = self._run, None
                if run is not None:
                    if end is not None:
                        run.add(end)
                        run.summary.end_ms = end.t_ms
                    if run.opened and end is not None and not self._closed and self._thread is not None:
                        self._ending = run  # the sampler thread takes the run-end readings, then sets final
                    else:
                        run.summary._final.set()
                if not self._closed:
                    self._active.clear()
            self._tick.set()
            if run is None:
                return ResourceSummary()
            return run.summary
        except Exception:
            logger.warning("run_finished failed", exc_info=True)
            return ResourceSummary()

    def close(self, timeout_s: float = 2.0) -> None:
        try:
            with self._lock:
                self._closed = True
                for run in (self._run, self._ending):
                    if run is not None:
                        run.summary._final.set()
                self._run = self._ending = None
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
        nvml, devices = self._open_nvml()
        try:
            while not self._closed:
                try:
                    self._step(devices)
                except Exception:
                    logger.warning("GPU sampler step failed; continuing", exc_info=True)
                    self._tick.wait(self._interval_s)
        finally:
            with self._lock:
                ending, self._ending = self._ending, None
            if ending is not None:
                ending.summary._final.set()
            if nvml is not None:
                _quietly(nvml.nvmlShutdown)

    def _step(self, devices: list[_Device]) -> None:
        with self._lock:
            run = self._run
            ending, self._ending = self._ending, None
            self._tick.clear()  # a run_finished() from here on cuts the next wait short
            if run is None and ending is None:
                if not self._closed:
                    self._idle.set()
            else:
                self._idle.clear()
            opening = run is not None and not run.opened
            if opening:
                run.opened = True
            elif run is not None:
                t_ms = self._sample_time()
        if ending is not None:
            try:
                self._boundary_readings(ending, ending.summary.end_ms, devices)
            finally:
                ending.summary._final.set()
        if run is None:
            if ending is None:
                # `_active` is clear exactly while no run is current: this blocks until run_started() or close().
                self._active.wait()
            return
        if opening:
            self._boundary_readings(run, run.summary.start_ms, devices)
            # run_started() took a RAM reading on the worker; the first sample here comes one interval in, so a
            # short run costs this thread one wake-up for the counters, not a sample.
            self._tick.wait(self._interval_s)
            return
        if t_ms is None:
            self._tick.wait(run.interval_s)
            return
        samples, readings = self._read_devices(t_ms, devices)
        with self._lock:
            if self._run is not run:
                return
            self._apply(run, samples, readings)
            full = run.samples if len(run.samples) >= self._max_samples else None
        if full is not None:
            halved = downsample_samples(full, self._max_samples // 2)
            with self._lock:
                if self._run is run:
                    run.replace_samples(halved)
                    run.interval_s *= 2
        self._tick.wait(run.interval_s)

    def _sample_time(self) -> int | None:
        try:
            return int(self._clock_ms())
        except Exception:
            logger.debug("the sampler's clock failed; skipping a sample", exc_info=True)
            return None

    def _read_devices(self, t_ms: int, devices: list[_Device]) -> tuple[list[GpuSample], list[tuple[Any, ...]]]:
        """One sample per device (RSS on ComfyUI's), and per device its counter, power and process memory."""
        samples: list[GpuSample] = []
        readings: list[tuple[Any, ...]] = []
        if not devices:
            return [GpuSample(t_ms, ram_rss_bytes=self._read_rss())], readings
        for device in devices:
            used, util, temp, power = device.reader.read()
            rss = self._read_rss() if device.comfyui_device else None
            samples.append(GpuSample(t_ms, used, util, temp, power, rss, device.index))
            readings.append((device.index, t_ms, device.reader.read_energy_mj(), power,
                             device.reader.read_processes()))
        return samples, readings

    def _apply(self, run: _RunBuffer, samples: list[GpuSample], readings: list[tuple[Any, ...]]) -> None:
        """Adds one round of readings to `run` (lock held)."""
        for sample in samples:
            run.add(sample)
        processes = {index: found for index, _, _, _, found in readings}
        # PIDs from NVML are the host's: in a container they are not ours, and then nobody is "external".
        trusted = any(found is not None and self._pid in found for found in processes.values())
        for index, t_ms, energy_mj, power_w, found in readings:
            track = run.tracks.get(index)
            if track is None:
                continue
            if energy_mj is not None:
                track.counter.append((t_ms, energy_mj))
            if power_w is not None:
                track.power.append((t_ms, power_w))
            if trusted and found is not None:
                others = [used for pid, used in found.items() if pid != self._pid]
                known = [used for used in others if used is not None]
                if known or not others:
                    track.external_bytes = _peak(track.external_bytes, sum(known))

    def _boundary_readings(self, run: _RunBuffer, t_ms: int | None, devices: list[_Device]) -> None:
        """At a run's start or end, on the sampler thread: each device's energy counter, or its power where it has
        no counter, stamped with the worker's boundary time."""
        if t_ms is None:
            return
        with self._lock:
            for device in devices:
                if device.index not in run.tracks:
                    run.tracks[device.index] = _DeviceTrack(device.index, device.name, device.uuid,
                                                            device.comfyui_device)
            run.summary.devices = list(run.tracks.values())
        for device in devices:
            energy = device.reader.read_energy_mj()
            power = device.reader.read_power_w() if energy is None else None
            with self._lock:
                track = run.tracks[device.index]
                if energy is not None:
                    track.counter.append((t_ms, energy))
                    track.counter.sort()
                elif power is not None:
                    track.power.append((t_ms, power))
                    track.power.sort()

    def _open_nvml(self) -> tuple[Any | None, list[_Device]]:
        """NVML and every device to sample: ComfyUI's first, then the others this process can use."""
        index = self._device.nvml_index
        if index is None:
            return None, []
        nvml = self._nvml_given if self._nvml_given is not None else _import_pynvml()
        if nvml is None:
            logger.info("pynvml not installed; sampling RAM only")
            return None, []
        try:
            nvml.nvmlInit()
        except Exception as exc:
            logger.info("NVML unavailable (%r); sampling RAM only", exc)
            return None, []
        try:
            devices = [self._open_device(nvml, index, True)]
        except Exception as exc:
            logger.warning("NVML device %s unavailable (%r); sampling RAM only", index, exc)
            _quietly(nvml.nvmlShutdown)
            return None, []
        for other in self._device.visible_nvml_indexes or ():
            if other != index:
                try:
                    devices.append(self._open_device(nvml, other, False))
                except Exception as exc:
                    logger.info("NVML device %s unavailable (%r); not sampled", other, exc)
        return nvml, devices

    def _open_device(self, nvml: Any, index: int, comfyui_device: bool) -> _Device:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        name = _attempt(lambda: _text(nvml.nvmlDeviceGetName(handle)))
        uuid = _attempt(lambda: _text(nvml.nvmlDeviceGetUUID(handle)))
        return _Device(index, _NvmlReader(nvml, handle), name, uuid, comfyui_device)
