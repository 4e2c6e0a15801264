/**
 * How the panel names run statuses (`RunStatus` in `types.ts`, `RunStatus` in `telemetry/model.py`): the short
 * label of the filter buttons, the badge text, and the sentence the run detail shows. A status the panel does not
 * know yet (a newer backend) is shown as its own text, never dropped.
 */

import { RUN_STATUSES, type RunStatus, type RunSummary } from "./types";
import { formatDuration } from "./format";

/** Filter buttons are narrow: one word each. */
export const STATUS_SHORT_LABEL: Readonly<Record<RunStatus, string>> = {
  success: "success",
  partial_success: "partial",
  failed: "failed",
  interrupted: "interrupted",
  cancelled: "cancelled",
  running: "running",
};

/** Badges and table rows. */
export const STATUS_LABEL: Readonly<Record<RunStatus, string>> = {
  success: "success",
  partial_success: "partial success",
  failed: "failed",
  interrupted: "interrupted",
  cancelled: "cancelled",
  running: "running",
};

export function isRunStatus(value: unknown): value is RunStatus {
  return typeof value === "string" && (RUN_STATUSES as readonly string[]).includes(value);
}

/** Badge text for any status string the backend sends ("partial_success" → "partial success"). */
export function statusLabel(status: string | null | undefined): string {
  if (!status) return "unknown";
  return isRunStatus(status) ? STATUS_LABEL[status] : status.replace(/_/g, " ");
}

/** The run detail's one-line explanation of a status that needs one, or null. */
export function statusExplanation(
  run: Pick<RunSummary, "status" | "queue_wait_ms" | "interrupted_reason" | "node_count" | "executed_node_count">,
): string | null {
  switch (run.status) {
    case "cancelled": {
      const waited = run.queue_wait_ms != null ? ` after ${formatDuration(run.queue_wait_ms)} in the queue` : "";
      return `Cancelled: deleted from the queue before it started${waited}. It never ran, so it has no duration.`;
    }
    case "partial_success":
      return "Partly succeeded: at least one node failed, and the branches that did not depend on it finished.";
    case "interrupted":
      return `Interrupted${run.interrupted_reason ? `: ${run.interrupted_reason}` : ""}`;
    default:
      return null;
  }
}

/** The duration cell of the runs table: a cancelled run never started, so it says so instead of a dash. */
export function durationText(run: Pick<RunSummary, "status" | "duration_ms">): string {
  if (run.status === "cancelled" && run.duration_ms == null) return "not started";
  return formatDuration(run.duration_ms);
}
