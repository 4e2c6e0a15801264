"""Energy, cost and every GPU in the record (issue 12, items 1 and 2).

The GPU is the NVML replay fake (tests/fakes/nvml_replay.py) answering the recorded H100 readings of
tests/fixtures/nvml_h100_replay.json: power in NVML's milliwatts, the energy counter in NVML's millijoules (derived
from the replayed power, see the fake), and the processes on each GPU. Everything after the sampler is real: the
collector, a real SQLite file and the real PostgreSQL server for the store, a real HTTP server for the REST shape.
"""

from __future__ import annotations

import copy
import csv
import io
import itertools
import json
import os
import urllib.request

import pytest
from api_server import ApiServer
from fakes.nvml_replay import ReplayNvml
from prometheus_client.parser import text_string_to_metric_families
from test_gpu_sampler import FIXTURE, GIB, MIB, RssSequence, fake_torch, h100_props

from telemetry.capture.gpu import DeviceInfo, ResourceSampler, detect_device, downsample_samples
from telemetry.capture.gpu.energy import counter_energy_j, power_energy_j
from telemetry.collector import apply_resources
from telemetry.config import load_config
from telemetry.filters import parse_run_filters
from telemetry.metrics import RunMetrics, exposition
from telemetry.model import GpuSample, NodeRun, Run, RunGpu
from telemetry.service import TelemetryService

WAIT_S = 10.0
T0 = 1_700_000_000_000
STEP_MS = 100  # the fake clock's step, and the fake counter's step
REPLAY = json.loads(FIXTURE.read_text())
POWER_W = [r["power_w"] for r in REPLAY["devices"][1]["readings"]]  # idle 69 W ... gpu_burn 698 W
H100_1 = DeviceInfo("cuda", 0, 1, "NVIDIA H100 80GB HBM3", 81559 * MIB)


def power_at(i: int) -> float:
    """The replayed power of the i-th query (the fake holds the last reading)."""
    return float(POWER_W[min(i, len(POWER_W) - 1)])


@pytest.fixture
def run_sampler():
    samplers: list[ResourceSampler] = []

    def run(nvml: ReplayNvml, device: DeviceInfo = H100_1, samples: int = 4):
        sampler = ResourceSampler(device, interval_s=0.001, nvml=nvml, rss_reader=RssSequence([3 * GIB]),
                                  clock_ms=itertools.count(T0, STEP_MS).__next__)
        samplers.append(sampler)
        sampler.start()
        sampler.run_started()
        assert nvml.wait_for_calls("nvmlDeviceGetMemoryInfo", samples * len(device.visible_nvml_indexes or [1]),
                                   WAIT_S)
        summary = sampler.run_finished()
        assert summary.wait_final(WAIT_S), "the sampler never took its run-end reading"
        return summary

    yield run
    for sampler in samplers:
        sampler.close()


# --- the arithmetic ------------------------------------------------------------------------------------------------


def test_counter_energy_is_the_rise_of_the_counter_interpolated_at_both_ends():
    counter = [(0, 5_000_000.0), (100, 5_069_000.0), (200, 5_138_800.0)]  # mJ; 690 W then 698 W
    assert counter_energy_j(counter, 0, 200) == pytest.approx(138.8)
    assert counter_energy_j(counter, 50, 150) == pytest.approx((34_500 + 34_900) / 1000)
    assert counter_energy_j(counter, -500, 900) == pytest.approx(138.8)  # clipped to the readings
    assert counter_energy_j(counter[:1], 0, 100) is None  # one reading proves nothing
    assert counter_energy_j([(0, 9e9), (100, 1e3)], 0, 100) is None  # a driver reload reset it: no guess


def test_power_energy_is_the_trapezoid_over_the_samples():
    power = [(0, 69.0), (100, 88.0), (200, 698.0)]
    assert power_energy_j(power, 0, 200) == pytest.approx(0.1 * (69 + 88) / 2 + 0.1 * (88 + 698) / 2)
    assert power_energy_j(power, 150, 200) == pytest.approx(0.05 * ((88 + 698) / 2 + 698) / 2)
    assert power_energy_j(power[:1], 0, 100) is None


# --- a run on the replayed H100 -------------------------------------------------------------------------------------


