/**
 * Toasts and the sidebar tab on each shape of ComfyUI's extension manager. The fakes copy the behaviour of the real
 * stores (ComfyUI_frontend sources, read at the commits named) so that what passes here holds in the frontend:
 * - new toasts: `src/components/ui/toast/toastStore.ts` @05a99231 (`add(kind, title, options)` stores
 *   `duration: options.duration ?? PERSISTENT` with `PERSISTENT = Infinity`, `closable ?? true`), exposed through
 *   `ToastManager` in `src/types/extensionTypes.ts` @05a99231, where `add(ToastMessageOptions)` is deprecated;
 * - old toasts: `src/platform/updates/common/toastStore.ts` (PrimeVue-shaped `add/remove/removeAll/addAlert`,
 *   frontend 1.32.x–1.45.x);
 * - sidebar: `src/stores/workspaceStore.ts` (`sidebarTab` = the sidebar-tab store; the top-level
 *   `registerSidebarTab` is `@deprecated Use sidebarTab.registerSidebarTab` and forwards to it) and
 *   `src/stores/workspace/sidebarTabStore.ts` (appends to `sidebarTabs`).
 */

import type { SidebarTabExtension, ToastMessageOptions } from "@comfyorg/comfyui-frontend-types";
import { describe, expect, it } from "vitest";
import { registerPanelTab, showPanelToast, type ToastOptions } from "../src/extension-api";

const PERSISTENT = Number.POSITIVE_INFINITY;

interface StoredToast {
  kind: string;
  title: string;
  description?: string;
  duration: number;
  closable: boolean;
}

/** The newest frontend's toast manager: typed methods, and the deprecated PrimeVue `add` kept beside them. */
function newToastManager() {
  const toasts: StoredToast[] = [];
  const deprecatedAdds: ToastMessageOptions[] = [];
  const add = (kind: string, title: string, options: ToastOptions = {}) => {
    toasts.push({
      kind,
      title,
      description: options.description,
      duration: options.duration ?? PERSISTENT,
      closable: options.closable ?? true,
    });
    return toasts.length;
  };
  return {
    toasts,
    deprecatedAdds,
    manager: {
      success: (title: string, options?: ToastOptions) => add("success", title, options),
      error: (title: string, options?: ToastOptions) => add("error", title, options),
      info: (title: string, options?: ToastOptions) => add("info", title, options),
      warning: (title: string, options?: ToastOptions) => add("warning", title, options),
      loading: (title: string, options?: ToastOptions) => add("loading", title, options),
      add: (message: ToastMessageOptions) => void deprecatedAdds.push(message),
    },
  };
}

/** Frontend 1.32.x–1.45.x: the Pinia toast store with PrimeVue messages only. */
function oldToastManager() {
  const messagesToAdd: ToastMessageOptions[] = [];
  return {
    messagesToAdd,
    manager: {
      add: (message: ToastMessageOptions) => void messagesToAdd.push(message),
      remove: () => {},
      removeAll: () => {},
      addAlert: (detail: string) => void messagesToAdd.push({ severity: "warn", summary: "Alert", detail }),
    },
  };
}

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

function tab(): SidebarTabExtension {
  return { id: "run-telemetry", title: "Telemetry", icon: "pi pi-chart-bar", type: "custom", render: () => {} };
}

/** The sidebar-tab store and the workspace store around it (newest shape). */
function newWorkspace() {
  const sidebarTabs: SidebarTabExtension[] = [];
  let deprecatedCalls = 0;
  const sidebarTab = {
    sidebarTabs,
    registerSidebarTab(t: SidebarTabExtension) {
      if (sidebarTabs.some((x) => x.id === t.id)) throw new Error(`duplicate sidebar tab ${t.id}`);
      sidebarTabs.push(t);
    },
  };
  return {
    sidebarTabs,
    deprecated: () => deprecatedCalls,
    manager: {
      sidebarTab,
      /** @deprecated Use `sidebarTab.registerSidebarTab` instead. */
      registerSidebarTab(t: SidebarTabExtension) {
        deprecatedCalls += 1;
        sidebarTab.registerSidebarTab(t);
      },
    },
  };
}

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
