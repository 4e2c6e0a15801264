// @vitest-environment jsdom
import { describe, expect, it, vi } from "vitest";
import { liveBars, liveSummary, RENEW_MS, type LiveRun } from "../src/views/live";
import { createPanelState, TelemetryPanel } from "../src/views/panel";
import { FakeBackend, fakeEnv, settle } from "./fakes";
import { summary } from "./sample";

function liveRun(over: Partial<LiveRun> = {}): LiveRun {
  return {
    run_id: "live-1",
    current_node: { node_id: "3", class_type: "KSampler", elapsed_ms: 2000, expected_ms: 1000 },
    eta_ms: 1500,
    run_ms: 4000,
    queue_wait_ms: 12_000,
    history_runs: 5,
    nodes_done: [
      { node_id: "1", class_type: "CheckpointLoaderSimple", start_offset_ms: 0, duration_ms: 1500 },
      { node_id: "2", class_type: "CLIPTextEncode", start_offset_ms: 1600, duration_ms: 400 },
    ],
    ...over,
  };
}

describe("live card layout", () => {
  it("lays finished nodes out in percent of the run so far and the running one up to now", () => {
    const bars = liveBars(liveRun());
    expect(bars.map((b) => [b.node_id, b.leftPct, b.widthPct, b.running])).toEqual([
      ["1", 0, 37.5, false],
      ["2", 40, 10, false],
      ["3", 50, 50, true],
    ]);
  });

  it("shows queue wait and run time apart, the usual time and the time left", () => {
    const s = liveSummary(liveRun());
    expect(s.queue).toBe("Queue wait 12 s");
    expect(s.runTime).toBe("Run time 4 s");
    expect(s.node).toContain("KSampler #3");
    expect(s.usual).toBe("usually 1 s");
    expect(s.eta).toBe("about 1.5 s left");
    const unknown = liveSummary(liveRun({ eta_ms: null, current_node: { node_id: "3", class_type: "KSampler", elapsed_ms: 5, expected_ms: null } }));
    expect(unknown.eta).toBe("time left unknown");
    expect(unknown.usual).toBe("no history of this node yet");
  });
});

describe("live card in the panel", () => {
  function mounted() {
    const backend = new FakeBackend()
      .on("POST", /^\/telemetry\/live\/listen$/, { lease_s: 30, progress_every_s: 1, slow_node_factor: 3 })
      .on("GET", /^\/telemetry\/live$/, { run: null, listening: true });
    const env = fakeEnv(backend);
    const panel = new TelemetryPanel(env, createPanelState(env.settings()));
    const host = document.createElement("div");
    document.body.append(host);
    return { backend, panel, host };
  }

  it("announces itself, fills in from progress events, and goes away when the run's record arrives", async () => {
    const { backend, panel, host } = mounted();
    panel.mount(host);
    await settle();
    expect(backend.requests.filter((r) => r.path === "/telemetry/live/listen")).toHaveLength(1);
    expect(backend.requests.find((r) => r.path === "/telemetry/live/listen")!.body).toEqual({ seconds: 30 });
    const card = host.querySelector<HTMLElement>("[data-testid=live-card]")!;
    expect(card.classList.contains("rt-hidden")).toBe(true);

    panel.handleProgress(liveRun({ nodes_done: liveRun().nodes_done.slice(0, 1) }));
    expect(card.classList.contains("rt-hidden")).toBe(false);
    expect(card.querySelectorAll(".rt-live-row")).toHaveLength(2);
    panel.handleProgress(liveRun());
    expect(card.querySelectorAll(".rt-live-row")).toHaveLength(3);
    expect(card.querySelector("[data-testid=live-queue-wait]")!.textContent).toBe("Queue wait 12 s");
    expect(card.querySelector("[data-testid=live-run-time]")!.textContent).toBe("Run time 4 s");
    expect(card.querySelector("[data-testid=live-node]")!.classList.contains("rt-live-slow")).toBe(false);
    panel.handleProgress(liveRun({ current_node: { node_id: "3", class_type: "KSampler", elapsed_ms: 4000, expected_ms: 1000 } }));
    expect(card.querySelector("[data-testid=live-node]")!.classList.contains("rt-live-slow")).toBe(true);

    panel.handleRun(summary("another-run"));
    expect(card.classList.contains("rt-hidden")).toBe(false);
    panel.handleRun(summary("live-1"));
    expect(card.classList.contains("rt-hidden")).toBe(true);
    panel.handleProgress({ not: "a run" });
    expect(card.classList.contains("rt-hidden")).toBe(true);
  });

  it("renews its lease only while the tab is open", async () => {
    vi.useFakeTimers();
    try {
      const { backend, panel, host } = mounted();
      panel.mount(host);
      await vi.advanceTimersByTimeAsync(RENEW_MS + 10);
      expect(backend.paths("POST").filter((p) => p === "/telemetry/live/listen")).toHaveLength(2);
      panel.unmount();
      expect(panel.activeTimers).toBe(0);
      await vi.advanceTimersByTimeAsync(RENEW_MS * 3);
      expect(backend.paths("POST").filter((p) => p === "/telemetry/live/listen")).toHaveLength(2);
    } finally {
      vi.useRealTimers();
    }
  });
});
