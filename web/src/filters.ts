/**
 * The panel's filter state and its mapping to and from the REST query string and saved presets.
 *
 * One `Filters` value drives the overview cards, the charts and the runs table alike, so what the cards count is
 * what the table lists. Time ranges are relative ("last 24 h") and resolved to `since_ms` at request time;
 * presets keep them relative, so a preset saved today means the same thing tomorrow.
 */

import { RUN_STATUSES, type PresetFilters, type RunStatus, type RunSummary } from "./types";

export type RangeKey = "1h" | "24h" | "7d" | "30d" | "90d" | "all" | "custom";

export const RANGES: readonly { key: Exclude<RangeKey, "custom">; label: string; ms: number | null }[] = [
  { key: "1h", label: "Last hour", ms: 3_600_000 },
  { key: "24h", label: "Last 24 hours", ms: 86_400_000 },
  { key: "7d", label: "Last 7 days", ms: 7 * 86_400_000 },
  { key: "30d", label: "Last 30 days", ms: 30 * 86_400_000 },
  { key: "90d", label: "Last 90 days", ms: 90 * 86_400_000 },
  { key: "all", label: "All time", ms: null },
];

export interface Filters {
  range: RangeKey;
  /** Only for `range: "custom"` (a preset written by a script with absolute bounds). */
  sinceMs?: number | null;
  untilMs?: number | null;
  statuses: RunStatus[];
  workflow: string;
  label: string;
  q: string;
  instance: string;
}

export function defaultFilters(range: RangeKey = "7d"): Filters {
  return { range, statuses: [], workflow: "", label: "", q: "", instance: "" };
}

export function isRangeKey(value: unknown): value is RangeKey {
  return value === "custom" || RANGES.some((r) => r.key === value);
}

/** The absolute window a filter covers at `nowMs`; `since` is rounded down to the minute so that repeated
 * requests within a minute are identical. */
export function resolveRange(filters: Filters, nowMs: number): { sinceMs: number | null; untilMs: number | null } {
  if (filters.range === "custom") {
    return { sinceMs: filters.sinceMs ?? null, untilMs: filters.untilMs ?? null };
  }
  const range = RANGES.find((r) => r.key === filters.range);
  if (!range || range.ms === null) return { sinceMs: null, untilMs: null };
  const since = nowMs - range.ms;
  return { sinceMs: since - (since % 60_000), untilMs: null };
}

/** The backend refuses timelines of more than this many buckets (telemetry/analysis/timeline.py). */
export const MAX_TIMELINE_BUCKETS = 2400; // the server's MAX_BUCKETS (telemetry/analysis/timeline.py)
const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;

/** How long the filters' window is, or null for all time. */
export function rangeSpanMs(filters: Filters, nowMs: number): number | null {
  const { sinceMs, untilMs } = resolveRange(filters, nowMs);
  if (sinceMs === null) return null;
  return Math.max(0, (untilMs ?? nowMs) - sinceMs);
}

/** Bucket sizes for the charts: durations and GPU per hour up to a week, else per day; activity (runs per
 * bucket) per hour up to 30 days, else per day. Never more buckets than the backend allows. */
export function chooseBuckets(filters: Filters, nowMs: number): { duration: "hour" | "day"; activity: "hour" | "day" } {
  const span = rangeSpanMs(filters, nowMs);
  // (an hour of slack: since_ms is rounded down to the minute)
  const fits = (limit: number) => span !== null && span <= limit + HOUR_MS && span / HOUR_MS < MAX_TIMELINE_BUCKETS;
  return { duration: fits(7 * DAY_MS) ? "hour" : "day", activity: fits(30 * DAY_MS) ? "hour" : "day" };
}

/** Timeline parameters: the filters, the bucket, and for an all-time window the oldest start the backend
 * accepts (it would otherwise show only its default span). */
export function timelineParams(filters: Filters, bucket: "hour" | "day", nowMs: number): URLSearchParams {
  const params = filtersToParams(filters, nowMs);
  params.set("bucket", bucket);
  if (!params.has("since_ms")) {
    const size = bucket === "hour" ? HOUR_MS : DAY_MS;
    const since = nowMs - (MAX_TIMELINE_BUCKETS - 2) * size;
    params.set("since_ms", String(since - (since % size)));
  }
  return params;
}

/** The query parameters of `/telemetry/runs`, `/stats` and `/stats/timeline` for these filters. Empty fields
 * are left out, so the backend sees only what the user chose. */
export function filtersToParams(filters: Filters, nowMs: number): URLSearchParams {
  const params = new URLSearchParams();
  if (filters.statuses.length > 0) params.set("status", filters.statuses.join(","));
  if (filters.workflow) params.set("workflow", filters.workflow);
  const { sinceMs, untilMs } = resolveRange(filters, nowMs);
  if (sinceMs !== null) params.set("since_ms", String(sinceMs));
  if (untilMs !== null) params.set("until_ms", String(untilMs));
  if (filters.label.trim()) params.set("label", filters.label.trim());
  if (filters.q.trim()) params.set("q", filters.q.trim());
  if (filters.instance.trim()) params.set("instance", filters.instance.trim());
  return params;
}

