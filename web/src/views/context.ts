/**
 * What every view of the panel gets: the REST client, the settings, the shared filter state, navigation, and a
 * timer registry that the panel clears when the sidebar tab closes (so nothing runs while it is closed).
 */

import type { WorkflowHost } from "../apply-copy";
import type { TelemetryClient } from "../client";
import type { Filters } from "../filters";
import type { TableState } from "../paging";
import type { PanelSettings } from "../settings";
import type { Recommendation, RecommendationState, RunSummary } from "../types";

export type Route =
  | { view: "overview" }
  | { view: "runs" }
  | { view: "advice" }
  | { view: "detail"; runId: string }
  | { view: "compare"; a: string; b: string };

export type SelectNodeResult = "selected" | "missing" | "unavailable";

/** The host: ComfyUI in production, stubs in unit tests. */
export interface PanelEnv {
  client: TelemetryClient;
  settings(): PanelSettings;
  now(): number;
  /** Absolute URL of a ComfyUI API path (for output thumbnails from `/view`). */
  apiURL(path: string): string;
  /** The UI workflow id of the graph open on the canvas. */
  currentWorkflowId(): string | null;
  hasNode(nodeId: string): boolean;
  selectNode(nodeId: string): SelectNodeResult;
  /** Where "Apply to a copy" opens workflows (ComfyUI's frontend); absent on the standalone page. */
  workflowHost?: () => WorkflowHost | null;
}

/** State that outlives one opening of the tab: where the user was and what they filtered. */
export interface PanelState {
  route: Route;
  /** The tab to go back to from a detail or compare view. */
  lastTab: "overview" | "runs" | "advice";
  filters: Filters;
  table: TableState;
  selected: string[];
  adviceState: RecommendationState;
  /** Workflows to pick from (by key, with their names), from the last stats answer. */
  workflows: WorkflowChoice[];
  /** Run ids pushed while the tab was closed: flashed once when the table is next shown. */
  unseen: Set<string>;
}

export interface WorkflowChoice {
  key: string;
  name: string;
}

/** The name of a workflow key, as far as the panel knows it; an unknown id or hash is shortened. */
export function workflowName(state: PanelState, key: string): string {
  const known = state.workflows.find((w) => w.key === key)?.name;
  if (known) return known;
  return key.length > 16 ? `workflow ${key.slice(0, 8)}` : key;
}

/** Keeps the workflow choices current from a run pushed live (a new workflow, or a new name for one). */
export function noteWorkflow(state: PanelState, key: string | null | undefined, name: string | null | undefined): boolean {
  if (!key) return false;
  const label = name || key;
  const index = state.workflows.findIndex((w) => w.key === key);
  if (index >= 0) {
    if (state.workflows[index].name === label || !name) return false;
    state.workflows[index] = { key, name: label };
    return true;
  }
  state.workflows.push({ key, name: label });
  return true;
}

export interface ViewContext {
  env: PanelEnv;
  state: PanelState;
  navigate(route: Route): void;
  /** Changes the filters (and restarts paging); re-renders the current view. */
  setFilters(filters: Filters): void;
  setTimeout(fn: () => void, ms: number): void;
  /** Open recommendations changed (the tab's count badge). */
  recommendationsChanged(recs: Recommendation[] | null): void;
}

export interface View {
  readonly el: HTMLElement;
  /** Called once the element is in the document (charts measure their width). */
  attached?(): void;
  onRun?(run: RunSummary): void;
  onRecommendation?(rec: Recommendation): void;
  resize?(): void;
  destroy(): void;
}
