/**
 * The ComfyUI extension: registers the settings, the websocket listeners (in `setup`, before any frame arrives),
 * the "Telemetry" sidebar tab, and the workflow-name reporting. Everything ComfyUI-specific is here and in
 * `comfy.ts`; the views only see a `PanelEnv`.
 */

import { app } from "comfyui:app";
import { api } from "comfyui:api";
import { TelemetryClient } from "./client";
import { activeWorkflowSource, comfyEnv, extensionManager, openSidebarTab, registerSidebarTab, showToast } from "./comfy";
import { shouldToast } from "./recommendations";
import { linkedRunId } from "./runlink";
import { readAdminToken, readSettings, settingDefinitions } from "./settings";
import stylesText from "./styles.css";
import type { Recommendation, RunSummary } from "./types";
import uplotCss from "uplot/dist/uPlot.min.css";
import type { SlowEvent } from "./views/live";
import { createPanelState, TelemetryPanel } from "./views/panel";
import { currentWorkflow, WorkflowNameReporter } from "./workflows";

export const EXTENSION_NAME = "RunTelemetry.Panel";
export const SIDEBAR_TAB_ID = "run-telemetry";
const STYLE_ELEMENT_ID = "run-telemetry-styles";
/** Runs pushed while the tab is closed are kept (newest last) up to this many. */
const MAX_PENDING_RUNS = 200;
/** New-style toasts stay until closed unless given a duration; the panel's always go away. */
const TOAST_MS = 8000;

function injectStyles(): void {
  if (document.getElementById(STYLE_ELEMENT_ID)) return;
  const style = document.createElement("style");
  style.id = STYLE_ELEMENT_ID;
  style.textContent = `${uplotCss}\n${stylesText}`;
  document.head.appendChild(style);
}

function settingGetter(): ((id: string) => unknown) | undefined {
  const store = extensionManager()?.setting;
  return typeof store?.get === "function" ? store.get.bind(store) : undefined;
}

const settings = () => readSettings(settingGetter());
const client = new TelemetryClient(
  (route, init) => api.fetchApi(route, init),
  Date.now,
  () => readAdminToken(settingGetter()),
);
let panel: TelemetryPanel | null = null;
/** `?telemetry_run=<id>` of the address the page was opened with (a webhook's link), read once as the script loads:
 * before ComfyUI's frontend may rewrite the address. */
const linkedRun = linkedRunId();
/** Live runs received since the page loaded (bounded): the websocket listener only appends here and to the panel. */
const recentRuns: RunSummary[] = [];
const knownRecommendations = new Set<string>();
/** The server refused a workflow name for want of the admin token: say so once, and send no more names until the
 * token setting changes (the graph changes often; each would be another refused request). */
let namesDenied = false;
const reporter = new WorkflowNameReporter(async ({ id, name }) => {
  if (namesDenied) return false;
  const result = await client.reportWorkflow(id, name);
  if (!result.ok && result.denied) {
    namesDenied = true;
    showToast({
      kind: "warning",
      title: "Run Telemetry cannot name your runs",
      description: `The server refused the workflow name “${name}”: ${result.error}`.slice(0, 400),
      durationMs: TOAST_MS,
    });
  }
  return result.ok;
});

function adminTokenChanged(): void {
  if (!namesDenied) return;
  namesDenied = false;
  reportActiveWorkflow();
}

function getPanel(): TelemetryPanel {
  if (!panel) panel = new TelemetryPanel(comfyEnv(client, settings), createPanelState(settings()));
  return panel;
}

/** A run pushed before the backend applied the reported name still carries a name derived from its nodes; the
 * backend renames it moments later, so the panel shows the reported name right away. */
function withReportedName(run: RunSummary): RunSummary {
  const source = run.workflow_name_source;
  const name = reporter.nameFor(run.workflow_id);
  if (name && name !== run.workflow_name && (source == null || source === "derived")) {
    return { ...run, workflow_name: name };
  }
  return run;
}

