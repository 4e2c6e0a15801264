"""GPU and RAM measurement around a run (the telemetry/capture/gpu package), against a fake NVML that replays real H100
readings (tests/fixtures/nvml_h100_replay.json; see its "provenance"). No GPU, torch or pynvml is needed."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import early_process
import pytest
from fakes import nvml_replay
from fakes.nvml_replay import NVMLError, ReplayNvml

from telemetry.capture.gpu import (
    CPU_DEVICE,
    DeviceInfo,
    NvmlGpuIdentity,
    ResourceSampler,
    ResourceSummary,
    TorchMemoryProbe,
    detect_device,
    downsample_samples,
    match_nvml_index,
)
from telemetry.model import GpuSample

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = Path(__file__).parent / "fixtures" / "nvml_h100_replay.json"
MIB = 1024 * 1024
GIB = 1024 * MIB
H100_READINGS = ReplayNvml.from_file(FIXTURE).devices[1]["readings"]
H100 = DeviceInfo(backend="cuda", torch_index=0, nvml_index=1, name="NVIDIA H100 80GB HBM3", total_bytes=81559 * MIB)
WAIT_S = 10.0
CLOCK_START_MS = 1_700_000_000_000
CLOCK_STEP_MS = 100


class RssSequence:
    """An RSS reader that returns the given values in turn, then holds the last one."""

    def __init__(self, values: list[int]) -> None:
        self.values = values
        self.calls = 0
        self._changed = threading.Condition()

    def __call__(self) -> int:
        with self._changed:
            value = self.values[min(self.calls, len(self.values) - 1)]
            self.calls += 1
            self._changed.notify_all()
            return value

    def wait_for_calls(self, count: int) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.calls >= count, WAIT_S)


def clock() -> itertools.count:
    return itertools.count(CLOCK_START_MS, CLOCK_STEP_MS).__next__


@pytest.fixture
def make_sampler():
    samplers: list[ResourceSampler] = []

    def make(device: DeviceInfo = H100, **options) -> ResourceSampler:
        options.setdefault("interval_s", 0.001)
        options.setdefault("rss_reader", RssSequence([512 * MIB]))
        options.setdefault("clock_ms", clock())
        sampler = ResourceSampler(device, **options)
        samplers.append(sampler)
        return sampler

    yield make
    for sampler in samplers:
        sampler.close()


def gpu_samples(summary: ResourceSummary) -> list[GpuSample]:
    return [s for s in summary.samples if s.used_bytes is not None]


# --- a run is sampled --------------------------------------------------------------------------------------------


def test_a_run_records_the_replayed_h100_readings_and_their_peaks(make_sampler):
    nvml = ReplayNvml.from_file(FIXTURE)
    rss = RssSequence([int(2.1 * GIB), int(2.4 * GIB), int(6.5 * GIB), int(9.8 * GIB), int(3.0 * GIB)])
    sampler = make_sampler(nvml=nvml, rss_reader=rss)
    sampler.start()

    sampler.run_started()
    # The 7th memory query starts only after the 6th sample was stored: every reading is in.
    assert nvml.wait_for_calls("nvmlDeviceGetMemoryInfo", len(H100_READINGS) + 1, WAIT_S)
    summary = sampler.run_finished()

    first, last = summary.samples[0], summary.samples[-1]
    assert (first.used_bytes, first.ram_rss_bytes) == (None, int(2.1 * GIB))  # RAM read at run start
    assert last.used_bytes is None and last.ram_rss_bytes is not None  # and at run end
    replayed = gpu_samples(summary)[: len(H100_READINGS)]
    assert [(s.used_bytes, s.util_percent, s.temperature_c, s.power_w) for s in replayed] == [
        (r["used_mib"] * MIB, r["util_percent"], r["temperature_c"], float(r["power_w"])) for r in H100_READINGS
    ]
    assert summary.gpu_used_peak_bytes == 78415 * MIB
    assert summary.util_peak_percent == 100.0
    assert summary.temperature_peak_c == 46.0
    assert summary.power_peak_w == 698.0  # NVML's 698000 mW
    assert summary.ram_peak_bytes == int(9.8 * GIB)
    times = [s.t_ms for s in summary.samples]
    assert times == sorted(times) and len(set(times)) == len(times)


def test_the_thread_sleeps_between_runs_and_takes_no_samples_there(make_sampler):
    nvml = ReplayNvml.from_file(FIXTURE)
    sampler = make_sampler(nvml=nvml)
    sampler.start()

    sampler.run_started()
    assert nvml.wait_for_calls("nvmlDeviceGetMemoryInfo", 3, WAIT_S)
    first = sampler.run_finished()
    first_count = len(first.samples)

    assert sampler.wait_idle(WAIT_S)
    calls_when_idle = dict(nvml.calls)
    time.sleep(0.05)  # fifty sampling intervals
    assert dict(nvml.calls) == calls_when_idle

    sampler.run_started()
    assert nvml.wait_for_calls("nvmlDeviceGetMemoryInfo", calls_when_idle["nvmlDeviceGetMemoryInfo"] + 2, WAIT_S)
    second = sampler.run_finished()

    # Nothing read the clock between the end of one run and the start of the next.
    assert second.samples[0].t_ms == first.samples[-1].t_ms + CLOCK_STEP_MS
    assert len(first.samples) == first_count  # a handed-back list is never touched again
    assert len(gpu_samples(second)) >= 1


def test_nvml_is_only_called_from_the_sampler_thread(make_sampler):
    threads: set[str] = set()

    class Recording(ReplayNvml):
        def _enter(self, name, needs_init=True):
            threads.add(threading.current_thread().name)
            super()._enter(name, needs_init)

    nvml = Recording.from_file(FIXTURE)
    sampler = make_sampler(nvml=nvml)
    sampler.start()
    for _ in range(3):
        sampler.run_started()
        assert nvml.wait_for_calls("nvmlDeviceGetMemoryInfo", nvml.calls["nvmlDeviceGetMemoryInfo"] + 1, WAIT_S)
        sampler.run_finished()
    sampler.close()

    assert threads == {"run-telemetry-gpu"}
    assert nvml.calls["nvmlShutdown"] == nvml.calls["nvmlInit"] == 1


# --- partial or missing NVML --------------------------------------------------------------------------------------


def test_the_replay_raises_errors_shaped_like_pynvml():
    nvml = ReplayNvml.from_file(FIXTURE, unsupported={1: {"power"}})
    with pytest.raises(NVMLError) as uninitialised:
        nvml.nvmlDeviceGetCount()
    assert uninitialised.value.value == nvml_replay.NVML_ERROR_UNINITIALIZED

    nvml.nvmlInit()
    handle = nvml.nvmlDeviceGetHandleByIndex(1)
    with pytest.raises(nvml_replay.NVMLError_NotSupported) as unsupported:
        nvml.nvmlDeviceGetPowerUsage(handle)
    assert unsupported.value.value == nvml_replay.NVML_ERROR_NOT_SUPPORTED
    assert str(unsupported.value) == "Not Supported"
    assert isinstance(NVMLError(nvml_replay.NVML_ERROR_GPU_IS_LOST), nvml_replay.NVMLError_GpuIsLost)
    assert nvml.nvmlDeviceGetMemoryInfo(handle).total == 81559 * MIB


def test_a_query_the_gpu_does_not_support_is_left_out_and_not_asked_again(make_sampler):
    nvml = ReplayNvml.from_file(FIXTURE, unsupported={1: {"power"}})
    sampler = make_sampler(nvml=nvml)
    sampler.start()

    sampler.run_started()
    assert nvml.wait_for_calls("nvmlDeviceGetMemoryInfo", len(H100_READINGS) + 1, WAIT_S)
    summary = sampler.run_finished()

    assert summary.power_peak_w is None
    assert all(s.power_w is None for s in summary.samples)
    assert summary.gpu_used_peak_bytes == 78415 * MIB and summary.temperature_peak_c == 46.0
    assert nvml.calls["nvmlDeviceGetPowerUsage"] == 1


def test_an_nvml_error_in_the_middle_of_a_run_loses_one_value_not_the_sampler(make_sampler):
    class FlakyUtilization(ReplayNvml):
        def nvmlDeviceGetUtilizationRates(self, handle):  # noqa: N802
            if self.calls["nvmlDeviceGetUtilizationRates"] == 1:
                self.calls["nvmlDeviceGetUtilizationRates"] += 1
                raise RuntimeError("driver hiccup, not even an NVMLError")
            return super().nvmlDeviceGetUtilizationRates(handle)

    nvml = FlakyUtilization.from_file(
        FIXTURE, fail_calls={"nvmlDeviceGetMemoryInfo": {2}}, fail_code=nvml_replay.NVML_ERROR_GPU_IS_LOST
    )
    sampler = make_sampler(nvml=nvml)
    sampler.start()

    sampler.run_started()
    assert nvml.wait_for_calls("nvmlDeviceGetMemoryInfo", 9, WAIT_S)
    summary = sampler.run_finished()

    thread_samples = summary.samples[1:-1]
    assert thread_samples[1].util_percent is None and thread_samples[1].used_bytes is not None
    assert thread_samples[2].used_bytes is None and thread_samples[2].temperature_c is not None
    assert all(s.used_bytes is not None for s in thread_samples[3:8])
    assert summary.gpu_used_peak_bytes == 78415 * MIB  # the failed read did not consume a reading

    sampler.run_started()  # and the next run is sampled as usual
    assert nvml.wait_for_calls("nvmlDeviceGetMemoryInfo", nvml.calls["nvmlDeviceGetMemoryInfo"] + 2, WAIT_S)
    assert gpu_samples(sampler.run_finished())


def test_without_a_working_nvml_only_ram_is_sampled(make_sampler):
    nvml = ReplayNvml.from_file(FIXTURE, fail_init=nvml_replay.NVML_ERROR_DRIVER_NOT_LOADED)
    rss = RssSequence([300 * MIB, 700 * MIB, 400 * MIB])
    sampler = make_sampler(nvml=nvml, rss_reader=rss)
    sampler.start()

    sampler.run_started()
    assert rss.wait_for_calls(5)
    summary = sampler.run_finished()

    assert len(summary.samples) >= 4
    assert all(s.used_bytes is None and s.power_w is None for s in summary.samples)
    assert all(s.ram_rss_bytes is not None for s in summary.samples)
    assert summary.gpu_used_peak_bytes is None
    assert summary.ram_peak_bytes == 700 * MIB
    assert set(nvml.calls) == {"nvmlInit"}


def test_an_amd_or_apple_machine_samples_ram_with_the_default_nvml(make_sampler):
    # No pynvml here, or pynvml without an NVIDIA driver: either way RAM only, and no exception.
    rss = RssSequence([256 * MIB])
    for device in (H100, DeviceInfo("rocm", 0, None, "AMD Instinct MI300X", 192 * GIB)):
        sampler = make_sampler(device, rss_reader=rss)
        sampler.start()
        sampler.run_started()
        assert rss.wait_for_calls(rss.calls + 3)
        summary = sampler.run_finished()
        assert summary.ram_peak_bytes == 256 * MIB
        assert summary.gpu_used_peak_bytes is None


# --- the worker-thread calls never raise ---------------------------------------------------------------------------


def test_run_calls_out_of_order_or_twice_never_raise(make_sampler):
    sampler = make_sampler(nvml=ReplayNvml.from_file(FIXTURE))
    assert sampler.run_finished() == ResourceSummary()  # before start and before any run

    sampler.start()
    sampler.start()
    assert sampler.run_finished() == ResourceSummary()
    sampler.run_started()
    sampler.run_started()  # a second start begins a fresh list
    summary = sampler.run_finished()
    assert summary.samples and summary.ram_peak_bytes == 512 * MIB
    assert sampler.run_finished() == ResourceSummary()

    sampler.close()
    sampler.close()
    sampler.run_started()  # after close: RAM at start and end, no thread
    assert [s.ram_rss_bytes for s in sampler.run_finished().samples] == [512 * MIB, 512 * MIB]


def test_broken_readers_do_not_reach_the_worker_thread(make_sampler):
    def broken():
        raise OSError("no /proc here")

    sampler = make_sampler(CPU_DEVICE, rss_reader=broken)
    sampler.start()
    sampler.run_started()
    assert sampler.run_finished().ram_peak_bytes is None

    sampler = make_sampler(CPU_DEVICE, clock_ms=broken)
    sampler.start()
    sampler.run_started()
    assert isinstance(sampler.run_finished(), ResourceSummary)


def test_a_long_run_keeps_a_bounded_number_of_samples_and_its_peaks(make_sampler):
    nvml = ReplayNvml.from_file(FIXTURE)
    sampler = make_sampler(nvml=nvml, max_samples=8)
    sampler.start()

    sampler.run_started()
    assert nvml.wait_for_calls("nvmlDeviceGetMemoryInfo", 20, WAIT_S)  # halves 4 times
    summary = sampler.run_finished()

    assert len(summary.samples) <= 8 + 1  # the cap, plus the RAM reading at run end
    assert summary.samples[0].t_ms == CLOCK_START_MS  # the run-start reading survives halving
    assert max(s.used_bytes or 0 for s in summary.samples) == 78415 * MIB
    assert summary.power_peak_w == 698.0  # peaks are kept even when their sample was thinned out


# --- downsampling ----------------------------------------------------------------------------------------------------


def series(n: int, used_peak_at: int, ram_peak_at: int) -> list[GpuSample]:
    return [
        GpuSample(
            t_ms=i * 100,
            used_bytes=(80 if i == used_peak_at else 10 + i % 7) * GIB,
            ram_rss_bytes=(64 if i == ram_peak_at else 4 + i % 3) * GIB,
        )
        for i in range(n)
    ]


def test_downsampling_keeps_both_peaks_the_ends_and_the_order():
    samples = series(10_000, used_peak_at=7_321, ram_peak_at=2_222)
    original = list(samples)

    reduced = downsample_samples(samples, 100)

    assert len(reduced) <= 100
    assert reduced[0] is samples[0] and reduced[-1] is samples[-1]
    assert samples[7_321] in reduced and samples[2_222] in reduced
    assert [s.t_ms for s in reduced] == sorted(s.t_ms for s in reduced)
    assert samples == original  # pure


@pytest.mark.parametrize("max_points", [1, 2, 3, 4, 5])
def test_downsampling_to_very_few_points_keeps_the_memory_peak(max_points):
    samples = series(50, used_peak_at=0, ram_peak_at=31)
    reduced = downsample_samples(samples, max_points)
    assert 1 <= len(reduced) <= max_points
    assert samples[0] in reduced  # the used_bytes peak


def test_downsampling_a_short_series_returns_a_copy():
    samples = series(5, used_peak_at=2, ram_peak_at=3)
    assert downsample_samples(samples, 5) == samples
    assert downsample_samples(samples, 5) is not samples
    assert downsample_samples(samples, 0) == []
    assert downsample_samples([], 10) == []


# --- which GPU -------------------------------------------------------------------------------------------------------


def fake_torch(devices: list[SimpleNamespace], current: int = 0, hip: str | None = None) -> SimpleNamespace:
    """A torch with CUDA devices `devices` in torch's order (after CUDA_VISIBLE_DEVICES)."""
    return SimpleNamespace(
        version=SimpleNamespace(hip=hip),
        cuda=SimpleNamespace(
            is_available=lambda: True,
            current_device=lambda: current,
            device_count=lambda: len(devices),
            get_device_properties=lambda i: devices[i],
        ),
        backends=SimpleNamespace(mps=SimpleNamespace(is_available=lambda: False)),
    )


