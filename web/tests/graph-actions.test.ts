import { describe, expect, it } from "vitest";
import { applyToCopy, type WorkflowOpenPath, type WorkflowHost } from "../src/apply-copy";
import {
  applyChanges,
  copyName,
  HIGHLIGHT,
  matchesWorkflow,
  PROPERTY,
  type NodeTemplate,
  type SerializedNode,
  type Workflow,
} from "../src/graph-actions";
import type { GraphChange, Recommendation, RecommendationAction } from "../src/types";

/** ComfyUI's default workflow as frontend 1.35 saves it (version 0.4: links as arrays), batch 4. */
function defaultWorkflow(): Workflow {
  const node = (id: number, type: string, inputs: SerializedNode["inputs"], outputs: SerializedNode["outputs"], widgets: unknown[]) => ({
    id, type, pos: [id * 100, 200], size: [315, 100], flags: {}, order: id, mode: 0, inputs, outputs,
    properties: { "Node name for S&R": type }, widgets_values: widgets,
  });
  return {
    id: "c7d1-default", revision: 0, last_node_id: 9, last_link_id: 9, version: 0.4, groups: [], config: {},
    extra: { ds: { scale: 1, offset: [0, 0] } },
    nodes: [
      node(3, "KSampler",
        [{ name: "model", type: "MODEL", link: 1 }, { name: "positive", type: "CONDITIONING", link: 4 },
         { name: "negative", type: "CONDITIONING", link: 6 }, { name: "latent_image", type: "LATENT", link: 2 }],
        [{ name: "LATENT", type: "LATENT", links: [7], slot_index: 0 }],
        [156680208700286, "randomize", 30, 8, "euler", "normal", 1]),
      node(4, "CheckpointLoaderSimple", [],
        [{ name: "MODEL", type: "MODEL", links: [1], slot_index: 0 }, { name: "CLIP", type: "CLIP", links: [3, 5], slot_index: 1 },
         { name: "VAE", type: "VAE", links: [8], slot_index: 2 }],
        ["sd_xl_base_1.0.safetensors"]),
      node(5, "EmptyLatentImage", [], [{ name: "LATENT", type: "LATENT", links: [2], slot_index: 0 }], [1024, 1024, 4]),
      node(6, "CLIPTextEncode", [{ name: "clip", type: "CLIP", link: 3 }],
        [{ name: "CONDITIONING", type: "CONDITIONING", links: [4], slot_index: 0 }], ["a castle at dawn"]),
      node(7, "CLIPTextEncode", [{ name: "clip", type: "CLIP", link: 5 }],
        [{ name: "CONDITIONING", type: "CONDITIONING", links: [6], slot_index: 0 }], ["blurry"]),
      node(8, "VAEDecode", [{ name: "samples", type: "LATENT", link: 7 }, { name: "vae", type: "VAE", link: 8 }],
        [{ name: "IMAGE", type: "IMAGE", links: [9], slot_index: 0 }], []),
      node(9, "SaveImage", [{ name: "images", type: "IMAGE", link: 9 }], [], ["ComfyUI"]),
    ],
    links: [
      [1, 4, 0, 3, 0, "MODEL"], [2, 5, 0, 3, 3, "LATENT"], [3, 4, 1, 6, 0, "CLIP"], [4, 6, 0, 3, 1, "CONDITIONING"],
      [5, 4, 1, 7, 0, "CLIP"], [6, 7, 0, 3, 2, "CONDITIONING"], [7, 3, 0, 8, 0, "LATENT"], [8, 4, 2, 8, 1, "VAE"],
      [9, 8, 0, 9, 0, "IMAGE"],
    ],
  };
}

/** Fresh nodes as `LiteGraph.createNode(type).serialize()` gives them in frontend 1.35 (widget inputs listed as
 * inputs with a `widget`); KSampler's seed has its `control_after_generate` widget right after it. */
