/** Two runs side by side: headline figures, parameters and per-node times, changes highlighted. */

import { diffNodes, diffParameters, diffSummary, orderForCompare, type SummaryRow } from "../compare";
import { button, h, setChildren } from "../dom";
import { formatBytes, formatChange, formatCount, formatDateTime, formatDuration, formatDurationDelta, shortId } from "../format";
import { statusLabel } from "../status";
import type { RunDetail } from "../types";
import type { View, ViewContext } from "./context";
import { loading, notice, statusBadge, workflowLabel } from "./widgets";

export class CompareView implements View {
  readonly el: HTMLElement;
  private destroyed = false;
  private showAllParams = false;
  private pair: [RunDetail, RunDetail] | null = null;

  constructor(
    private readonly ctx: ViewContext,
    private readonly ids: [string, string],
  ) {
    this.el = h("section", { class: "rt-compare", "aria-label": "Compare runs" }, loading());
    void this.load();
  }

  destroy(): void {
    this.destroyed = true;
  }

  private back(): HTMLElement {
    const tab = this.ctx.state.lastTab;
    return button(`‹ Back to ${tab}`, () => this.ctx.navigate({ view: tab }), { class: "rt-back" });
  }

  private async load(): Promise<void> {
    const [ra, rb] = await Promise.all(this.ids.map((id) => this.ctx.env.client.run(id)));
    if (this.destroyed) return;
    if (!ra.ok || !rb.ok) {
      const failed = !ra.ok ? ra : rb;
      setChildren(this.el, this.back(), notice(`Could not load both runs: ${!failed.ok ? failed.error : ""}`, "error"));
      return;
    }
    this.pair = orderForCompare(ra.data, rb.data);
    this.render();
  }

  private render(): void {
    if (!this.pair) return;
    const [a, b] = this.pair;
    const units = this.ctx.env.settings().units;
    const fmt = (row: SummaryRow, v: number | string | null): string => {
      if (v === null) return "—";
      if (row.key === "status") return statusLabel(String(v));
      if (typeof v === "string") return v;
      if (row.key.endsWith("_bytes")) return formatBytes(v, units);
      if (row.key.endsWith("_ms")) return formatDuration(v);
      return formatCount(v);
    };
    const summary = diffSummary(a, b);
    const params = diffParameters(a.parameters, b.parameters);
    const changedParams = params.filter((p) => p.changed);
    const shownParams = this.showAllParams ? params : changedParams;
    const nodes = diffNodes(a.nodes, b.nodes);
    const changedNodes = nodes.filter((n) => n.changed).length;

    const head = (run: RunDetail, tag: string) =>
      h(
        "div",
        null,
        h("strong", null, `${tag}: `),
        statusBadge(run.status),
        " ",
        h("span", null, workflowLabel(run)),
        h("div", { class: "rt-muted rt-small rt-mono" }, shortId(run.run_id)),
        h("div", { class: "rt-muted rt-small" }, formatDateTime(run.started_at_ms)),
        button("Open", () => this.ctx.navigate({ view: "detail", runId: run.run_id }), { class: "rt-link" }),
      );

    const table = (headers: string[], rows: HTMLElement[], label: string) =>
      h(
        "div",
        { class: "rt-table-wrap" },
        h(
          "table",
          { class: "rt-table", "aria-label": label },
          h("thead", null, h("tr", null, headers.map((t, i) => h("th", { scope: "col", class: i > 0 ? "rt-num" : null }, t)))),
          h("tbody", null, rows),
        ),
      );

    setChildren(
      this.el,
      this.back(),
      h("h2", null, "Compare runs"),
      h("div", { class: "rt-compare-cols" }, head(a, "A"), head(b, "B")),
      h("h3", null, "Summary"),
      table(
        ["", "A", "B", "Change"],
        summary.map((row) =>
          h(
            "tr",
            { class: row.changed ? "rt-changed" : null },
            h("td", null, row.label),
            h("td", { class: "rt-num" }, fmt(row, row.a)),
            h("td", { class: "rt-num" }, fmt(row, row.b)),
            h(
              "td",
              { class: "rt-num" },
              typeof row.a === "number" && typeof row.b === "number" ? formatChange(row.a, row.b) : row.changed ? "≠" : "",
            ),
          ),
        ),
        "Summary",
      ),
      h(
        "h3",
        null,
        `Parameters (${changedParams.length} changed)`,
        " ",
        params.length > changedParams.length
          ? button(this.showAllParams ? "Show changed only" : "Show all", () => {
              this.showAllParams = !this.showAllParams;
              this.render();
            }, { class: "rt-link" })
          : null,
      ),
      shownParams.length > 0
        ? table(
            ["Parameter", "A", "B"],
            shownParams.map((p) =>
              h(
                "tr",
                { class: p.changed ? "rt-changed" : null, dataset: { param: p.key } },
                h("td", null, p.key),
                h("td", { class: "rt-num" }, p.a),
                h("td", { class: "rt-num" }, p.b),
              ),
            ),
            "Parameters",
          )
        : h("p", { class: "rt-muted rt-small" }, params.length === 0 ? "No parameters recorded." : "The parameters are the same."),
      h("h3", null, `Node times (${changedNodes} changed)`),
      nodes.length > 0
        ? table(
            ["Node", "A", "B", "Δ"],
            nodes.map((n) =>
              h(
                "tr",
                { class: n.changed ? "rt-changed" : null, dataset: { nodeId: n.node_id } },
                h("td", { class: "rt-cell-wf", title: `#${n.node_id} ${n.class_type}` }, `#${n.node_id} ${n.class_type}`),
                h("td", { class: "rt-num" }, nodeCell(n.aStatus, n.aMs)),
                h("td", { class: "rt-num" }, nodeCell(n.bStatus, n.bMs)),
                h("td", { class: "rt-num" }, n.deltaMs !== null ? formatDurationDelta(n.deltaMs) : ""),
              ),
            ),
            "Node times",
          )
        : h("p", { class: "rt-muted rt-small" }, "No per-node data."),
    );
  }
}

function nodeCell(status: string | null, ms: number | null): string {
  if (status === null) return "absent";
  if (status === "cached") return "cached";
  if (status === "not_run") return "not run";
  if (status === "failed" || status === "interrupted") return `${status} ${ms !== null ? formatDuration(ms) : ""}`.trim();
  return formatDuration(ms);
}
