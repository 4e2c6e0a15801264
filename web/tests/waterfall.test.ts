import { describe, expect, it } from "vitest";
import { MIN_BAR_PCT, layoutWaterfall, niceTicks, waterfallSummary } from "../src/waterfall";
import type { NodeRun } from "../src/types";

const T0 = 1_700_000_000_000;

describe("layoutWaterfall", () => {
  const nodes: NodeRun[] = [
    { node_id: "9", class_type: "SaveImage", status: "executed", started_at_ms: T0 + 900, duration_ms: 100 },
    { node_id: "3", class_type: "KSampler", status: "failed", started_at_ms: T0 + 100, duration_ms: 800 },
    { node_id: "1", class_type: "CheckpointLoader", status: "cached" },
    { node_id: "10", class_type: "Preview", status: "not_run" },
    { node_id: "4", class_type: "Tiny", status: "executed", started_at_ms: T0 + 50, duration_ms: 1 },
  ];
  const wf = layoutWaterfall(nodes, T0, 1000);

  it("orders cached, then by start, then not run", () => {
    expect(wf.rows.map((r) => r.node_id)).toEqual(["1", "4", "3", "9", "10"]);
  });
  it("places bars in percent of the run", () => {
    const sampler = wf.rows.find((r) => r.node_id === "3")!;
    expect(sampler).toMatchObject({ leftPct: 10, widthPct: 80, hasBar: true, offsetMs: 100 });
    const save = wf.rows.find((r) => r.node_id === "9")!;
    expect(save.leftPct + save.widthPct).toBeCloseTo(100);
  });
  it("keeps tiny nodes visible and draws no bar for cached or skipped nodes", () => {
    expect(wf.rows.find((r) => r.node_id === "4")!.widthPct).toBe(MIN_BAR_PCT);
    expect(wf.rows.find((r) => r.node_id === "1")!.hasBar).toBe(false);
    expect(wf.rows.find((r) => r.node_id === "10")!.hasBar).toBe(false);
  });
  it("stretches the span when nodes outlast the recorded duration", () => {
    const w = layoutWaterfall([{ node_id: "1", class_type: "A", status: "executed", started_at_ms: T0, duration_ms: 3000 }], T0, 1000);
    expect(w.spanMs).toBe(3000);
    expect(w.rows[0].widthPct).toBe(100);
  });
  it("works without a run start", () => {
    const w = layoutWaterfall([{ node_id: "1", class_type: "A", status: "executed", started_at_ms: T0 + 500, duration_ms: 500 }], null, null);
    expect(w.rows[0]).toMatchObject({ leftPct: 0, widthPct: 100 });
  });
  it("counts statuses for the legend", () => {
    expect(waterfallSummary(wf.rows)).toEqual({ executed: 2, cached: 1, failed: 1, interrupted: 0, not_run: 1 });
  });
});

describe("niceTicks", () => {
  it("picks round steps", () => {
    expect(niceTicks(1800)).toEqual([0, 1000]);
    expect(niceTicks(1800, 4)).toEqual([0, 500, 1000, 1500]);
    expect(niceTicks(10_000)).toEqual([0, 5000, 10_000]);
    expect(niceTicks(4)).toEqual([0, 2, 4]);
    expect(niceTicks(0)).toEqual([0]);
  });
});