const TEMPLATES: Record<string, NodeTemplate> = {
  KSampler: { widgetNames: ["seed", "control_after_generate", "steps", "cfg", "sampler_name", "scheduler", "denoise"],
    node: { id: -1, type: "KSampler", widgets_values: [0, "randomize", 20, 8, "euler", "simple", 1] } },
  EmptyLatentImage: { widgetNames: ["width", "height", "batch_size"],
    node: { id: -1, type: "EmptyLatentImage", widgets_values: [512, 512, 1] } },
  VAEDecode: { widgetNames: [], node: { id: -1, type: "VAEDecode" } },
  VAEDecodeTiled: {
    widgetNames: ["tile_size", "overlap", "temporal_size", "temporal_overlap"],
    node: {
      id: -1, type: "VAEDecodeTiled", pos: [0, 0], size: [315, 150], flags: {}, order: 0, mode: 0,
      inputs: [
        { name: "samples", type: "LATENT", link: null }, { name: "vae", type: "VAE", link: null },
        { name: "tile_size", type: "INT", widget: { name: "tile_size" }, link: null },
        { name: "overlap", type: "INT", widget: { name: "overlap" }, link: null },
        { name: "temporal_size", type: "INT", widget: { name: "temporal_size" }, link: null },
        { name: "temporal_overlap", type: "INT", widget: { name: "temporal_overlap" }, link: null },
      ],
      outputs: [{ name: "IMAGE", type: "IMAGE", links: null }],
      properties: { "Node name for S&R": "VAEDecodeTiled" },
      widgets_values: [512, 64, 64, 8],
    },
  },
  RunTelemetryLabel: { widgetNames: ["story_title", "scene", "tags"],
    node: { id: -1, type: "RunTelemetryLabel", widgets_values: ["", "", ""] } },
};
const templateOf = (type: string) => TEMPLATES[type] ?? null;

const byId = (wf: Workflow, id: number) => wf.nodes.find((n) => n.id === id) as SerializedNode;
const set = (node_id: string, class_type: string, input: string, from: unknown, to: unknown): GraphChange =>
  ({ node_id, class_type, input, from, to });
const TILED: GraphChange[] = [
  { node_id: "8", class_type: "VAEDecode", replace_class_type: "VAEDecodeTiled" },
  set("8", "VAEDecodeTiled", "tile_size", null, 256), set("8", "VAEDecodeTiled", "overlap", null, 32),
  set("8", "VAEDecodeTiled", "temporal_size", null, 64), set("8", "VAEDecodeTiled", "temporal_overlap", null, 8),
];

