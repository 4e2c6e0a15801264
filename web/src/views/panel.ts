/**
 * The panel's shell: header, time range and workflow pickers, queue ETA, the tabs (Overview, Runs, Advice) and the
 * current view. `mount` builds it into the sidebar tab's element, `unmount` tears it down: charts, observers and
 * every timer go with it, so a closed tab costs nothing. `PanelState` survives, so reopening shows the same place.
 */

import { button, h, setChildren } from "../dom";
import { defaultFilters, RANGES, type Filters, type RangeKey } from "../filters";
import { etaLines, queueFinishMs } from "../eta";
import { formatRelative } from "../format";
import { instanceChoices, instanceLabel, type InstanceChoice } from "../instances";
import { defaultTableState, firstPage } from "../paging";
import { countOpen } from "../recommendations";
import type { PanelSettings } from "../settings";
import type { Recommendation, RunSummary } from "../types";
import { AdviceView } from "./advice";
import { CompareView } from "./compare";
import { noteWorkflow, type PanelEnv, type PanelState, type Route, type View, type ViewContext } from "./context";
import { DetailView } from "./detail";
import { isLiveRun, LiveCard, LiveLease } from "./live";
import { OverviewView, workflowChoices } from "./overview";
import { RunsView } from "./runs";

const TABS = [
  { id: "overview", label: "Overview" },
  { id: "runs", label: "Runs" },
  { id: "advice", label: "Advice" },
] as const;

const QUEUE_REFRESH_DELAY_MS = 400;
const ETA_TICK_MS = 5000;

/** Scrolls the panel's scrolling ancestor (ComfyUI's sidebar container) back to the top. */
function scrollToTop(el: HTMLElement): void {
  for (let node: HTMLElement | null = el; node; node = node.parentElement) {
    if (node.scrollHeight > node.clientHeight && /(auto|scroll)/.test(getComputedStyle(node).overflowY)) {
      node.scrollTop = 0;
      return;
    }
  }
}

export function createPanelState(settings: PanelSettings): PanelState {
  return {
    route: { view: "overview" },
    lastTab: "overview",
    filters: defaultFilters(settings.defaultRange),
    table: defaultTableState(),
    selected: [],
    adviceState: "open",
    workflows: [],
    unseen: new Set(),
  };
}

export class TelemetryPanel {
  private root: HTMLElement | null = null;
  private body: HTMLElement | null = null;
  private view: View | null = null;
  private queueEl: HTMLElement | null = null;
  private liveCard: LiveCard | null = null;
  private lease: LiveLease | null = null;
  private footer: HTMLElement | null = null;
  private rangeSelect: HTMLSelectElement | null = null;
  private workflowSelect: HTMLSelectElement | null = null;
  private instanceSelect: HTMLSelectElement | null = null;
  /** The fleet's instances (from `/telemetry/instances`); the selector is shown once there is more than one. */
  private instances: InstanceChoice[] = [];
  private readonly tabButtons = new Map<string, HTMLButtonElement>();
  private adviceBadge: HTMLElement | null = null;
  private readonly timers = new Set<ReturnType<typeof setTimeout>>();
  private resizeObserver: ResizeObserver | null = null;
  private queueRefreshQueued = false;
  private etaTicking = false;
  private mountCount = 0;

  constructor(
    private readonly env: PanelEnv,
    readonly state: PanelState,
  ) {}

  get mounted(): boolean {
    return this.root !== null;
  }

  /** Number of active timers (tests check that closing leaves none). */
  get activeTimers(): number {
    return this.timers.size;
  }

