/**
 * Ordering and merging of recommendations for the panel: critical before warning before info, newest first, and
 * the rule for which ones deserve a toast (new, open, warning or critical).
 */

import type { Recommendation, Severity } from "./types";

export const SEVERITY_RANK: Record<Severity, number> = { critical: 0, warning: 1, info: 2 };

export const SEVERITY_LABEL: Record<Severity, string> = { critical: "Critical", warning: "Warning", info: "Info" };

export function isSeverity(value: unknown): value is Severity {
  return value === "info" || value === "warning" || value === "critical";
}

export function sortRecommendations(recs: readonly Recommendation[]): Recommendation[] {
  return [...recs].sort((a, b) => {
    const sa = SEVERITY_RANK[a.severity] ?? 3;
    const sb = SEVERITY_RANK[b.severity] ?? 3;
    if (sa !== sb) return sa - sb;
    return (b.updated_at_ms ?? b.created_at_ms ?? 0) - (a.updated_at_ms ?? a.created_at_ms ?? 0);
  });
}

/** Puts a recommendation pushed over the websocket into the list shown for `state`: replaced when known, added
 * when it has that state, dropped when its state moved away (dismissed elsewhere, resolved). */
export function upsertRecommendation(
  list: readonly Recommendation[],
  rec: Recommendation,
  state: Recommendation["state"],
): Recommendation[] {
  const rest = list.filter((r) => String(r.id) !== String(rec.id));
  return sortRecommendations(rec.state === state ? [...rest, rec] : rest);
}

/** Whether a pushed recommendation is news worth a toast: open, warning or critical, not seen before. */
export function shouldToast(rec: Recommendation, known: ReadonlySet<string>): boolean {
  return rec.state === "open" && rec.severity !== "info" && !known.has(String(rec.id));
}

/** Counts of open recommendations by severity, for the tab's badge. */
export function countOpen(recs: readonly Recommendation[]): Record<Severity, number> {
  const counts: Record<Severity, number> = { critical: 0, warning: 0, info: 0 };
  for (const r of recs) if (r.state === "open" && isSeverity(r.severity)) counts[r.severity] += 1;
  return counts;
}
