/**
 * The host page of `python -m telemetry serve`: stands in for ComfyUI's `app` and `api` modules so that the panel's
 * own bundle (`dist/telemetry.js`, the one ComfyUI loads) runs outside ComfyUI's frontend. No second panel: this
 * only gives the bundle what ComfyUI's frontend gives it.
 *
 * - `api.fetchApi(route, init)`: `fetch("/api" + route)`, with `Authorization: Bearer <token>` when the server
 *   wants one (the page asks once and keeps it in sessionStorage for the tab).
 * - `api` is an EventTarget: new and changed runs found by polling `/telemetry/runs` are dispatched as
 *   `telemetry.run` events, as ComfyUI's websocket would.
 * - `app.registerExtension`, `app.extensionManager.sidebarTab.registerSidebarTab` (the tab is rendered into the
 *   page), `.toast` (toasts in the page) and `.setting.get` (localStorage).
 */

import { button, h } from "../dom";

export const TOKEN_KEY = "run-telemetry.token";
const SETTING_PREFIX = "run-telemetry.setting.";
const POLL_MS = 5000;
const POLL_RUNS = 25;

interface Extension {
  name?: string;
  setup?: () => unknown;
}

interface SidebarTab {
  id: string;
  title?: string;
  render: (el: HTMLElement) => void;
  destroy?: () => void;
}

interface ToastOptions {
  description?: string;
  duration?: number;
}

function storedToken(): string {
  try {
    return sessionStorage.getItem(TOKEN_KEY) ?? "";
  } catch {
    return "";
  }
}

function withToken(init: RequestInit | undefined): RequestInit {
  const token = storedToken();
  if (!token) return init ?? {};
  const headers = new Headers(init?.headers ?? undefined);
  if (!headers.has("Authorization")) headers.set("Authorization", `Bearer ${token}`);
  return { ...init, headers };
}

class HostApi extends EventTarget {
  apiURL(path: string): string {
    return `/api${path}`;
  }

  fetchApi(route: string, init?: RequestInit): Promise<Response> {
    return fetch(this.apiURL(route), withToken(init));
  }
}

export const api = new HostApi();

const extensions: Extension[] = [];
const tabs: SidebarTab[] = [];
let toastArea: HTMLElement | null = null;

function toast(kind: string) {
  return (title: string, options?: ToastOptions): void => {
    if (!toastArea) return;
    const el = h(
      "div",
      { class: ["rt-host-toast", `rt-host-toast-${kind}`], role: "status" },
      h("strong", null, title),
      options?.description ? h("div", null, options.description) : null,
    );
    toastArea.append(el);
    setTimeout(() => el.remove(), Math.min(options?.duration ?? 8000, 60_000));
  };
}

const extensionManager = {
  sidebarTab: { registerSidebarTab: (tab: SidebarTab) => void tabs.push(tab) },
  toast: { success: toast("success"), error: toast("error"), info: toast("info"), warning: toast("warning") },
  setting: {
    get(id: string): unknown {
      try {
        const raw = localStorage.getItem(SETTING_PREFIX + id);
        return raw === null ? undefined : JSON.parse(raw);
      } catch {
        return undefined;
      }
    },
    set(id: string, value: unknown): void {
      try {
        localStorage.setItem(SETTING_PREFIX + id, JSON.stringify(value));
      } catch {
        // storage full or off: the default stays
      }
    },
  },
};

export const app = {
  extensionManager,
  registerExtension(extension: Extension): void {
    extensions.push(extension);
  },
};

/** Asks the server whether this tab may read (with the token it has, if any): "ok", "token" or an error. */
async function probe(): Promise<string> {
  try {
    const response = await api.fetchApi("/telemetry/health");
    if (response.status === 401) return "token";
    return "ok";
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

function askToken(root: HTMLElement, message: string): Promise<void> {
  return new Promise((resolve) => {
    const input = h("input", {
      type: "password",
      autocomplete: "current-password",
      "aria-label": "Token",
      "data-testid": "host-token",
    });
    const submit = (e: Event) => {
      e.preventDefault();
      const value = input.value.trim();
      if (!value) return;
      try {
        sessionStorage.setItem(TOKEN_KEY, value);
      } catch {
        // kept for this page only
      }
      resolve();
    };
    root.replaceChildren(
      h(
        "form",
        { class: "rt-host-login", "data-testid": "host-login", on: { submit } },
        h("h2", null, "Run Telemetry"),
        h("p", null, message),
        input,
        button("Open", () => {}, { type: "submit" }),
      ),
    );
    input.focus();
  });
}

/** Polls the newest runs and dispatches the new or changed ones as `telemetry.run` (the first look only notes). */
function startPolling(): void {
  const seen = new Map<string, string>();
  let first = true;
  const poll = async () => {
    try {
      const response = await api.fetchApi(`/telemetry/runs?limit=${POLL_RUNS}`);
      if (response.ok) {
        const body = (await response.json()) as { runs?: { run_id?: string; status?: string }[] };
        for (const run of [...(body.runs ?? [])].reverse()) {
          if (!run || typeof run.run_id !== "string") continue;
          const key = `${run.status}`;
          if (seen.get(run.run_id) !== key) {
            seen.set(run.run_id, key);
            if (!first) api.dispatchEvent(new CustomEvent("telemetry.run", { detail: run }));
          }
        }
        if (seen.size > 1000) seen.clear();
        first = false;
      }
    } catch {
      // the server is away: try again at the next tick
    }
    setTimeout(poll, POLL_MS);
  };
  void poll();
}

/** Starts the page: asks for the token while the server wants one, then runs the extensions' setup and renders
 * the panel's tab into `root`. */
export async function boot(root: HTMLElement): Promise<void> {
  toastArea = h("div", { class: "rt-host-toasts", "aria-live": "polite" });
  document.body.append(toastArea);
  let state = await probe();
  let message = "This server needs its token (the --token / TELEMETRY_TOKEN it was started with).";
  while (state === "token") {
    await askToken(root, message);
    state = await probe();
    message = "That token was not accepted; enter it again.";
  }
  if (state !== "ok") {
    root.replaceChildren(h("p", { class: "rt-host-error" }, `The telemetry server cannot be reached: ${state}`));
    return;
  }
  for (const extension of extensions) {
    try {
      await extension.setup?.();
    } catch (err) {
      console.error("run-telemetry host: an extension failed to set up", err);
    }
  }
  const tab = tabs[0];
  if (!tab) {
    root.replaceChildren(h("p", { class: "rt-host-error" }, "The Telemetry panel did not register."));
    return;
  }
  const container = h("div", { class: "rt-host-tab", "data-testid": "host-tab" });
  root.replaceChildren(container);
  tab.render(container);
  startPolling();
}