def h100_props(nvml_index: int, *, uuid: bool = True, pci: bool = True) -> SimpleNamespace:
    device = ReplayNvml.from_file(FIXTURE).devices[nvml_index]
    props = SimpleNamespace(name=device["name"], total_memory=device["memory_total_mib"] * MIB)
    if uuid:
        props.uuid = device["uuid"].removeprefix("GPU-")  # torch prints the UUID without NVML's prefix
    if pci:
        _, bus, dev = device["pci_bus_id"].split(":")
        props.pci_domain_id, props.pci_bus_id, props.pci_device_id = 0, int(bus, 16), int(dev[:2], 16)
    return props


@pytest.mark.parametrize("identity", ["uuid", "pci"])
def test_cuda_visible_devices_1_0_maps_torch_0_to_nvml_1(identity):
    # CUDA_VISIBLE_DEVICES=1,0: torch's device 0 is NVML's device 1 and torch's device 1 is NVML's device 0.
    visible = [h100_props(1, uuid=identity == "uuid", pci=identity == "pci"),
               h100_props(0, uuid=identity == "uuid", pci=identity == "pci")]  # fmt: skip
    environ = {"CUDA_VISIBLE_DEVICES": "1,0"}
    nvml = ReplayNvml.from_file(FIXTURE)

    first = detect_device(torch_module=fake_torch(visible, current=0), nvml=nvml, environ=environ)
    second = detect_device(torch_module=fake_torch(visible, current=1), nvml=nvml, environ=environ)

    assert first == DeviceInfo("cuda", 0, 1, "NVIDIA H100 80GB HBM3", 81559 * MIB, visible_nvml_indexes=(1, 0))
    assert (second.torch_index, second.nvml_index, second.visible_nvml_indexes) == (1, 0, (1, 0))
    assert nvml.calls["nvmlInit"] == nvml.calls["nvmlShutdown"] == 2  # NVML is released after detection