/** Reads filters back from a query string (the inverse of `filtersToParams` for absolute bounds). */
export function paramsToFilters(params: URLSearchParams): Filters {
  const filters = defaultFilters("all");
  filters.statuses = parseStatuses(params.get("status"));
  filters.workflow = params.get("workflow") ?? "";
  filters.label = params.get("label") ?? "";
  filters.q = params.get("q") ?? "";
  filters.instance = params.get("instance") ?? "";
  const since = toNumber(params.get("since_ms"));
  const until = toNumber(params.get("until_ms"));
  if (since !== null || until !== null) {
    filters.range = "custom";
    filters.sinceMs = since;
    filters.untilMs = until;
  }
  return filters;
}

function parseStatuses(text: string | null | undefined): RunStatus[] {
  if (!text) return [];
  const wanted = new Set(text.split(",").map((s) => s.trim()));
  return RUN_STATUSES.filter((s) => wanted.has(s));
}

function toNumber(value: unknown): number | null {
  if (value === null || value === undefined || value === "") return null;
  const n = Number(value);
  return Number.isFinite(n) ? n : null;
}

/** What a preset stores: the query fields the backend accepts (status, workflow, label, q, instance, and absolute
 * since_ms/until_ms). A relative range ("last 7 days") is not part of a preset: presets say *which* runs, and the
 * time range picker says *when*, so applying a preset keeps the range on screen. */
export function filtersToPreset(filters: Filters): PresetFilters {
  const out: PresetFilters = {};
  if (filters.range === "custom") {
    if (filters.sinceMs != null) out.since_ms = filters.sinceMs;
    if (filters.untilMs != null) out.until_ms = filters.untilMs;
  }
  if (filters.statuses.length > 0) out.status = filters.statuses.join(",");
  if (filters.workflow) out.workflow = filters.workflow;
  if (filters.label.trim()) out.label = filters.label.trim();
  if (filters.q.trim()) out.q = filters.q.trim();
  if (filters.instance.trim()) out.instance = filters.instance.trim();
  return out;
}

/** Filters from a saved preset, keeping `currentRange` unless the preset has absolute bounds (or names a range,
 * as presets written by other clients may). `status` may be a list or a comma-separated string; unknown keys
 * are ignored. */
export function presetToFilters(preset: PresetFilters, currentRange: RangeKey = "all"): Filters {
  const filters = defaultFilters(currentRange === "custom" ? "all" : currentRange);
  const since = toNumber(preset.since_ms);
  const until = toNumber(preset.until_ms);
  if (since !== null || until !== null) {
    filters.range = "custom";
    filters.sinceMs = since;
    filters.untilMs = until;
  } else if (isRangeKey(preset.range) && preset.range !== "custom") {
    filters.range = preset.range;
  }
  const status = Array.isArray(preset.status) ? preset.status.join(",") : preset.status;
  filters.statuses = parseStatuses(typeof status === "string" ? status : null);
  filters.workflow = typeof preset.workflow === "string" ? preset.workflow : "";
  filters.label = typeof preset.label === "string" ? preset.label : "";
  filters.q = typeof preset.q === "string" ? preset.q : "";
  filters.instance = typeof preset.instance === "string" ? preset.instance : "";
  return filters;
}

export function filtersEqual(a: Filters, b: Filters): boolean {
  return a.range === b.range && JSON.stringify(filtersToPreset(a)) === JSON.stringify(filtersToPreset(b));
}

/** Whether a run pushed over the websocket belongs in the current table (the same rules the server applies,
 * as far as the panel can tell from a summary: label and text search match case-insensitively anywhere). */
export function runMatchesFilters(run: RunSummary, filters: Filters, nowMs: number): boolean {
  if (filters.statuses.length > 0 && !filters.statuses.includes(run.status)) return false;
  if (
    filters.workflow &&
    ![run.workflow_id, run.workflow_name, run.fingerprint].some((v) => v != null && v === filters.workflow)
  ) {
    return false;
  }
  if (filters.instance && (run.instance ?? "") !== filters.instance) return false;
  const { sinceMs, untilMs } = resolveRange(filters, nowMs);
  const t = run.started_at_ms ?? run.queued_at_ms ?? null;
  if (sinceMs !== null && (t === null || t < sinceMs)) return false;
  if (untilMs !== null && (t === null || t > untilMs)) return false;
  const labels = run.labels ?? {};
  const labelText = [labels.story_title, labels.scene, ...(labels.tags ?? [])].filter(Boolean).join(" ").toLowerCase();
  if (filters.label.trim() && !labelText.includes(filters.label.trim().toLowerCase())) return false;
  if (filters.q.trim()) {
    const q = filters.q.trim().toLowerCase();
    const hay = [run.run_id, run.workflow_name, run.workflow_id, labelText, run.error?.message, run.error?.exception_type]
      .filter(Boolean)
      .join(" ")
      .toLowerCase();
    if (!hay.includes(q)) return false;
  }
  return true;
}

/** A one-line description of active filters, for the table caption and the preset name suggestion.
 * `workflowLabel` turns the workflow filter (a key) into its name. */
export function describeFilters(filters: Filters, workflowLabel: (key: string) => string = (k) => k): string {
  const parts: string[] = [];
  const range = RANGES.find((r) => r.key === filters.range);
  parts.push(range ? range.label : "Custom range");
  if (filters.statuses.length > 0) parts.push(filters.statuses.join("/"));
  if (filters.workflow) parts.push(workflowLabel(filters.workflow));
  if (filters.label.trim()) parts.push(`label "${filters.label.trim()}"`);
  if (filters.q.trim()) parts.push(`"${filters.q.trim()}"`);
  if (filters.instance.trim()) parts.push(`on ${filters.instance.trim()}`);
  return parts.join(" · ");
}
