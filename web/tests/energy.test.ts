// @vitest-environment jsdom
import { beforeEach, describe, expect, it } from "vitest";
import { formatCost, formatEnergy } from "../src/format";
import { createPanelState, TelemetryPanel } from "../src/views/panel";
import { FakeBackend, fakeEnv, settle } from "./fakes";
import { detail, T0 } from "./sample";

const GiB = 1024 ** 3;

function twoGpuRun() {
  return detail("run-gpu", {
    frame_count: 4,
    energy_j: 7200,
    energy_source: "nvml_counter",
    energy_per_frame_j: 1800,
    cost: 0.0006,
    currency: "EUR",
    gpus: [
      { index: 1, name: "NVIDIA H100 80GB HBM3", uuid: "GPU-d5f74cda", peak_used_bytes: 72 * GiB, external_bytes: 2 * GiB, comfyui_device: true, energy_j: 7200 },
      { index: 0, name: "NVIDIA H100 80GB HBM3", uuid: "GPU-e132d16d", peak_used_bytes: 78 * GiB, external_bytes: null, comfyui_device: false, energy_j: 1800 },
    ],
    // jsdom has no canvas for the chart: its per-GPU series are tested in chartdata.test.ts
    gpu_samples: [{ t_ms: T0, ram_rss_bytes: GiB }],
  });
}

async function open(run: ReturnType<typeof detail>): Promise<HTMLElement> {
  const backend = new FakeBackend().on("GET", new RegExp(`^/telemetry/runs/${run.run_id}$`), run);
  const env = fakeEnv(backend);
  const panel = new TelemetryPanel(env, createPanelState(env.settings()));
  const host = document.createElement("div");
  document.body.append(host);
  panel.mount(host);
  panel.navigate({ view: "detail", runId: run.run_id });
  await settle();
  return host;
}

beforeEach(() => {
  document.body.replaceChildren();
});

describe("energy and GPUs in the run detail", () => {
  it("shows the energy with its source, per frame and its cost", async () => {
    const text = (await open(twoGpuRun())).textContent ?? "";
    expect(text).toContain("7.2 kJ (NVML energy counter)");
    expect(text).toContain("1.8 kJ"); // per frame
    expect(text).toContain("0.00060 EUR");
  });

  it("lists every GPU with its peak, other processes' memory and ComfyUI's marked", async () => {
    const host = await open(twoGpuRun());
    const rows = [...host.querySelectorAll<HTMLElement>("[data-testid=gpu-table] tbody tr")];
    expect(rows.map((r) => r.dataset.gpuIndex)).toEqual(["1", "0"]);
    expect(rows[0].textContent).toContain("(ComfyUI)");
    expect(rows[0].textContent).toContain("2 GiB");
    expect(rows[1].textContent).toContain("unknown");
    expect(rows[1].textContent).not.toContain("(ComfyUI)");
  });

  it("says nothing made up without a GPU", async () => {
    const host = await open(detail("run-cpu", { energy_j: null, energy_source: null, gpus: [] }));
    expect(host.querySelector("[data-testid=gpu-table]")).toBeNull();
    expect(host.textContent).not.toContain(" J");
  });
});

describe("energy formats", () => {
  it("reads in J, kJ, Wh and kWh", () => {
    expect([formatEnergy(5.25), formatEnergy(850), formatEnergy(7200), formatEnergy(72_000), formatEnergy(7.2e6)]).toEqual([
      "5.3 J", "850 J", "7.2 kJ", "20.0 Wh", "2.00 kWh",
    ]);
    expect(formatEnergy(null)).toBe("—");
    expect([formatCost(0.0042, "EUR"), formatCost(12.345, null), formatCost(null, "EUR")]).toEqual(["0.0042 EUR", "12.35", "—"]);
  });
});

describe("energy on the overview", () => {
  const stats = {
    total_runs: 2, success_rate: 1, total_frames: 5, avg_duration_ms: 2000, p50_duration_ms: 2000, p95_duration_ms: 2000,
    max_gpu_peak_bytes: 72 * GiB, by_status: { success: 2 }, by_workflow: [],
  };

  async function overview(over: Record<string, unknown>): Promise<HTMLElement> {
    const backend = new FakeBackend().on("GET", /^\/telemetry\/stats$/, { ...stats, ...over });
    const env = fakeEnv(backend);
    const panel = new TelemetryPanel(env, createPanelState(env.settings()));
    const host = document.createElement("div");
    document.body.append(host);
    panel.mount(host);
    panel.navigate({ view: "overview" });
    await settle();
    return host;
  }

  it("shows the total GPU energy and its cost", async () => {
    const host = await overview({ total_energy_wh: 3, total_cost: 0.0009, currency: "EUR" });
    const labels = [...host.querySelectorAll(".rt-card-label")].map((l) => l.textContent);
    expect(labels).toContain("GPU energy");
    expect(host.textContent).toContain("10.8 kJ");
    expect(host.textContent).toContain("cost 0.00090 EUR");
  });

  it("has no energy card when no run has an energy reading", async () => {
    const host = await overview({ total_energy_wh: null, total_cost: null });
    expect([...host.querySelectorAll(".rt-card-label")].map((l) => l.textContent)).not.toContain("GPU energy");
  });
});