def test_a_plain_index_in_cuda_visible_devices_is_not_trusted_without_pci_order():
    gpus = [NvmlGpuIdentity(0, "GPU-a", "00000000:18:00.0"), NvmlGpuIdentity(1, "GPU-b", "00000000:2A:00.0")]
    assert match_nvml_index(gpus, torch_index=0, visible_devices="1,0") is None
    assert match_nvml_index(gpus, torch_index=0, visible_devices="1,0", device_order="PCI_BUS_ID") == 1
    assert match_nvml_index(gpus, torch_index=1, visible_devices="GPU-a") is None  # no entry for torch 1
    assert match_nvml_index(gpus, torch_index=0, visible_devices="GPU-b,GPU-a") == 1
    assert match_nvml_index(gpus, torch_index=0, pci_bus_id="0000:2a:00.0") == 1
    assert match_nvml_index(gpus[:1], torch_index=0, torch_device_count=1) == 0


def test_rocm_is_reported_as_rocm_without_nvml():
    nvml = ReplayNvml.from_file(FIXTURE)
    device = detect_device(torch_module=fake_torch([h100_props(0)], hip="6.2"), nvml=nvml, environ={})
    assert (device.backend, device.nvml_index) == ("rocm", None)
    assert not nvml.calls


def test_a_broken_nvml_still_reports_the_cuda_device():
    nvml = ReplayNvml.from_file(FIXTURE, fail_calls={"nvmlDeviceGetCount": {0}})
    device = detect_device(torch_module=fake_torch([h100_props(1)]), nvml=nvml, environ={})
    assert (device.backend, device.nvml_index, device.name) == ("cuda", None, "NVIDIA H100 80GB HBM3")