  mount(container: HTMLElement): void {
    this.unmount();
    this.mountCount += 1;
    this.rangeSelect = h(
      "select",
      { "aria-label": "Time range", on: { change: (e) => this.setRange((e.target as HTMLSelectElement).value as RangeKey) } },
    );
    this.workflowSelect = h("select", {
      "aria-label": "Workflow",
      on: { change: (e) => this.setFilters({ ...this.state.filters, workflow: (e.target as HTMLSelectElement).value }) },
    });
    this.instanceSelect = h("select", {
      "aria-label": "Instance",
      "data-testid": "instance-select",
      on: { change: (e) => this.setFilters({ ...this.state.filters, instance: (e.target as HTMLSelectElement).value }) },
    });
    this.fillToolbar();

    const tabs = h("div", { class: "rt-tabs", role: "tablist", "aria-label": "Telemetry views" });
    this.tabButtons.clear();
    for (const tab of TABS) {
      const b = button(tab.label, () => this.navigate({ view: tab.id }), {
        role: "tab",
        id: `rt-tab-${tab.id}`,
        "aria-controls": "rt-body",
        dataset: { tab: tab.id },
      });
      if (tab.id === "advice") {
        this.adviceBadge = h("span", { class: "rt-count rt-hidden", "aria-label": "open recommendations" });
        b.append(this.adviceBadge);
      }
      this.tabButtons.set(tab.id, b);
      tabs.append(b);
    }
    tabs.addEventListener("keydown", (e) => this.tabKey(e));

    this.queueEl = h("section", { class: "rt-queue rt-hidden", "aria-label": "Queue ETA", "data-testid": "queue-eta" });
    this.body = h("div", { id: "rt-body", role: "tabpanel" });
    this.footer = h("div", { class: "rt-footer" });
    this.root = h(
      "div",
      { class: "rt-panel", "data-testid": "telemetry-panel" },
      h(
        "header",
        { class: "rt-header" },
        h("h2", null, "Telemetry"),
        h("span", { class: "rt-live", title: "New runs appear as they finish" }, "Live"),
        button("↻", () => this.refresh(), { "aria-label": "Refresh", title: "Refresh" }),
      ),
      h("div", { class: "rt-toolbar" }, this.rangeSelect, this.workflowSelect, this.instanceSelect),
      this.queueEl,
      (this.liveCard = new LiveCard()).el,
      tabs,
      this.body,
      this.footer,
    );
    container.replaceChildren(this.root);
    if (typeof ResizeObserver !== "undefined") {
      let lastWidth = 0;
      this.resizeObserver = new ResizeObserver((entries) => {
        const width = Math.round(entries[0]?.contentRect.width ?? 0);
        if (width !== lastWidth) {
          lastWidth = width;
          this.view?.resize?.();
        }
      });
      this.resizeObserver.observe(this.root);
    }
    this.showRoute();
    this.startLive();
    void this.loadQueue();
    void this.loadHealth();
    void this.loadWorkflows();
    void this.loadInstances();
    if (this.state.route.view !== "advice") void this.loadAdviceCount();
  }

  unmount(): void {
    this.view?.destroy();
    this.view = null;
    this.lease?.stop();
    this.lease = null;
    this.liveCard = null;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.resizeObserver?.disconnect();
    this.resizeObserver = null;
    this.queueRefreshQueued = false;
    this.etaTicking = false;
    this.root?.remove();
    this.root = null;
    this.body = null;
    this.queueEl = null;
    this.footer = null;
  }

  // Live events (only called while mounted) --------------------------------------------------------------------

  handleRun(run: RunSummary): void {
    const changed = noteWorkflow(this.state, run.workflow_id ?? run.fingerprint, run.workflow_name);
    if (changed && this.mounted) this.fillToolbar();
    if (!this.mounted) {
      this.state.unseen.add(run.run_id);
      return;
    }
    this.liveCard?.clear(run.run_id);
    this.view?.onRun?.(run);
    this.handleQueueChanged();
  }

  /** `telemetry.progress`: the running run's live card (sent only while this panel holds its lease). */
  handleProgress(run: unknown): void {
    if (this.mounted && isLiveRun(run)) this.liveCard?.update(run);
  }

  private startLive(): void {
    const lease = (this.lease = new LiveLease(this.env.client, (fn, ms) => this.setTimeout(fn, ms)));
    void lease.start().then((run) => {
      if (run && this.lease === lease) this.liveCard?.update(run);
    });
  }

  handleRecommendation(rec: Recommendation): void {
    if (!this.mounted) return;
    this.view?.onRecommendation?.(rec);
    if (this.state.route.view !== "advice") void this.loadAdviceCount();
  }

  handleQueueChanged(): void {
    if (!this.mounted || this.queueRefreshQueued) return;
    this.queueRefreshQueued = true;
    this.setTimeout(() => {
      this.queueRefreshQueued = false;
      void this.loadQueue();
    }, QUEUE_REFRESH_DELAY_MS);
  }

  settingsChanged(): void {
    if (this.mounted) this.showRoute();
  }

  // Navigation ------------------------------------------------------------------------------------------------

