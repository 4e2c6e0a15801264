/**
 * One run: its figures, the error (with a button that selects the failed node on the canvas), the node waterfall,
 * GPU memory over the run, outputs and parameters.
 */

import { gpuSamplesData } from "../chartdata";
import { orderParameterKeys } from "../compare";
import { button, h, setChildren, type Child } from "../dom";
import {
  EMPTY,
  formatBytes,
  formatCost,
  formatCount,
  formatDateTime,
  formatEnergy,
  formatDuration,
  formatValue,
  shortId,
} from "../format";
import { durationText, statusExplanation } from "../status";
import type { RunDetail, RunGpu, RunOutput, RunSummary } from "../types";
import { isImageOutput, viewPath } from "../urls";
import { layoutWaterfall, waterfallSummary } from "../waterfall";
import { Chart, PALETTE } from "./chart";
import type { View, ViewContext } from "./context";
import { kv, labelTags, loading, notice, statusBadge, workflowLabel } from "./widgets";

export class DetailView implements View {
  readonly el: HTMLElement;
  private chart: Chart | null = null;
  private destroyed = false;
  private run: RunDetail | null = null;
  private reloadQueued = false;

  constructor(
    private readonly ctx: ViewContext,
    private readonly runId: string,
  ) {
    this.el = h("section", { class: "rt-detail", "aria-label": "Run detail", dataset: { runId } }, loading());
    void this.load();
  }

  attached(): void {
    this.chart?.draw();
  }

  resize(): void {
    this.chart?.resize();
  }

  destroy(): void {
    this.destroyed = true;
    this.chart?.destroy();
    this.chart = null;
  }

  onRun(run: RunSummary): void {
    if (run.run_id !== this.runId || this.reloadQueued) return;
    this.reloadQueued = true;
    this.ctx.setTimeout(() => {
      this.reloadQueued = false;
      void this.load();
    }, 300);
  }

  private async load(): Promise<void> {
    const result = await this.ctx.env.client.run(this.runId);
    if (this.destroyed) return;
    if (!result.ok) {
      setChildren(
        this.el,
        this.backButton(),
        notice(result.status === 404 ? `Run ${this.runId} was not found.` : `Could not load the run: ${result.error}`, "error"),
      );
      return;
    }
    this.run = result.data;
    this.render(result.data);
  }

  private backButton(): HTMLElement {
    const tab = this.ctx.state.lastTab;
    return button(`‹ Back to ${tab === "advice" ? "advice" : tab}`, () => this.ctx.navigate({ view: tab }), {
      class: "rt-back",
    });
  }

