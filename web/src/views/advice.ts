/** Recommendations: severity badges, the evidence runs, the actions (dismiss, open the evidence), and the graph
 * changes a recommendation offers, each with "Apply to a copy" where the panel runs inside ComfyUI. */

import { applyToCopy } from "../apply-copy";
import { button, h, setChildren } from "../dom";
import type { Workflow } from "../graph-actions";
import { formatRelative, shortId } from "../format";
import { sortRecommendations, upsertRecommendation } from "../recommendations";
import type { Recommendation, RecommendationAction, RecommendationState } from "../types";
import { workflowName, type View, type ViewContext } from "./context";
import { loading, notice, severityBadge } from "./widgets";

const MAX_EVIDENCE_BUTTONS = 5;

export class AdviceView implements View {
  readonly el: HTMLElement;
  private readonly list: HTMLElement;
  private recs: Recommendation[] = [];
  private loaded = false;
  private destroyed = false;
  private generation = 0;

  constructor(private readonly ctx: ViewContext) {
    const stateSelect = h(
      "select",
      {
        "aria-label": "Which recommendations",
        on: {
          change: (e) => {
            this.ctx.state.adviceState = (e.target as HTMLSelectElement).value as RecommendationState;
            void this.load();
          },
        },
      },
      (["open", "dismissed", "resolved"] as const).map((s) =>
        h("option", { value: s, selected: s === ctx.state.adviceState }, s[0].toUpperCase() + s.slice(1)),
      ),
    );
    this.list = h("div", { class: "rt-recs", role: "list", "aria-live": "polite" }, loading());
    this.el = h(
      "section",
      { class: "rt-advice", "aria-label": "Recommendations" },
      h("div", { class: "rt-row-flex", style: { "margin-bottom": "8px" } }, stateSelect),
      this.list,
    );
    void this.load();
  }

  destroy(): void {
    this.destroyed = true;
  }

  async load(): Promise<void> {
    const generation = ++this.generation;
    const state = this.ctx.state.adviceState;
    const result = await this.ctx.env.client.recommendations(state);
    if (this.destroyed || generation !== this.generation) return;
    if (!result.ok) {
      this.loaded = false;
      setChildren(
        this.list,
        notice(
          result.missing
            ? "This server does not make recommendations yet (/telemetry/recommendations)."
            : `Could not load recommendations: ${result.error}`,
          result.missing ? "info" : "error",
        ),
      );
      return;
    }
    this.loaded = true;
    this.recs = sortRecommendations(result.data.recommendations ?? []);
    if (state === "open") this.ctx.recommendationsChanged(this.recs);
    this.render();
  }

  onRecommendation(rec: Recommendation): void {
    if (!this.loaded) return;
    this.recs = upsertRecommendation(this.recs, rec, this.ctx.state.adviceState);
    this.render();
  }

  private render(): void {
    if (this.recs.length === 0) {
      const state = this.ctx.state.adviceState;
      setChildren(
        this.list,
        h("div", { class: "rt-empty" }, state === "open" ? "No open recommendations. All good." : `No ${state} recommendations.`),
      );
      return;
    }
    setChildren(this.list, this.recs.map((r) => this.item(r)));
  }

  private item(rec: Recommendation): HTMLElement {
    const now = this.ctx.env.now();
    const evidence = rec.evidence_run_ids ?? [];
    const message = h("span", { class: "rt-small rt-muted", role: "status" });
    const actions = h("div", { class: "rt-rec-actions" });
    for (const id of evidence.slice(0, MAX_EVIDENCE_BUTTONS)) {
      actions.append(
        button(`Run ${shortId(id)}`, () => this.ctx.navigate({ view: "detail", runId: id }), {
          class: "rt-link",
          title: `Open evidence run ${id}`,
        }),
      );
    }
    if (evidence.length > MAX_EVIDENCE_BUTTONS) {
      actions.append(h("span", { class: "rt-small rt-muted" }, `+${evidence.length - MAX_EVIDENCE_BUTTONS} more`));
    }
    if (evidence.length >= 2) {
      actions.append(
        button("Compare first two", () => this.ctx.navigate({ view: "compare", a: evidence[0], b: evidence[1] }), {
          class: "rt-link",
        }),
      );
    }
    if (rec.state === "open") {
      actions.append(
        button(
          "Dismiss",
          async (e) => {
            const b = e.currentTarget as HTMLButtonElement;
            b.disabled = true;
            const result = await this.ctx.env.client.dismiss(rec.id);
            if (this.destroyed) return;
            if (!result.ok) {
              b.disabled = false;
              message.textContent = `Could not dismiss: ${result.error}`;
              return;
            }
            this.recs = this.recs.filter((r) => String(r.id) !== String(rec.id));
            this.ctx.recommendationsChanged(this.recs);
            this.render();
          },
          { "aria-label": `Dismiss: ${rec.message}`, "data-testid": "dismiss" },
        ),
      );
    }
    actions.append(message);
    const fixes = (rec.actions ?? []).map((a) => this.fix(rec, a, message));
    return h(
      "article",
      { class: ["rt-rec", `rt-${rec.severity}`], role: "listitem", dataset: { recId: String(rec.id), kind: rec.kind } },
      h(
        "div",
        { class: "rt-rec-head" },
        severityBadge(rec.severity),
        h("span", { class: "rt-small rt-muted" }, rec.kind.replace(/_/g, " ")),
        rec.workflow ? h("span", { class: "rt-small", title: rec.workflow }, workflowName(this.ctx.state, rec.workflow)) : null,
        h("span", { class: "rt-small rt-muted" }, formatRelative(rec.updated_at_ms ?? rec.created_at_ms, now)),
      ),
      h("p", { class: "rt-rec-msg" }, rec.message),
      rec.action ? h("p", { class: "rt-small" }, h("strong", null, "Try: "), rec.action) : null,
      fixes.length > 0 ? h("div", { class: "rt-rec-fixes", role: "group", "aria-label": "Changes you can apply" }, fixes) : null,
      actions,
    );
  }

  /** One offered graph change: what it does, and the button that opens a changed copy of the workflow. */
  private fix(rec: Recommendation, action: RecommendationAction, message: HTMLElement): HTMLElement {
    const host = this.ctx.env.workflowHost?.() ?? null;
    const copies = action.copies?.length ?? 0;
    const apply = host
      ? button(
          copies > 1 ? `Apply to ${copies} copies` : "Apply to a copy",
          async (e) => {
            const b = e.currentTarget as HTMLButtonElement;
            b.disabled = true;
            message.textContent = "Opening a copy…";
            const outcome = await applyToCopy(rec, action, host, (runId) => this.storedWorkflow(runId));
            if (this.destroyed) return;
            b.disabled = false;
            message.textContent = outcome.message;
            message.dataset.outcome = outcome.ok ? "ok" : "error";
          },
          {
            "data-testid": "apply-copy",
            title: "Opens a copy of the workflow with this change made and highlighted, in a new tab",
            "aria-label": `Apply to a copy: ${action.title}`,
          },
        )
      : null;
    return h(
      "div",
      { class: "rt-rec-fix", dataset: { action: action.kind } },
      h("span", { class: "rt-small" }, action.title),
      apply,
    );
  }

  private async storedWorkflow(runId: string): Promise<Workflow | null> {
    const result = await this.ctx.env.client.runWorkflow(runId);
    if (!result.ok) return null;
    const wf = result.data.workflow;
    return wf && Array.isArray((wf as { nodes?: unknown }).nodes) ? (wf as unknown as Workflow) : null;
  }
}
