/**
 * A uPlot chart sized to its container and coloured from the theme. Charts exist only while the panel is open:
 * `destroy()` removes uPlot's canvas and its window listeners.
 */

import uPlot from "uplot";
import type { Aligned } from "../chartdata";
import { hasData } from "../chartdata";
import { h } from "../dom";

export interface SeriesSpec {
  label: string;
  color: string;
  kind?: "line" | "points" | "bars";
  dash?: number[];
  /** Format of the legend value. */
  value?: (v: number | null) => string;
}

export interface ChartSpec {
  title: string;
  data: Aligned;
  series: SeriesSpec[];
  /** The y axis' tick format. */
  yFormat?: (v: number) => string;
  /** x values are seconds since the epoch (a time axis) or seconds from a run's start. */
  xTime?: boolean;
  yMin?: number;
  yMax?: number;
  /** Half-width of the x range when all points share one x (a single bucket), in x units. */
  xPad?: number;
  height?: number;
  emptyText?: string;
}

export const PALETTE = {
  blue: "#3b82f6",
  orange: "#f59e0b",
  green: "#2ea043",
  red: "#e5534b",
  purple: "#a371f7",
  grey: "#8b949e",
};

function themeColor(el: Element, name: string, fallback: string): string {
  const value = getComputedStyle(el).getPropertyValue(name).trim();
  return value || fallback;
}

export class Chart {
  readonly el: HTMLElement;
  private readonly body: HTMLElement;
  private plot: uPlot | null = null;

  constructor(private readonly spec: ChartSpec) {
    this.body = h("div", { class: "rt-chart-body" });
    this.el = h(
      "figure",
      { class: "rt-chart", style: { margin: "0" }, "aria-label": spec.title },
      h("figcaption", { class: "rt-chart-title" }, spec.title),
      this.body,
    );
  }

  /** Draws the chart; call after `el` is in the document so it can measure its width. */
  draw(): void {
    this.destroyPlot();
    if (!hasData(this.spec.data)) {
      this.body.replaceChildren(h("div", { class: "rt-chart-empty" }, this.spec.emptyText ?? "No data in this range"));
      return;
    }
    const width = Math.max(200, Math.floor(this.body.clientWidth || this.el.clientWidth || 260));
    const fg = themeColor(this.el, "--rt-fg", "#ccc");
    const grid = themeColor(this.el, "--rt-border", "#555");
    const muted = themeColor(this.el, "--rt-muted", "#999");
    const axis = (values?: uPlot.Axis["values"]): uPlot.Axis => ({
      stroke: muted,
      grid: { stroke: grid, width: 1 },
      ticks: { stroke: grid, width: 1 },
      font: "10px sans-serif",
      ...(values ? { values } : {}),
    });
    const yFormat = this.spec.yFormat;
    const series: uPlot.Series[] = [
      { label: this.spec.xTime === false ? "Time (s)" : "Time" },
      ...this.spec.series.map((s): uPlot.Series => {
        const base: uPlot.Series = {
          label: s.label,
          stroke: s.color,
          width: 1.5,
          spanGaps: s.kind === "line",
          ...(s.dash ? { dash: s.dash } : {}),
          ...(s.value ? { value: (_u: uPlot, v: number | null) => s.value!(v) } : {}),
        };
        if (s.kind === "points") {
          return { ...base, width: 0, paths: () => null, points: { show: true, size: 5, stroke: s.color, fill: s.color } };
        }
        if (s.kind === "bars") {
          return {
            ...base,
            fill: `${s.color}99`,
            paths: uPlot.paths.bars!({ size: [0.7, 40] }),
            points: { show: false },
          };
        }
        // Sparse lines (a few buckets) get their points drawn, or a single bucket would show nothing.
        const sparse = (this.spec.data[0]?.length ?? 0) <= 12;
        return { ...base, points: { show: sparse, size: 5, stroke: s.color, fill: s.color } };
      }),
    ];
    const opts: uPlot.Options = {
      width,
      height: this.spec.height ?? 150,
      series,
      scales: {
        x: {
          time: this.spec.xTime !== false,
          // uPlot widens a single time point by 86400 / ms (1000 days for seconds); pad it by one bucket instead.
          range: (_u, min, max) => {
            const xs = this.spec.data[0];
            const single = xs.length > 0 && xs[0] === xs[xs.length - 1];
            if (single) {
              const pad = this.spec.xPad ?? (this.spec.xTime === false ? 1 : 3600);
              return [xs[0] - pad, xs[0] + pad];
            }
            return [min ?? 0, max ?? 1];
          },
        },
        y: {
          range: (_u, min, max) => [
            this.spec.yMin ?? Math.min(0, min ?? 0),
            this.spec.yMax ?? (max !== null && max > 0 ? max * 1.1 : 1),
          ],
        },
      },
      axes: [
        axis(this.spec.xTime === false ? (_u, vals) => vals.map((v) => `${v}s`) : undefined),
        { ...axis(yFormat ? (_u, vals) => vals.map((v) => yFormat(v)) : undefined), size: 46 },
      ],
      legend: { show: true, live: true },
      cursor: { drag: { x: false, y: false }, points: { size: 6 } },
    };
    this.body.replaceChildren();
    this.plot = new uPlot(opts, this.spec.data as uPlot.AlignedData, this.body);
    this.plot.root.style.color = fg;
  }

  resize(): void {
    if (!this.plot) return;
    const width = Math.max(200, Math.floor(this.body.clientWidth));
    if (Math.abs(width - this.plot.width) > 2) this.plot.setSize({ width, height: this.plot.height });
  }

  private destroyPlot(): void {
    this.plot?.destroy();
    this.plot = null;
  }

  destroy(): void {
    this.destroyPlot();
  }
}
