/**
 * The fleet's instances as the panel shows them: one entry per instance name (a plugin and a watcher of one
 * ComfyUI share it), offline when its newest heartbeat is older than 2 minutes (checked against the panel's clock
 * too, so a list loaded a while ago still turns offline).
 */

import type { InstanceInfo } from "./types";

export const OFFLINE_AFTER_MS = 120_000;

export interface InstanceChoice {
  name: string;
  online: boolean;
  lastSeenMs: number | null;
  runs: number;
  detail: string;
}

export function isOnline(info: InstanceInfo, now: number): boolean {
  const limit = info.offline_after_ms ?? OFFLINE_AFTER_MS;
  return info.last_seen_ms != null && now - info.last_seen_ms < limit;
}

/** One choice per instance name, sorted by name; online when any of its heartbeats is. */
export function instanceChoices(list: readonly InstanceInfo[] | null | undefined, now: number): InstanceChoice[] {
  const byName = new Map<string, InstanceChoice>();
  for (const info of list ?? []) {
    if (!info || typeof info.instance !== "string" || !info.instance) continue;
    const online = isOnline(info, now);
    const parts = [info.source, info.comfyui_version && `ComfyUI ${info.comfyui_version}`, info.gpu_name].filter(Boolean);
    const current = byName.get(info.instance);
    if (!current) {
      byName.set(info.instance, {
        name: info.instance,
        online,
        lastSeenMs: info.last_seen_ms ?? null,
        runs: Number(info.runs) || 0,
        detail: parts.join(" · "),
      });
      continue;
    }
    current.online = current.online || online;
    current.runs = Math.max(current.runs, Number(info.runs) || 0);
    if ((info.last_seen_ms ?? 0) > (current.lastSeenMs ?? 0)) current.lastSeenMs = info.last_seen_ms;
    if (!current.detail) current.detail = parts.join(" · ");
  }
  return [...byName.values()].sort((a, b) => a.name.localeCompare(b.name));
}

/** The selector's text for an instance: its name, marked when offline. */
export function instanceLabel(choice: InstanceChoice): string {
  return choice.online ? choice.name : `${choice.name} (offline)`;
}
