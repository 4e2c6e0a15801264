/** Runs and answers shaped like the backend's (`Run.to_dict()`), for the DOM tests. */

import type { Recommendation, RunDetail, RunSummary } from "../src/types";

export const T0 = Date.UTC(2025, 2, 5, 11, 0, 0);
export const XSS_NAME = "<img src=x onerror=alert(1)>";

export function summary(id: string, over: Partial<RunSummary> = {}): RunSummary {
  return {
    run_id: id,
    status: "success",
    queued_at_ms: T0 - 500,
    started_at_ms: T0,
    finished_at_ms: T0 + 2000,
    duration_ms: 2000,
    queue_wait_ms: 500,
    workflow_id: "wf-1",
    workflow_name: "Portrait",
    node_count: 3,
    executed_node_count: 3,
    cached_node_count: 0,
    output_counts: { images: 1, videos: 0, audio: 0, other: 0 },
    frame_count: 1,
    error: null,
    gpu_peak_bytes: 3 * 1024 ** 3,
    labels: { story_title: null, scene: null, tags: [] },
    source: "plugin",
    parameters: { width: 512, height: 512, steps: 20 },
    ...over,
  };
}

export function detail(id: string, over: Partial<RunDetail> = {}): RunDetail {
  return {
    ...summary(id),
    nodes: [
      { node_id: "1", class_type: "EmptyImage", status: "executed", started_at_ms: T0 + 10, duration_ms: 100 },
      { node_id: "2", class_type: "ImageBlur", status: "executed", started_at_ms: T0 + 120, duration_ms: 1500 },
      { node_id: "3", class_type: "SaveImage", status: "executed", started_at_ms: T0 + 1650, duration_ms: 300 },
    ],
    outputs: [{ node_id: "3", kind: "images", filename: "ComfyUI_00001_.png", subfolder: "", type: "output", frame_count: 1, format: "png" }],
    gpu_samples: [],
    ...over,
  };
}

export const failedDetail = detail("run-failed", {
  status: "failed",
  workflow_name: "Broken",
  error: {
    node_id: "2",
    node_type: "ImageBlur",
    exception_type: "RuntimeError",
    message: "can't allocate memory",
    kind: "error",
    traceback: ['  File "nodes.py", line 1\n', "RuntimeError: can't allocate memory\n"],
  },
  nodes: [
    { node_id: "1", class_type: "EmptyImage", status: "executed", started_at_ms: T0 + 10, duration_ms: 100 },
    { node_id: "2", class_type: "ImageBlur", status: "failed", started_at_ms: T0 + 120, duration_ms: 50 },
    { node_id: "3", class_type: "SaveImage", status: "not_run" },
  ],
});

export function recommendation(id: number, over: Partial<Recommendation> = {}): Recommendation {
  return {
    id,
    kind: "slow_node",
    severity: "warning",
    workflow: "Portrait",
    evidence_run_ids: ["run-a", "run-b"],
    message: "ImageBlur got 40% slower",
    action: "Check the blur radius",
    created_at_ms: T0,
    updated_at_ms: T0,
    state: "open",
    ...over,
  };
}

/** A prompt deleted from the queue before it started (backend status "cancelled"): queued, never started. */
export const cancelledSummary = summary("run-cancelled", {
  status: "cancelled",
  workflow_name: "Deleted from queue",
  started_at_ms: null,
  finished_at_ms: null,
  duration_ms: null,
  queue_wait_ms: 45_000,
  queued_at_ms: T0 + 30_000,
  node_count: 3,
  executed_node_count: 0,
  cached_node_count: 0,
  output_counts: {},
  frame_count: 0,
  gpu_peak_bytes: null,
});

export const cancelledDetail: RunDetail = { ...cancelledSummary, nodes: [], outputs: [], gpu_samples: [] };

/** ComfyUI's partial_success: one branch failed, the independent one saved its image. */
export const partialDetail = detail("run-partial", {
  status: "partial_success",
  workflow_name: "Two branches",
  error: {
    node_id: "2",
    node_type: "ImageBlur",
    exception_type: "RuntimeError",
    message: "blur failed",
    kind: "error",
  },
  nodes: [
    { node_id: "1", class_type: "EmptyImage", status: "executed", started_at_ms: T0 + 10, duration_ms: 100 },
    { node_id: "2", class_type: "ImageBlur", status: "failed", started_at_ms: T0 + 120, duration_ms: 50 },
    { node_id: "3", class_type: "SaveImage", status: "executed", started_at_ms: T0 + 200, duration_ms: 300 },
  ],
});