def test_a_run_on_an_h100_takes_its_energy_from_the_nvml_counter(run_sampler):
    nvml = ReplayNvml.from_file(FIXTURE)
    summary = run_sampler(nvml)

    energy, source = summary.run_energy()
    answers = nvml.energy_answers[1]
    samples = [s for s in summary.samples if s.gpu_index == 1]
    # Read when the sampler woke for the run, at every sample, and once after the run's end.
    assert len(answers) == len(samples) + 2
    assert source == "nvml_counter"
    assert energy == pytest.approx((answers[-1] - answers[0]) / 1000)
    # The fake's counter advances one 100 ms step at the replayed power per reading: each step of the run's
    # duration is counted once, at the power of that step.
    duration_ms = summary.end_ms - summary.start_ms
    assert duration_ms == STEP_MS * (len(samples) + 1)
    assert energy == pytest.approx(sum(power_at(i) for i in range(len(samples) + 1)) * STEP_MS / 1000)
    assert 69 * duration_ms / 1000 <= energy <= 698 * duration_ms / 1000  # between H100 idle and full load


def test_without_a_counter_the_energy_is_integrated_from_power_samples_over_the_whole_run(run_sampler):
    nvml = ReplayNvml.from_file(FIXTURE, unsupported={1: ["energy"]})  # a pre-Volta GPU: power only
    summary = run_sampler(nvml)

    energy, source = summary.run_energy()
    n = len([s for s in summary.samples if s.gpu_index == 1])
    # Power read at the run's start (t0), at each sample (t0 + k steps) and at its end: a trapezoid end to end.
    points = [(k * STEP_MS, power_at(k)) for k in range(n + 2)]
    expected = sum((t1 - t0) / 1000 * (p0 + p1) / 2 for (t0, p0), (t1, p1) in itertools.pairwise(points))
    assert source == "power_samples"
    assert energy == pytest.approx(expected)
    assert "nvmlDeviceGetTotalEnergyConsumption" in nvml.calls  # asked, answered "not supported"
    assert summary.power_peak_w == max(power_at(k) for k in range(n + 1))


def test_nodes_get_the_energy_between_their_start_and_end_and_cached_ones_none(run_sampler):
    nvml = ReplayNvml.from_file(FIXTURE)
    summary = run_sampler(nvml, samples=5)
    run = Run("r1", "success", frame_count=4, nodes=[
        NodeRun("3", "KSampler", "executed", started_at_ms=T0 + 100, duration_ms=200.0),
        NodeRun("8", "VAEDecode", "executed", started_at_ms=T0 + 300, duration_ms=50.0),
        NodeRun("4", "CheckpointLoaderSimple", "cached"),
    ])

    apply_resources(run, summary)

    # The counter at t0 + k steps has risen by the power of steps 0..k-1.
    assert run.nodes[0].energy_j == pytest.approx((power_at(1) + power_at(2)) * STEP_MS / 1000)
    assert run.nodes[1].energy_j == pytest.approx(power_at(3) * 50 / 1000)  # half a step, interpolated
    assert run.nodes[2].energy_j is None
    assert run.energy_source == "nvml_counter"
    assert sum(n.energy_j for n in run.nodes[:2]) < run.energy_j
    assert run.to_dict()["energy_per_frame_j"] == pytest.approx(run.energy_j / 4)


def test_without_a_gpu_there_is_no_energy_and_no_gpu_list(run_sampler):
    cpu = DeviceInfo("cpu", None, None, None, None)
    sampler = ResourceSampler(cpu, interval_s=0.001, rss_reader=RssSequence([GIB]))
    sampler.start()
    sampler.run_started()
    summary = sampler.run_finished()
    sampler.close()
    run = Run("cpu", "success", frame_count=1)
    apply_resources(run, summary)
    assert (run.energy_j, run.energy_source, run.gpus) == (None, None, [])
    assert run.to_dict()["energy_per_frame_j"] is None and run.to_dict()["gpus"] == []


# --- more than one GPU ----------------------------------------------------------------------------------------------


def two_gpus(processes: dict[int, list[dict]] | None = None) -> ReplayNvml:
    """The fixture's two H100s; ComfyUI computes on NVML 1 (its first three readings: peak 72790 MiB), another
    process holds NVML 0 (78415 MiB used)."""
    replay = copy.deepcopy(REPLAY)
    replay["devices"][1]["readings"] = replay["devices"][1]["readings"][:3]
    return ReplayNvml(replay, processes=processes)


TWO = DeviceInfo("cuda", 0, 1, "NVIDIA H100 80GB HBM3", 81559 * MIB, visible_nvml_indexes=(1, 0))


