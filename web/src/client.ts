/**
 * The REST client of the panel: `api.fetchApi` (which adds ComfyUI's `/api` prefix and user header) behind typed
 * methods. Nothing throws: every call answers a `Result`, and `missing` marks a 404 without a JSON error body, which
 * is what aiohttp answers for a route the backend does not have (yet): the view hides that section.
 */

import type { Filters } from "./filters";
import { filtersToParams, timelineParams } from "./filters";
import { tableParams, type TableState } from "./paging";
import type {
  Bucket,
  Health,
  Preset,
  PresetFilters,
  QueueEta,
  Recommendation,
  RecommendationState,
  RunDetail,
  RunsPage,
  Stats,
  Timeline,
  Trend,
  TrendMetric,
} from "./types";
import { dismissPath, mergeParams, presetPath, ROUTES, runPath, withQuery } from "./urls";

export type FetchApi = (route: string, init?: RequestInit) => Promise<Response>;

export type Result<T> =
  | { ok: true; data: T }
  | { ok: false; status: number; error: string; missing: boolean };

export class TelemetryClient {
  constructor(
    private readonly fetchApi: FetchApi,
    private readonly now: () => number = Date.now,
  ) {}

  async request<T>(path: string, init?: RequestInit): Promise<Result<T>> {
    let response: Response;
    try {
      response = await this.fetchApi(path, init);
    } catch (err) {
      return { ok: false, status: 0, error: err instanceof Error ? err.message : String(err), missing: false };
    }
    let body: unknown = null;
    let parsed = false;
    try {
      const text = await response.text();
      if (text) {
        body = JSON.parse(text);
        parsed = true;
      }
    } catch {
      parsed = false;
    }
    if (response.ok) {
      if (!parsed && response.status !== 204) {
        return { ok: false, status: response.status, error: "The server answered with something other than JSON", missing: false };
      }
      return { ok: true, data: body as T };
    }
    const error =
      parsed && body && typeof body === "object" && typeof (body as { error?: unknown }).error === "string"
        ? (body as { error: string }).error
        : `HTTP ${response.status}`;
    const hasJsonError = parsed && body !== null && typeof body === "object" && "error" in (body as object);
    return { ok: false, status: response.status, error, missing: response.status === 404 && !hasJsonError };
  }

  private json(method: string, body?: unknown): RequestInit {
    return body === undefined
      ? { method }
      : { method, headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  }

  runs(filters: Filters, table: TableState): Promise<Result<RunsPage>> {
    return this.request(withQuery(ROUTES.runs, mergeParams(filtersToParams(filters, this.now()), tableParams(table))));
  }

  run(runId: string): Promise<Result<RunDetail>> {
    return this.request(runPath(runId));
  }

  stats(filters: Filters): Promise<Result<Stats>> {
    return this.request(withQuery(ROUTES.stats, filtersToParams(filters, this.now())));
  }

  timeline(filters: Filters, bucket: Bucket): Promise<Result<Timeline>> {
    return this.request(withQuery(ROUTES.timeline, timelineParams(filters, bucket, this.now())));
  }

  trends(workflow: string, metric: TrendMetric, filters?: Filters): Promise<Result<Trend>> {
    const params = filters ? filtersToParams(filters, this.now()) : new URLSearchParams();
    params.delete("status");
    if (workflow) params.set("workflow", workflow);
    params.set("metric", metric);
    return this.request(withQuery(ROUTES.trends, params));
  }

  presets(): Promise<Result<{ presets: Preset[] }>> {
    return this.request(ROUTES.presets);
  }

  savePreset(name: string, filters: PresetFilters): Promise<Result<Preset>> {
    return this.request(ROUTES.presets, this.json("POST", { name, filters }));
  }

  deletePreset(id: string | number): Promise<Result<unknown>> {
    return this.request(presetPath(id), { method: "DELETE" });
  }

  recommendations(state: RecommendationState): Promise<Result<{ recommendations: Recommendation[] }>> {
    return this.request(withQuery(ROUTES.recommendations, { state }));
  }

  dismiss(id: string | number): Promise<Result<Recommendation>> {
    return this.request(dismissPath(id), this.json("POST", {}));
  }

  queueEta(): Promise<Result<QueueEta>> {
    return this.request(ROUTES.queueEta);
  }

  health(): Promise<Result<Health>> {
    return this.request(ROUTES.health);
  }

  async reportWorkflow(id: string, name: string): Promise<boolean> {
    const result = await this.request(ROUTES.workflows, this.json("POST", { id, name }));
    return result.ok;
  }
}
