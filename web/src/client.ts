/**
 * The REST client of the panel: `api.fetchApi` (which adds ComfyUI's `/api` prefix and user header) behind typed
 * methods. Nothing throws: every call answers a `Result`, and `missing` marks a 404 without a JSON error body, which
 * is what aiohttp answers for a route the backend does not have (yet): the view hides that section.
 *
 * Requests that change something (every method but GET/HEAD: presets, dismissing advice, workflow names, the
 * configuration, pruning) carry `Authorization: Bearer <admin token>` when the admin-token setting is set; the
 * backend requires it when ComfyUI listens beyond loopback. Reads never carry it. A 401/403 answer to a change is
 * `denied`, and its message names the setting.
 */

import type { Filters } from "./filters";
import { filtersToParams, timelineParams } from "./filters";
import { tableParams, type TableState } from "./paging";
import { ADMIN_TOKEN_SETTING_PATH } from "./settings";
import type {
  Bucket,
  Health,
  InstanceInfo,
  Preset,
  PresetFilters,
  QueueEta,
  Recommendation,
  RecommendationState,
  RunDetail,
  RunsPage,
  RunWorkflow,
  Stats,
  Timeline,
  Trend,
  TrendMetric,
} from "./types";
import { dismissPath, mergeParams, presetPath, ROUTES, runPath, runWorkflowPath, withQuery } from "./urls";

export type FetchApi = (route: string, init?: RequestInit) => Promise<Response>;

export type Result<T> =
  | { ok: true; data: T }
  | {
      ok: false;
      status: number;
      error: string;
      missing: boolean;
      /** A change refused for want of the right admin token (401/403, or a token that cannot be sent). */
      denied?: boolean;
    };

/** Methods that only read; everything else is a change and carries the admin token. */
const READ_METHODS: ReadonlySet<string> = new Set(["GET", "HEAD"]);
/** What an HTTP header can carry of a bearer token: visible ASCII, no spaces. */
const SENDABLE_TOKEN = /^[\x21-\x7e]+$/;

export function isChange(init?: RequestInit): boolean {
  return !READ_METHODS.has((init?.method ?? "GET").toUpperCase());
}

/** The message for a refused change: the server's reason, then what to do, naming the setting. */
export function deniedMessage(serverError: string, tokenSet: boolean): string {
  const hint = tokenSet
    ? `The server did not accept the admin token: check ${ADMIN_TOKEN_SETTING_PATH} (it must equal TELEMETRY_ADMIN_TOKEN on the server).`
    : `This server requires its admin token for changes: enter TELEMETRY_ADMIN_TOKEN in ${ADMIN_TOKEN_SETTING_PATH}.`;
  return `${serverError}. ${hint}`;
}

export class TelemetryClient {
  /**
   * @param adminToken read on every change request (so a changed setting applies at once); "" sends none.
   */
  constructor(
    private readonly fetchApi: FetchApi,
    private readonly now: () => number = Date.now,
    private readonly adminToken: () => string = () => "",
  ) {}

  async request<T>(path: string, init?: RequestInit): Promise<Result<T>> {
    const change = isChange(init);
    let token = "";
    if (change) {
      try {
        token = this.adminToken().trim();
      } catch {
        token = "";
      }
      if (token && !SENDABLE_TOKEN.test(token)) {
        return {
          ok: false,
          status: 0,
          error: `The admin token in ${ADMIN_TOKEN_SETTING_PATH} contains spaces or characters other than ASCII, which cannot be sent; enter it again.`,
          missing: false,
          denied: true,
        };
      }
      if (token) init = withAuthorization(init, token);
    }
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
    if (change && (response.status === 401 || response.status === 403)) {
      return { ok: false, status: response.status, error: deniedMessage(error, token !== ""), missing: false, denied: true };
    }
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

  /** The run's graph as ComfyUI recorded it (its UI workflow, when the frontend sent one). */
  runWorkflow(runId: string): Promise<Result<RunWorkflow>> {
    return this.request(runWorkflowPath(runId));
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

  /** `instance`: a watcher of several ComfyUIs answers only that one's queue (the plugin has one queue). */
  queueEta(instance?: string | null): Promise<Result<QueueEta>> {
    return this.request(instance ? withQuery(ROUTES.queueEta, { instance }) : ROUTES.queueEta);
  }

  health(): Promise<Result<Health>> {
    return this.request(ROUTES.health);
  }

  instances(): Promise<Result<{ instances: InstanceInfo[] }>> {
    return this.request(ROUTES.instances);
  }

  reportWorkflow(id: string, name: string): Promise<Result<unknown>> {
    return this.request(ROUTES.workflows, this.json("POST", { id, name }));
  }
}

/** `init` with `Authorization: Bearer <token>` added to its headers (a plain object, which ComfyUI's `fetchApi`
 * extends with its `Comfy-User` header). */
function withAuthorization(init: RequestInit | undefined, token: string): RequestInit {
  const headers: Record<string, string> = {};
  const given = init?.headers;
  if (given instanceof Headers) given.forEach((v, k) => (headers[k] = v));
  else if (Array.isArray(given)) for (const [k, v] of given) headers[k] = v;
  else if (given) Object.assign(headers, given);
  headers.Authorization = `Bearer ${token}`;
  return { ...init, headers };
}
