/**
 * The overview: headline cards, the four charts (duration with its trend, GPU peak, success rate per day, runs
 * per hour) and the per-workflow table, all for the panel's current filters.
 */

import {
  describeChangePoints,
  describeTrend,
  durationTimelineData,
  durationTrendData,
  gpuPeakData,
  successRateData,
  timelineData,
} from "../chartdata";
import type { Result } from "../client";
import { button, h, setChildren } from "../dom";
import { chooseBuckets } from "../filters";
import { formatBytes, formatCost, formatCount, formatDateTime, formatDuration, formatEnergy, formatPercent } from "../format";
import { STATUS_LABEL } from "../status";
import { RUN_STATUSES, type Stats, type Timeline, type Trend } from "../types";
import { Chart, PALETTE } from "./chart";
import { workflowName, type View, type ViewContext, type WorkflowChoice } from "./context";
import { card, loading, notice } from "./widgets";

const LIVE_REFRESH_MS = 1500;

export class OverviewView implements View {
  readonly el: HTMLElement;
  private charts: Chart[] = [];
  private destroyed = false;
  private refreshQueued = false;
  private generation = 0;

  constructor(private readonly ctx: ViewContext) {
    this.el = h("section", { class: "rt-overview", "aria-label": "Overview" }, loading());
    void this.load();
  }

  attached(): void {
    for (const c of this.charts) c.draw();
  }

  onRun(): void {
    if (this.refreshQueued) return;
    this.refreshQueued = true;
    this.ctx.setTimeout(() => {
      this.refreshQueued = false;
      void this.load();
    }, LIVE_REFRESH_MS);
  }

  resize(): void {
    for (const c of this.charts) c.resize();
  }

  destroy(): void {
    this.destroyed = true;
    this.destroyCharts();
  }

  private destroyCharts(): void {
    for (const c of this.charts) c.destroy();
    this.charts = [];
  }

  async load(): Promise<void> {
    const generation = ++this.generation;
    const { client } = this.ctx.env;
    const filters = this.ctx.state.filters;
    const workflow = filters.workflow;
    const buckets = chooseBuckets(filters, this.ctx.env.now());
    const [stats, hourly, daily, trend] = await Promise.all([
      client.stats(filters),
      buckets.activity === "hour" || buckets.duration === "hour" ? client.timeline(filters, "hour") : Promise.resolve(null),
      client.timeline(filters, "day"),
      workflow ? client.trends(workflow, "duration_ms", filters) : Promise.resolve(null),
    ]);
    if (this.destroyed || generation !== this.generation) return;
    this.render(stats, hourly, daily, trend);
  }