def test_every_visible_gpu_is_sampled_with_its_own_peak_and_the_memory_other_processes_hold(run_sampler):
    nvml = two_gpus({1: [{"pid": "self", "used_mib": 70_000}, {"pid": 4242, "used_mib": 2_048}],
                     0: [{"pid": 777, "used_mib": 78_000}, {"pid": 778, "used_mib": 400, "kind": "graphics"}]})
    summary = run_sampler(nvml, TWO)
    run = Run("multi", "success")
    apply_resources(run, summary)

    assert [g.index for g in run.gpus] == [1, 0]
    comfy, other = run.gpus
    assert comfy == RunGpu(1, "NVIDIA H100 80GB HBM3", "GPU-d5f74cda-baee-d69a-e1c5-1a9ba8e48749", 72790 * MIB,
                           2048 * MIB, True, comfy.energy_j)
    assert (other.uuid, other.peak_used_bytes, other.external_bytes, other.comfyui_device) == (
        "GPU-e132d16d-fe10-de80-9b80-63b7f04fbdfd", 78415 * MIB, (78_000 + 400) * MIB, False)
    assert run.energy_j == comfy.energy_j and other.energy_j > 0  # the run's energy is ComfyUI's GPU only
    # The run's own peak is ComfyUI's device, not the busier other GPU; each sample says which GPU it is.
    assert summary.gpu_used_peak_bytes == 72790 * MIB
    by_device = {i: [s.used_bytes for s in summary.samples if s.gpu_index == i] for i in (0, 1)}
    assert set(by_device[0]) == {78415 * MIB} and max(by_device[1]) == 72790 * MIB
    assert all(s.ram_rss_bytes is None for s in summary.samples if s.gpu_index == 0)


def test_when_nvml_shows_other_pids_only_external_memory_is_unknown_not_everything(run_sampler):
    # In a container NVML lists the host's PIDs: ours is not among them, so nothing can be called "external".
    nvml = two_gpus({1: [{"pid": 1, "used_mib": 70_000}], 0: [{"pid": 777, "used_mib": 78_000}]})
    summary = run_sampler(nvml, TWO)
    assert [g.external_bytes for g in summary.gpus()] == [None, None]
    assert [g.peak_used_bytes for g in summary.gpus()] == [72790 * MIB, 78415 * MIB]


def test_cuda_visible_devices_chooses_which_gpus_are_sampled(run_sampler):
    nvml = two_gpus()
    only_one = detect_device(torch_module=fake_torch([h100_props(1)]), nvml=nvml,
                             environ={"CUDA_VISIBLE_DEVICES": "1"})
    both = detect_device(torch_module=fake_torch([h100_props(1), h100_props(0)]), nvml=nvml,
                         environ={"CUDA_VISIBLE_DEVICES": "1,0"})
    assert (only_one.nvml_index, only_one.visible_nvml_indexes) == (1, (1,))
    assert (both.nvml_index, both.visible_nvml_indexes) == (1, (1, 0))

    summary = run_sampler(two_gpus(), only_one)
    assert [(g.index, g.comfyui_device) for g in summary.gpus()] == [(1, True)]
    assert {s.gpu_index for s in summary.samples} == {None, 1}


def test_downsampling_several_gpus_keeps_each_ones_peak():
    samples = []
    for i in range(1000):
        samples.append(GpuSample(i * 100, (10 + (50 if i == 123 else 0)) * GIB, gpu_index=1, ram_rss_bytes=GIB))
        samples.append(GpuSample(i * 100, (20 + (60 if i == 777 else 0)) * GIB, gpu_index=0))
    reduced = downsample_samples(samples, 100)
    assert len(reduced) <= 100
    assert max(s.used_bytes for s in reduced if s.gpu_index == 1) == 60 * GIB
    assert max(s.used_bytes for s in reduced if s.gpu_index == 0) == 80 * GIB
    assert [s.t_ms for s in reduced] == sorted(s.t_ms for s in reduced)


# --- stored, served, priced -----------------------------------------------------------------------------------------


def energy_runs() -> list[Run]:
    gpus = [RunGpu(1, "NVIDIA H100 80GB HBM3", "GPU-d5f74cda", 72790 * MIB, 2048 * MIB, True, 7200.0),
            RunGpu(0, "NVIDIA H100 80GB HBM3", "GPU-e132d16d", 78415 * MIB, 78000 * MIB, False, 1800.0)]
    samples = [GpuSample(T0, 70000 * MIB, 100.0, 46.0, 698.0, 3 * GIB, 1), GpuSample(T0, 78415 * MIB, gpu_index=0)]
    return [
        Run("e1", "success", started_at_ms=T0, workflow_id="wf-a", workflow_name="A", frame_count=4,
            energy_j=7200.0, energy_source="nvml_counter", gpus=gpus, gpu_samples=samples,
            nodes=[NodeRun("3", "KSampler", "executed", T0, 900.0, energy_j=6000.0)]),
        Run("e2", "success", started_at_ms=T0 + 1, workflow_id="wf-a", workflow_name="A", frame_count=1,
            energy_j=3600.0, energy_source="power_samples"),
        Run("e3", "failed", started_at_ms=T0 + 2, workflow_id="wf-b", workflow_name="B"),  # no GPU
    ]


