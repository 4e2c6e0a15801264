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
// The host shim of `python -m telemetry serve` (web/host/, outside dist/: ComfyUI loads every .js in dist/).
const hostBundle = join(here, "host", "host.js");
const check = process.argv.includes("--check");

// "comfyui:app" → "../../scripts/app.js" (external, path kept verbatim in the output).
const COMFY_MODULES = { "comfyui:app": "../../scripts/app.js", "comfyui:api": "../../scripts/api.js" };
const comfyExternals = {
  name: "comfyui-externals",
  setup(b) {
    b.onResolve({ filter: /^comfyui:(app|api)$/ }, (args) => ({ path: COMFY_MODULES[args.path], external: true }));
  },
};

async function buildTo(outfile, entry = "src/main.ts", banner = "// Run Telemetry panel for ComfyUI. Built from web/src by `npm run build`; do not edit.") {
  await build({
    absWorkingDir: here,
    entryPoints: [entry],
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
    banner: { js: banner },
    logLevel: "warning",
  });
}

const HOST_ENTRY = "src/host/host.ts";
const HOST_BANNER = "// Run Telemetry: host shim of `python -m telemetry serve`. Built from web/src/host by `npm run build`; do not edit.";

async function checkOne(committedPath, name, entry, banner) {
  const dir = mkdtempSync(join(tmpdir(), "rt-bundle-"));
  try {
    const fresh = join(dir, "out.js");
    await buildTo(fresh, entry, banner);
    let committed = null;
    try {
      committed = readFileSync(committedPath);
    } catch {
      committed = null;
    }
    if (!committed || !committed.equals(readFileSync(fresh))) {
      console.error(`${name} is stale: run \`npm run build\` in web/ and commit the result.`);
      return false;
    }
    console.log(`${name} is up to date.`);
    return true;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (check) {
  const panelOk = await checkOne(bundle, "web/dist/telemetry.js", "src/main.ts", undefined);
  const hostOk = await checkOne(hostBundle, "web/host/host.js", HOST_ENTRY, HOST_BANNER);
  if (!panelOk || !hostOk) process.exit(1);
} else {
  await buildTo(bundle);
  console.log(`built ${bundle}`);
  await buildTo(hostBundle, HOST_ENTRY, HOST_BANNER);
  console.log(`built ${hostBundle}`);
}