  private render(
    stats: Result<Stats>,
    hourly: Result<Timeline> | null,
    daily: Result<Timeline>,
    trend: Result<Trend> | null,
  ): void {
    this.destroyCharts();
    const units = this.ctx.env.settings().units;
    const parts: HTMLElement[] = [];

    if (stats.ok) {
      const s = stats.data;
      parts.push(
        h(
          "div",
          { class: "rt-cards" },
          card("Runs", formatCount(s.total_runs), statusLine(s)),
          card("Success rate", formatPercent(s.success_rate), failureLine(s)),
          card("Frames", formatCount(s.total_frames)),
          card(
            "Avg duration",
            formatDuration(s.avg_duration_ms),
            `p50 ${formatDuration(s.p50_duration_ms)} · p95 ${formatDuration(s.p95_duration_ms)}`,
          ),
          card("GPU peak", formatBytes(s.max_gpu_peak_bytes, units), "highest of any run"),
          // Only where some run has a GPU energy reading: no card of dashes on CPU machines.
          s.total_energy_wh != null
            ? card("GPU energy", formatEnergy(s.total_energy_wh * 3600), s.total_cost != null ? `cost ${formatCost(s.total_cost, s.currency)}` : "no energy_price_per_kwh set")
            : null,
        ),
        statusBar(s),
      );
      const choices = workflowChoices(s);
      if (choices.length > 0 && !this.ctx.state.filters.workflow) this.ctx.state.workflows = choices;
    } else if (stats.missing) {
      parts.push(notice("This server does not serve statistics yet (/telemetry/stats)."));
    } else {
      parts.push(notice(`Could not load statistics: ${stats.error}`, "error"));
    }

    const buckets = chooseBuckets(this.ctx.state.filters, this.ctx.env.now());
    const durationBucket = hourly && buckets.duration === "hour" ? "hour" : "day";
    const durationTimeline = durationBucket === "hour" && hourly ? hourly : daily;
    const activityBucket = hourly && buckets.activity === "hour" ? "hour" : "day";
    const activity = activityBucket === "hour" && hourly ? hourly : daily;
    let trendText: string | null = null;
    let changeLines: string[] = [];
    if (trend && trend.ok && trend.data.points.length > 0) {
      const t = trend.data;
      trendText = describeTrend(t, (perDay) => (perDay >= 0 ? "+" : "") + formatDuration(perDay));
      changeLines = describeChangePoints(t, formatDuration, (ms) => formatDateTime(ms));
      this.charts.push(
        new Chart({
          title: `Duration of ${workflowName(this.ctx.state, this.ctx.state.filters.workflow)}`,
          data: durationTrendData(t),
          series: [
            { label: "Run", color: PALETTE.blue, kind: "points", value: secondsText },
            { label: "p50", color: PALETTE.green, kind: "line", value: secondsText },
            { label: "p95", color: PALETTE.orange, kind: "line", dash: [4, 3], value: secondsText },
          ],
          yFormat: axisSeconds,
          xPad: 3600,
        }),
      );
    } else if (durationTimeline.ok) {
      this.charts.push(
        new Chart({
          title: `Duration per ${durationBucket}`,
          data: durationTimelineData(durationTimeline.data.points),
          series: [
            { label: "Average", color: PALETTE.blue, kind: "line", value: secondsText },
            { label: "p95", color: PALETTE.orange, kind: "line", dash: [4, 3], value: secondsText },
          ],
          yFormat: axisSeconds,
          xPad: bucketSeconds(durationBucket) / 2,
        }),
      );
    }
    if (durationTimeline.ok) {
      const gpu = gpuPeakData(durationTimeline.data.points, units);
      const measured = durationTimeline.data.points.some((p) => (p.max_gpu_peak_bytes ?? 0) > 0);
      this.charts.push(
        new Chart({
          title: `GPU peak per ${durationBucket}${measured ? ` (${gpu.unit})` : ""}`,
          data: gpu.data,
          series: [{ label: "Max peak", color: PALETTE.purple, kind: "line", value: (v) => numberText(v, gpu.unit) }],
          yFormat: (v) => trimNumber(v),
          xPad: bucketSeconds(durationBucket) / 2,
          emptyText: "No GPU measurements in this range",
        }),
      );
    }
    if (daily.ok) {
      this.charts.push(
        new Chart({
          title: "Success rate per day",
          data: successRateData(daily.data.points),
          series: [{ label: "Success", color: PALETTE.green, kind: "bars", value: (v) => numberText(v, "%") }],
          yFormat: (v) => `${trimNumber(v)}%`,
          yMin: 0,
          yMax: 100,
          xPad: bucketSeconds("day") / 2,
        }),
      );
    }
    if (activity.ok) {
      this.charts.push(
        new Chart({
          title: `Runs per ${activityBucket}`,
          data: timelineData(activity.data.points, ["runs", "failed"]),
          series: [
            { label: "Runs", color: PALETTE.blue, kind: "bars", value: (v) => numberText(v, "") },
            { label: "Failed", color: PALETTE.red, kind: "bars", value: (v) => numberText(v, "") },
          ],
          yFormat: (v) => (Number.isInteger(v) ? String(v) : ""),
          xPad: bucketSeconds(activityBucket) / 2,
        }),
      );
    }
    if (this.charts.length > 0) {
      parts.push(h("h3", null, "Charts"));
      if (trendText) parts.push(h("p", { class: "rt-muted rt-small", "data-testid": "trend" }, trendText));
      if (changeLines.length > 0) {
        parts.push(h("ul", { class: "rt-small rt-changes", "aria-label": "Change points" }, changeLines.map((l) => h("li", null, l))));
      }
      parts.push(h("div", { class: "rt-charts" }, this.charts.map((c) => c.el)));
    } else if (!daily.ok && daily.missing) {
      parts.push(notice("This server does not serve the timeline yet (/telemetry/stats/timeline)."));
    }

    if (stats.ok && (stats.data.by_workflow ?? []).length > 0) {
      parts.push(h("h3", null, "Workflows"), this.workflowTable(stats.data));
    }
    if (stats.ok && stats.data.total_runs === 0) {
      parts.unshift(notice("No runs in this range yet. Queue a workflow and it appears here."));
    }
    setChildren(this.el, parts);
    if (this.el.isConnected) for (const c of this.charts) c.draw();
  }

