/** Loads the extension as ComfyUI does (`src/main.ts`), with ComfyUI's `app`/`api` replaced by fakes
 * (tests/comfy-fake/, aliased in vitest.config.ts) and the extension manager `manager` in the shape of a frontend
 * (frontend-fakes.ts). Each call loads a fresh copy of the module, as a page load would. */

import { vi } from "vitest";
import { type FakeBackend, settle } from "./fakes";

export interface Loaded {
  app: typeof import("./comfy-fake/app").app;
  api: typeof import("./comfy-fake/api").api;
  values: Record<string, unknown>;
}

/** Loads main.ts against `manager` (plus a setting store holding `values`) and runs its `setup`. */
export async function loadExtension(
  manager: Record<string, unknown>,
  backend: FakeBackend,
  values: Record<string, unknown> = {},
): Promise<Loaded> {
  vi.resetModules();
  const { app } = await import("./comfy-fake/app");
  const { api } = await import("./comfy-fake/api");
  app.extensions.length = 0;
  app.graph = { id: "wf-1" };
  app.extensionManager = {
    ...manager,
    setting: { get: (id: string) => values[id], set: (id: string, v: unknown) => void (values[id] = v) },
    workflow: { activeWorkflow: { path: "workflows/Portrait.json", activeState: { id: "wf-1" } } },
  };
  api.fetchApi = backend.fetchApi;
  await import("../src/main");
  const extension = app.extensions[0];
  await extension.setup?.();
  await settle();
  return { app, api, values };
}
