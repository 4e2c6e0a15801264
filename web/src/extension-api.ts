/**
 * The two parts of ComfyUI's extension manager whose shape changed across frontends, feature-detected so that one
 * bundle works on 1.32.x, 1.35.x and the newest (1.58.x): toasts and sidebar-tab registration. Pure functions over
 * the manager object (`app.extensionManager`), so vitest drives them with fakes of each shape; `comfy.ts` passes
 * the real one.
 *
 * Modelled on ComfyUI_frontend at 05a99231:
 * - `src/types/extensionTypes.ts`: `ToastManager.success/error/info/warning(title, ToastOptions) → ToastId`, with
 *   `add(ToastMessageOptions)` marked `@deprecated Use success/error/info/warning`.
 * - `src/components/ui/toast/toastStore.ts`: `ToastOptions = {description?, duration?, closable?}` and
 *   `duration: options.duration ?? PERSISTENT` (Infinity): a toast without a duration never goes away.
 * - `src/stores/workspaceStore.ts`: `sidebarTab` is the sidebar-tab store (`registerSidebarTab(tab)`); the
 *   top-level `registerSidebarTab` is `@deprecated Use sidebarTab.registerSidebarTab instead` and forwards to it.
 * - `src/stores/workspace/sidebarTabStore.ts`: `activeSidebarTabId` (a ref, unwrapped by Pinia) and
 *   `toggleSidebarTab(id)` (closes the tab when it is the active one); `registerSidebarTab` also registers the
 *   command `Workspace.ToggleSidebarTab.<id>` (since 1.3.9) that the View menu and keybindings run.
 * Older frontends (1.32.x–1.45.x, the published `@comfyorg/comfyui-frontend-types`) have only the PrimeVue-shaped
 * `toast.add({severity, summary, detail, life})` and the top-level `registerSidebarTab`; the published types have
 * no sidebar-tab store, only `command.execute(id)`.
 */

import type { SidebarTabExtension, ToastMessageOptions } from "@comfyorg/comfyui-frontend-types";

export type ToastKind = "success" | "error" | "info" | "warning";

/** What the panel wants to say; `durationMs` is required because new-style toasts default to persistent. */
export interface PanelToast {
  kind: ToastKind;
  title: string;
  description?: string;
  durationMs: number;
}

/** `ToastOptions` of the new toast store. */
export interface ToastOptions {
  description?: string;
  duration?: number;
  closable?: boolean;
}

type ToastMethod = (title: string, options?: ToastOptions) => unknown;

/** The toast manager as the panel may find it: either shape, or a mix, or neither. */
export interface AnyToastManager {
  success?: ToastMethod;
  error?: ToastMethod;
  info?: ToastMethod;
  warning?: ToastMethod;
  add?: (message: ToastMessageOptions) => void;
}

export interface SidebarTabRegistry {
  registerSidebarTab?: (tab: SidebarTabExtension) => void;
}

/** The sidebar-tab store as far as opening a tab reads it. */
export interface SidebarTabStoreLike extends SidebarTabRegistry {
  activeSidebarTabId?: string | null;
  toggleSidebarTab?: (id: string) => void;
}

export interface CommandManagerLike {
  execute?: (id: string) => unknown;
}

/** The extension manager as far as these functions read it. */
export interface ExtensionManagerLike extends SidebarTabRegistry {
  toast?: AnyToastManager | null;
  sidebarTab?: SidebarTabStoreLike | null;
  command?: CommandManagerLike | null;
}

/** Which API a call went through; "none" when the frontend has neither (or it threw). */
export type ToastPath = "toast-api" | "add" | "none";
export type SidebarPath = "sidebarTab" | "legacy" | "none";
/** How the tab was opened: the store's toggle, the menu's toggle command, already open, or not at all. */
export type OpenPath = "sidebarTab" | "command" | "open" | "none";

const SEVERITY: Readonly<Record<ToastKind, NonNullable<ToastMessageOptions["severity"]>>> = {
  success: "success",
  error: "error",
  info: "info",
  warning: "warn",
};

/** Shows a toast through `toast.<kind>(title, {description, duration, closable})` when the frontend has it, else
 * `toast.add({severity, summary, detail, life})`, else not at all. Never throws. */
export function showPanelToast(manager: ExtensionManagerLike | null | undefined, toast: PanelToast): ToastPath {
  let toasts: AnyToastManager | null | undefined;
  try {
    toasts = manager?.toast;
  } catch {
    return "none";
  }
  if (!toasts) return "none";
  try {
    const method = toasts[toast.kind];
    if (typeof method === "function") {
      method.call(toasts, toast.title, { description: toast.description, duration: toast.durationMs, closable: true });
      return "toast-api";
    }
    if (typeof toasts.add === "function") {
      toasts.add({
        severity: SEVERITY[toast.kind],
        summary: toast.title,
        detail: toast.description,
        life: toast.durationMs,
        closable: true,
      });
      return "add";
    }
  } catch {
    // a toast is never worth an error
  }
  return "none";
}

/** Registers the sidebar tab through `sidebarTab.registerSidebarTab` when the frontend has it, else the top-level
 * (deprecated, still working) `registerSidebarTab`. Registers at most once; never throws. */
export function registerPanelTab(manager: ExtensionManagerLike | null | undefined, tab: SidebarTabExtension): SidebarPath {
  if (!manager) return "none";
  let store: SidebarTabRegistry | null | undefined;
  try {
    store = manager.sidebarTab;
  } catch {
    store = null;
  }
  try {
    if (store && typeof store.registerSidebarTab === "function") {
      store.registerSidebarTab(tab);
      return "sidebarTab";
    }
    if (typeof manager.registerSidebarTab === "function") {
      manager.registerSidebarTab(tab);
      return "legacy";
    }
  } catch {
    // a duplicate id throws in the store; the panel must not throw into ComfyUI's setup
  }
  return "none";
}

/** Opens (never closes) the sidebar tab `tabId`: through the sidebar-tab store (`activeSidebarTabId`,
 * `toggleSidebarTab`) when the frontend exposes it, else through the View menu's command
 * `Workspace.ToggleSidebarTab.<id>`, run only while `isOpen()` says the tab is closed (the command toggles).
 * Never throws. */
export function openPanelTab(
  manager: ExtensionManagerLike | null | undefined,
  tabId: string,
  isOpen: () => boolean,
): OpenPath {
  if (!manager) return "none";
  let store: SidebarTabStoreLike | null | undefined;
  let command: CommandManagerLike | null | undefined;
  try {
    store = manager.sidebarTab;
    command = manager.command;
  } catch {
    return "none";
  }
  try {
    if (store && typeof store.toggleSidebarTab === "function") {
      if (store.activeSidebarTabId === tabId) return "open";
      store.toggleSidebarTab(tabId);
      return "sidebarTab";
    }
    if (command && typeof command.execute === "function") {
      if (isOpen()) return "open";
      const pending = command.execute(`Workspace.ToggleSidebarTab.${tabId}`);
      if (pending && typeof (pending as Promise<unknown>).catch === "function") {
        (pending as Promise<unknown>).catch(() => {});
      }
      return "command";
    }
  } catch {
    // opening the tab is a convenience: never an error in ComfyUI's setup
  }
  return "none";
}
