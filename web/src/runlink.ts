/**
 * A link to one run: `<ComfyUI or the serve page>/?telemetry_run=<run id>`, the `url` a webhook payload carries
 * (telemetry/webhooks/payloads.py `run_link`). The extension reads it once, when its script loads, and opens the
 * Telemetry tab on that run's detail.
 */

export const RUN_LINK_PARAM = "telemetry_run";
/** Longer than any run id the pack stores; anything longer is not a link the pack made. */
const MAX_RUN_ID_CHARS = 512;
const CONTROL = /[\u0000-\u001f\u007f]/;

/** The run id of a `?telemetry_run=` query string, or null when there is none (or it cannot be a run id). */
export function runIdFromSearch(search: string | null | undefined): string | null {
  if (!search) return null;
  let value: string | null;
  try {
    value = new URLSearchParams(search).get(RUN_LINK_PARAM);
  } catch {
    return null;
  }
  const id = value?.trim() ?? "";
  if (!id || id.length > MAX_RUN_ID_CHARS || CONTROL.test(id)) return null;
  return id;
}

/** The run id of the page's own address (feature-detected: no `location` outside a browser). */
export function linkedRunId(): string | null {
  try {
    return runIdFromSearch(globalThis.location?.search);
  } catch {
    return null;
  }
}
