/**
 * What changed between two runs: the summary figures, the parameters, and the time each node took.
 *
 * Used by the compare view. A node time counts as changed when it moved by at least `NODE_CHANGE_MIN_MS` and by at
 * least `NODE_CHANGE_RATIO` of the slower time, or when the node's status differs (ran in one, cached in the other).
 */

import { formatValue } from "./format";
import type { NodeRun, NodeStatus, RunDetail, RunSummary } from "./types";

export const NODE_CHANGE_MIN_MS = 50;
export const NODE_CHANGE_RATIO = 0.1;

/** Parameters shown first, in this order; the rest follow alphabetically. */
export const PARAMETER_ORDER = [
  "checkpoint",
  "loras",
  "width",
  "height",
  "batch",
  "frames",
  "steps",
  "cfg",
  "sampler",
  "scheduler",
  "seed",
  "denoise",
] as const;

export interface ValueRow {
  key: string;
  a: string;
  b: string;
  changed: boolean;
}

export function orderParameterKeys(keys: Iterable<string>): string[] {
  const all = new Set(keys);
  const known = PARAMETER_ORDER.filter((k) => all.has(k));
  const rest = [...all].filter((k) => !(PARAMETER_ORDER as readonly string[]).includes(k)).sort();
  return [...known, ...rest];
}

/** Every parameter of either run, side by side, in `PARAMETER_ORDER`. */
export function diffParameters(
  a: Record<string, unknown> | null | undefined,
  b: Record<string, unknown> | null | undefined,
): ValueRow[] {
  const pa = a ?? {};
  const pb = b ?? {};
  return orderParameterKeys([...Object.keys(pa), ...Object.keys(pb)]).map((key) => {
    const va = formatValue(pa[key]);
    const vb = formatValue(pb[key]);
    return { key, a: va, b: vb, changed: va !== vb };
  });
}

export interface NodeDiffRow {
  node_id: string;
  class_type: string;
  aStatus: NodeStatus | null;
  bStatus: NodeStatus | null;
  aMs: number | null;
  bMs: number | null;
  /** b - a, when both ran. */
  deltaMs: number | null;
  changed: boolean;
}

function nodeMs(node: NodeRun | undefined): number | null {
  if (!node) return null;
  if (node.status === "cached") return 0;
  return typeof node.duration_ms === "number" ? node.duration_ms : null;
}

/** Per-node times of two runs joined on node id: changed rows first, largest change first. */
export function diffNodes(a: readonly NodeRun[] | undefined, b: readonly NodeRun[] | undefined): NodeDiffRow[] {
  const byA = new Map((a ?? []).map((n) => [n.node_id, n]));
  const byB = new Map((b ?? []).map((n) => [n.node_id, n]));
  const ids = [...new Set([...byA.keys(), ...byB.keys()])];
  const rows = ids.map((id): NodeDiffRow => {
    const na = byA.get(id);
    const nb = byB.get(id);
    const aMs = nodeMs(na);
    const bMs = nodeMs(nb);
    const deltaMs = aMs !== null && bMs !== null ? bMs - aMs : null;
    const statusChanged = (na?.status ?? null) !== (nb?.status ?? null);
    const slower = Math.max(aMs ?? 0, bMs ?? 0);
    const timeChanged =
      deltaMs !== null && Math.abs(deltaMs) >= NODE_CHANGE_MIN_MS && Math.abs(deltaMs) >= slower * NODE_CHANGE_RATIO;
    return {
      node_id: id,
      class_type: na?.class_type ?? nb?.class_type ?? "?",
      aStatus: na?.status ?? null,
      bStatus: nb?.status ?? null,
      aMs,
      bMs,
      deltaMs,
      changed: statusChanged || timeChanged,
    };
  });
  return rows.sort((x, y) => {
    if (x.changed !== y.changed) return x.changed ? -1 : 1;
    const dx = Math.abs(x.deltaMs ?? 0);
    const dy = Math.abs(y.deltaMs ?? 0);
    if (dx !== dy) return dy - dx;
    return compareNodeIds(x.node_id, y.node_id);
  });
}

/** Node ids are strings of numbers ("3", "12", "5:1" in subgraphs): numeric order where possible. */
export function compareNodeIds(a: string, b: string): number {
  return a.localeCompare(b, "en", { numeric: true });
}

export interface SummaryRow {
  key: string;
  label: string;
  a: number | string | null;
  b: number | string | null;
  changed: boolean;
}

/** The headline figures of both runs (raw values; the view formats them). */
export function diffSummary(a: RunSummary | RunDetail, b: RunSummary | RunDetail): SummaryRow[] {
  const rows: [string, string, (r: RunSummary) => number | string | null | undefined][] = [
    ["status", "Status", (r) => r.status],
    ["workflow", "Workflow", (r) => r.workflow_name ?? r.workflow_id],
    ["duration_ms", "Duration", (r) => r.duration_ms],
    ["queue_wait_ms", "Queue wait", (r) => r.queue_wait_ms],
    ["gpu_peak_bytes", "GPU peak", (r) => r.gpu_peak_bytes],
    ["ram_peak_bytes", "RAM peak", (r) => r.ram_peak_bytes],
    ["frame_count", "Frames", (r) => r.frame_count],
    ["executed_node_count", "Nodes executed", (r) => r.executed_node_count],
    ["cached_node_count", "Nodes cached", (r) => r.cached_node_count],
    ["gpu_name", "GPU", (r) => r.gpu_name],
  ];
  return rows.map(([key, label, get]) => {
    const va = get(a) ?? null;
    const vb = get(b) ?? null;
    return { key, label, a: va, b: vb, changed: va !== vb };
  });
}

/** Which run is A: the older one, so deltas read "what changed since". */
export function orderForCompare<T extends RunSummary>(x: T, y: T): [T, T] {
  const tx = x.started_at_ms ?? x.queued_at_ms ?? 0;
  const ty = y.started_at_ms ?? y.queued_at_ms ?? 0;
  return tx <= ty ? [x, y] : [y, x];
}
