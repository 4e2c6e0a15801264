/**
 * Paths of the pack's REST routes and of ComfyUI's `/view`, with every piece of data encoded: run ids, preset ids
 * and file names go into paths and query strings only through `encodeURIComponent` / `URLSearchParams`.
 */

import type { RunOutput } from "./types";

export const ROUTES = {
  runs: "/telemetry/runs",
  stats: "/telemetry/stats",
  timeline: "/telemetry/stats/timeline",
  trends: "/telemetry/trends",
  presets: "/telemetry/presets",
  recommendations: "/telemetry/recommendations",
  queueEta: "/telemetry/queue/eta",
  health: "/telemetry/health",
  workflows: "/telemetry/workflows",
  instances: "/telemetry/instances",
} as const;

export function runPath(runId: string): string {
  return `${ROUTES.runs}/${encodeURIComponent(runId)}`;
}

export function runWorkflowPath(runId: string): string {
  return `${runPath(runId)}/workflow`;
}

export function presetPath(id: string | number): string {
  return `${ROUTES.presets}/${encodeURIComponent(String(id))}`;
}

export function dismissPath(id: string | number): string {
  return `${ROUTES.recommendations}/${encodeURIComponent(String(id))}/dismiss`;
}

export function withQuery(path: string, params: URLSearchParams | Record<string, string>): string {
  const query = (params instanceof URLSearchParams ? params : new URLSearchParams(params)).toString();
  return query ? `${path}?${query}` : path;
}

/** Merges several query parameter sets (later ones win). */
export function mergeParams(...sets: URLSearchParams[]): URLSearchParams {
  const out = new URLSearchParams();
  for (const set of sets) for (const [k, v] of set) out.set(k, v);
  return out;
}

const IMAGE_EXTENSIONS = /\.(png|jpe?g|webp|gif|bmp)$/i;

/** ComfyUI's `/view` route for an output file (relative to the API base), or null when the output has no file. */
export function viewPath(output: RunOutput): string | null {
  if (!output.filename) return null;
  const params = new URLSearchParams({ filename: output.filename, type: output.type || "output" });
  if (output.subfolder) params.set("subfolder", output.subfolder);
  return `/view?${params.toString()}`;
}

/** Whether the panel can show the output as a thumbnail. */
export function isImageOutput(output: RunOutput): boolean {
  return output.kind === "images" && !!output.filename && IMAGE_EXTENSIONS.test(output.filename);
}