def test_energy_and_gpus_round_trip_and_stats_sum_them(store):
    store.save_runs(energy_runs())
    back = store.get_run("e1")
    assert back.to_dict() == energy_runs()[0].to_dict()
    assert back.gpus[1].external_bytes == 78000 * MIB and back.nodes[0].energy_j == 6000.0
    assert [s.gpu_index for s in back.gpu_samples] == [1, 0]

    stats = store.stats(parse_run_filters({}), price_per_kwh=0.30)
    assert stats["total_energy_wh"] == pytest.approx(3.0)  # 10800 J
    assert stats["total_cost"] == pytest.approx(0.003 * 0.30)
    by_workflow = {w["workflow"]: w for w in stats["by_workflow"]}
    assert by_workflow["wf-a"]["energy_wh"] == pytest.approx(3.0)
    assert by_workflow["wf-a"]["cost"] == pytest.approx(0.0009)
    assert by_workflow["wf-b"]["energy_wh"] is None and by_workflow["wf-b"]["cost"] is None  # never a made-up 0
    unpriced = store.stats(parse_run_filters({"workflow": "wf-b"}))
    assert (unpriced["total_energy_wh"], unpriced["total_cost"]) == (None, None)


def test_migration_8_adds_the_energy_and_gpu_columns_to_an_older_database(store):
    from telemetry.store.migrations import LATEST_VERSION
    from telemetry.store.store import Store

    url = store.url
    for table, column in (("runs", "energy_j"), ("runs", "energy_source"), ("runs", "gpus"),
                          ("node_runs", "energy_j"), ("gpu_samples", "gpu_index")):
        store.db.execute_sql(f"ALTER TABLE {table} DROP COLUMN {column}")  # the schema before version 8
    store.db.execute_sql("DELETE FROM schema_version WHERE version = 8")
    store.close()

    reopened = Store(url)
    reopened.open()
    try:
        reopened.save_runs(energy_runs())
        assert reopened.get_run("e1").to_dict() == energy_runs()[0].to_dict()
        assert reopened.schema_version == LATEST_VERSION
    finally:
        reopened.close()


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.read().decode()


def test_rest_serves_energy_cost_and_gpus_with_the_configured_price(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"energy_price_per_kwh": "0.30", "currency": "EUR"}))
    server = ApiServer(tmp_path, energy_runs()).start()
    try:
        _, body = _get(server.url + "/telemetry/runs/e1")
        run = json.loads(body)
        assert run["energy_j"] == 7200.0 and run["energy_source"] == "nvml_counter"
        assert run["energy_per_frame_j"] == 1800.0
        assert run["cost"] == pytest.approx(7200 / 3.6e6 * 0.30) and run["currency"] == "EUR"
        assert run["nodes"][0]["energy_j"] == 6000.0
        assert [set(g) >= {"index", "name", "uuid", "peak_used_bytes", "external_bytes", "comfyui_device"}
                for g in run["gpus"]] == [True, True]
        assert [(g["index"], g["comfyui_device"]) for g in run["gpus"]] == [(1, True), (0, False)]
        assert [s["gpu_index"] for s in run["gpu_samples"]] == [1, 0]

        stats = json.loads(_get(server.url + "/telemetry/stats")[1])
        assert stats["total_energy_wh"] == pytest.approx(3.0)
        assert stats["total_cost"] == pytest.approx(0.0009)
        assert (stats["energy_price_per_kwh"], stats["currency"]) == (0.30, "EUR")

        listed = json.loads(_get(server.url + "/telemetry/runs")[1])["runs"]
        assert {r["run_id"]: r["gpus"] == [] for r in listed} == {"e1": False, "e2": True, "e3": True}

        rows = list(csv.DictReader(io.StringIO(_get(server.url + "/telemetry/export?format=csv")[1])))
        e1 = next(r for r in rows if r["run_id"] == "e1")
        assert (e1["energy_j"], e1["energy_source"], e1["energy_per_frame_j"]) == ("7200.0", "nvml_counter", "1800.0")
        assert [g["index"] for g in json.loads(e1["gpus"])] == [1, 0]
        assert next(r for r in rows if r["run_id"] == "e3")["energy_j"] == ""
    finally:
        server.stop()


