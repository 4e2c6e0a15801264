// @vitest-environment jsdom
/**
 * A link to a run (`?telemetry_run=<id>`, a webhook payload's `url`) opens the Telemetry tab on that run's detail:
 * the query string read once as the extension loads, the tab opened through each frontend's API (frontend-fakes.ts),
 * and the tab, once ComfyUI renders it, on the run.
 */

import type { SidebarTabExtension } from "@comfyorg/comfyui-frontend-types";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { openPanelTab } from "../src/extension-api";
import { RUN_LINK_PARAM, runIdFromSearch } from "../src/runlink";
import { FakeBackend, settle } from "./fakes";
import { newToastManager, newWorkspace, oldWorkspace } from "./frontend-fakes";
import { loadExtension } from "./load-extension";
import { detail } from "./sample";

const RUN_ID = "5d1c9a7e-0b7e-4c1e-9d55-2a9f0c3e11aa";

function backend(): FakeBackend {
  return new FakeBackend().on("GET", new RegExp(`^/telemetry/runs/${RUN_ID}$`), detail(RUN_ID, { workflow_name: "Linked render" }));
}

/** The page's address, as the browser would have it when the link was opened. */
function openedAt(search: string): void {
  window.history.replaceState(null, "", `/${search}`);
}

async function renderTab(tab: SidebarTabExtension | undefined): Promise<HTMLElement> {
  const el = document.createElement("div");
  document.body.append(el);
  (tab as { render: (el: HTMLElement) => void }).render(el);
  await settle();
  return el;
}

beforeEach(() => {
  document.head.replaceChildren();
  document.body.replaceChildren();
});

afterEach(() => {
  openedAt("");
  vi.restoreAllMocks();
});

describe("the link's query parameter", () => {
  it("is the run id, decoded and trimmed, among other parameters", () => {
    expect(RUN_LINK_PARAM).toBe("telemetry_run");
    expect(runIdFromSearch(`?telemetry_run=${RUN_ID}`)).toBe(RUN_ID);
    expect(runIdFromSearch("?workflow=x&telemetry_run=run%2F1%20a&z=1")).toBe("run/1 a");
    expect(runIdFromSearch("?telemetry_run=%20run-1%20")).toBe("run-1");
  });

  it("is nothing when absent, empty, absurdly long or holding control characters", () => {
    for (const search of [null, undefined, "", "?", "?telemetry_run=", "?telemetry_run=%20", "?other=1",
      `?telemetry_run=${"a".repeat(513)}`, "?telemetry_run=a%0Ab", "?telemetry_run=a%00"]) {
      expect(runIdFromSearch(search)).toBeNull();
    }
    expect(runIdFromSearch(`?telemetry_run=${"a".repeat(512)}`)).toHaveLength(512);
  });
});

describe("opening the tab", () => {
  it("goes through the sidebar-tab store on new frontends, and never closes an open tab", () => {
    const ws = newWorkspace();
    expect(openPanelTab(ws.manager, "run-telemetry", () => false)).toBe("sidebarTab");
    expect(ws.sidebarTab.activeSidebarTabId).toBe("run-telemetry");
    expect(openPanelTab(ws.manager, "run-telemetry", () => true)).toBe("open");
    expect(ws.sidebarTab.activeSidebarTabId).toBe("run-telemetry");
    expect(ws.commands.executed).toEqual([]);
  });

  it("runs the View menu's toggle command on old frontends, only while the tab is closed", async () => {
    const ws = oldWorkspace();
    ws.manager.registerSidebarTab({ id: "run-telemetry", title: "Telemetry", type: "custom", render: () => {} } as never);
    expect(openPanelTab(ws.manager, "run-telemetry", () => false)).toBe("command");
    await settle();
    expect(ws.commands.executed).toEqual(["Workspace.ToggleSidebarTab.run-telemetry"]);
    expect(ws.active()).toBe("run-telemetry");
    expect(openPanelTab(ws.manager, "run-telemetry", () => true)).toBe("open");
    expect(ws.commands.executed).toHaveLength(1);
  });

  it("swallows a command that fails, and does nothing without either API", async () => {
    const ws = oldWorkspace(); // no tab registered: the command is unknown and its promise rejects
    const rejections: unknown[] = [];
    const onRejection = (e: unknown) => rejections.push(e);
    process.on("unhandledRejection", onRejection);
    try {
      expect(openPanelTab(ws.manager, "run-telemetry", () => false)).toBe("command");
      await settle();
    } finally {
      process.off("unhandledRejection", onRejection);
    }
    expect(rejections).toEqual([]);
    expect(openPanelTab(null, "run-telemetry", () => false)).toBe("none");
    expect(openPanelTab({}, "run-telemetry", () => false)).toBe("none");
    const throwing = {
      get sidebarTab(): never {
        throw new Error("store not ready");
      },
    };
    expect(openPanelTab(throwing, "run-telemetry", () => false)).toBe("none");
  });
});

