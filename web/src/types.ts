/**
 * The JSON shapes the panel reads from the pack's REST routes and websocket events.
 *
 * They mirror `telemetry/model.py` (`Run.to_dict()`) and the `/telemetry/...` routes; the panel invents no shape
 * of its own. Every field the backend may leave out or null is optional here, and the views treat it so.
 */

/** `RunStatus` in `telemetry/model.py`. `partial_success`: some nodes failed while independent branches finished
 * (ComfyUI's `node_failure_policy: continue_independent`); `cancelled`: deleted from the queue before it started
 * (it has a queue time but no start, finish or duration). */
export type RunStatus = "success" | "partial_success" | "failed" | "interrupted" | "cancelled" | "running";
/** In the order the panel lists them (filter buttons, status bar). */
export const RUN_STATUSES: readonly RunStatus[] = [
  "success",
  "partial_success",
  "failed",
  "interrupted",
  "cancelled",
  "running",
];

export type NodeStatus = "executed" | "cached" | "failed" | "interrupted" | "not_run";

export interface RunError {
  node_id: string | null;
  node_type: string | null;
  exception_type: string;
  message: string;
  kind: "oom" | "error";
  traceback?: string[];
}

export interface RunLabels {
  story_title?: string | null;
  scene?: string | null;
  tags?: string[];
}

export interface OutputCounts {
  images?: number;
  videos?: number;
  audio?: number;
  other?: number;
}

/** `Run.to_dict(detail=False)`: one row of the runs table and the `telemetry.run` websocket payload. */
export interface RunSummary {
  run_id: string;
  status: RunStatus;
  queued_at_ms?: number | null;
  started_at_ms?: number | null;
  finished_at_ms?: number | null;
  duration_ms?: number | null;
  queue_wait_ms?: number | null;
  workflow_id?: string | null;
  workflow_name?: string | null;
  /** Where the name came from: "ui" (reported by this panel), "label", or "derived" from the graph. */
  workflow_name_source?: string | null;
  fingerprint?: string | null;
  node_count?: number;
  executed_node_count?: number;
  cached_node_count?: number;
  output_counts?: OutputCounts;
  frame_count?: number;
  error?: RunError | null;
  interrupted_reason?: string | null;
  gpu_name?: string | null;
  gpu_total_bytes?: number | null;
  gpu_peak_bytes?: number | null;
  gpu_reserved_peak_bytes?: number | null;
  gpu_used_peak_bytes?: number | null;
  ram_peak_bytes?: number | null;
  /** GPU energy of the run in joules (ComfyUI's GPU), and where it came from; null without a GPU reading. */
  energy_j?: number | null;
  energy_source?: "nvml_counter" | "power_samples" | null;
  energy_per_frame_j?: number | null;
  /** Every GPU sampled during the run (empty without NVML). */
  gpus?: RunGpu[];
  labels?: RunLabels | null;
  instance?: string | null;
  source?: string | null;
  parameters?: Record<string, unknown> | null;
}

export interface NodeRun {
  node_id: string;
  class_type: string;
  status: NodeStatus;
  started_at_ms?: number | null;
  duration_ms?: number | null;
  gpu_peak_bytes?: number | null;
  display_node_id?: string | null;
  parent_node_id?: string | null;
  energy_j?: number | null;
}

/** One GPU of a run: `index` is NVML's; `external_bytes` is what other processes held on it. */
export interface RunGpu {
  index: number;
  name: string | null;
  uuid: string | null;
  peak_used_bytes: number | null;
  external_bytes: number | null;
  comfyui_device: boolean;
  energy_j?: number | null;
}

export interface RunOutput {
  node_id: string;
  kind: string;
  filename?: string | null;
  subfolder?: string | null;
  type?: string | null;
  frame_count?: number;
  format?: string | null;
}

export interface GpuSample {
  t_ms: number;
  used_bytes?: number | null;
  util_percent?: number | null;
  temperature_c?: number | null;
  power_w?: number | null;
  ram_rss_bytes?: number | null;
  /** NVML index of the GPU read; null on RAM-only samples. */
  gpu_index?: number | null;
}

/** `Run.to_dict()`: `GET /telemetry/runs/{run_id}`. */
export interface RunDetail extends RunSummary {
  nodes?: NodeRun[];
  outputs?: RunOutput[];
  gpu_samples?: GpuSample[];
  /** energy_j priced at the configured energy_price_per_kwh (null without one). */
  cost?: number | null;
  currency?: string | null;
}

export interface RunsPage {
  runs: RunSummary[];
  /** Counted up to the server's cap (10,000) unless `count=exact`: see `total_capped`. */
  total: number;
  total_capped?: boolean;
  limit: number;
  offset: number;
  /** Pass back as `cursor` for the next page; null on the last page (absent from older servers). */
  next_cursor?: string | null;
}

/** One workflow in `/telemetry/stats`: `workflow` is its key (the UI workflow id, else the graph fingerprint),
 * which the `workflow=` filter accepts; `workflow_name` is what to show. */