  navigate(route: Route): void {
    if (route.view === "overview" || route.view === "runs" || route.view === "advice") this.state.lastTab = route.view;
    this.state.route = route;
    this.showRoute();
    if (this.root) scrollToTop(this.root);
  }

  private refresh(): void {
    this.showRoute();
    void this.loadQueue();
    void this.loadHealth();
    void this.loadWorkflows();
    void this.loadInstances();
  }

  private context(): ViewContext {
    return {
      env: this.env,
      state: this.state,
      navigate: (route) => this.navigate(route),
      setFilters: (filters) => this.setFilters(filters),
      setTimeout: (fn, ms) => this.setTimeout(fn, ms),
      recommendationsChanged: (recs) => this.updateAdviceBadge(recs),
    };
  }

  private showRoute(): void {
    if (!this.body) return;
    this.view?.destroy();
    const ctx = this.context();
    const route = this.state.route;
    switch (route.view) {
      case "overview":
        this.view = new OverviewView(ctx);
        break;
      case "runs":
        this.view = new RunsView(ctx);
        break;
      case "advice":
        this.view = new AdviceView(ctx);
        break;
      case "detail":
        this.view = new DetailView(ctx, route.runId);
        break;
      case "compare":
        this.view = new CompareView(ctx, [route.a, route.b]);
        break;
    }
    const active = route.view === "detail" || route.view === "compare" ? this.state.lastTab : route.view;
    for (const [id, b] of this.tabButtons) {
      b.setAttribute("aria-selected", id === active ? "true" : "false");
      b.tabIndex = id === active ? 0 : -1;
    }
    this.body.setAttribute("aria-labelledby", `rt-tab-${active}`);
    setChildren(this.body, this.view.el);
    this.view.attached?.();
  }

  private tabKey(e: KeyboardEvent): void {
    if (e.key !== "ArrowRight" && e.key !== "ArrowLeft") return;
    const ids = TABS.map((t) => t.id);
    const current = ids.indexOf(this.state.lastTab);
    const next = ids[(current + (e.key === "ArrowRight" ? 1 : ids.length - 1)) % ids.length];
    e.preventDefault();
    this.navigate({ view: next });
    this.tabButtons.get(next)?.focus();
  }

  // Filters ---------------------------------------------------------------------------------------------------

  private setRange(range: RangeKey): void {
    this.setFilters({ ...this.state.filters, range, sinceMs: null, untilMs: null });
    void this.loadWorkflows();
  }

  setFilters(filters: Filters): void {
    this.state.filters = filters;
    this.state.table = firstPage(this.state.table);
    this.fillToolbar();
    if (this.state.route.view === "detail" || this.state.route.view === "compare") {
      this.state.route = { view: this.state.lastTab };
    }
    this.showRoute();
  }

  private fillToolbar(): void {
    if (this.rangeSelect) {
      const options = RANGES.map((r) => h("option", { value: r.key }, r.label));
      if (this.state.filters.range === "custom") options.push(h("option", { value: "custom" }, "Custom range (preset)"));
      setChildren(this.rangeSelect, options);
      this.rangeSelect.value = this.state.filters.range;
    }
    if (this.workflowSelect) {
      const current = this.state.filters.workflow;
      const choices = [...this.state.workflows];
      if (current && !choices.some((w) => w.key === current)) choices.push({ key: current, name: current });
      choices.sort((a, b) => a.name.localeCompare(b.name));
      setChildren(
        this.workflowSelect,
        h("option", { value: "" }, "All workflows"),
        choices.map((w) => h("option", { value: w.key }, w.name)),
      );
      this.workflowSelect.value = current;
    }
    this.fillInstances();
  }

  private fillInstances(): void {
    const select = this.instanceSelect;
    if (!select) return;
    const current = this.state.filters.instance;
    const choices = [...this.instances];
    if (current && !choices.some((c) => c.name === current)) {
      choices.push({ name: current, online: false, lastSeenMs: null, runs: 0, detail: "" });
    }
    // One instance and no filter: nothing to choose, so the selector stays out of the way.
    select.classList.toggle("rt-hidden", choices.length < 2 && !current);
    setChildren(
      select,
      h("option", { value: "" }, "All instances"),
      choices.map((c) =>
        h(
          "option",
          { value: c.name, class: c.online ? null : "rt-offline", title: c.detail || null, dataset: { online: String(c.online) } },
          instanceLabel(c),
        ),
      ),
    );
    select.value = current;
  }

