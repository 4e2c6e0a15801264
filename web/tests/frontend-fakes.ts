/**
 * Fakes of ComfyUI's extension manager pieces, in the shapes of the real frontends. They copy the behaviour of the
 * real stores (ComfyUI_frontend sources, read at the commits named) so that what passes with them holds there:
 * - new toasts: `src/components/ui/toast/toastStore.ts` @05a99231 (`add(kind, title, options)` stores
 *   `duration: options.duration ?? PERSISTENT` with `PERSISTENT = Infinity`, `closable ?? true`), exposed through
 *   `ToastManager` in `src/types/extensionTypes.ts` @05a99231, where `add(ToastMessageOptions)` is deprecated; the
 *   1.58.1 bundle (`assets/workspaceStore-DtHQagHh.js`) has exactly `add` (a shim onto the new methods), `addAlert`,
 *   `dismiss`, `dismissAll`, `error`, `info`, `loading`, `success`, `warning`;
 * - old toasts: `src/platform/updates/common/toastStore.ts` (PrimeVue-shaped `add/remove/removeAll/addAlert`,
 *   frontend 1.32.x–1.45.x; 1.35.9 at run time: `add, addAlert, remove, removeAll`);
 * - sidebar: `src/stores/workspaceStore.ts` (`sidebarTab` = the sidebar-tab store; the top-level
 *   `registerSidebarTab` is `@deprecated Use sidebarTab.registerSidebarTab` and forwards to it) and
 *   `src/stores/workspace/sidebarTabStore.ts` (appends to `sidebarTabs`).
 */

import type { SidebarTabExtension, ToastMessageOptions } from "@comfyorg/comfyui-frontend-types";
import type { ToastOptions } from "../src/extension-api";

export const PERSISTENT = Number.POSITIVE_INFINITY;

export interface StoredToast {
  kind: string;
  title: string;
  description?: string;
  duration: number;
  closable: boolean;
}

/** The newest frontend's toast manager: typed methods, and the deprecated PrimeVue `add` kept beside them. */
export function newToastManager() {
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
export function oldToastManager() {
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

export function tab(): SidebarTabExtension {
  return { id: "run-telemetry", title: "Telemetry", icon: "pi pi-chart-bar", type: "custom", render: () => {} };
}

/** The command store as far as the sidebar uses it: `registerCommand` and `execute(id)` (async, like the real one;
 * an unknown id rejects). */
export function commandStore() {
  const commands = new Map<string, () => void>();
  const executed: string[] = [];
  return {
    commands,
    executed,
    manager: {
      execute: async (id: string) => {
        executed.push(id);
        const fn = commands.get(id);
        if (!fn) throw new Error(`Command ${id} not found`);
        fn();
      },
    },
  };
}

/** The sidebar-tab store and the workspace store around it (newest shape): registering a tab also registers its
 * `Workspace.ToggleSidebarTab.<id>` command; `toggleSidebarTab` closes the active tab and opens any other. */
export function newWorkspace() {
  const sidebarTabs: SidebarTabExtension[] = [];
  const commands = commandStore();
  let deprecatedCalls = 0;
  const sidebarTab = {
    sidebarTabs,
    activeSidebarTabId: null as string | null,
    toggleSidebarTab(id: string) {
      sidebarTab.activeSidebarTabId = sidebarTab.activeSidebarTabId === id ? null : id;
    },
    registerSidebarTab(t: SidebarTabExtension) {
      if (sidebarTabs.some((x) => x.id === t.id)) throw new Error(`duplicate sidebar tab ${t.id}`);
      sidebarTabs.push(t);
      commands.commands.set(`Workspace.ToggleSidebarTab.${t.id}`, () => sidebarTab.toggleSidebarTab(t.id));
    },
  };
  return {
    sidebarTabs,
    sidebarTab,
    commands,
    deprecated: () => deprecatedCalls,
    manager: {
      sidebarTab,
      command: commands.manager,
      /** @deprecated Use `sidebarTab.registerSidebarTab` instead. */
      registerSidebarTab(t: SidebarTabExtension) {
        deprecatedCalls += 1;
        sidebarTab.registerSidebarTab(t);
      },
    },
  };
}

/** An old frontend (the published 1.45 types): the top-level `registerSidebarTab` and `command.execute`, no
 * sidebar-tab store; the toggle command opens the tab (`opened`) or closes it. */
export function oldWorkspace() {
  const registered: SidebarTabExtension[] = [];
  const commands = commandStore();
  let active: string | null = null;
  return {
    registered,
    commands,
    active: () => active,
    manager: {
      command: commands.manager,
      registerSidebarTab(t: SidebarTabExtension) {
        registered.push(t);
        commands.commands.set(`Workspace.ToggleSidebarTab.${t.id}`, () => (active = active === t.id ? null : t.id));
      },
    },
  };
}
