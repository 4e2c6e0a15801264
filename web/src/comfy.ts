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
import type { PanelSettings } from "./settings";
import type { PanelEnv, SelectNodeResult } from "./views/context";
import { workflowIdOf, type WorkflowSource } from "./workflows";

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
  };
}
