/** Stands in for ComfyUI's `scripts/app.js` in vitest (vitest.config.ts aliases `comfyui:app` here). Tests set
 * `extensionManager`, `graph` and `canvas` to fakes of the frontend version they model, then import `src/main.ts`. */

export interface RegisteredExtension {
  name: string;
  settings?: { id: string; onChange?: (value: unknown) => void }[];
  setup?: () => Promise<void> | void;
  afterConfigureGraph?: () => Promise<void> | void;
}

export const app = {
  extensions: [] as RegisteredExtension[],
  extensionManager: undefined as unknown,
  graph: null as unknown,
  canvas: null as unknown,
  registerExtension(extension: RegisteredExtension): void {
    this.extensions.push(extension);
  },
};
