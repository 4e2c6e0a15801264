// @vitest-environment jsdom
/**
 * The extension as ComfyUI loads it (`src/main.ts`, through load-extension.ts), with the extension manager in the
 * shape of each frontend (frontend-fakes.ts).
 */

import type { SidebarTabExtension } from "@comfyorg/comfyui-frontend-types";
import { beforeEach, describe, expect, it } from "vitest";
import { FakeBackend, settle } from "./fakes";
import { newToastManager, newWorkspace, oldToastManager } from "./frontend-fakes";
import { loadExtension as load } from "./load-extension";
import { failedDetail, partialDetail } from "./sample";

const SETTING_NAME = "Settings › Run Telemetry › Security › Admin token";

function push(api: EventTarget, type: string, detail: unknown): void {
  api.dispatchEvent(new CustomEvent(type, { detail }));
}

beforeEach(() => {
  document.head.replaceChildren();
  document.body.replaceChildren();
});

describe("on the newest frontend (1.58.1 shape)", () => {
  it("registers the tab through sidebarTab.registerSidebarTab, not the deprecated top-level method", async () => {
    const ws = newWorkspace();
    const { app } = await load({ ...ws.manager, toast: newToastManager().manager }, new FakeBackend());
    expect(app.extensions[0].name).toBe("RunTelemetry.Panel");
    expect(ws.sidebarTabs.map((t) => [t.id, t.title])).toEqual([["run-telemetry", "Telemetry"]]);
    expect(ws.deprecated()).toBe(0);
  });

  it("toasts a failed run with toast.error and an 8 s duration, a partly failed one with toast.warning", async () => {
    const toasts = newToastManager();
    const { api } = await load({ ...newWorkspace().manager, toast: toasts.manager }, new FakeBackend());
    push(api, "telemetry.run", failedDetail);
    push(api, "telemetry.run", partialDetail);
    expect(toasts.toasts).toEqual([
      {
        kind: "error",
        title: "Run failed: Broken",
        description: "RuntimeError in ImageBlur: can't allocate memory",
        duration: 8000,
        closable: true,
      },
      {
        kind: "warning",
        title: "Run partly failed: Two branches",
        description: "RuntimeError in ImageBlur: blur failed",
        duration: 8000,
        closable: true,
      },
    ]);
    expect(toasts.deprecatedAdds).toEqual([]);
  });

  it("shows no toast when the toasts setting is off", async () => {
    const toasts = newToastManager();
    const { api } = await load({ ...newWorkspace().manager, toast: toasts.manager }, new FakeBackend(), {
      "RunTelemetry.Toasts": false,
    });
    push(api, "telemetry.run", failedDetail);
    expect(toasts.toasts).toEqual([]);
  });
});

describe("on older frontends", () => {
  it("registers through the top-level registerSidebarTab and toasts with toast.add and life", async () => {
    const registered: SidebarTabExtension[] = [];
    const toasts = oldToastManager();
    const { api } = await load(
      { registerSidebarTab: (t: SidebarTabExtension) => void registered.push(t), toast: toasts.manager },
      new FakeBackend(),
    );
    expect(registered.map((t) => t.id)).toEqual(["run-telemetry"]);
    push(api, "telemetry.run", failedDetail);
    expect(toasts.messagesToAdd).toEqual([
      {
        severity: "error",
        summary: "Run failed: Broken",
        detail: "RuntimeError in ImageBlur: can't allocate memory",
        life: 8000,
        closable: true,
      },
    ]);
  });

  it("loads without toasts or a sidebar API at all, and without throwing", async () => {
    const { app, api } = await load({}, new FakeBackend());
    expect(app.extensions).toHaveLength(1);
    expect(() => push(api, "telemetry.run", failedDetail)).not.toThrow();
  });
});

describe("the admin token setting", () => {
  it("is registered with the extension's settings", async () => {
    const { app } = await load({ ...newWorkspace().manager, toast: newToastManager().manager }, new FakeBackend());
    expect(app.extensions[0].settings?.map((s) => s.id)).toContain("RunTelemetry.AdminToken");
  });

  it("goes with the workflow-name report; a refusal raises one toast naming the setting, and names wait for a new token", async () => {
    let accepted = "right";
    const backend = new FakeBackend().on("POST", /^\/telemetry\/workflows$/, (_url: URL, init?: RequestInit) => {
      const auth = new Headers(init?.headers).get("authorization");
      return auth === `Bearer ${accepted}` ? { body: { ok: true } } : { status: 401, body: { error: "admin token required" } };
    });
    const toasts = newToastManager();
    const { app, api, values } = await load({ ...newWorkspace().manager, toast: toasts.manager }, backend);
    const posts = () => backend.requests.filter((r) => r.method === "POST");
    // setup reported the open workflow without a token: refused
    expect(posts()).toHaveLength(1);
    expect(posts()[0].body).toEqual({ id: "wf-1", name: "Portrait" });
    expect(toasts.toasts).toHaveLength(1);
    expect(toasts.toasts[0]).toMatchObject({ kind: "warning", title: "Run Telemetry cannot name your runs", duration: 8000 });
    expect(toasts.toasts[0].description).toContain("TELEMETRY_ADMIN_TOKEN");
    expect(toasts.toasts[0].description).toContain(SETTING_NAME);
    // graph edits do not repeat the refused request, nor the toast
    for (let i = 0; i < 3; i++) push(api, "graphChanged", {});
    await settle();
    expect(posts()).toHaveLength(1);
    expect(toasts.toasts).toHaveLength(1);
    // the user enters the token: ComfyUI calls the setting's onChange, and the name goes out with it
    values["RunTelemetry.AdminToken"] = accepted;
    app.extensions[0].settings!.find((s) => s.id === "RunTelemetry.AdminToken")!.onChange!(accepted);
    await settle();
    expect(posts()).toHaveLength(2);
    expect(posts()[1].headers.authorization).toBe("Bearer right");
    expect(toasts.toasts).toHaveLength(1);
    accepted = "unused";
  });
});
