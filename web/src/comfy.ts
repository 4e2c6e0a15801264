/**
 * The panel's only contact with ComfyUI's frontend objects (`app`, `api`, the extension manager). Every access is
 * feature-detected: frontends differ between versions, and the panel must never throw into ComfyUI.
 */

import { app } from "comfyui:app";
import { api } from "comfyui:api";
import type { ExtensionManager, SidebarTabExtension } from "@comfyorg/comfyui-frontend-types";
import type { TelemetryClient } from "./client";
import {
  openPanelTab,
  registerPanelTab,
  showPanelToast,
  type ExtensionManagerLike,
  type OpenPath,
  type PanelToast,
  type SidebarPath,
  type ToastPath,
} from "./extension-api";
import type { WorkflowHost, WorkflowOpenPath } from "./apply-copy";
import type { NodeTemplate, SerializedNode, Workflow } from "./graph-actions";
import type { PanelSettings } from "./settings";
import type { PanelEnv, SelectNodeResult } from "./views/context";
import { currentWorkflow, workflowIdOf, type WorkflowSource } from "./workflows";

interface GraphLike {
  id?: unknown;
  serialize?: () => { id?: unknown };
  getNodeById?: (id: number | string) => unknown;
}

interface CanvasLike {
  selectNode?: (node: unknown, add?: boolean) => void;
  centerOnNode?: (node: unknown) => void;
  setDirty?: (fg: boolean, bg?: boolean) => void;
}

type RuntimeExtensionManager = ExtensionManager &
  ExtensionManagerLike & {
    workflow?: { activeWorkflow?: WorkflowSource["activeWorkflow"] };
  };

export function extensionManager(): RuntimeExtensionManager | undefined {
  return (app as unknown as { extensionManager?: RuntimeExtensionManager }).extensionManager;
}

function graph(): GraphLike | null {
  return ((app as unknown as { graph?: GraphLike }).graph ?? null) as GraphLike | null;
}

function canvas(): CanvasLike | null {
  return ((app as unknown as { canvas?: CanvasLike }).canvas ?? null) as CanvasLike | null;
}

export function activeWorkflowSource(): WorkflowSource {
  let activeWorkflow: WorkflowSource["activeWorkflow"] = null;
  try {
    activeWorkflow = extensionManager()?.workflow?.activeWorkflow ?? null;
  } catch {
    activeWorkflow = null;
  }
  return { graph: graph(), activeWorkflow };
}

/** Node ids inside subgraphs look like "12:5"; on the root canvas the outermost node ("12") stands for it. */
function findNode(nodeId: string): unknown {
  const g = graph();
  if (!g || typeof g.getNodeById !== "function") return null;
  const candidates = [nodeId, nodeId.split(":")[0]];
  for (const c of candidates) {
    try {
      const numeric = Number(c);
      const node = (Number.isInteger(numeric) ? g.getNodeById(numeric) : null) ?? g.getNodeById(c);
      if (node) return node;
    } catch {
      // try the next form
    }
  }
  return null;
}

export function selectNode(nodeId: string): SelectNodeResult {
  const c = canvas();
  if (!c || typeof c.selectNode !== "function") return "unavailable";
  const node = findNode(nodeId);
  if (!node) return "missing";
  try {
    c.selectNode(node, false);
    c.centerOnNode?.(node);
    c.setDirty?.(true, true);
    return "selected";
  } catch {
    return "unavailable";
  }
}

interface LiveNodeLike {
  widgets?: { name?: unknown }[];
  serialize?: () => SerializedNode;
}

interface LiteGraphLike {
  createNode?: (type: string) => LiveNodeLike | null;
}

const templates = new Map<string, NodeTemplate | null>();

/** A fresh node of `type` as this frontend builds it (`LiteGraph.createNode`, never added to a graph): its widget
 * names in `widgets_values` order and its serialisation. Cached per type; null for a type this ComfyUI lacks. */
