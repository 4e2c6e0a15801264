/**
 * The "Apply to a copy" flow of a recommendation's action: pick the workflow it was made for (the one on the
 * canvas when it matches, else the UI workflow stored with the run), apply the changes to a copy of it
 * (`graph-actions.ts`) and open each copy through the host (a new workflow tab in ComfyUI). The user's graph is
 * only ever read. The host is ComfyUI's frontend in production (`comfy.ts`) and a fake in vitest.
 */

import {
  allChanges,
  applyChanges,
  asNewWorkflow,
  copiesOf,
  copyName,
  matchesWorkflow,
  type TemplateOf,
  type Workflow,
} from "./graph-actions";
import type { Recommendation, RecommendationAction } from "./types";

/** "tab": opened in a new workflow tab; "canvas": loaded into the canvas (a frontend without workflow tabs). */
export type WorkflowOpenPath = "tab" | "canvas" | "unavailable";

export interface WorkflowHost {
  /** A serialised copy of the workflow on the canvas, or null. */
  current(): Workflow | null;
  /** The name of the workflow on the canvas, or null. */
  currentName(): string | null;
  templateOf: TemplateOf;
  open(workflow: Workflow, name: string): Promise<WorkflowOpenPath>;
  newId(): string;
}

export interface ApplyOutcome {
  ok: boolean;
  message: string;
  /** Names of the copies opened. */
  opened: string[];
  /** Which workflow the copies were made from. */
  source: "canvas" | "run" | null;
}

function fail(message: string): ApplyOutcome {
  return { ok: false, message, opened: [], source: null };
}

function nodesWord(ids: string[]): string {
  return `${ids.length === 1 ? "node" : "nodes"} ${ids.join(", ")}`;
}

export async function applyToCopy(
  rec: Recommendation,
  action: RecommendationAction,
  host: WorkflowHost,
  loadStored: (runId: string) => Promise<Workflow | null>,
): Promise<ApplyOutcome> {
  const changes = allChanges(action);
  let source: ApplyOutcome["source"] = "canvas";
  let base: Workflow | null = host.current();
  let baseName = host.currentName() ?? rec.workflow_name ?? "workflow";
  if (!matchesWorkflow(base, changes)) {
    base = await loadStored(action.run_id);
    source = "run";
    baseName = rec.workflow_name ?? baseName;
    if (!matchesWorkflow(base, changes)) {
      return fail(
        base
          ? `The workflow stored with run ${action.run_id} does not have the nodes this change is for.`
          : `The workflow on the canvas is not the one of run ${action.run_id}, and the run came without its UI workflow: open that workflow and try again.`,
      );
    }
  }
  const workflow = base as Workflow;
  const copies = copiesOf(action);
  const opened: string[] = [];
  const skipped: string[] = [];
  const changedIds = new Set<string>();
  let lastPath: WorkflowOpenPath = "tab";
  for (const copy of copies) {
    const result = applyChanges(workflow, copy.changes, host.templateOf);
    skipped.push(...result.skipped.filter((s) => !skipped.includes(s)));
    if (result.changed.length === 0) return fail(`Nothing could be changed: ${result.skipped.join("; ")}`);
    result.changed.forEach((id) => changedIds.add(id));
    const name = copyName(baseName, copy.title);
    const origin = { source_workflow_id: workflow.id ?? null, recommendation_id: rec.id, action: action.kind, run_id: action.run_id };
    let path: WorkflowOpenPath;
    try {
      path = await host.open(asNewWorkflow(result.workflow, host.newId(), origin), name);
    } catch (err) {
      return fail(`Could not open the copy: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (path === "unavailable") return fail("This ComfyUI frontend cannot open a workflow from the panel.");
    opened.push(name);
    lastPath = path;
    if (path === "canvas") break; // no tabs: one copy at a time, each would replace the last
  }
  const where = opened.length === 1 ? `"${opened[0]}"` : `${opened.length} new tabs`;
  const fromRun = source === "run" ? ` (from the workflow stored with run ${action.run_id})` : "";
  const changed = `changed ${nodesWord([...changedIds])}, highlighted`;
  let message =
    lastPath === "tab"
      ? `Opened ${where}${fromRun}; ${changed}. Your workflow is unchanged.`
      : `Loaded ${where} into the canvas${fromRun} (this frontend has no workflow tabs); ${changed}. Your saved workflow is unchanged.`;
  if (opened.length < copies.length) message += ` Only the first of ${copies.length} copies was opened.`;
  if (skipped.length > 0) message += ` Not applied: ${skipped.join("; ")}.`;
  return { ok: true, message, opened, source };
}
