import { describe, expect, it } from "vitest";
import {
  alignSeries,
  describeChangePoints,
  describeTrend,
  durationTimelineData,
  durationTrendData,
  gpuPeakData,
  gpuSamplesData,
  hasData,
  successRateData,
  timelineData,
} from "../src/chartdata";
import type { TimelinePoint, Trend } from "../src/types";

const point = (t_ms: number, over: Partial<TimelinePoint> = {}): TimelinePoint => ({
  t_ms,
  runs: 2,
  success: 1,
  failed: 1,
  interrupted: 0,
  success_rate: 0.5,
  avg_duration_ms: 2000,
  p95_duration_ms: 3000,
  max_gpu_peak_bytes: 2 * 1024 ** 3,
  frames: 4,
  ...over,
});

describe("alignSeries", () => {
  it("merges on the union of timestamps with null gaps, x in seconds", () => {
    const data = alignSeries([
      [{ t_ms: 2000, value: 1 }, { t_ms: 1000, value: 2 }],
      [{ t_ms: 3000, value: 5 }, { t_ms: 1000, value: null }],
    ]);
    expect(data).toEqual([[1, 2, 3], [2, 1, null], [null, null, 5]]);
  });
});

describe("timeline shaping", () => {
  const points = [point(3_600_000), point(7_200_000, { runs: 0, success_rate: null, max_gpu_peak_bytes: null })];
  it("extracts fields with a scale", () => {
    expect(timelineData(points, ["runs", "failed"])).toEqual([[3600, 7200], [2, 0], [1, 1]]);
    expect(durationTimelineData(points)).toEqual([[3600, 7200], [2, 2], [3, 3]]);
  });
  it("shows empty buckets as gaps in the success rate, not 0%", () => {
    expect(successRateData(points)).toEqual([[3600, 7200], [50, null]]);
  });
  it("scales GPU peaks to one unit", () => {
    expect(gpuPeakData(points, "binary")).toEqual({ data: [[3600, 7200], [2, null]], unit: "GiB" });
  });
  it("knows whether there is anything to draw", () => {
    expect(hasData([[1], [null]])).toBe(false);
    expect(hasData([[1], [null], [0]])).toBe(true);
  });
});

describe("trends", () => {
  const trend: Trend = {
    workflow: "w",
    metric: "duration_ms",
    points: [{ run_id: "a", t_ms: 1000, value: 2000 }, { run_id: "b", t_ms: 2000, value: 4000 }],
    rolling: [{ t_ms: 2000, p50: 3000, p95: 3900 }],
    slope_per_day: 1500,
    mann_kendall: { tau: 0.8, p_value: 0.01, trend: "increasing" },
    change_points: [],
  };
  it("shapes per-run points with rolling percentiles in seconds", () => {
    expect(durationTrendData(trend)).toEqual([[1, 2], [2, 4], [null, 3], [null, 3.9]]);
  });
  it("lists the last change points", () => {
    const withChanges = { ...trend, change_points: [1, 2, 3, 4].map((i) => ({ run_id: `r${i}`, t_ms: i, before: i * 1000, after: i * 2000 })) };
    expect(describeChangePoints(withChanges, (v) => `${v / 1000} s`, (t) => `t${t}`)).toEqual([
      "Changed t2: 2 s → 4 s",
      "Changed t3: 3 s → 6 s",
      "Changed t4: 4 s → 8 s",
    ]);
  });
  it("describes the trend in words", () => {
    expect(describeTrend(trend, (d) => `+${d / 1000} s`)).toBe("Getting slower ⚠: +1.5 s per day (p = 0.010)");
    expect(describeTrend({ ...trend, mann_kendall: { tau: 0, p_value: 0.6, trend: "none" } }, String)).toBe(
      "No significant trend (p = 0.600)",
    );
    expect(describeTrend({ ...trend, mann_kendall: null }, String)).toBeNull();
  });
});

describe("gpuSamplesData", () => {
  it("uses seconds from the run start and one unit", () => {
    const shaped = gpuSamplesData(
      [
        { t_ms: 3000, used_bytes: 4 * 1024 ** 3, ram_rss_bytes: 1024 ** 3 },
        { t_ms: 1000, used_bytes: 2 * 1024 ** 3 },
      ],
      1000,
      "binary",
    );
    expect(shaped).toEqual({ data: [[0, 2], [2, 4], [null, 1]], unit: "GiB", hasGpu: true, hasRam: true, devices: [null] });
  });

  it("draws one line per GPU, aligned on the sample times", () => {
    const GiB = 1024 ** 3;
    const shaped = gpuSamplesData(
      [
        { t_ms: 1000, ram_rss_bytes: GiB },
        { t_ms: 1100, used_bytes: 70 * GiB, ram_rss_bytes: 2 * GiB, gpu_index: 1 },
        { t_ms: 1100, used_bytes: 78 * GiB, gpu_index: 0 },
        { t_ms: 1200, used_bytes: 72 * GiB, ram_rss_bytes: 2 * GiB, gpu_index: 1 },
        { t_ms: 1200, used_bytes: 77 * GiB, gpu_index: 0 },
      ],
      1000,
      "binary",
    );
    expect(shaped.devices).toEqual([1, 0]);
    expect(shaped.data).toEqual([
      [0, 0.1, 0.2],
      [null, 70, 72],
      [null, 78, 77],
      [1, 2, 2],
    ]);
  });
});
