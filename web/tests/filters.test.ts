import { describe, expect, it } from "vitest";
import {
  chooseBuckets,
  defaultFilters,
  MAX_TIMELINE_BUCKETS,
  timelineParams,
  describeFilters,
  filtersEqual,
  filtersToParams,
  filtersToPreset,
  paramsToFilters,
  presetToFilters,
  resolveRange,
  runMatchesFilters,
  type Filters,
} from "../src/filters";
import type { RunSummary } from "../src/types";

const NOW = Date.UTC(2025, 2, 5, 14, 30, 27);

function filters(over: Partial<Filters> = {}): Filters {
  return { ...defaultFilters("24h"), ...over };
}

describe("filtersToParams", () => {
  it("sends only what the user chose", () => {
    const params = filtersToParams(defaultFilters("all"), NOW);
    expect(params.toString()).toBe("");
  });

  it("maps every field to the REST query", () => {
    const params = filtersToParams(
      filters({ statuses: ["failed", "interrupted"], workflow: "portrait", label: " story ", q: "oom", instance: "gpu-2" }),
      NOW,
    );
    expect(params.get("status")).toBe("failed,interrupted");
    expect(params.get("workflow")).toBe("portrait");
    expect(params.get("label")).toBe("story");
    expect(params.get("q")).toBe("oom");
    expect(params.get("instance")).toBe("gpu-2");
    expect(Number(params.get("since_ms"))).toBe(Date.UTC(2025, 2, 4, 14, 30, 0));
    expect(params.has("until_ms")).toBe(false);
  });

  it("rounds since_ms down to the minute so repeated requests match", () => {
    const a = resolveRange(filters({ range: "1h" }), NOW);
    const b = resolveRange(filters({ range: "1h" }), NOW + 20_000);
    expect(a.sinceMs).toBe(b.sinceMs);
    expect(a.sinceMs! % 60_000).toBe(0);
  });

  it("encodes hostile text safely", () => {
    const params = filtersToParams(filters({ q: "a&b=c <img>" }), NOW);
    expect(params.toString()).toContain("q=a%26b%3Dc+%3Cimg%3E");
  });

  it("round-trips absolute bounds through the query string", () => {
    const f = filters({ range: "custom", sinceMs: 1000, untilMs: 2000, statuses: ["success"], workflow: "w" });
    const back = paramsToFilters(filtersToParams(f, NOW));
    expect(back.range).toBe("custom");
    expect(back.sinceMs).toBe(1000);
    expect(back.untilMs).toBe(2000);
    expect(back.statuses).toEqual(["success"]);
    expect(back.workflow).toBe("w");
  });

  it("ignores unknown statuses in a query", () => {
    expect(paramsToFilters(new URLSearchParams("status=failed,bogus")).statuses).toEqual(["failed"]);
  });
});

describe("presets", () => {
  it("hold the query fields the backend accepts, not the relative range", () => {
    const preset = filtersToPreset(filters({ range: "7d", statuses: ["failed"], q: "oom" }));
    expect(preset).toEqual({ status: "failed", q: "oom" });
    const back = presetToFilters(preset, "7d");
    expect(filtersEqual(back, filters({ range: "7d", statuses: ["failed"], q: "oom" }))).toBe(true);
  });

  it("keep the range on screen when applied", () => {
    expect(presetToFilters({ workflow: "x" }, "30d").range).toBe("30d");
    expect(presetToFilters({ workflow: "x" }, "custom").range).toBe("all");
  });

  it("accept absolute bounds and status lists as the backend returns them", () => {
    const f = presetToFilters({ since_ms: 1_700_000_000_000, status: ["success", "failed"] }, "7d");
    expect(f.range).toBe("custom");
    expect(f.sinceMs).toBe(1_700_000_000_000);
    expect(f.statuses).toEqual(["success", "failed"]);
    expect(filtersToPreset(f)).toEqual({ since_ms: 1_700_000_000_000, status: "success,failed" });
  });

  it("accept a named range from other clients and ignore nonsense", () => {
    expect(presetToFilters({ range: "24h" }, "7d").range).toBe("24h");
    expect(presetToFilters({ range: "nonsense" }, "7d").range).toBe("7d");
  });
});

describe("runMatchesFilters", () => {
  const run: RunSummary = {
    run_id: "r1",
    status: "failed",
    started_at_ms: NOW - 60_000,
    workflow_name: "Portrait",
    labels: { story_title: "Moon", scene: "s1", tags: ["draft"] },
    error: { node_id: "3", node_type: "KSampler", exception_type: "torch.OutOfMemoryError", message: "CUDA out of memory", kind: "oom" },
  };
  it("applies status, workflow, time, label and text", () => {
    expect(runMatchesFilters(run, filters(), NOW)).toBe(true);
    expect(runMatchesFilters(run, filters({ statuses: ["success"] }), NOW)).toBe(false);
    expect(runMatchesFilters(run, filters({ workflow: "Other" }), NOW)).toBe(false);
    expect(runMatchesFilters({ ...run, workflow_id: "wf-9" }, filters({ workflow: "wf-9" }), NOW)).toBe(true);
    expect(runMatchesFilters(run, filters({ label: "DRAFT" }), NOW)).toBe(true);
    expect(runMatchesFilters(run, filters({ label: "final" }), NOW)).toBe(false);
    expect(runMatchesFilters(run, filters({ q: "out of memory" }), NOW)).toBe(true);
    expect(runMatchesFilters({ ...run, started_at_ms: NOW - 2 * 86_400_000 }, filters(), NOW)).toBe(false);
  });
});

describe("timeline buckets", () => {
  it("uses hours for short ranges and days for long ones", () => {
    expect(chooseBuckets(filters({ range: "24h" }), NOW)).toEqual({ duration: "hour", activity: "hour" });
    expect(chooseBuckets(filters({ range: "30d" }), NOW)).toEqual({ duration: "day", activity: "hour" });
    expect(chooseBuckets(filters({ range: "90d" }), NOW)).toEqual({ duration: "day", activity: "day" });
    expect(chooseBuckets(filters({ range: "all" }), NOW)).toEqual({ duration: "day", activity: "day" });
    const custom = filters({ range: "custom", sinceMs: NOW - 3 * 3_600_000, untilMs: NOW });
    expect(chooseBuckets(custom, NOW).duration).toBe("hour");
  });
  it("bounds an all-time timeline by the backend's bucket limit", () => {
    const params = timelineParams(filters({ range: "all" }), "day", NOW);
    const since = Number(params.get("since_ms"));
    expect(params.get("bucket")).toBe("day");
    expect((NOW - since) / 86_400_000).toBeLessThan(MAX_TIMELINE_BUCKETS);
    expect(since % 86_400_000).toBe(0);
    expect(timelineParams(filters({ range: "24h" }), "hour", NOW).get("since_ms")).toBe(
      filtersToParams(filters({ range: "24h" }), NOW).get("since_ms"),
    );
  });
});

describe("describeFilters", () => {
  it("summarises the active filters", () => {
    expect(describeFilters(filters({ statuses: ["failed"], workflow: "wf-1", q: "oom" }), () => "Portrait")).toBe(
      'Last 24 hours · failed · Portrait · "oom"',
    );
  });
});