describe("graph changes on a copy of a UI workflow", () => {
  it("halves the batch on the copy, highlights the node and leaves the original alone", () => {
    const original = defaultWorkflow();
    const before = JSON.stringify(original);
    const { workflow, changed, skipped } = applyChanges(original, [set("5", "EmptyLatentImage", "batch_size", 4, 2)], templateOf);
    expect(byId(workflow, 5).widgets_values).toEqual([1024, 1024, 2]);
    expect(changed).toEqual(["5"]);
    expect(skipped).toEqual([]);
    expect(byId(workflow, 5)).toMatchObject({ color: HIGHLIGHT.color, bgcolor: HIGHLIGHT.bgcolor });
    expect(byId(workflow, 5).properties?.[PROPERTY]).toBe("changed: batch_size 4 → 2");
    expect(byId(workflow, 3).color).toBeUndefined();
    expect(JSON.stringify(original)).toBe(before);
  });

  it("finds a widget's index with the frontend's hidden widgets counted (KSampler's control_after_generate)", () => {
    const { workflow } = applyChanges(defaultWorkflow(), [set("3", "KSampler", "steps", 30, 15)], templateOf);
    expect(byId(workflow, 3).widgets_values).toEqual([156680208700286, "randomize", 15, 8, "euler", "normal", 1]);
  });

  it("replaces VAE Decode by VAE Decode (Tiled) in place, keeping its id, position and links", () => {
    const original = defaultWorkflow();
    const { workflow, changed, skipped } = applyChanges(original, TILED, templateOf);
    expect(changed).toEqual(["8"]);
    expect(skipped).toEqual([]);
    const tiled = byId(workflow, 8);
    expect(tiled.type).toBe("VAEDecodeTiled");
    expect(tiled.pos).toEqual([800, 200]);
    expect(tiled.order).toBe(8);
    expect(tiled.widgets_values).toEqual([256, 32, 64, 8]);
    expect(tiled.inputs?.map((i) => [i.name, i.link])).toEqual([
      ["samples", 7], ["vae", 8], ["tile_size", null], ["overlap", null], ["temporal_size", null], ["temporal_overlap", null],
    ]);
    expect(tiled.outputs?.[0]).toMatchObject({ name: "IMAGE", links: [9], slot_index: 0 });
    expect(workflow.links).toContainEqual([7, 3, 0, 8, 0, "LATENT"]);
    expect(workflow.links).toContainEqual([9, 8, 0, 9, 0, "IMAGE"]);
    expect(tiled.properties?.["Node name for S&R"]).toBe("VAEDecodeTiled");
    expect(tiled.properties?.[PROPERTY]).toContain("VAEDecode → VAEDecodeTiled");
    expect(byId(original, 8).type).toBe("VAEDecode");
    expect(TEMPLATES.VAEDecodeTiled.node.widgets_values).toEqual([512, 64, 64, 8]);
  });

  it("moves link slots when the new class orders its inputs differently (version 1 link objects)", () => {
    const wf = defaultWorkflow();
    wf.version = 1;
    wf.links = (wf.links ?? []).map((l) => {
      const [id, origin_id, origin_slot, target_id, target_slot, type] = l as [number, number, number, number, number, string];
      return { id, origin_id, origin_slot, target_id, target_slot, type };
    });
    const swapped: NodeTemplate = {
      widgetNames: [],
      node: { id: -1, type: "VAEDecodeSwapped", inputs: [{ name: "vae", type: "VAE" }, { name: "samples", type: "LATENT" }],
        outputs: [{ name: "IMAGE", type: "IMAGE" }], widgets_values: [] },
    };
    const { workflow } = applyChanges(
      wf, [{ node_id: "8", class_type: "VAEDecode", replace_class_type: "VAEDecodeSwapped" }],
      (t) => (t === "VAEDecodeSwapped" ? swapped : templateOf(t)));
    expect(byId(workflow, 8).inputs?.map((i) => [i.name, i.link])).toEqual([["vae", 8], ["samples", 7]]);
    expect(workflow.links).toContainEqual({ id: 7, origin_id: 3, origin_slot: 0, target_id: 8, target_slot: 1, type: "LATENT" });
    expect(workflow.links).toContainEqual({ id: 8, origin_id: 4, origin_slot: 2, target_id: 8, target_slot: 0, type: "VAE" });
  });

  it("removes the links a replacement has no slot for, and says so", () => {
    const bare: NodeTemplate = { widgetNames: [], node: { id: -1, type: "Bare", inputs: [{ name: "samples", type: "LATENT" }], outputs: [] } };
    const { workflow, skipped } = applyChanges(
      defaultWorkflow(), [{ node_id: "8", class_type: "VAEDecode", replace_class_type: "Bare" }], () => bare);
    expect(skipped).toEqual([
      "node 8: Bare has no input for 'vae'; its link was removed",
      "node 8: Bare has no output for 'IMAGE'; its links were removed",
    ]);
    expect(workflow.links?.some((l) => (l as unknown[])[0] === 8 || (l as unknown[])[0] === 9)).toBe(false);
    expect(byId(workflow, 4).outputs?.[2].links).toEqual([]);
    expect(byId(workflow, 9).inputs?.[0].link).toBeNull();
  });

  it("skips what it cannot apply: unknown widgets and classes, subgraph nodes, missing nodes", () => {
    const { changed, skipped } = applyChanges(defaultWorkflow(), [
      set("5", "EmptyLatentImage", "frames", 81, 29),
      { node_id: "8", class_type: "VAEDecode", replace_class_type: "NoSuchNode" },
      set("12:5", "KSampler", "steps", 30, 15),
      set("77", "KSampler", "steps", 30, 15),
    ], templateOf);
    expect(changed).toEqual([]);
    expect(skipped).toEqual([
      "node 5: EmptyLatentImage has no widget 'frames' in this frontend",
      "this ComfyUI has no node type NoSuchNode",
      "node 12:5 is inside a subgraph: change it there by hand (steps 30 → 15)",
      "node 77 (KSampler) is not in this workflow",
    ]);
  });

  it("sets a widgets_values object by name", () => {
    const wf = defaultWorkflow();
    wf.nodes.push({ id: 20, type: "VHS_LoadVideo", widgets_values: { frame_load_cap: 200, select_every_nth: 1 } });
    const { workflow } = applyChanges(wf, [set("20", "VHS_LoadVideo", "frame_load_cap", 200, 100)], templateOf);
    expect(byId(workflow, 20).widgets_values).toEqual({ frame_load_cap: 100, select_every_nth: 1 });
  });

  it("knows whether a workflow is the one the changes were made for", () => {
    expect(matchesWorkflow(defaultWorkflow(), TILED)).toBe(true);
    const other = defaultWorkflow();
    byId(other, 8).type = "VAEDecodeTiled";
    expect(matchesWorkflow(other, TILED)).toBe(false);
    expect(matchesWorkflow({ nodes: [] }, TILED)).toBe(false);
    expect(matchesWorkflow(null, TILED)).toBe(false);
    expect(matchesWorkflow(defaultWorkflow(), [set("12:5", "KSampler", "steps", 30, 15)])).toBe(false);
  });

  it("names copies as files can be named", () => {
    expect(copyName("Portrait/upscale", 'Halve the batch size (4 → 2)')).toBe("Portrait upscale - Halve the batch size (4 → 2)");
    expect(copyName("", "a:b")).toBe("workflow - a b");
  });
});

