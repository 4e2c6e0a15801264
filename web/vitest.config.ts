import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

process.env.TZ = "UTC";

const fake = (name: string) => fileURLToPath(new URL(`./tests/comfy-fake/${name}.ts`, import.meta.url));

export default defineConfig({
  // ComfyUI's own modules (external in the bundle) are fakes in tests: see tests/comfy-fake/.
  resolve: { alias: { "comfyui:app": fake("app"), "comfyui:api": fake("api") } },
  test: {
    include: ["tests/**/*.test.ts"],
    environment: "node",
    setupFiles: ["tests/setup.ts"],
  },
});