export interface WorkflowStats {
  workflow: string | null;
  workflow_name?: string | null;
  runs: number;
  success_rate: number | null;
  avg_duration_ms: number | null;
  energy_wh?: number | null;
  cost?: number | null;
}

export interface Stats {
  total_runs: number;
  success_rate: number | null;
  total_frames: number;
  avg_duration_ms: number | null;
  p50_duration_ms: number | null;
  p95_duration_ms: number | null;
  max_gpu_peak_bytes: number | null;
  total_energy_wh?: number | null;
  total_cost?: number | null;
  energy_price_per_kwh?: number | null;
  currency?: string | null;
  by_status: Partial<Record<RunStatus, number>>;
  by_workflow: WorkflowStats[];
}

export interface TimelinePoint {
  t_ms: number;
  runs: number;
  success: number;
  failed: number;
  interrupted: number;
  success_rate: number | null;
  avg_duration_ms: number | null;
  p95_duration_ms: number | null;
  max_gpu_peak_bytes: number | null;
  frames: number;
}

export type Bucket = "hour" | "day";

export interface Timeline {
  bucket: Bucket;
  points: TimelinePoint[];
}

export type TrendMetric = "duration_ms" | "gpu_peak_bytes" | "success_rate" | "fps";

export interface Trend {
  workflow: string | null;
  metric: TrendMetric;
  points: { run_id: string; t_ms: number; value: number | null }[];
  rolling: { t_ms: number; p50: number | null; p95: number | null }[];
  slope_per_day: number | null;
  mann_kendall: { tau: number | null; p_value: number | null; trend: "increasing" | "decreasing" | "none" } | null;
  change_points: { run_id: string; t_ms: number; before: number | null; after: number | null }[];
}

/** The filter fields the runs, stats and timeline routes accept (as saved in a preset). */
export interface PresetFilters {
  status?: string | string[];
  workflow?: string;
  since_ms?: string | number;
  until_ms?: string | number;
  label?: string;
  q?: string;
  instance?: string;
  range?: string;
  sort?: string;
}

export interface Preset {
  id: string | number;
  name: string;
  filters: PresetFilters;
  created_at_ms?: number;
}

export type Severity = "info" | "warning" | "critical";
export type RecommendationState = "open" | "dismissed" | "resolved";

export interface Recommendation {
  id: string | number;
  kind: string;
  severity: Severity;
  workflow?: string | null;
  workflow_name?: string | null;
  evidence_run_ids?: string[];
  message: string;
  action?: string | null;
  created_at_ms?: number;
  updated_at_ms?: number;
  state: RecommendationState;
  /** Graph changes it offers ("Apply to a copy"); absent from servers before them. */
  actions?: RecommendationAction[];
}

/** One change of a run's graph: set an input (`input`, `from`, `to`) or replace the node's class. */
export interface GraphChange {
  node_id: string;
  /** The node's class where the change applies (the old class for a replacement). */
  class_type: string;
  input?: string;
  from?: unknown;
  to?: unknown;
  replace_class_type?: string;
}

export interface RecommendationAction {
  kind: string;
  title: string;
  /** The run whose graph the changes were made for. */
  run_id: string;
  changes: GraphChange[];
  /** split_scenes: one workflow per scene. */
  copies?: { title: string; scene: string; changes: GraphChange[] }[];
}

/** GET /telemetry/runs/{id}/workflow */
export interface RunWorkflow {
  run_id: string;
  prompt: Record<string, unknown> | null;
  workflow: Record<string, unknown> | null;
}

export interface EtaItem {
  prompt_id: string;
  position: number;
  /** The item executing now (its start is when it started). */
  running?: boolean;
  workflow_name?: string | null;
  predicted_duration_ms?: number | null;
  predicted_start_ms?: number | null;
  predicted_finish_ms?: number | null;
  interval_ms?: [number, number] | null;
  /** The ComfyUI whose queue holds it (a watcher of several ComfyUIs). */
  instance?: string;
}

export interface QueueEta {
  items: EtaItem[];
  has_predictions: boolean;
  /** A watcher: each ComfyUI's queue, predicted on its own. */
  queues?: { instance: string; items: EtaItem[]; has_predictions: boolean }[];
}

export interface Health {
  /** "plugin", "watcher", or "serve" (read-only). */
  source?: string;
  hooks?: Record<string, unknown>;
  database?: { kind?: string; state?: string; [key: string]: unknown };
  queue_depth?: number;
  buffered?: number;
  dropped?: number;
}

/** One recording instance of a fleet (`GET /telemetry/instances`): its last heartbeat. */
export interface InstanceInfo {
  instance: string;
  source?: string | null;
  pack_version?: string | null;
  comfyui_version?: string | null;
  frontend_version?: string | null;
  gpu_name?: string | null;
  queue_depth?: number | null;
  health?: string | null;
  last_seen_ms: number | null;
  online: boolean;
  runs: number;
  offline_after_ms?: number;
}
