/** Small DOM pieces shared by the views: badges, cards, notices. */

import { classToken, h, type Child } from "../dom";
import { SEVERITY_LABEL, isSeverity } from "../recommendations";
import { statusLabel } from "../status";
import type { RunLabels, RunSummary } from "../types";

/** A run's or a node's status as a coloured badge (colours in styles.css, `.rt-badge.rt-<status>`). */
export function statusBadge(status: string | null | undefined): HTMLElement {
  return h("span", { class: ["rt-badge", `rt-${classToken(status)}`] }, statusLabel(status));
}

export function severityBadge(severity: string): HTMLElement {
  const label = isSeverity(severity) ? SEVERITY_LABEL[severity] : severity;
  return h("span", { class: ["rt-badge", `rt-${classToken(severity)}`] }, label);
}

export function card(label: string, value: string, sub?: string | null, title?: string): HTMLElement {
  return h(
    "div",
    { class: "rt-card", title: title ?? `${label}: ${value}${sub ? ` (${sub})` : ""}` },
    h("div", { class: "rt-card-label" }, label),
    h("div", { class: "rt-card-value" }, value),
    sub ? h("div", { class: "rt-card-sub" }, sub) : null,
  );
}

export function labelsList(labels: RunLabels | null | undefined): string[] {
  if (!labels) return [];
  return [labels.story_title, labels.scene, ...(labels.tags ?? [])].filter(
    (v): v is string => typeof v === "string" && v.length > 0,
  );
}

export function labelTags(labels: RunLabels | null | undefined): Child[] {
  return labelsList(labels).map((l) => h("span", { class: "rt-tag" }, l));
}

export function workflowLabel(run: Pick<RunSummary, "workflow_name" | "workflow_id">): string {
  return run.workflow_name || run.workflow_id || "Unnamed workflow";
}

export function notice(text: string, kind: "info" | "error" = "info"): HTMLElement {
  return h("div", { class: ["rt-notice", kind === "error" && "rt-error"], role: kind === "error" ? "alert" : "status" }, text);
}

export function loading(text = "Loading…"): HTMLElement {
  return h("div", { class: "rt-empty", role: "status" }, text);
}

export function kv(rows: [string, Child][]): HTMLElement {
  return h(
    "dl",
    { class: "rt-kv" },
    rows.flatMap(([k, v]) => [h("dt", null, k), h("dd", null, v)]),
  );
}