def test_detect_device_is_cpu_without_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    assert detect_device() == CPU_DEVICE


def test_detect_device_is_cpu_when_torch_misbehaves():
    def broken():
        raise RuntimeError("CUDA driver initialization failed")

    torch = fake_torch([])
    torch.cuda.is_available = broken
    assert detect_device(torch_module=torch) == CPU_DEVICE


def _detect_with_real_torch() -> tuple[list[str], dict]:
    code = (
        "import json\n"
        "try:\n"
        "    import torch\n"
        "except Exception as exc:\n"
        "    print(json.dumps({'torch': repr(exc)})); raise SystemExit(0)\n"
        "from telemetry.capture.gpu import TorchMemoryProbe, detect_device\n"
        "if torch.cuda.is_available() or torch.backends.mps.is_available():\n"
        "    print(json.dumps({'gpu': True})); raise SystemExit(0)\n"
        "peak = TorchMemoryProbe(detect_device()).read_peak()\n"
        "print(json.dumps({'backend': detect_device().backend, 'peak': peak}))\n"
    )
    return [sys.executable, "-c", code], {"cwd": ROOT}


def test_detect_device_with_real_torch_and_no_gpu_is_cpu():
    """In a process of its own, started early (early_process.py): importing torch takes seconds."""
    done = early_process.finished("test_detect_device_with_real_torch_and_no_gpu_is_cpu", _detect_with_real_torch)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    if "torch" in seen:
        pytest.skip(f"could not import torch: {seen['torch']}")
    if seen.get("gpu"):
        pytest.skip("this machine has a GPU")
    assert seen["backend"] == "cpu"
    assert seen["peak"] == [None, None]


