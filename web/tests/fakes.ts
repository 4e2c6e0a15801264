/** A fake backend for the panel's DOM tests: routes answer canned JSON, and every request is recorded. */

import { TelemetryClient } from "../src/client";
import type { PanelEnv, SelectNodeResult } from "../src/views/context";
import type { PanelSettings } from "../src/settings";

export type Handler = (url: URL, init?: RequestInit) => { status?: number; body?: unknown } | undefined;

export class FakeBackend {
  readonly requests: { method: string; path: string; body?: unknown; headers: Record<string, string> }[] = [];
  private readonly handlers: [RegExp, string, Handler][] = [];

  /** Answers `body` (with `status`) to `method` requests whose path matches; a function computes the answer. */
  on(method: string, pattern: RegExp, handler: Handler | unknown, status = 200): this {
    const h: Handler = typeof handler === "function" ? (handler as Handler) : () => ({ body: handler, status });
    this.handlers.unshift([pattern, method, h]);
    return this;
  }

  fetchApi = async (route: string, init?: RequestInit): Promise<Response> => {
    const url = new URL(route, "http://comfy.test");
    const method = (init?.method ?? "GET").toUpperCase();
    const body = typeof init?.body === "string" ? JSON.parse(init.body) : undefined;
    const headers: Record<string, string> = {};
    new Headers(init?.headers).forEach((v, k) => (headers[k] = v));
    this.requests.push({ method, path: url.pathname + url.search, body, headers });
    for (const [pattern, m, handler] of this.handlers) {
      if (m === method && pattern.test(url.pathname)) {
        const answer = handler(url, init);
        if (answer) {
          return new Response(answer.body === undefined ? "" : JSON.stringify(answer.body), {
            status: answer.status ?? 200,
            headers: { "Content-Type": "application/json" },
          });
        }
      }
    }
    return new Response("404: Not Found", { status: 404 });
  };

  paths(method = "GET"): string[] {
    return this.requests.filter((r) => r.method === method).map((r) => r.path);
  }
}

export interface FakeEnvOptions {
  settings?: Partial<PanelSettings>;
  now?: number;
  nodes?: string[];
  workflowId?: string | null;
  /** The admin-token setting (read on every request, like the real one). */
  adminToken?: () => string;
}

export function fakeEnv(backend: FakeBackend, options: FakeEnvOptions = {}): PanelEnv & { selected: string[] } {
  const now = options.now ?? Date.UTC(2025, 2, 5, 12, 0, 0);
  const nodes = new Set(options.nodes ?? []);
  const selected: string[] = [];
  return {
    client: new TelemetryClient(backend.fetchApi, () => now, options.adminToken),
    settings: () => ({ toasts: true, defaultRange: "7d", units: "binary", ...options.settings }),
    now: () => now,
    apiURL: (path) => `/api${path}`,
    currentWorkflowId: () => options.workflowId ?? null,
    hasNode: (id) => nodes.has(id),
    selectNode: (id): SelectNodeResult => {
      if (!nodes.has(id)) return "missing";
      selected.push(id);
      return "selected";
    },
    selected,
  };
}

/** Lets pending fetches and their continuations run. */
export async function settle(rounds = 10): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setTimeout(r, 0));
}
