/**
 * Turning numbers from the REST routes into the short strings the panel shows.
 *
 * Every formatter takes `null`/`undefined` (the backend leaves out what it could not measure) and answers
 * `EMPTY` for it, so views never print "NaN" or "null".
 */

export const EMPTY = "—";

/** Memory units, chosen in the settings: binary (KiB, MiB, GiB; 1024) or decimal (kB, MB, GB; 1000). */
export type Units = "binary" | "decimal";

const BINARY_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"] as const;
const DECIMAL_UNITS = ["B", "kB", "MB", "GB", "TB", "PB"] as const;

function isNumber(value: unknown): value is number {
  return typeof value === "number" && Number.isFinite(value);
}

/** 1536 → "1.5 KiB"; 0 → "0 B"; three significant digits at most. */
export function formatBytes(bytes: number | null | undefined, units: Units = "binary"): string {
  if (!isNumber(bytes)) return EMPTY;
  const base = units === "decimal" ? 1000 : 1024;
  const names = units === "decimal" ? DECIMAL_UNITS : BINARY_UNITS;
  const sign = bytes < 0 ? "-" : "";
  let value = Math.abs(bytes);
  let i = 0;
  while (value >= base && i < names.length - 1) {
    value /= base;
    i += 1;
  }
  if (i === 0) return `${sign}${Math.round(value)} B`;
  const digits = value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${sign}${trimZeros(value.toFixed(digits))} ${names[i]}`;
}

/** The divisor and unit name to show a series of byte values on one axis (the largest value picks the unit). */
export function bytesScale(maxBytes: number, units: Units = "binary"): { divisor: number; unit: string } {
  const base = units === "decimal" ? 1000 : 1024;
  const names = units === "decimal" ? DECIMAL_UNITS : BINARY_UNITS;
  let divisor = 1;
  let i = 0;
  while (maxBytes / divisor >= base && i < names.length - 1) {
    divisor *= base;
    i += 1;
  }
  return { divisor, unit: names[i] };
}

function trimZeros(text: string): string {
  return text.includes(".") ? text.replace(/\.?0+$/, "") : text;
}

/** 850 → "850 ms"; 12345 → "12.3 s"; 245000 → "4 m 05 s"; 3720000 → "1 h 02 m". */
export function formatDuration(ms: number | null | undefined): string {
  if (!isNumber(ms)) return EMPTY;
  const sign = ms < 0 ? "-" : "";
  const abs = Math.abs(ms);
  if (abs < 1000) return `${sign}${Math.round(abs)} ms`;
  if (abs < 60_000) {
    const s = abs / 1000;
    return `${sign}${trimZeros(s.toFixed(s < 10 ? 2 : 1))} s`;
  }
  const totalSeconds = Math.round(abs / 1000);
  if (totalSeconds < 3600) {
    const m = Math.floor(totalSeconds / 60);
    const s = totalSeconds % 60;
    return `${sign}${m} m ${String(s).padStart(2, "0")} s`;
  }
  const totalMinutes = Math.round(totalSeconds / 60);
  const h = Math.floor(totalMinutes / 60);
  const m = totalMinutes % 60;
  if (h < 48) return `${sign}${h} h ${String(m).padStart(2, "0")} m`;
  return `${sign}${Math.floor(h / 24)} d ${h % 24} h`;
}

/** A signed change for the compare view: "+1.2 s", "-350 ms", "±0 ms". */
export function formatDurationDelta(ms: number | null | undefined): string {
  if (!isNumber(ms)) return EMPTY;
  if (ms === 0) return "±0 ms";
  return ms > 0 ? `+${formatDuration(ms)}` : formatDuration(ms);
}

/** 0.9512 → "95.1%"; 1 → "100%". Takes a ratio in 0..1. */
export function formatPercent(ratio: number | null | undefined): string {
  if (!isNumber(ratio)) return EMPTY;
  const pct = ratio * 100;
  if (pct === 100 || pct === 0) return `${pct}%`;
  return `${trimZeros(pct.toFixed(pct >= 99.95 || pct < 10 ? 2 : 1))}%`;
}

/** A relative change "+12%" / "-3.5%" between two values, or EMPTY when the base is zero or missing. */
export function formatChange(before: number | null | undefined, after: number | null | undefined): string {
  if (!isNumber(before) || !isNumber(after) || before === 0) return EMPTY;
  const pct = ((after - before) / Math.abs(before)) * 100;
  const text = trimZeros(Math.abs(pct).toFixed(Math.abs(pct) < 10 ? 1 : 0));
  if (text === "0") return "±0%";
  return `${pct > 0 ? "+" : "-"}${text}%`;
}

/** 1234567 → "1,234,567" (fixed separator, independent of the browser locale). */
export function formatCount(n: number | null | undefined): string {
  if (!isNumber(n)) return EMPTY;
  const rounded = Math.round(n);
  const sign = rounded < 0 ? "-" : "";
  return sign + String(Math.abs(rounded)).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

function pad2(n: number): string {
  return String(n).padStart(2, "0");
}

/** Local wall-clock time "2025-03-05 14:02:09" (seconds optional). */
export function formatDateTime(ms: number | null | undefined, withSeconds = false): string {
  if (!isNumber(ms)) return EMPTY;
  const d = new Date(ms);
  const date = `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}`;
  const time = `${pad2(d.getHours())}:${pad2(d.getMinutes())}${withSeconds ? `:${pad2(d.getSeconds())}` : ""}`;
  return `${date} ${time}`;
}

/** A short start time for table cells: "14:02" today, "Mar 5 14:02" this year, "2024-03-05" before. */
export function formatShortTime(ms: number | null | undefined, nowMs: number): string {
  if (!isNumber(ms)) return EMPTY;
  const d = new Date(ms);
  const now = new Date(nowMs);
  const time = `${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
  if (d.getFullYear() === now.getFullYear() && d.getMonth() === now.getMonth() && d.getDate() === now.getDate()) {
    return time;
  }
  if (d.getFullYear() === now.getFullYear()) {
    return `${MONTHS[d.getMonth()]} ${d.getDate()} ${time}`;
  }
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}`;
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"] as const;

/** "just now", "45 s ago", "3 min ago", "2 h ago", "4 d ago"; "in 30 s" for the future. */
export function formatRelative(ms: number | null | undefined, nowMs: number): string {
  if (!isNumber(ms)) return EMPTY;
  const diff = nowMs - ms;
  const abs = Math.abs(diff);
  let text: string;
  if (abs < 5_000) return "just now";
  if (abs < 60_000) text = `${Math.round(abs / 1000)} s`;
  else if (abs < 3_600_000) text = `${Math.round(abs / 60_000)} min`;
  else if (abs < 86_400_000) text = `${Math.round(abs / 3_600_000)} h`;
  else text = `${Math.round(abs / 86_400_000)} d`;
  return diff >= 0 ? `${text} ago` : `in ${text}`;
}

/** Any parameter value as one line of text: arrays joined, objects as compact JSON, null as EMPTY. */
export function formatValue(value: unknown): string {
  if (value === null || value === undefined || value === "") return EMPTY;
  if (typeof value === "number") return Number.isFinite(value) ? String(value) : EMPTY;
  if (typeof value === "string") return value;
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (Array.isArray(value)) return value.length === 0 ? EMPTY : value.map(formatValue).join(", ");
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

/** Shortens a run id for buttons and links: the first 8 characters. */
export function shortId(id: string | null | undefined): string {
  if (!id) return EMPTY;
  return id.length > 8 ? id.slice(0, 8) : id;
}

/** Joules as "12.3 kJ" / "850 J" / "1.25 kWh" (large amounts in watt-hours, how electricity is billed). */
export function formatEnergy(joules: number | null | undefined): string {
  if (typeof joules !== "number" || !Number.isFinite(joules)) return EMPTY;
  if (joules >= 3_600_000) return `${(joules / 3_600_000).toFixed(2)} kWh`;
  if (joules >= 36_000) return `${(joules / 3600).toFixed(1)} Wh`;
  if (joules >= 1000) return `${(joules / 1000).toFixed(1)} kJ`;
  return `${joules >= 10 ? Math.round(joules) : joules.toFixed(1)} J`;
}

/** A cost with its currency ("0.0042 EUR"): four significant decimals, since one run costs fractions of a cent. */
export function formatCost(cost: number | null | undefined, currency: string | null | undefined): string {
  if (typeof cost !== "number" || !Number.isFinite(cost)) return EMPTY;
  const text = cost >= 1 ? cost.toFixed(2) : cost.toPrecision(2);
  return currency ? `${text} ${currency}` : text;
}
