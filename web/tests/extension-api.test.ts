/** Toasts and the sidebar tab on each shape of ComfyUI's extension manager (fakes: frontend-fakes.ts, which names
 * the frontend sources they copy). */

import type { SidebarTabExtension } from "@comfyorg/comfyui-frontend-types";
import { describe, expect, it } from "vitest";
import { registerPanelTab, showPanelToast } from "../src/extension-api";
import { newToastManager, newWorkspace, oldToastManager, PERSISTENT, tab } from "./frontend-fakes";

const failure = { kind: "error" as const, title: "Run failed: Portrait", description: "RuntimeError in ImageBlur", durationMs: 8000 };

describe("toasts", () => {
  it("use toast.error(title, {description, duration}) on the newest frontend, never the deprecated add", () => {
    const fake = newToastManager();
    expect(showPanelToast({ toast: fake.manager }, failure)).toBe("toast-api");
    expect(fake.toasts).toEqual([
      { kind: "error", title: "Run failed: Portrait", description: "RuntimeError in ImageBlur", duration: 8000, closable: true },
    ]);
    expect(fake.deprecatedAdds).toEqual([]);
  });

  it("always pass a duration: a new-style toast without one would stay on screen for ever", () => {
    const fake = newToastManager();
    for (const kind of ["success", "error", "info", "warning"] as const) {
      showPanelToast({ toast: fake.manager }, { kind, title: kind, durationMs: 8000 });
    }
    expect(fake.toasts.map((t) => [t.kind, t.duration])).toEqual([
      ["success", 8000],
      ["error", 8000],
      ["info", 8000],
      ["warning", 8000],
    ]);
    expect(fake.toasts.some((t) => t.duration === PERSISTENT)).toBe(false);
  });

  it("fall back to toast.add({severity, summary, detail, life}) on frontend 1.32–1.45", () => {
    const fake = oldToastManager();
    expect(showPanelToast({ toast: fake.manager }, failure)).toBe("add");
    expect(showPanelToast({ toast: fake.manager }, { kind: "warning", title: "Telemetry: warning", durationMs: 8000 })).toBe("add");
    expect(fake.messagesToAdd).toEqual([
      { severity: "error", summary: "Run failed: Portrait", detail: "RuntimeError in ImageBlur", life: 8000, closable: true },
      // PrimeVue's severity for a warning is "warn"
      { severity: "warn", summary: "Telemetry: warning", detail: undefined, life: 8000, closable: true },
    ]);
  });

  it("do nothing, and never throw, without a toast manager or when it throws", () => {
    expect(showPanelToast(undefined, failure)).toBe("none");
    expect(showPanelToast({}, failure)).toBe("none");
    expect(showPanelToast({ toast: {} }, failure)).toBe("none");
    const throwing = {
      error: () => {
        throw new Error("toast store not ready");
      },
    };
    expect(showPanelToast({ toast: throwing }, failure)).toBe("none");
    const getterThrows = Object.defineProperty({}, "toast", {
      get() {
        throw new Error("pinia not active");
      },
    });
    expect(showPanelToast(getterThrows, failure)).toBe("none");
  });
});

describe("sidebar tab", () => {
  it("registers through extensionManager.sidebarTab.registerSidebarTab when the frontend has it", () => {
    const ws = newWorkspace();
    expect(registerPanelTab(ws.manager, tab())).toBe("sidebarTab");
    expect(ws.sidebarTabs.map((t) => t.id)).toEqual(["run-telemetry"]);
    expect(ws.deprecated()).toBe(0);
  });

  it("falls back to the top-level registerSidebarTab of older frontends", () => {
    const registered: SidebarTabExtension[] = [];
    const manager = { registerSidebarTab: (t: SidebarTabExtension) => void registered.push(t) };
    expect(registerPanelTab(manager, tab())).toBe("legacy");
    expect(registered.map((t) => t.title)).toEqual(["Telemetry"]);
  });

  it("uses the fallback when sidebarTab is there but lacks the method", () => {
    const registered: string[] = [];
    const manager = { sidebarTab: {}, registerSidebarTab: (t: SidebarTabExtension) => void registered.push(t.id) };
    expect(registerPanelTab(manager, tab())).toBe("legacy");
    expect(registered).toEqual(["run-telemetry"]);
  });

  it("never throws into ComfyUI's setup, and registers once even when the store refuses", () => {
    const ws = newWorkspace();
    registerPanelTab(ws.manager, tab());
    expect(registerPanelTab(ws.manager, tab())).toBe("none");
    expect(ws.sidebarTabs).toHaveLength(1);
    expect(ws.deprecated()).toBe(0);
    expect(registerPanelTab(undefined, tab())).toBe("none");
    expect(registerPanelTab({}, tab())).toBe("none");
  });
});
