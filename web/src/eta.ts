/**
 * The queue ETA lines: when each queued prompt is predicted to start and finish, with the prediction interval.
 */

import { formatDuration, formatRelative } from "./format";
import type { EtaItem, QueueEta } from "./types";

export interface EtaLine {
  prompt_id: string;
  position: number;
  workflow: string;
  duration: string;
  starts: string;
  finishes: string;
  interval: string | null;
  /** The ComfyUI it waits on, named only when the answer holds the queues of several. */
  instance: string | null;
}

/** The lines to show, or an empty list when the backend has no predictions (the section is hidden then). */
export function etaLines(eta: QueueEta | null, nowMs: number): EtaLine[] {
  if (!eta || !eta.has_predictions) return [];
  const instances = [...new Set(eta.items.map((i) => i.instance ?? ""))];
  const named = instances.length > 1;
  return [...eta.items]
    .sort((a, b) => instances.indexOf(a.instance ?? "") - instances.indexOf(b.instance ?? "") || a.position - b.position)
    .map((item: EtaItem) => ({
      instance: named ? item.instance || null : null,
      prompt_id: item.prompt_id,
      position: item.position,
      workflow: item.workflow_name || "Unnamed workflow",
      duration: formatDuration(item.predicted_duration_ms),
      starts: isRunning(item) ? "running" : formatRelative(item.predicted_start_ms, nowMs),
      finishes: formatRelative(item.predicted_finish_ms, nowMs),
      interval:
        item.interval_ms && item.interval_ms.length === 2
          ? `${formatDuration(item.interval_ms[0])}–${formatDuration(item.interval_ms[1])}`
          : null,
    }));
}

/** Backends that send `running` say so; older answers only had the position (0 = executing). */
function isRunning(item: EtaItem): boolean {
  return typeof item.running === "boolean" ? item.running : item.position <= 0;
}

/** When the whole queue is predicted to be done. */
export function queueFinishMs(eta: QueueEta | null): number | null {
  if (!eta || !eta.has_predictions) return null;
  const finishes = eta.items.map((i) => i.predicted_finish_ms).filter((t): t is number => typeof t === "number");
  return finishes.length > 0 ? Math.max(...finishes) : null;
}
