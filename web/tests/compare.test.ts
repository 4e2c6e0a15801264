import { describe, expect, it } from "vitest";
import { compareNodeIds, diffNodes, diffParameters, diffSummary, orderForCompare, orderParameterKeys } from "../src/compare";
import type { NodeRun, RunSummary } from "../src/types";

describe("diffParameters", () => {
  it("lists known parameters first and marks what changed", () => {
    const rows = diffParameters(
      { steps: 20, cfg: 7, sampler: "euler", zeta: 1, loras: ["a"] },
      { steps: 30, cfg: 7, sampler: "euler", alpha: true, loras: ["a", "b"] },
    );
    expect(rows.map((r) => r.key)).toEqual(["loras", "steps", "cfg", "sampler", "alpha", "zeta"]);
    expect(rows.filter((r) => r.changed).map((r) => r.key)).toEqual(["loras", "steps", "alpha", "zeta"]);
    expect(rows.find((r) => r.key === "alpha")).toMatchObject({ a: "—", b: "yes" });
  });
  it("handles missing parameter objects", () => {
    expect(diffParameters(null, undefined)).toEqual([]);
  });
  it("orders keys", () => {
    expect(orderParameterKeys(["b", "width", "a", "checkpoint"])).toEqual(["checkpoint", "width", "a", "b"]);
  });
});

describe("diffNodes", () => {
  const a: NodeRun[] = [
    { node_id: "1", class_type: "Load", status: "executed", duration_ms: 1000 },
    { node_id: "3", class_type: "KSampler", status: "executed", duration_ms: 10_000 },
    { node_id: "9", class_type: "Save", status: "executed", duration_ms: 100 },
  ];
  const b: NodeRun[] = [
    { node_id: "1", class_type: "Load", status: "cached" },
    { node_id: "3", class_type: "KSampler", status: "executed", duration_ms: 10_300 },
    { node_id: "9", class_type: "Save", status: "executed", duration_ms: 140 },
    { node_id: "12", class_type: "Upscale", status: "executed", duration_ms: 4000 },
  ];
  it("joins on node id, flags status changes and real time changes first", () => {
    const rows = diffNodes(a, b);
    expect(rows[0]).toMatchObject({ node_id: "1", aStatus: "executed", bStatus: "cached", deltaMs: -1000, changed: true });
    expect(rows.find((r) => r.node_id === "12")).toMatchObject({ aStatus: null, bMs: 4000, deltaMs: null, changed: true });
    // 3% slower sampler is noise; 40 ms on Save is below the 50 ms floor.
    expect(rows.find((r) => r.node_id === "3")).toMatchObject({ deltaMs: 300, changed: false });
    expect(rows.find((r) => r.node_id === "9")).toMatchObject({ deltaMs: 40, changed: false });
    const unchanged = rows.filter((r) => !r.changed).map((r) => r.node_id);
    expect(unchanged).toEqual(["3", "9"]);
  });
  it("orders node ids numerically", () => {
    expect(["10", "9", "2:1", "2"].sort(compareNodeIds)).toEqual(["2", "2:1", "9", "10"]);
  });
});

describe("diffSummary and order", () => {
  const x: RunSummary = { run_id: "x", status: "success", started_at_ms: 2000, duration_ms: 1000, gpu_peak_bytes: 5 };
  const y: RunSummary = { run_id: "y", status: "failed", started_at_ms: 1000, duration_ms: 1000 };
  it("puts the older run first", () => {
    expect(orderForCompare(x, y).map((r) => r.run_id)).toEqual(["y", "x"]);
  });
  it("marks changed figures", () => {
    const rows = diffSummary(y, x);
    expect(rows.find((r) => r.key === "status")).toMatchObject({ a: "failed", b: "success", changed: true });
    expect(rows.find((r) => r.key === "duration_ms")!.changed).toBe(false);
    expect(rows.find((r) => r.key === "gpu_peak_bytes")).toMatchObject({ a: null, b: 5, changed: true });
  });
});
