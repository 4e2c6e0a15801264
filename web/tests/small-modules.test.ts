import { describe, expect, it, vi } from "vitest";
import { etaLines, queueFinishMs } from "../src/eta";
import { countOpen, shouldToast, sortRecommendations, upsertRecommendation } from "../src/recommendations";
import { readSettings, settingDefinitions, SETTING_ADMIN_TOKEN, SETTING_DEFAULT_RANGE, SETTING_TOASTS, SETTING_UNITS } from "../src/settings";
import type { Recommendation } from "../src/types";
import { dismissPath, isImageOutput, presetPath, runPath, viewPath, withQuery } from "../src/urls";
import { currentWorkflow, WorkflowNameReporter, workflowIdOf, workflowNameFromPath } from "../src/workflows";

describe("workflow names", () => {
  it("strips the folder and .json", () => {
    expect(workflowNameFromPath("workflows/portraits/upscale v2.json")).toBe("upscale v2");
    expect(workflowNameFromPath("workflows\\win\\A.JSON")).toBe("A");
    expect(workflowNameFromPath("plain")).toBe("plain");
    expect(workflowNameFromPath("workflows/.json")).toBeNull();
    expect(workflowNameFromPath(null)).toBeNull();
  });
  it("reads id and name from the frontend objects", () => {
    expect(
      currentWorkflow({ activeWorkflow: { path: "workflows/a/b.json", activeState: { id: "uuid-1" } }, graph: { id: "other" } }),
    ).toEqual({ id: "uuid-1", name: "b" });
    expect(workflowIdOf({ graph: { serialize: () => ({ id: "from-serialize" }) } })).toBe("from-serialize");
    expect(currentWorkflow({ graph: { id: "g" } })).toBeNull();
  });
  it("reports each id/name pair once and retries after a failure", async () => {
    const post = vi.fn().mockResolvedValueOnce(false).mockResolvedValue(true);
    const reporter = new WorkflowNameReporter(post);
    expect(await reporter.report({ id: "1", name: "a" })).toBe(false);
    expect(await reporter.report({ id: "1", name: "a" })).toBe(true);
    expect(await reporter.report({ id: "1", name: "a" })).toBe(false);
    expect(await reporter.report({ id: "1", name: "renamed" })).toBe(true);
    expect(await reporter.report(null)).toBe(false);
    expect(post).toHaveBeenCalledTimes(3);
  });
  it("sends a workflow's names one after another, in the order they were reported", async () => {
    const applied: string[] = [];
    const releases: Array<() => void> = [];
    const post = vi.fn(
      (ref: { id: string; name: string }) =>
        new Promise<boolean>((resolve) => {
          releases.push(() => {
            applied.push(ref.name);
            resolve(true);
          });
        }),
    );
    const reporter = new WorkflowNameReporter(post);
    const first = reporter.report({ id: "1", name: "Unsaved Workflow" });
    const second = reporter.report({ id: "1", name: "Portrait upscale" });
    await Promise.resolve();
    expect(post).toHaveBeenCalledTimes(1); // the second waits for the first
    releases[0]();
    expect(await first).toBe(true);
    await vi.waitFor(() => expect(post).toHaveBeenCalledTimes(2));
    releases[1]();
    expect(await second).toBe(true);
    expect(applied).toEqual(["Unsaved Workflow", "Portrait upscale"]);
    expect(reporter.nameFor("1")).toBe("Portrait upscale");
  });
  it("keeps the newer name when an older send fails", async () => {
    const post = vi.fn().mockResolvedValueOnce(false).mockResolvedValue(true);
    const reporter = new WorkflowNameReporter(post);
    const older = reporter.report({ id: "1", name: "old" });
    const newer = reporter.report({ id: "1", name: "new" });
    expect(await older).toBe(false);
    expect(await newer).toBe(true);
    expect(reporter.nameFor("1")).toBe("new");
    expect(await reporter.report({ id: "1", name: "new" })).toBe(false); // already sent
  });
  it("survives a throwing sender", async () => {
    const reporter = new WorkflowNameReporter(() => Promise.reject(new Error("offline")));
    expect(await reporter.report({ id: "1", name: "a" })).toBe(false);
  });
});

describe("settings", () => {
  it("defines toasts, default range, units and the admin token under Run Telemetry", () => {
    const defs = settingDefinitions(() => {});
    expect(defs.map((d) => d.id)).toEqual([SETTING_TOASTS, SETTING_DEFAULT_RANGE, SETTING_UNITS, SETTING_ADMIN_TOKEN]);
    for (const d of defs) expect(d.category[0]).toBe("Run Telemetry");
  });
  it("reads values with defaults for anything invalid", () => {
    const values: Record<string, unknown> = { [SETTING_TOASTS]: false, [SETTING_DEFAULT_RANGE]: "30d", [SETTING_UNITS]: "decimal" };
    expect(readSettings((id) => values[id])).toEqual({ toasts: false, defaultRange: "30d", units: "decimal" });
    expect(readSettings(() => "junk")).toEqual({ toasts: true, defaultRange: "7d", units: "binary" });
    expect(readSettings(undefined)).toEqual({ toasts: true, defaultRange: "7d", units: "binary" });
    expect(
      readSettings(() => {
        throw new Error("not ready");
      }).units,
    ).toBe("binary");
  });
});