# --- torch's peak counters -------------------------------------------------------------------------------------------


def test_torch_probe_resets_and_reads_the_peaks_of_its_device():
    calls = []
    cuda = SimpleNamespace(
        reset_peak_memory_stats=lambda i: calls.append(("reset", i)),
        max_memory_allocated=lambda i: 41 * GIB,
        max_memory_reserved=lambda i: 44 * GIB,
    )
    probe = TorchMemoryProbe(DeviceInfo("cuda", 1, 0, "H100", None), torch_module=SimpleNamespace(cuda=cuda))
    probe.reset_peak()
    assert probe.read_peak() == (41 * GIB, 44 * GIB)
    assert calls == [("reset", 1)]


def test_torch_probe_never_raises_and_is_empty_on_cpu():
    def broken(*args):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    cuda = SimpleNamespace(reset_peak_memory_stats=broken, max_memory_allocated=broken, max_memory_reserved=broken)
    probe = TorchMemoryProbe(H100, torch_module=SimpleNamespace(cuda=cuda))
    probe.reset_peak()
    assert probe.read_peak() == (None, None)

    cpu_probe = TorchMemoryProbe(CPU_DEVICE, torch_module=SimpleNamespace())
    cpu_probe.reset_peak()
    assert cpu_probe.read_peak() == (None, None)