export function nodeTemplate(type: string): NodeTemplate | null {
  if (templates.has(type)) return templates.get(type) ?? null;
  const liteGraph = (globalThis as { LiteGraph?: LiteGraphLike }).LiteGraph;
  if (typeof liteGraph?.createNode !== "function") return null; // not loaded yet: ask again next time
  let template: NodeTemplate | null = null;
  try {
    const node = liteGraph.createNode(type);
    const serialized = node?.serialize?.();
    if (node && serialized && serialized.type === type) {
      template = {
        widgetNames: (node.widgets ?? []).map((w) => (typeof w?.name === "string" ? w.name : "")),
        node: JSON.parse(JSON.stringify(serialized)) as SerializedNode,
      };
    }
  } catch {
    template = null;
  }
  templates.set(type, template);
  return template;
}

interface AppGraphs {
  rootGraph?: { serialize?: () => unknown };
  graph?: { serialize?: () => unknown };
  loadGraphData?: (graph: unknown, clean?: boolean, restoreView?: boolean, workflow?: unknown) => Promise<void>;
}

/** The whole workflow on the canvas (the root graph when a subgraph is open), serialised: a copy. */
function canvasWorkflow(): Workflow | null {
  const a = app as unknown as AppGraphs;
  try {
    const graph = typeof a.rootGraph?.serialize === "function" ? a.rootGraph : a.graph;
    const data = graph?.serialize?.();
    return data && typeof data === "object" && Array.isArray((data as Workflow).nodes)
      ? (JSON.parse(JSON.stringify(data)) as Workflow)
      : null;
  } catch {
    return null;
  }
}

/** Opens a workflow in a NEW tab: `app.loadGraphData(graph, true, true, name)`, which frontends with workflow tabs
 * answer by storing the open workflow's state and opening a new temporary workflow of that name
 * (useWorkflowService.afterLoadNewGraph; checked in Chromium on 1.32.9, 1.35.9 and 1.58.1). A frontend without the
 * workflow store can only load it into the canvas. */
async function openInNewTab(workflow: Workflow, name: string): Promise<WorkflowOpenPath> {
  const a = app as unknown as AppGraphs;
  if (typeof a.loadGraphData !== "function") return "unavailable";
  let store: { activeWorkflow?: unknown } | undefined;
  try {
    store = extensionManager()?.workflow as { activeWorkflow?: unknown } | undefined;
  } catch {
    store = undefined;
  }
  if (store && "activeWorkflow" in store) {
    const before = store.activeWorkflow;
    await a.loadGraphData(workflow, true, true, name);
    canvas()?.setDirty?.(true, true);
    return store.activeWorkflow !== before ? "tab" : "canvas";
  }
  await a.loadGraphData(workflow);
  canvas()?.setDirty?.(true, true);
  return "canvas";
}

function newWorkflowId(): string {
  const c = globalThis.crypto as Crypto | undefined;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  const hex = (n: number) => Array.from({ length: n }, () => Math.floor(Math.random() * 16).toString(16)).join("");
  return `${hex(8)}-${hex(4)}-4${hex(3)}-a${hex(3)}-${hex(12)}`;
}

export const comfyWorkflowHost: WorkflowHost = {
  current: canvasWorkflow,
  currentName: () => currentWorkflow(activeWorkflowSource())?.name ?? null,
  templateOf: nodeTemplate,
  open: openInNewTab,
  newId: newWorkflowId,
};

export function showToast(toast: PanelToast): ToastPath {
  return showPanelToast(extensionManager(), toast);
}

export function registerSidebarTab(tab: SidebarTabExtension): SidebarPath {
  return registerPanelTab(extensionManager(), tab);
}

export function openSidebarTab(id: string, isOpen: () => boolean): OpenPath {
  return openPanelTab(extensionManager(), id, isOpen);
}

export function comfyEnv(client: TelemetryClient, settings: () => PanelSettings): PanelEnv {
  return {
    client,
    settings,
    now: () => Date.now(),
    apiURL: (path) => {
      try {
        return api.apiURL(path);
      } catch {
        return `/api${path}`;
      }
    },
    currentWorkflowId: () => workflowIdOf(activeWorkflowSource()),
    hasNode: (nodeId) => findNode(nodeId) !== null,
    selectNode,
    workflowHost: () => comfyWorkflowHost,
  };
}