  private render(run: RunDetail): void {
    this.chart?.destroy();
    this.chart = null;
    const units = this.ctx.env.settings().units;
    const parts: Child[] = [this.backButton()];

    parts.push(
      h(
        "div",
        { class: "rt-detail-head" },
        statusBadge(run.status),
        h("h2", { "data-testid": "detail-title" }, workflowLabel(run)),
      ),
      h("p", { class: "rt-muted rt-small rt-mono" }, run.run_id),
      labelTags(run.labels).length > 0 ? h("p", null, labelTags(run.labels)) : null,
    );
    // The error first: it is why one opens a failed run.
    if (run.error) parts.push(this.errorBox(run));
    const explanation = statusExplanation(run);
    if (explanation) parts.push(h("div", { class: "rt-notice", role: "status", "data-testid": "status-note" }, explanation));
    parts.push(
      kvShown([
        ["Queued", formatDateTime(run.queued_at_ms, true)],
        ["Started", run.status === "cancelled" ? "never" : formatDateTime(run.started_at_ms, true)],
        ["Duration", durationText(run)],
        ["Queue wait", formatDuration(run.queue_wait_ms)],
        [
          "Nodes",
          `${formatCount(run.executed_node_count ?? 0)} ran · ${formatCount(run.cached_node_count ?? 0)} cached · ${formatCount(run.node_count ?? 0)} total`,
        ],
        ["Frames", formatCount(run.frame_count ?? 0)],
        ["GPU peak", `${formatBytes(run.gpu_peak_bytes, units)}${run.gpu_total_bytes ? ` of ${formatBytes(run.gpu_total_bytes, units)}` : ""}`],
        ["GPU reserved", formatBytes(run.gpu_reserved_peak_bytes, units)],
        ["RAM peak", formatBytes(run.ram_peak_bytes, units)],
        ["Energy", energyText(run)],
        ["Energy per frame", formatEnergy(run.energy_per_frame_j)],
        ["Cost", formatCost(run.cost, run.currency)],
        ["GPU", run.gpu_name ?? "—"],
        ["Instance", run.instance ?? "—"],
        ["Source", run.source ?? "—"],
      ]),
    );

    parts.push(h("h3", null, "Nodes"), this.waterfall(run));

    const samples = run.gpu_samples ?? [];
    const shaped = gpuSamplesData(samples, run.started_at_ms, units);
    parts.push(h("h3", null, shaped.hasGpu || samples.length < 2 ? "GPU memory over the run" : "Memory over the run (no GPU)"));
    if (samples.length >= 2) {
      const gpus = run.gpus ?? [];
      const colors = [PALETTE.purple, PALETTE.blue, PALETTE.orange, PALETTE.green, PALETTE.red];
      const series = [
        ...shaped.devices.map((index, i) => ({
          label: gpuLabel(gpus.find((g) => g.index === index), index, shaped.devices.length),
          color: colors[i % colors.length],
          kind: "line" as const,
        })),
        { label: "Process RAM", color: PALETTE.grey, kind: "line" as const, dash: [4, 3] },
      ];
      this.chart = new Chart({
        title: `Memory (${shaped.unit})`,
        data: shaped.data,
        series: series.map((s) => ({ ...s, value: (v: number | null) => (v === null ? "—" : `${v.toFixed(2)} ${shaped.unit}`) })),
        xTime: false,
        yFormat: (v) => (Math.abs(v) >= 10 ? String(Math.round(v)) : v.toFixed(1)),
        height: 140,
      });
      parts.push(this.chart.el);
    } else {
      parts.push(
        h(
          "p",
          { class: "rt-muted rt-small" },
          run.gpu_peak_bytes != null
            ? `No samples over time for this run; peak ${formatBytes(run.gpu_peak_bytes, units)}.`
            : "No GPU measurements for this run (CPU run, or sampling off).",
        ),
      );
    }

    if ((run.gpus ?? []).length > 0) parts.push(h("h3", null, "GPUs"), h("div", { class: "rt-table-wrap" }, this.gpuTable(run.gpus ?? [], units)));

    const outputs = run.outputs ?? [];
    parts.push(h("h3", null, `Outputs (${formatCount(outputs.length)})`));
    parts.push(outputs.length > 0 ? this.outputs(outputs) : h("p", { class: "rt-muted rt-small" }, "No outputs recorded."));

    const params = run.parameters ?? {};
    const keys = orderParameterKeys(Object.keys(params));
    parts.push(h("h3", null, "Parameters"));
    parts.push(
      keys.length > 0
        ? kv(keys.map((k) => [k, formatValue(params[k])] as [string, Child]))
        : h("p", { class: "rt-muted rt-small" }, "No parameters recorded."),
    );
    if (run.fingerprint) parts.push(h("p", { class: "rt-muted rt-small rt-mono" }, `Graph fingerprint ${run.fingerprint}`));

    setChildren(this.el, parts);
    if (this.el.isConnected) this.chart?.draw();
  }