function onRun(pushed: RunSummary): void {
  if (!pushed || typeof pushed.run_id !== "string") return;
  const run = withReportedName(pushed);
  recentRuns.push(run);
  if (recentRuns.length > MAX_PENDING_RUNS) recentRuns.splice(0, recentRuns.length - MAX_PENDING_RUNS);
  panel?.handleRun(run);
  if ((run.status === "failed" || run.status === "partial_success") && settings().toasts) {
    const where = run.error?.node_type ? ` in ${run.error.node_type}` : "";
    const failed = run.status === "failed";
    showToast({
      kind: failed ? "error" : "warning",
      title: `${failed ? "Run failed" : "Run partly failed"}: ${run.workflow_name || "workflow"}`,
      description: `${run.error?.exception_type ?? "Error"}${where}: ${run.error?.message ?? ""}`.slice(0, 300),
      durationMs: TOAST_MS,
    });
  }
}

/** `telemetry.slow` (sent only while the panel listens): a node far past its usual time. */
function onSlow(event: SlowEvent): void {
  if (!event || typeof event.message !== "string" || !settings().toasts) return;
  showToast({ kind: "warning", title: "Run Telemetry: slow node", description: event.message.slice(0, 300), durationMs: TOAST_MS });
}

function onRecommendation(rec: Recommendation): void {
  if (!rec || rec.id === undefined) return;
  const toast = shouldToast(rec, knownRecommendations);
  knownRecommendations.add(String(rec.id));
  panel?.handleRecommendation(rec);
  if (toast && settings().toasts) {
    showToast({
      kind: rec.severity === "critical" ? "error" : "warning",
      title: `Telemetry: ${rec.severity}${workflowSuffix(rec.workflow)}`,
      description: rec.message.slice(0, 300),
      durationMs: TOAST_MS,
    });
  }
}

/** " · name" for a recommendation's workflow key when the panel knows its name (keys are ids or hashes). */
function workflowSuffix(key: string | null | undefined): string {
  const name = key ? panel?.state.workflows.find((w) => w.key === key)?.name : null;
  return name ? ` · ${name}` : "";
}

/** A link to a run opens the Telemetry tab on that run's detail. The route is set first, so the tab shows it as it
 * mounts (ComfyUI renders the tab when it becomes active; the serve page mounts it right after setup). */
function openLinkedRun(): void {
  if (!linkedRun) return;
  const p = getPanel();
  p.navigate({ view: "detail", runId: linkedRun });
  openSidebarTab(SIDEBAR_TAB_ID, () => p.mounted);
}

function reportActiveWorkflow(): void {
  void reporter.report(currentWorkflow(activeWorkflowSource()));
}

app.registerExtension({
  name: EXTENSION_NAME,
  settings: settingDefinitions(() => panel?.settingsChanged(), adminTokenChanged) as never,
  async setup() {
    injectStyles();
    const target = api as unknown as EventTarget;
    target.addEventListener("telemetry.run", (e) => onRun((e as CustomEvent<RunSummary>).detail));
    target.addEventListener("telemetry.recommendation", (e) => onRecommendation((e as CustomEvent<Recommendation>).detail));
    target.addEventListener("telemetry.progress", (e) => panel?.handleProgress((e as CustomEvent<unknown>).detail));
    target.addEventListener("telemetry.slow", (e) => onSlow((e as CustomEvent<SlowEvent>).detail));
    target.addEventListener("status", () => panel?.handleQueueChanged());
    target.addEventListener("promptQueued", () => reportActiveWorkflow());
    // Fired by the change tracker when the graph (or the active workflow) changes; reporting is deduplicated,
    // so this costs a property read unless the id or name changed.
    target.addEventListener("graphChanged", () => reportActiveWorkflow());

    // `sidebarTab.registerSidebarTab` on new frontends, the top-level (deprecated) one on old ones.
    registerSidebarTab({
      id: SIDEBAR_TAB_ID,
      icon: "pi pi-chart-bar",
      title: "Telemetry",
      tooltip: "Run telemetry",
      type: "custom",
      render: (el: HTMLElement) => getPanel().mount(el),
      destroy: () => panel?.unmount(),
    });
    openLinkedRun();
    reportActiveWorkflow();
  },
  // Called each time a workflow is loaded into the canvas (opening a file, switching tabs).
  async afterConfigureGraph() {
    // The workflow store updates its active workflow right after the graph is configured.
    queueMicrotask(() => setTimeout(reportActiveWorkflow, 0));
  },
});