describe("a page opened from a link", () => {
  it("on a new frontend: activates the tab in setup, which then renders the run's detail", async () => {
    openedAt(`?telemetry_run=${RUN_ID}`);
    const ws = newWorkspace();
    const timers = vi.spyOn(globalThis, "setTimeout");
    const intervals = vi.spyOn(globalThis, "setInterval");
    const fake = backend();
    await loadExtension({ ...ws.manager, toast: newToastManager().manager }, fake);
    expect(ws.sidebarTab.activeSidebarTabId).toBe("run-telemetry");
    expect(ws.deprecated()).toBe(0);
    // the tab is not rendered yet: nothing fetched for it and no timer started (settle's own 0 ms ones aside)
    expect(fake.paths().filter((p) => p.startsWith("/telemetry/runs/"))).toEqual([]);
    expect(timers.mock.calls.filter(([, ms]) => (ms ?? 0) > 0)).toEqual([]);
    expect(intervals).not.toHaveBeenCalled();

    const el = await renderTab(ws.sidebarTabs[0]);
    const shown = el.querySelector<HTMLElement>(".rt-detail");
    expect(shown?.dataset.runId).toBe(RUN_ID);
    expect(el.querySelector("[data-testid=detail-title]")?.textContent).toBe("Linked render");
    expect(fake.paths()).toContain(`/telemetry/runs/${RUN_ID}`);
  });

  it("on an old frontend: opens the tab through the toggle command", async () => {
    openedAt(`?telemetry_run=${RUN_ID}`);
    const ws = oldWorkspace();
    await loadExtension({ ...ws.manager }, backend());
    expect(ws.commands.executed).toEqual(["Workspace.ToggleSidebarTab.run-telemetry"]);
    expect(ws.active()).toBe("run-telemetry");
    const el = await renderTab(ws.registered[0]);
    expect(el.querySelector<HTMLElement>(".rt-detail")?.dataset.runId).toBe(RUN_ID);
  });

  it("on the serve page (only registerSidebarTab; the page renders the tab itself): shows the run's detail", async () => {
    openedAt(`?telemetry_run=${RUN_ID}`);
    const tabs: SidebarTabExtension[] = [];
    await loadExtension({ sidebarTab: { registerSidebarTab: (t: SidebarTabExtension) => void tabs.push(t) } }, backend());
    const el = await renderTab(tabs[0]);
    expect(el.querySelector("[data-testid=detail-title]")?.textContent).toBe("Linked render");
  });

  it("says so when the linked run does not exist", async () => {
    openedAt("?telemetry_run=no-such-run");
    const ws = newWorkspace();
    await loadExtension({ ...ws.manager }, backend());
    const el = await renderTab(ws.sidebarTabs[0]);
    expect(el.querySelector(".rt-detail")?.textContent).toContain("Run no-such-run was not found.");
  });

  it("reads the address once, as the script loads: a later change of the address opens nothing", async () => {
    openedAt("");
    const ws = newWorkspace();
    vi.resetModules();
    // loadExtension imports main.ts and then runs setup; the address changes only after the import
    const { app } = await import("./comfy-fake/app");
    app.extensions.length = 0;
    app.extensionManager = { ...ws.manager };
    await import("../src/main");
    openedAt(`?telemetry_run=${RUN_ID}`);
    await app.extensions[0].setup?.();
    await settle();
    expect(ws.sidebarTab.activeSidebarTabId).toBeNull();
    expect(ws.commands.executed).toEqual([]);
  });

  it("without a link: opens nothing, and the tab shows the overview", async () => {
    const ws = newWorkspace();
    await loadExtension({ ...ws.manager }, backend());
    expect(ws.sidebarTab.activeSidebarTabId).toBeNull();
    const el = await renderTab(ws.sidebarTabs[0]);
    expect(el.querySelector(".rt-detail")).toBeNull();
    expect(el.querySelector("button[data-tab=overview]")?.getAttribute("aria-selected")).toBe("true");
  });
});