  private gpuTable(gpus: RunGpu[], units: ReturnType<ViewContext["env"]["settings"]>["units"]): HTMLElement {
    return h(
      "table",
      { class: "rt-table rt-small", "data-testid": "gpu-table", "aria-label": "GPUs during the run" },
      h("thead", null, h("tr", null, ...["GPU", "Peak used", "Other processes", "Energy"].map((c) => h("th", null, c)))),
      h(
        "tbody",
        null,
        ...gpus.map((g) =>
          h(
            "tr",
            { "data-gpu-index": String(g.index) },
            h("td", { title: g.uuid ?? "" }, `#${g.index} ${g.name ?? "GPU"}${g.comfyui_device ? " (ComfyUI)" : ""}`),
            h("td", null, formatBytes(g.peak_used_bytes, units)),
            h("td", null, g.external_bytes == null ? "unknown" : formatBytes(g.external_bytes, units)),
            h("td", null, formatEnergy(g.energy_j)),
          ),
        ),
      ),
    );
  }

  private canSelect(run: RunDetail, nodeId: string): { ok: boolean; why: string } {
    const current = this.ctx.env.currentWorkflowId();
    if (run.workflow_id && current && run.workflow_id !== current) {
      return { ok: false, why: `Open “${workflowLabel(run)}” to select this node on the canvas.` };
    }
    if (!this.ctx.env.hasNode(nodeId)) {
      return { ok: false, why: "This node is not in the workflow open on the canvas." };
    }
    return { ok: true, why: "" };
  }

  private errorBox(run: RunDetail): HTMLElement {
    const error = run.error!;
    const nodeId = error.node_id;
    const status = h("span", { class: "rt-small rt-muted", role: "status" });
    let selectButton: HTMLElement | null = null;
    if (nodeId) {
      const check = this.canSelect(run, nodeId);
      selectButton = button(
        "Select node on canvas",
        () => {
          const result = this.ctx.env.selectNode(nodeId);
          status.textContent =
            result === "selected" ? `Node #${nodeId} selected.` : result === "missing" ? "The node is not on the canvas." : "The canvas is not available.";
        },
        { disabled: !check.ok, title: check.why || `Select node #${nodeId}`, "data-testid": "select-node" },
      );
      if (!check.ok) status.textContent = check.why;
    }
    const traceback = error.traceback ?? [];
    return h(
      "div",
      { class: "rt-error-box", role: "group", "aria-label": "Error", "data-testid": "error-box" },
      h(
        "div",
        { class: "rt-error-title" },
        error.kind === "oom" ? h("span", { class: "rt-badge rt-oom" }, "Out of memory") : null,
        " ",
        error.exception_type,
      ),
      h("p", { class: "rt-mono" }, error.message),
      nodeId
        ? h("p", null, "In node ", h("strong", null, `#${nodeId}`), error.node_type ? ` (${error.node_type})` : "")
        : null,
      h("div", { class: "rt-row-flex" }, selectButton, status),
      traceback.length > 0
        ? h("details", null, h("summary", null, "Traceback"), h("pre", null, traceback.join("")))
        : null,
    );
  }

