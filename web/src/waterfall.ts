/**
 * Layout of the node waterfall in the run detail: one row per node, a bar from the node's start to its end, in
 * percent of the run's span, so the view only sets `left` and `width`.
 *
 * Order: cached nodes first (they were done before anything ran, drawn as a marker at 0), then the nodes that ran,
 * by start time, then the nodes that never ran (no bar).
 */

import { compareNodeIds } from "./compare";
import type { NodeRun, NodeStatus } from "./types";

/** The narrowest bar drawn, in percent, so a 1 ms node is still visible. */
export const MIN_BAR_PCT = 0.6;

export interface WaterfallRow {
  node_id: string;
  class_type: string;
  status: NodeStatus;
  /** Milliseconds from the run's start; null when the node has no start (cached, not run). */
  offsetMs: number | null;
  durationMs: number | null;
  leftPct: number;
  widthPct: number;
  hasBar: boolean;
}

export interface Waterfall {
  spanMs: number;
  rows: WaterfallRow[];
  ticks: number[];
}

const STATUS_RANK: Record<NodeStatus, number> = { cached: 0, executed: 1, failed: 1, interrupted: 1, not_run: 2 };

export function layoutWaterfall(
  nodes: readonly NodeRun[],
  runStartMs: number | null | undefined,
  runDurationMs: number | null | undefined,
): Waterfall {
  const starts = nodes.map((n) => n.started_at_ms).filter((t): t is number => typeof t === "number");
  const origin = typeof runStartMs === "number" ? runStartMs : starts.length > 0 ? Math.min(...starts) : 0;
  let spanMs = typeof runDurationMs === "number" && runDurationMs > 0 ? runDurationMs : 0;
  for (const n of nodes) {
    if (typeof n.started_at_ms === "number") {
      spanMs = Math.max(spanMs, n.started_at_ms - origin + (n.duration_ms ?? 0));
    }
  }
  spanMs = Math.max(spanMs, 1);

  const rows = nodes.map((n): WaterfallRow => {
    const offsetMs = typeof n.started_at_ms === "number" ? Math.max(0, n.started_at_ms - origin) : null;
    const durationMs = typeof n.duration_ms === "number" ? Math.max(0, n.duration_ms) : null;
    if (n.status === "cached") {
      return { ...base(n), offsetMs, durationMs, leftPct: 0, widthPct: 0, hasBar: false };
    }
    if (offsetMs === null) {
      return { ...base(n), offsetMs, durationMs, leftPct: 0, widthPct: 0, hasBar: false };
    }
    const leftPct = clampPct((offsetMs / spanMs) * 100);
    const rawWidth = ((durationMs ?? 0) / spanMs) * 100;
    const widthPct = Math.min(100 - leftPct, Math.max(MIN_BAR_PCT, rawWidth));
    return { ...base(n), offsetMs, durationMs, leftPct, widthPct: Math.max(0, widthPct), hasBar: true };
  });

  rows.sort((a, b) => {
    const ra = STATUS_RANK[a.status] ?? 1;
    const rb = STATUS_RANK[b.status] ?? 1;
    if (ra !== rb) return ra - rb;
    if (a.offsetMs !== null && b.offsetMs !== null && a.offsetMs !== b.offsetMs) return a.offsetMs - b.offsetMs;
    return compareNodeIds(a.node_id, b.node_id);
  });
  return { spanMs, rows, ticks: niceTicks(spanMs) };
}

function base(n: NodeRun): Pick<WaterfallRow, "node_id" | "class_type" | "status"> {
  return { node_id: n.node_id, class_type: n.class_type, status: n.status };
}

function clampPct(pct: number): number {
  return Math.min(100, Math.max(0, pct));
}

/** About four round tick positions (ms) from 0 to `spanMs`, e.g. 0, 500, 1000, 1500 for 1.8 s. */
export function niceTicks(spanMs: number, target = 3): number[] {
  if (!(spanMs > 0)) return [0];
  const raw = spanMs / target;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) ?? 10 * magnitude;
  const ticks: number[] = [];
  for (let t = 0; t <= spanMs + 1e-9; t += step) ticks.push(Math.round(t * 1000) / 1000);
  return ticks;
}

/** Which share of the run each status took (for the legend): total ms of nodes that ran, counts of the others. */
export function waterfallSummary(rows: readonly WaterfallRow[]): Record<NodeStatus, number> {
  const counts: Record<NodeStatus, number> = { executed: 0, cached: 0, failed: 0, interrupted: 0, not_run: 0 };
  for (const r of rows) counts[r.status] = (counts[r.status] ?? 0) + 1;
  return counts;
}