  private workflowTable(stats: Stats): HTMLElement {
    const rows = [...stats.by_workflow].sort((a, b) => b.runs - a.runs);
    return h(
      "div",
      { class: "rt-table-wrap" },
      h(
        "table",
        { class: "rt-table" },
        h(
          "thead",
          null,
          h(
            "tr",
            null,
            h("th", { scope: "col" }, "Workflow"),
            h("th", { scope: "col", class: "rt-num" }, "Runs"),
            h("th", { scope: "col", class: "rt-num" }, "Success"),
            h("th", { scope: "col", class: "rt-num" }, "Avg"),
          ),
        ),
        h(
          "tbody",
          null,
          rows.map((w) =>
            h(
              "tr",
              null,
              h(
                "td",
                { class: "rt-cell-wf" },
                w.workflow
                  ? button(
                      w.workflow_name || w.workflow,
                      () => this.ctx.setFilters({ ...this.ctx.state.filters, workflow: w.workflow ?? "" }),
                      { class: "rt-link", title: `Show only ${w.workflow_name || w.workflow}` },
                    )
                  : h("span", { class: "rt-muted" }, w.workflow_name || "Unnamed"),
              ),
              h("td", { class: "rt-num" }, formatCount(w.runs)),
              h("td", { class: "rt-num" }, formatPercent(w.success_rate)),
              h("td", { class: "rt-num" }, formatDuration(w.avg_duration_ms)),
            ),
          ),
        ),
      ),
    );
  }
}

/** The workflow picker's choices from a stats answer: key and display name. */
export function workflowChoices(stats: Stats): WorkflowChoice[] {
  return (stats.by_workflow ?? [])
    .filter((w): w is typeof w & { workflow: string } => typeof w.workflow === "string" && w.workflow.length > 0)
    .map((w) => ({ key: w.workflow, name: w.workflow_name || w.workflow }));
}

function bucketSeconds(bucket: "hour" | "day"): number {
  return bucket === "hour" ? 3600 : 86_400;
}

/** The Success rate card's second line: "3 failed", and partial successes when there are any (the backend decides
 * how they count in the rate; the panel shows the rate it gets). */
function failureLine(s: Stats): string {
  const by = s.by_status ?? {};
  const parts = [`${formatCount(by.failed ?? 0)} failed`];
  if (by.partial_success) parts.push(`${formatCount(by.partial_success)} ${STATUS_LABEL.partial_success}`);
  return parts.join(" · ");
}

/** The Runs card's second line: successes, then every other status that has runs ("12 ok · 1 interrupted ·
 * 1 cancelled"); failed and partly successful runs are on the Success rate card. */
function statusLine(s: Stats): string {
  const by = s.by_status ?? {};
  const parts = [`${formatCount(by.success ?? 0)} ok`];
  for (const status of RUN_STATUSES) {
    if (status === "success" || status === "failed" || status === "partial_success") continue;
    const n = by[status] ?? 0;
    if (n > 0) parts.push(`${formatCount(n)} ${STATUS_LABEL[status]}`);
  }
  return parts.join(" · ");
}

/** One segment per status with runs, coloured like its badge (`--rt-<status>` in styles.css). */
function statusBar(s: Stats): HTMLElement {
  const by = s.by_status ?? {};
  const total = RUN_STATUSES.reduce((sum, status) => sum + (by[status] ?? 0), 0);
  const bar = h("div", { class: "rt-statusbar", role: "img", "aria-label": "Runs by status" });
  if (total === 0) return bar;
  for (const status of RUN_STATUSES) {
    const n = by[status] ?? 0;
    if (n > 0) {
      bar.append(
        h("span", {
          class: `rt-seg-${status}`,
          style: { width: `${(n / total) * 100}%`, background: `var(--rt-${status})` },
          title: `${STATUS_LABEL[status]}: ${n}`,
        }),
      );
    }
  }
  bar.setAttribute("aria-label", RUN_STATUSES.map((status) => `${STATUS_LABEL[status]} ${by[status] ?? 0}`).join(", "));
  return bar;
}

function trimNumber(v: number): string {
  if (!Number.isFinite(v)) return "";
  return Math.abs(v) >= 100 ? String(Math.round(v)) : String(Math.round(v * 10) / 10);
}

/** Duration axes are in seconds; ticks read "250 ms", "1.5 s", "2 m 00 s". */
function axisSeconds(v: number): string {
  return v === 0 ? "0" : formatDuration(v * 1000);
}

function secondsText(v: number | null): string {
  return v === null ? "—" : formatDuration(v * 1000);
}

function numberText(v: number | null, unit: string): string {
  if (v === null) return "—";
  return unit ? `${trimNumber(v)} ${unit}`.replace(" %", "%") : trimNumber(v);
}
