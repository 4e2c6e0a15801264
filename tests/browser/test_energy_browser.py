"""The run detail of a two-GPU run in a real browser against a real ComfyUI with the pack: one memory line per
GPU, the GPU table (peak, other processes' memory, ComfyUI's device marked) and the run's energy. This machine has
no GPU, so the run (shaped on the replayed H100 readings of tests/fixtures/nvml_h100_replay.json) is written into
the server's own SQLite file, as the recorder would have stored it. One leg only (the newest frontend): the
detail view is the same code on both."""

from __future__ import annotations

import time

import pytest
from comfy_harness import NEWEST_FRONTEND
from matrix import require_tree
from panel_page import PanelPage

from telemetry.model import GpuSample, NodeRun, Run, RunGpu
from telemetry.store.database import sqlite_url
from telemetry.store.store import Store

pytestmark = [pytest.mark.browser, pytest.mark.comfyui, pytest.mark.timeout(300)]

MIB = 1 << 20


@pytest.fixture(scope="module")
def browser_leg():
    return require_tree("0.8.0", NEWEST_FRONTEND)


def two_gpu_run() -> Run:
    t0 = int(time.time() * 1000) - 10_000
    samples = [GpuSample(t0, ram_rss_bytes=3000 * MIB)]
    for k, (comfy_mib, other_mib) in enumerate([(4, 78415), (72790, 78415), (72790, 78415), (78415, 78415)], 1):
        samples.append(GpuSample(t0 + 100 * k, comfy_mib * MIB, 100.0, 46.0, 698.0, 3100 * MIB, 1))
        samples.append(GpuSample(t0 + 100 * k, other_mib * MIB, 0.0, 38.0, 120.0, None, 0))
    samples.append(GpuSample(t0 + 500, ram_rss_bytes=3000 * MIB))
    return Run(
        "energy-two-gpus", "success", started_at_ms=t0, finished_at_ms=t0 + 500, duration_ms=500.0,
        workflow_id="wf-energy", workflow_name="Two GPUs", frame_count=2, energy_j=240.5,
        energy_source="nvml_counter", gpu_name="NVIDIA H100 80GB HBM3", gpu_peak_bytes=78415 * MIB,
        nodes=[NodeRun("3", "KSampler", "executed", t0 + 50, 400.0, energy_j=200.0)],
        gpus=[RunGpu(1, "NVIDIA H100 80GB HBM3", "GPU-d5f74cda-baee-d69a-e1c5-1a9ba8e48749", 78415 * MIB, 2048 * MIB,
                     True, 240.5),
              RunGpu(0, "NVIDIA H100 80GB HBM3", "GPU-e132d16d-fe10-de80-9b80-63b7f04fbdfd", 78415 * MIB,
                     78415 * MIB, False, 60.0)],
        gpu_samples=samples)


def test_a_two_gpu_run_shows_one_memory_line_per_gpu_and_its_energy(ui: PanelPage) -> None:
    store = Store(sqlite_url(str(ui.server.database_path)))
    store.open()
    try:
        store.save_runs([two_gpu_run()])
    finally:
        store.close()
    ui.show("runs")
    row = ui.row("energy-two-gpus")
    row.wait_for()
    row.click()
    detail = ui.panel.locator(".rt-detail")
    detail.locator("h2").wait_for()

    legend = detail.locator(".rt-chart .u-legend .u-series").all_inner_texts()
    labels = [text.split("\n")[0].strip() for text in legend]
    assert any("#1 NVIDIA H100 80GB HBM3 (ComfyUI)" in label for label in labels), labels
    assert any(label.startswith("#0 NVIDIA H100 80GB HBM3") and "ComfyUI" not in label for label in labels), labels
    assert any("Process RAM" in label for label in labels), labels

    rows = detail.locator("[data-testid=gpu-table] tbody tr")
    assert rows.count() == 2
    assert rows.nth(0).get_attribute("data-gpu-index") == "1" and "(ComfyUI)" in rows.nth(0).inner_text()
    assert "76.6 GiB" in rows.nth(1).inner_text()  # what another process holds on GPU 0
    assert "241 J (NVML energy counter)" in detail.inner_text()
    ui.shot("detail-two-gpus", focus="[data-testid=gpu-table]")
