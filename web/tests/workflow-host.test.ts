/**
 * The ComfyUI side of "Apply to a copy" (`comfyWorkflowHost` in src/comfy.ts) over fakes of ComfyUI's `app`:
 * a new tab through `loadGraphData(graph, true, true, name)` where the frontend has its workflow store (the store's
 * active workflow changes, as useWorkflowService.afterLoadNewGraph makes it), the canvas on a frontend without
 * one, nothing without `loadGraphData`; node templates from `LiteGraph.createNode`.
 */

import { beforeEach, describe, expect, it, vi } from "vitest";
import type { Workflow } from "../src/graph-actions";

const COPY: Workflow = { id: "copy", nodes: [{ id: 1, type: "EmptyImage", widgets_values: [64, 64, 2, 0] }], links: [] };

async function host() {
  vi.resetModules();
  const { app } = await import("./comfy-fake/app");
  const { comfyWorkflowHost } = await import("../src/comfy");
  return { app: app as unknown as Record<string, unknown>, host: comfyWorkflowHost };
}

beforeEach(() => {
  delete (globalThis as { LiteGraph?: unknown }).LiteGraph;
});

describe("opening a copy", () => {
  it("opens a new tab where the frontend has workflow tabs", async () => {
    const { app, host: h } = await host();
    const store = { activeWorkflow: { path: "workflows/Mine.json" } as unknown };
    const calls: unknown[][] = [];
    app.extensionManager = { workflow: store };
    app.loadGraphData = async (...args: unknown[]) => {
      calls.push(args);
      store.activeWorkflow = { path: `workflows/${String(args[3])}.json` };
    };
    expect(await h.open(COPY, "Mine - Halve")).toBe("tab");
    expect(calls).toEqual([[COPY, true, true, "Mine - Halve"]]);
  });

  it("says so when the frontend loaded the copy in place of the open tab", async () => {
    const { app, host: h } = await host();
    app.extensionManager = { workflow: { activeWorkflow: { path: "workflows/Mine.json" } } };
    app.loadGraphData = async () => {};
    expect(await h.open(COPY, "x")).toBe("canvas");
  });

  it("loads into the canvas on a frontend without the workflow store, and refuses without loadGraphData", async () => {
    const { app, host: h } = await host();
    const calls: unknown[][] = [];
    app.extensionManager = {};
    app.loadGraphData = async (...args: unknown[]) => void calls.push(args);
    expect(await h.open(COPY, "x")).toBe("canvas");
    expect(calls).toEqual([[COPY]]);
    delete app.loadGraphData;
    expect(await h.open(COPY, "x")).toBe("unavailable");
  });

  it("reads the whole workflow from the root graph, as a copy", async () => {
    const { app, host: h } = await host();
    const root = { nodes: [{ id: 1, type: "EmptyImage", widgets_values: [64, 64, 4, 0] }], links: [] };
    app.rootGraph = { serialize: () => root };
    app.graph = { serialize: () => ({ nodes: [] }) };
    const current = h.current();
    expect(current).toEqual(root);
    expect(current).not.toBe(root);
    app.rootGraph = { serialize: () => { throw new Error("not ready"); } };
    expect(h.current()).toBeNull();
  });
});

describe("node templates", () => {
  it("come from a fresh LiteGraph node: widget names in order and its serialisation", async () => {
    const { host: h } = await host();
    const created: string[] = [];
    (globalThis as { LiteGraph?: unknown }).LiteGraph = {
      createNode: (type: string) => {
        created.push(type);
        if (type !== "VAEDecodeTiled") return null;
        return {
          widgets: [{ name: "tile_size" }, { name: "overlap" }, { name: "temporal_size" }, { name: "temporal_overlap" }],
          serialize: () => ({ id: -1, type, widgets_values: [512, 64, 64, 8] }),
        };
      },
    };
    expect(h.templateOf("VAEDecodeTiled")).toEqual({
      widgetNames: ["tile_size", "overlap", "temporal_size", "temporal_overlap"],
      node: { id: -1, type: "VAEDecodeTiled", widgets_values: [512, 64, 64, 8] },
    });
    expect(h.templateOf("VAEDecodeTiled")).not.toBeNull();
    expect(h.templateOf("NoSuchNode")).toBeNull();
    expect(created).toEqual(["VAEDecodeTiled", "NoSuchNode"]);
  });

  it("are null without LiteGraph (until it loads) or when creating the node throws", async () => {
    const { host: h } = await host();
    expect(h.templateOf("KSampler")).toBeNull();
    (globalThis as { LiteGraph?: unknown }).LiteGraph = {
      createNode: (type: string) => ({ widgets: [{ name: "seed" }], serialize: () => ({ id: -1, type }) }),
    };
    expect(h.templateOf("KSampler")?.widgetNames).toEqual(["seed"]); // LiteGraph loaded later: asked again
    const again = await host();
    (globalThis as { LiteGraph?: unknown }).LiteGraph = { createNode: () => { throw new Error("boom"); } };
    expect(again.host.templateOf("KSampler")).toBeNull();
  });
});