const rec = (id: number, severity: Recommendation["severity"], state: Recommendation["state"] = "open", t = id): Recommendation => ({
  id,
  kind: "k",
  severity,
  message: `m${id}`,
  state,
  created_at_ms: t,
});

describe("recommendations", () => {
  it("sorts by severity then newest", () => {
    const sorted = sortRecommendations([rec(1, "info"), rec(2, "critical"), rec(3, "warning"), rec(4, "critical")]);
    expect(sorted.map((r) => r.id)).toEqual([4, 2, 3, 1]);
  });
  it("upserts pushed recommendations into the shown state", () => {
    const list = [rec(1, "warning"), rec(2, "info")];
    expect(upsertRecommendation(list, rec(3, "critical"), "open").map((r) => r.id)).toEqual([3, 1, 2]);
    expect(upsertRecommendation(list, rec(1, "warning", "dismissed"), "open").map((r) => r.id)).toEqual([2]);
  });
  it("toasts only new open warnings and criticals", () => {
    expect(shouldToast(rec(1, "warning"), new Set())).toBe(true);
    expect(shouldToast(rec(1, "warning"), new Set(["1"]))).toBe(false);
    expect(shouldToast(rec(1, "info"), new Set())).toBe(false);
    expect(shouldToast(rec(1, "critical", "resolved"), new Set())).toBe(false);
  });
  it("counts open ones", () => {
    expect(countOpen([rec(1, "warning"), rec(2, "warning", "dismissed"), rec(3, "critical")])).toEqual({
      critical: 1,
      warning: 1,
      info: 0,
    });
  });
});

describe("queue ETA", () => {
  const now = 1_000_000;
  it("is empty without predictions", () => {
    expect(etaLines({ items: [{ prompt_id: "p", position: 1 }], has_predictions: false }, now)).toEqual([]);
    expect(etaLines(null, now)).toEqual([]);
  });
  it("lists items by position with times and intervals", () => {
    const eta = {
      has_predictions: true,
      items: [
        { prompt_id: "b", position: 1, workflow_name: "B", predicted_duration_ms: 30_000, predicted_start_ms: now + 20_000, predicted_finish_ms: now + 50_000, interval_ms: [20_000, 40_000] as [number, number] },
        { prompt_id: "a", position: 0, workflow_name: null, predicted_duration_ms: 20_000, predicted_start_ms: now - 1000, predicted_finish_ms: now + 20_000, interval_ms: null },
      ],
    };
    const lines = etaLines(eta, now);
    expect(lines.map((l) => l.prompt_id)).toEqual(["a", "b"]);
    expect(lines[0]).toMatchObject({ workflow: "Unnamed workflow", starts: "running", interval: null });
    expect(lines[1]).toMatchObject({ starts: "in 20 s", duration: "30 s", interval: "20 s–40 s" });
    expect(queueFinishMs(eta)).toBe(now + 50_000);
    const waiting = etaLines({ ...eta, items: [{ ...eta.items[0], position: 0, running: false }] }, now);
    expect(waiting[0].starts).toBe("in 20 s");
    expect(lines.every((l) => l.instance === null)).toBe(true);
  });
  it("keeps each ComfyUI's queue together and names it when a watcher answers for several", () => {
    const item = (prompt_id: string, instance: string, position: number) => ({
      prompt_id, instance, position, workflow_name: prompt_id, predicted_duration_ms: 1000,
      predicted_start_ms: now + position * 1000, predicted_finish_ms: now + (position + 1) * 1000,
    });
    const eta = { has_predictions: true, items: [item("a0", "box-a", 0), item("b0", "box-b", 0), item("a1", "box-a", 1)] };
    expect(etaLines(eta, now).map((l) => [l.instance, l.prompt_id])).toEqual([["box-a", "a0"], ["box-a", "a1"], ["box-b", "b0"]]);
    const one = { has_predictions: true, items: [item("b0", "box-b", 0)] };
    expect(etaLines(one, now)[0].instance).toBeNull();
  });
});

describe("urls", () => {
  it("encodes ids into paths", () => {
    expect(runPath("a/b?c")).toBe("/telemetry/runs/a%2Fb%3Fc");
    expect(presetPath(7)).toBe("/telemetry/presets/7");
    expect(dismissPath("x y")).toBe("/telemetry/recommendations/x%20y/dismiss");
    expect(withQuery("/p", new URLSearchParams())).toBe("/p");
    expect(withQuery("/p", { a: "1&2" })).toBe("/p?a=1%262");
  });
  it("builds /view paths for outputs", () => {
    expect(viewPath({ node_id: "9", kind: "images", filename: "a b.png", subfolder: "x", type: "output" })).toBe(
      "/view?filename=a+b.png&type=output&subfolder=x",
    );
    expect(viewPath({ node_id: "9", kind: "images" })).toBeNull();
    expect(isImageOutput({ node_id: "9", kind: "images", filename: "a.webp" })).toBe(true);
    expect(isImageOutput({ node_id: "9", kind: "videos", filename: "a.mp4" })).toBe(false);
  });
});