def test_torch_probe_on_mps_reports_current_allocations():
    mps = SimpleNamespace(current_allocated_memory=lambda: 3 * GIB, driver_allocated_memory=lambda: 5 * GIB)
    probe = TorchMemoryProbe(DeviceInfo("mps", 0, None, "Apple MPS", None), torch_module=SimpleNamespace(mps=mps))
    probe.reset_peak()
    assert probe.read_peak() == (3 * GIB, 5 * GIB)


def test_importing_the_module_loads_neither_torch_nor_pynvml_nor_comfyui():
    code = (
        "import sys, telemetry.capture.gpu\n"
        "loaded = {'torch', 'pynvml', 'comfy', 'comfy.model_management'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)


# --- replaying bench/gpu_proof.py files ---------------------------------------------------------------------------


GPU_PROOF_FILES = sorted((Path(__file__).parent / "fixtures" / "gpu").glob("*.json"))


def test_there_is_a_gpu_proof_file_to_replay_and_each_says_whether_it_was_measured():
    assert GPU_PROOF_FILES
    for path in GPU_PROOF_FILES:
        provenance = json.loads(path.read_text())["provenance"]
        assert isinstance(provenance["measured_here"], bool)
        if not provenance["measured_here"]:
            assert provenance["synthesised_from"] and "synthesised" in path.name


@pytest.mark.parametrize("path", GPU_PROOF_FILES, ids=lambda p: p.stem)
def test_the_sampler_replays_a_gpu_proof_file_to_the_peaks_it_recorded(path, make_sampler):
    """Each phase of a bench/gpu_proof.py file (tests/fixtures/gpu/) replayed through the sampler thread gives the
    NVML peak the script saw, and the peak choice the script printed."""
    from telemetry.collector import choose_gpu_peak

    record = json.loads(path.read_text())
    identity = {k: v for k, v in record["devices"][0].items() if k != "readings"}
    for phase in record["phases"]:
        readings = [r for r in phase["nvml_readings"] if r.get("used_mib") is not None]
        if not readings:
            continue
        nvml = ReplayNvml({"devices": [{**identity, "readings": readings}]})
        device = DeviceInfo("cuda", record["torch_index"], 0, identity["name"], identity["memory_total_mib"] * MIB)
        sampler = make_sampler(device, nvml=nvml)
        sampler.start()
        sampler.run_started()
        assert nvml.wait_for_calls("nvmlDeviceGetMemoryInfo", len(readings) + 1, WAIT_S)
        summary = sampler.run_finished()
        assert summary.gpu_used_peak_bytes // MIB == phase["nvml_used_peak_bytes"] // MIB, phase["name"]
        torch_peak, mem_info = phase["torch_allocated_peak_bytes"], phase["mem_get_info_used_peak_bytes"]
        for key, dynamic in (("dynamic_vram_on", True), ("dynamic_vram_off", False)):
            peak, source = choose_gpu_peak(torch_peak, summary.gpu_used_peak_bytes, mem_info, dynamic)
            assert source == phase["chosen"][key][1] and peak // MIB == phase["chosen"][key][0] // MIB


def test_measured_gpu_proof_files_see_the_known_allocations():
    """On a file measured on a real GPU: torch's counter sees the tensors it allocated, device-level memory sees
    them too, and a raw cudaMalloc (what comfy-aimdo's weights look like to torch) is seen at device level only.
    Until bench/gpu_proof.py has run on a GPU, the only file is the synthesised one, labelled as such."""
    measured = [json.loads(p.read_text()) for p in GPU_PROOF_FILES]
    measured = [r for r in measured if r["provenance"]["measured_here"]]
    if not measured:
        assert [p.name for p in GPU_PROOF_FILES] == ["synthesised-h100-from-nvml-replay.json"]
    for record in measured:
        for phase in record["phases"]:
            size, base = phase["allocated_bytes"], phase["baseline_used_bytes"] or 0
            device_peak = max(v for v in (phase["nvml_used_peak_bytes"], phase["mem_get_info_used_peak_bytes"])
                              if v is not None)
            assert device_peak - base >= 0.9 * size, phase["name"]
            if phase["name"].startswith("raw cudaMalloc"):
                assert (phase["torch_allocated_peak_bytes"] or 0) < 0.1 * size
                assert phase["chosen"]["dynamic_vram_on"][1] in ("nvml_device", "mem_get_info")
            else:
                assert phase["torch_allocated_peak_bytes"] >= size


def _gpu_proof_without_cuda() -> tuple[list[str], dict]:
    out = Path(tempfile.mkdtemp(prefix="gpu-proof-")) / "never.json"
    return ([sys.executable, "bench/gpu_proof.py", "--out", str(out)],
            {"cwd": ROOT, "env": {**os.environ, "CUDA_VISIBLE_DEVICES": ""}})


def test_gpu_proof_exits_cleanly_without_cuda():
    """bench/gpu_proof.py in a process of its own, started early (early_process.py): it imports torch."""
    result = early_process.finished("test_gpu_proof_exits_cleanly_without_cuda", _gpu_proof_without_cuda)
    out = Path(result.args[result.args.index("--out") + 1])
    try:
        assert result.returncode == 0, result.stderr
        assert "nothing measured" in result.stdout and not out.exists()
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)


# Both import torch (seconds): started as soon as the tests are collected, they run beside the tests before them.
EARLY_PROCESSES = {
    "test_detect_device_with_real_torch_and_no_gpu_is_cpu": _detect_with_real_torch,
    "test_gpu_proof_exits_cleanly_without_cuda": _gpu_proof_without_cuda,
}
