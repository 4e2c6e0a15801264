// Builds the panel into ONE ES module, dist/telemetry.js, which ComfyUI serves from WEB_DIRECTORY and imports as
// an extension entry. ComfyUI's own modules stay external, imported by the relative paths it documents. CSS is
// bundled as text and injected at load. The output is deterministic (no timestamps, no absolute paths), so
//   node build.mjs --check
// rebuilds into a temporary file and fails when the committed bundle is stale (CI runs it).
import { build } from "esbuild";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const bundle = join(here, "dist", "telemetry.js");
const check = process.argv.includes("--check");

// "comfyui:app" → "../../scripts/app.js" (external, path kept verbatim in the output).
const COMFY_MODULES = { "comfyui:app": "../../scripts/app.js", "comfyui:api": "../../scripts/api.js" };
const comfyExternals = {
  name: "comfyui-externals",
  setup(b) {
    b.onResolve({ filter: /^comfyui:(app|api)$/ }, (args) => ({ path: COMFY_MODULES[args.path], external: true }));
  },
};

async function buildTo(outfile) {
  await build({
    absWorkingDir: here,
    entryPoints: ["src/main.ts"],
    outfile,
    bundle: true,
    format: "esm",
    platform: "browser",
    target: ["es2022"],
    minify: true,
    sourcemap: false,
    legalComments: "none",
    charset: "utf8",
    loader: { ".css": "text" },
    plugins: [comfyExternals],
    banner: { js: "// Run Telemetry panel for ComfyUI. Built from web/src by `npm run build`; do not edit." },
    logLevel: "warning",
  });
}

if (check) {
  const dir = mkdtempSync(join(tmpdir(), "rt-bundle-"));
  try {
    const fresh = join(dir, "telemetry.js");
    await buildTo(fresh);
    let committed = null;
    try {
      committed = readFileSync(bundle);
    } catch {
      committed = null;
    }
    if (!committed || !committed.equals(readFileSync(fresh))) {
      console.error("web/dist/telemetry.js is stale: run `npm run build` in web/ and commit the result.");
      process.exit(1);
    }
    console.log("web/dist/telemetry.js is up to date.");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
} else {
  await buildTo(bundle);
  console.log(`built ${bundle}`);
}