  private waterfall(run: RunDetail): HTMLElement {
    const nodes = run.nodes ?? [];
    if (nodes.length === 0) return h("p", { class: "rt-muted rt-small" }, "No per-node data for this run.");
    const wf = layoutWaterfall(nodes, run.started_at_ms, run.duration_ms);
    const errorNode = run.error?.node_id ?? null;
    const rows = wf.rows.map((r) => {
      const clickable = this.ctx.env.hasNode(r.node_id);
      const durationText = r.status === "cached" ? "cached" : r.status === "not_run" ? "not run" : formatDuration(r.durationMs);
      const label = `#${r.node_id} ${r.class_type}`;
      const track = h(
        "div",
        { class: "rt-wf-track" },
        r.hasBar
          ? h("div", {
              class: ["rt-wf-bar", `rt-${r.status}`],
              style: { left: `${r.leftPct}%`, width: `${r.widthPct}%` },
            })
          : h("span", { class: "rt-wf-mark" }, durationText),
      );
      return h(
        "div",
        {
          class: ["rt-wf-row", clickable && "rt-clickable", r.node_id === errorNode && "rt-highlight"],
          role: "listitem",
          title: `${label}: ${r.status}, ${durationText}${r.offsetMs !== null ? ` at +${formatDuration(r.offsetMs)}` : ""}`,
          tabindex: clickable ? "0" : null,
          dataset: { nodeId: r.node_id, status: r.status },
          on: clickable
            ? {
                click: () => this.ctx.env.selectNode(r.node_id),
                keydown: (e) => {
                  if (e.key === "Enter") this.ctx.env.selectNode(r.node_id);
                },
              }
            : {},
        },
        h("div", { class: "rt-wf-label" }, label, h("span", { class: "rt-muted" }, ` ${r.hasBar ? durationText : ""}`)),
        track,
      );
    });
    const counts = waterfallSummary(wf.rows);
    return h(
      "div",
      { class: "rt-wf", "data-testid": "waterfall" },
      h("div", { role: "list", "aria-label": "Node timeline" }, rows),
      h(
        "div",
        { class: "rt-wf-axis", "aria-hidden": "true" },
        h("span"),
        h(
          "div",
          { class: "rt-wf-ticks" },
          wf.ticks.map((t) => h("span", { style: { left: `${(t / wf.spanMs) * 100}%` } }, formatDuration(t))),
        ),
      ),
      h(
        "div",
        { class: "rt-legend" },
        (["executed", "cached", "failed", "interrupted", "not_run"] as const)
          .filter((s) => counts[s] > 0)
          .map((s) => h("span", null, statusBadge(s), ` ${counts[s]}`)),
      ),
    );
  }

  private outputs(outputs: RunOutput[]): HTMLElement {
    return h(
      "div",
      { class: "rt-outputs" },
      outputs.slice(0, 60).map((o) => {
        const path = viewPath(o);
        const url = path ? this.ctx.env.apiURL(path) : null;
        const name = o.filename ?? `${o.kind} from #${o.node_id}`;
        return h(
          "div",
          { class: "rt-output", title: `${name} (node #${o.node_id})` },
          url && isImageOutput(o) ? h("img", { src: url, alt: name, loading: "lazy" }) : null,
          h(
            "div",
            { class: "rt-output-name" },
            url ? h("a", { href: url, target: "_blank", rel: "noopener" }, name) : name,
          ),
          h(
            "div",
            { class: "rt-muted" },
            `${o.kind}${o.format ? ` · ${o.format}` : ""}${(o.frame_count ?? 1) > 1 ? ` · ${o.frame_count} frames` : ""}`,
          ),
        );
      }),
    );
  }

  /** The run shown, for tests and for the compare shortcut. */
  get current(): RunDetail | null {
    return this.run;
  }
}

/** Key-value rows without the ones that have nothing to say (a CPU run has no GPU figures). */
function kvShown(rows: [string, string][]): HTMLElement {
  const always = new Set(["Started", "Duration"]);
  return kv(rows.filter(([k, v]) => always.has(k) || (v !== EMPTY && v !== `${EMPTY}`)));
}

export function compareLabel(run: RunSummary): string {
  return `${workflowLabel(run)} · ${shortId(run.run_id)}`;
}

function energyText(run: RunDetail): string {
  if (run.energy_j == null) return "—";
  const how = run.energy_source === "nvml_counter" ? "NVML energy counter" : "integrated from power samples";
  return `${formatEnergy(run.energy_j)} (${how})`;
}

function gpuLabel(gpu: RunGpu | undefined, index: number | null, count: number): string {
  if (count <= 1 && !gpu) return "GPU used";
  const name = gpu?.name ?? "GPU";
  return `#${index ?? "?"} ${name}${gpu?.comfyui_device ? " (ComfyUI)" : ""}`;
}