def test_prometheus_counts_energy_and_cost_by_workflow():
    metrics = RunMetrics("box:8188", energy_price_per_kwh=0.30)
    for run in energy_runs():
        metrics.observe(run)
    found = {(s.name, s.labels.get("workflow")): (s.labels, s.value)
             for f in text_string_to_metric_families(exposition(metrics.registry)[0].decode()) for s in f.samples}
    labels, joules = found[("comfyui_telemetry_energy_joules_total", "A")]
    assert labels == {"comfyui_instance": "box:8188", "workflow": "A"} and joules == 10800.0
    assert found[("comfyui_telemetry_energy_cost_total", "A")][1] == pytest.approx(0.0009)
    assert ("comfyui_telemetry_energy_joules_total", "B") not in found  # no GPU, no energy series
    unpriced = exposition(RunMetrics("x").registry)[0].decode()
    assert "comfyui_telemetry_energy_cost" not in unpriced  # no price, no cost


def test_the_price_is_a_validated_setting(tmp_path):
    config = load_config(str(tmp_path), {"TELEMETRY_ENERGY_PRICE_PER_KWH": "0.42", "TELEMETRY_CURRENCY": "USD"})
    assert (config.energy_price_per_kwh, config.currency, config.warnings) == (0.42, "USD", [])
    bad = load_config(str(tmp_path), {"TELEMETRY_ENERGY_PRICE_PER_KWH": "-1"})
    assert bad.energy_price_per_kwh is None
    assert [w.key for w in bad.warnings] == ["energy_price_per_kwh"]
    service = TelemetryService.__init__.__kwdefaults__
    assert service["energy_price_per_kwh"] is None  # no price configured: no cost anywhere


def test_the_fake_counter_uses_nvml_units():
    nvml = ReplayNvml.from_file(FIXTURE)
    nvml.nvmlInit()
    handle = nvml.nvmlDeviceGetHandleByIndex(1)
    first, second = (nvml.nvmlDeviceGetTotalEnergyConsumption(handle) for _ in range(2))
    assert isinstance(first, int) and second - first == 69 * STEP_MS  # 69 W for 100 ms = 6900 mJ
    assert nvml.nvmlDeviceGetPowerUsage(handle) == 69_000  # milliwatts
    assert os.getpid() not in [p.pid for p in nvml.nvmlDeviceGetComputeRunningProcesses(handle)]


# --- a real ComfyUI without a GPU -----------------------------------------------------------------------------------


@pytest.mark.comfyui
def test_a_real_comfyui_without_a_gpu_records_no_energy_and_no_gpus(comfy):
    from comfy_harness import image_workflow

    _, _, run = comfy.run_and_wait(image_workflow(prefix="energy"))
    assert run["status"] == "success" and run["ram_peak_bytes"]  # the sampler ran
    assert (run["energy_j"], run["energy_source"], run["energy_per_frame_j"], run["cost"]) == (None,) * 4
    assert run["gpus"] == [] and all(n["energy_j"] is None for n in run["nodes"])
    stats = comfy.get("/telemetry/stats")
    assert (stats["total_energy_wh"], stats["total_cost"]) == (None, None)
    status, metrics = comfy.request("GET", "/telemetry/metrics")
    assert status == 200 and "comfyui_telemetry_energy_joules_total{" not in str(metrics)


def test_a_clock_that_fails_at_the_run_end_still_ends_the_run_without_energy():
    ticks = itertools.count(T0, STEP_MS)
    calls = {"n": 0}

    def clock() -> int:
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError("clock gone")
        return next(ticks)

    nvml = ReplayNvml.from_file(FIXTURE)
    sampler = ResourceSampler(H100_1, interval_s=0.001, nvml=nvml, rss_reader=RssSequence([GIB]), clock_ms=clock)
    sampler.start()
    try:
        sampler.run_started()
        assert nvml.wait_for_calls("nvmlDeviceGetMemoryInfo", 2, WAIT_S)
        summary = sampler.run_finished()
        assert summary.wait_final(WAIT_S)
        assert sampler.wait_idle(WAIT_S)  # sampling stopped: the run is over
        assert summary.run_energy() == (None, None)
    finally:
        sampler.close()