  private async loadInstances(): Promise<void> {
    const result = await this.env.client.instances();
    if (!this.mounted || !result.ok) return;
    this.instances = instanceChoices(result.data?.instances, this.env.now());
    this.fillInstances();
  }

  private async loadWorkflows(): Promise<void> {
    const result = await this.env.client.stats(defaultFilters(this.state.filters.range === "custom" ? "all" : this.state.filters.range));
    if (!this.mounted || !result.ok) return;
    this.state.workflows = workflowChoices(result.data);
    this.fillToolbar();
  }

  // Queue ETA, health, advice badge ---------------------------------------------------------------------------

  private async loadQueue(): Promise<void> {
    const result = await this.env.client.queueEta(this.state.filters.instance);
    if (!this.mounted || !this.queueEl) return;
    const lines = result.ok ? etaLines(result.data, this.env.now()) : [];
    this.queueEl.classList.toggle("rt-hidden", lines.length === 0);
    if (lines.length === 0) {
      this.queueEl.replaceChildren();
      return;
    }
    const finish = queueFinishMs(result.ok ? result.data : null);
    setChildren(
      this.queueEl,
      h(
        "div",
        null,
        h("strong", null, `Queue: ${lines.length} prompt${lines.length === 1 ? "" : "s"}`),
        finish !== null ? h("span", { class: "rt-muted" }, ` · done ${formatRelative(finish, this.env.now())}`) : null,
      ),
      h(
        "ol",
        null,
        lines.map((l) =>
          h(
            "li",
            null,
            l.instance ? h("span", { class: "rt-muted" }, `${l.instance} · `) : null,
            h("span", null, l.workflow),
            h(
              "span",
              { class: "rt-muted rt-small" },
              ` · ${l.starts === "running" ? "running" : `starts ${l.starts}`} · ~${l.duration}${l.interval ? ` (${l.interval})` : ""}`,
            ),
          ),
        ),
      ),
    );
    if (!this.etaTicking) {
      this.etaTicking = true;
      this.setTimeout(() => {
        this.etaTicking = false;
        void this.loadQueue();
      }, ETA_TICK_MS);
    }
  }

  private async loadHealth(): Promise<void> {
    const result = await this.env.client.health();
    if (!this.mounted || !this.footer) return;
    if (!result.ok) {
      this.footer.replaceChildren();
      return;
    }
    const hlt = result.data;
    const db = hlt.database ?? {};
    const dropped = hlt.dropped ?? 0;
    const stateText = typeof db.state === "string" ? db.state : "unknown";
    const bad = dropped > 0 || !["ok", "ready", "connected", "healthy"].includes(stateText.toLowerCase());
    this.footer.classList.toggle("rt-warn", bad);
    this.footer.textContent =
      `${hlt.source === "serve" ? "Reading" : "Recording to"} ${typeof db.kind === "string" ? db.kind : "database"} (${stateText})` +
      (typeof hlt.buffered === "number" && hlt.buffered > 0 ? ` · ${hlt.buffered} buffered` : "") +
      (dropped > 0 ? ` · ${dropped} runs dropped` : "");
  }

  private async loadAdviceCount(): Promise<void> {
    const result = await this.env.client.recommendations("open");
    if (!this.mounted) return;
    if (!result.ok) {
      this.tabButtons.get("advice")?.classList.toggle("rt-hidden", result.missing && this.state.route.view !== "advice");
      return;
    }
    this.updateAdviceBadge(result.data.recommendations ?? []);
  }

  private updateAdviceBadge(recs: Recommendation[] | null): void {
    if (!this.adviceBadge) return;
    const counts = countOpen(recs ?? []);
    const n = counts.critical + counts.warning + counts.info;
    this.adviceBadge.textContent = String(n);
    this.adviceBadge.classList.toggle("rt-hidden", n === 0);
    this.adviceBadge.classList.toggle("rt-critical", counts.critical > 0);
    this.adviceBadge.setAttribute("aria-label", `${n} open recommendation${n === 1 ? "" : "s"}`);
  }

  // Timers ----------------------------------------------------------------------------------------------------

  private setTimeout(fn: () => void, ms: number): void {
    if (!this.mounted) return;
    const handle = setTimeout(() => {
      this.timers.delete(handle);
      if (this.mounted) fn();
    }, ms);
    this.timers.add(handle);
  }

  /** How many times the tab was opened (tests). */
  get opened(): number {
    return this.mountCount;
  }
}
