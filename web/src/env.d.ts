/**
 * Ambient declarations for the bundle's externals and text imports. The sources import ComfyUI's modules as
 * "comfyui:app" / "comfyui:api"; build.mjs rewrites them to the documented relative paths "../../scripts/app.js" and
 * "../../scripts/api.js" (relative to /extensions/<pack>/telemetry.js) and leaves them external.
 */

declare module "comfyui:app" {
  import type { ComfyApp } from "@comfyorg/comfyui-frontend-types";
  export const app: ComfyApp;
}

declare module "comfyui:api" {
  import type { ComfyApi } from "@comfyorg/comfyui-frontend-types";
  export const api: ComfyApi;
}

declare module "*.css" {
  const text: string;
  export default text;
}
