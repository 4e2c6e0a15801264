/**
 * Shaping REST answers into uPlot's aligned data (`[xs, ys1, ys2, ...]`, x in seconds, gaps as `null`).
 *
 * Pure functions: the chart view only hands the result to uPlot. Byte series are scaled to one unit per chart
 * (`bytesScale`) so that the axis reads "GiB" instead of raw numbers.
 */

import { bytesScale, type Units } from "./format";
import type { GpuSample, TimelinePoint, Trend } from "./types";

export type Aligned = [number[], ...(number | null)[][]];

export interface TimedValue {
  t_ms: number;
  value: number | null | undefined;
}

/** Merges several series on the union of their timestamps (sorted), filling the gaps with null. */
export function alignSeries(series: readonly (readonly TimedValue[])[]): Aligned {
  const times = [...new Set(series.flatMap((s) => s.map((p) => p.t_ms)))].sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  const ys = series.map((s) => {
    const column: (number | null)[] = new Array(times.length).fill(null);
    for (const p of s) {
      const i = index.get(p.t_ms);
      if (i !== undefined && typeof p.value === "number" && Number.isFinite(p.value)) column[i] = p.value;
    }
    return column;
  });
  return [times.map((t) => t / 1000), ...ys];
}

type NumericField = {
  [K in keyof TimelinePoint]: TimelinePoint[K] extends number | null ? K : never;
}[keyof TimelinePoint];

/** One or more fields of the timeline, over its buckets. */
export function timelineData(points: readonly TimelinePoint[], fields: readonly NumericField[], scale = 1): Aligned {
  return alignSeries(
    fields.map((f) =>
      points.map((p) => ({ t_ms: p.t_ms, value: typeof p[f] === "number" ? (p[f] as number) / scale : null })),
    ),
  );
}

/** Success rate per bucket in percent; buckets without runs are gaps, not 0%. */
export function successRateData(points: readonly TimelinePoint[]): Aligned {
  return alignSeries([
    points.map((p) => ({
      t_ms: p.t_ms,
      value: p.runs > 0 && typeof p.success_rate === "number" ? p.success_rate * 100 : null,
    })),
  ]);
}

/** Max GPU peak per bucket, in the unit that fits the largest value. */
export function gpuPeakData(points: readonly TimelinePoint[], units: Units): { data: Aligned; unit: string } {
  const max = Math.max(0, ...points.map((p) => p.max_gpu_peak_bytes ?? 0));
  const { divisor, unit } = bytesScale(max, units);
  return { data: timelineData(points, ["max_gpu_peak_bytes"], divisor), unit };
}

/** Per-run durations (seconds) with the rolling p50/p95 of the trends route. */
export function durationTrendData(trend: Trend): Aligned {
  const toSeconds = (v: number | null | undefined) => (typeof v === "number" ? v / 1000 : null);
  return alignSeries([
    trend.points.map((p) => ({ t_ms: p.t_ms, value: toSeconds(p.value) })),
    trend.rolling.map((r) => ({ t_ms: r.t_ms, value: toSeconds(r.p50) })),
    trend.rolling.map((r) => ({ t_ms: r.t_ms, value: toSeconds(r.p95) })),
  ]);
}

/** Average and p95 duration per bucket (seconds): the duration chart when no single workflow is chosen. */
export function durationTimelineData(points: readonly TimelinePoint[]): Aligned {
  return timelineData(points, ["avg_duration_ms", "p95_duration_ms"], 1000);
}

/** GPU memory used and process RAM over the run, x in seconds from the run's start: one series per GPU
 * (`devices`, NVML indexes in order of first appearance; samples without `gpu_index` count as one unnamed GPU),
 * then RAM. */
export function gpuSamplesData(
  samples: readonly GpuSample[],
  runStartMs: number | null | undefined,
  units: Units,
): { data: Aligned; unit: string; hasRam: boolean; hasGpu: boolean; devices: (number | null)[] } {
  const sorted = [...samples].sort((a, b) => a.t_ms - b.t_ms);
  const origin = typeof runStartMs === "number" ? runStartMs : (sorted[0]?.t_ms ?? 0);
  const max = Math.max(0, ...sorted.map((s) => Math.max(s.used_bytes ?? 0, s.ram_rss_bytes ?? 0)));
  const { divisor, unit } = bytesScale(max, units);
  const devices: (number | null)[] = [];
  for (const s of sorted) {
    const index = typeof s.gpu_index === "number" ? s.gpu_index : null;
    if (typeof s.used_bytes === "number" && !devices.includes(index)) devices.push(index);
  }
  if (devices.length === 0) devices.push(null);
  const times = [...new Set(sorted.map((s) => s.t_ms))];
  const row = new Map(times.map((t, i) => [t, i]));
  const used = devices.map(() => times.map((): number | null => null));
  const ram = times.map((): number | null => null);
  for (const s of sorted) {
    const i = row.get(s.t_ms)!;
    const d = devices.indexOf(typeof s.gpu_index === "number" ? s.gpu_index : null);
    if (typeof s.used_bytes === "number" && d >= 0) used[d][i] = s.used_bytes / divisor;
    if (typeof s.ram_rss_bytes === "number") ram[i] = s.ram_rss_bytes / divisor;
  }
  return {
    data: [times.map((t) => (t - origin) / 1000), ...used, ram],
    unit,
    hasGpu: used.some((ys) => ys.some((v) => v !== null)),
    hasRam: ram.some((v) => v !== null),
    devices,
  };
}

/** Whether a chart has anything to draw (at least one non-null y). */
export function hasData(data: Aligned): boolean {
  return data.slice(1).some((ys) => (ys as (number | null)[]).some((v) => v !== null));
}

/** One line per change point (the last `max`): "2025-03-05 14:02: 1.2 s → 2.4 s". */
export function describeChangePoints(
  trend: Trend,
  formatValue: (v: number) => string,
  formatTime: (ms: number) => string,
  max = 3,
): string[] {
  return trend.change_points.slice(-max).map((cp) => {
    const before = typeof cp.before === "number" ? formatValue(cp.before) : "?";
    const after = typeof cp.after === "number" ? formatValue(cp.after) : "?";
    return `Changed ${formatTime(cp.t_ms)}: ${before} → ${after}`;
  });
}

/** The trend sentence under the duration chart: "Getting slower: +1.2 s per day (p = 0.01)". */
export function describeTrend(trend: Trend, formatDelta: (perDay: number) => string): string | null {
  const mk = trend.mann_kendall;
  if (!mk) return null;
  const p = typeof mk.p_value === "number" ? ` (p = ${mk.p_value < 0.001 ? "<0.001" : mk.p_value.toFixed(3)})` : "";
  const slope = typeof trend.slope_per_day === "number" ? `: ${formatDelta(trend.slope_per_day)} per day` : "";
  const higherIsWorse = trend.metric !== "success_rate" && trend.metric !== "fps";
  if (mk.trend === "none") return `No significant trend${p}`;
  const worse = (mk.trend === "increasing") === higherIsWorse;
  const word =
    trend.metric === "duration_ms"
      ? mk.trend === "increasing"
        ? "Getting slower"
        : "Getting faster"
      : mk.trend === "increasing"
        ? "Increasing"
        : "Decreasing";
  return `${word}${worse ? " ⚠" : ""}${slope}${p}`;
}