function fakeHost(canvas: Workflow | null, path: WorkflowOpenPath = "tab") {
  const opened: { workflow: Workflow; name: string }[] = [];
  let n = 0;
  const host: WorkflowHost = {
    current: () => (canvas ? JSON.parse(JSON.stringify(canvas)) : null),
    currentName: () => (canvas ? "Castle" : null),
    templateOf,
    open: async (workflow, name) => {
      opened.push({ workflow, name });
      return path;
    },
    newId: () => `copy-${++n}`,
  };
  return { host, opened };
}

const REC: Recommendation = { id: 7, kind: "oom", severity: "critical", message: "out of memory", state: "open", workflow_name: "Castle" } as Recommendation;
const HALVE: RecommendationAction = { kind: "halve_batch", title: "Halve the batch size (4 → 2)", run_id: "run-1",
  changes: [set("5", "EmptyLatentImage", "batch_size", 4, 2)] };

describe("Apply to a copy", () => {
  it("opens a changed copy of the canvas workflow in a new tab, under a new id", async () => {
    const canvas = defaultWorkflow();
    const { host, opened } = fakeHost(canvas);
    const outcome = await applyToCopy(REC, HALVE, host, async () => null);
    expect(outcome).toMatchObject({ ok: true, source: "canvas", opened: ["Castle - Halve the batch size (4 → 2)"] });
    expect(outcome.message).toBe('Opened "Castle - Halve the batch size (4 → 2)"; changed node 5, highlighted. Your workflow is unchanged.');
    const copy = opened[0].workflow;
    expect(copy.id).toBe("copy-1");
    expect(copy.extra?.run_telemetry_copy).toEqual({ source_workflow_id: "c7d1-default", recommendation_id: 7, action: "halve_batch", run_id: "run-1" });
    expect(byId(copy, 5).widgets_values).toEqual([1024, 1024, 2]);
    expect(byId(canvas, 5).widgets_values).toEqual([1024, 1024, 4]);
  });

  it("falls back to the workflow stored with the run when the canvas shows another graph", async () => {
    const { host, opened } = fakeHost({ nodes: [{ id: 1, type: "EmptyImage" }] });
    const asked: string[] = [];
    const outcome = await applyToCopy(REC, HALVE, host, async (runId) => (asked.push(runId), defaultWorkflow()));
    expect(asked).toEqual(["run-1"]);
    expect(outcome.ok && outcome.source).toBe("run");
    expect(outcome.message).toContain("from the workflow stored with run run-1");
    expect(byId(opened[0].workflow, 5).widgets_values).toEqual([1024, 1024, 2]);
  });

  it("refuses when neither the canvas nor the run has the graph", async () => {
    const { host, opened } = fakeHost(null);
    const outcome = await applyToCopy(REC, HALVE, host, async () => null);
    expect(outcome.ok).toBe(false);
    expect(outcome.message).toContain("the run came without its UI workflow");
    expect(opened).toEqual([]);
  });

  it("opens one tab per scene, each labelled with its scene", async () => {
    const wf = defaultWorkflow();
    wf.nodes.push({ id: 50, type: "RunTelemetryLabel", widgets_values: ["Winter", "intro, chase", "fox"] });
    const split: RecommendationAction = {
      kind: "split_scenes", title: "Split the 4 images into 2 scenes", run_id: "run-1", changes: [],
      copies: ["intro", "chase"].map((scene) => ({
        title: `${scene}: 2 of 4 frames`, scene,
        changes: [set("5", "EmptyLatentImage", "batch_size", 4, 2), set("50", "RunTelemetryLabel", "scene", "intro, chase", scene)],
      })),
    };
    const { host, opened } = fakeHost(wf);
    const outcome = await applyToCopy(REC, split, host, async () => null);
    expect(outcome.ok).toBe(true);
    expect(opened.map((o) => o.name)).toEqual(["Castle - intro 2 of 4 frames", "Castle - chase 2 of 4 frames"]);
    expect(opened.map((o) => byId(o.workflow, 50).widgets_values)).toEqual([["Winter", "intro", "fox"], ["Winter", "chase", "fox"]]);
    expect(new Set(opened.map((o) => o.workflow.id)).size).toBe(2);
  });

  it("on a frontend without tabs loads only the first copy into the canvas and says so", async () => {
    const { host, opened } = fakeHost(defaultWorkflow(), "canvas");
    const split: RecommendationAction = { ...HALVE, kind: "split_scenes", copies: [
      { title: "a", scene: "a", changes: HALVE.changes }, { title: "b", scene: "b", changes: HALVE.changes }] };
    const outcome = await applyToCopy(REC, split, host, async () => null);
    expect(opened).toHaveLength(1);
    expect(outcome.message).toContain("into the canvas");
    expect(outcome.message).toContain("Only the first of 2 copies was opened.");
  });
});
