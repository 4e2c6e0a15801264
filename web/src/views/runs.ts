/**
 * The runs table: filters, saved presets, server-side paging and sorting, selection of two runs to compare, and
 * live rows from the websocket. Rows are focusable; Enter opens the run, arrow keys move between rows.
 */

import { button, h, setChildren } from "../dom";
import {
  describeFilters,
  filtersToPreset,
  presetToFilters,
  runMatchesFilters,
  type Filters,
} from "../filters";
import { formatBytes, formatCount, formatDateTime, formatShortTime } from "../format";
import {
  ariaSort,
  mergeLiveRun,
  nextPage,
  PAGE_SIZES,
  pageInfo,
  prevPage,
  firstPage,
  toggleSort,
  withLimit,
  type PageMeta,
  type SortColumn,
} from "../paging";
import { durationText, STATUS_LABEL, STATUS_SHORT_LABEL, statusLabel } from "../status";
import { RUN_STATUSES, type Preset, type RunStatus, type RunSummary } from "../types";
import { workflowName, type View, type ViewContext } from "./context";
import { labelsList, notice, statusBadge, workflowLabel } from "./widgets";

const TYPING_DELAY_MS = 350;

export class RunsView implements View {
  readonly el: HTMLElement;
  private rows: RunSummary[] = [];
  private total = 0;
  private meta: PageMeta = {};
  private loaded = false;
  private destroyed = false;
  private generation = 0;
  private typingGeneration = 0;
  private presets: Preset[] = [];
  private presetsAvailable = true;
  /** Rows to highlight as new: pushed live since the page was loaded, or while the tab was closed. */
  private readonly flash = new Set<string>();

  private readonly qInput: HTMLInputElement;
  private readonly labelInput: HTMLInputElement;
  private readonly statusButtons = new Map<RunStatus, HTMLButtonElement>();
  private readonly presetRow: HTMLElement;
  private readonly presetSelect: HTMLSelectElement;
  private readonly presetName: HTMLInputElement;
  private readonly presetMessage: HTMLElement;
  private readonly compareBar: HTMLElement;
  private readonly caption: HTMLElement;
  private readonly tableHost: HTMLElement;
  private readonly pager: HTMLElement;

  constructor(private readonly ctx: ViewContext) {
    const filters = ctx.state.filters;
    for (const id of ctx.state.unseen) this.flash.add(id);
    ctx.state.unseen.clear();

    this.qInput = h("input", {
      type: "search",
      placeholder: "Search runs, errors…",
      "aria-label": "Search runs",
      value: filters.q,
      on: {
        input: () => this.typed(),
        keydown: (e) => {
          if (e.key === "Enter") this.commitText();
        },
      },
    });
    this.labelInput = h("input", {
      type: "text",
      placeholder: "Label or tag",
      "aria-label": "Filter by label",
      value: filters.label,
      on: {
        input: () => this.typed(),
        keydown: (e) => {
          if (e.key === "Enter") this.commitText();
        },
      },
    });
    const statusGroup = h("div", { class: "rt-row-flex", role: "group", "aria-label": "Status" });
    for (const status of RUN_STATUSES) {
      const b = button(STATUS_SHORT_LABEL[status], () => this.toggleStatus(status), {
        "aria-pressed": filters.statuses.includes(status) ? "true" : "false",
        class: "rt-status-toggle",
        title: `Show ${STATUS_LABEL[status]} runs`,
        dataset: { status },
      });
      this.statusButtons.set(status, b);
      statusGroup.append(b);
    }

    this.presetSelect = h("select", { "aria-label": "Saved filter presets" });
    this.presetName = h("input", {
      type: "text",
      placeholder: "Preset name",
      "aria-label": "Name for the new preset",
      on: {
        keydown: (e) => {
          if (e.key === "Enter") void this.savePreset();
        },
      },
    });
    this.presetMessage = h("span", { class: "rt-muted rt-small", role: "status" });
    this.presetRow = h(
      "div",
      { class: "rt-filters", "aria-label": "Presets" },
      h(
        "div",
        { class: "rt-row-flex" },
        this.presetSelect,
        button("Apply", () => this.applyPreset(), { "data-testid": "preset-apply" }),
        button("Delete", () => void this.deletePreset(), { "data-testid": "preset-delete" }),
      ),
      h(
        "div",
        { class: "rt-row-flex" },
        this.presetName,
        button("Save preset", () => void this.savePreset(), { "data-testid": "preset-save" }),
      ),
      this.presetMessage,
    );

    this.compareBar = h("div", { class: "rt-comparebar rt-hidden", role: "region", "aria-label": "Compare" });
    this.caption = h("div", { class: "rt-muted rt-small", role: "status", "aria-live": "polite" });
    this.tableHost = h("div", { class: "rt-table-wrap" }, h("div", { class: "rt-empty" }, "Loading…"));
    this.pager = h("div", { class: "rt-pager" });

    this.el = h(
      "section",
      { class: "rt-runs", "aria-label": "Runs" },
      h("div", { class: "rt-filters" }, h("div", { class: "rt-row-flex" }, this.qInput, this.labelInput), statusGroup),
      this.presetRow,
      this.compareBar,
      this.caption,
      this.tableHost,
      this.pager,
    );
    this.renderCompareBar();
    void this.loadPresets();
    void this.load();
  }

  destroy(): void {
    this.destroyed = true;
  }

  private describe(): string {
    return describeFilters(this.ctx.state.filters, (key) => workflowName(this.ctx.state, key));
  }

  // Filters ---------------------------------------------------------------------------------------------------

  private typed(): void {
    const generation = ++this.typingGeneration;
    this.ctx.setTimeout(() => {
      if (generation === this.typingGeneration) this.commitText();
    }, TYPING_DELAY_MS);
  }

  private commitText(): void {
    this.typingGeneration += 1;
    const f = this.ctx.state.filters;
    if (f.q === this.qInput.value && f.label === this.labelInput.value) return;
    this.applyFilters({ ...f, q: this.qInput.value, label: this.labelInput.value });
  }

  private toggleStatus(status: RunStatus): void {
    const f = this.ctx.state.filters;
    const statuses = f.statuses.includes(status) ? f.statuses.filter((s) => s !== status) : [...f.statuses, status];
    this.applyFilters({ ...f, statuses: RUN_STATUSES.filter((s) => statuses.includes(s)) });
  }

  private applyFilters(filters: Filters): void {
    this.ctx.state.filters = filters;
    this.ctx.state.table = firstPage(this.ctx.state.table);
    this.syncInputs();
    void this.load();
  }

  private syncInputs(): void {
    const f = this.ctx.state.filters;
    if (this.qInput.value !== f.q) this.qInput.value = f.q;
    if (this.labelInput.value !== f.label) this.labelInput.value = f.label;
    for (const [status, b] of this.statusButtons) b.setAttribute("aria-pressed", f.statuses.includes(status) ? "true" : "false");
  }

  // Presets ---------------------------------------------------------------------------------------------------

  private async loadPresets(selectId?: string): Promise<void> {
    const result = await this.ctx.env.client.presets();
    if (this.destroyed) return;
    if (!result.ok) {
      this.presetsAvailable = false;
      this.presetRow.classList.toggle("rt-hidden", result.missing);
      if (!result.missing) this.presetMessage.textContent = `Presets unavailable: ${result.error}`;
      return;
    }
    this.presets = result.data.presets ?? [];
    const options = [h("option", { value: "" }, this.presets.length ? "Choose a preset…" : "No saved presets")];
    for (const p of this.presets) options.push(h("option", { value: String(p.id) }, p.name));
    setChildren(this.presetSelect, options);
    if (selectId !== undefined) this.presetSelect.value = selectId;
  }

  private selectedPreset(): Preset | undefined {
    return this.presets.find((p) => String(p.id) === this.presetSelect.value);
  }

  private applyPreset(): void {
    const preset = this.selectedPreset();
    if (!preset) return;
    const filters = presetToFilters(preset.filters ?? {}, this.ctx.state.filters.range);
    this.presetMessage.textContent = `Applied “${preset.name}”`;
    // The toolbar (range, workflow) is part of the shell: let the panel rebuild with the new filters.
    this.ctx.setFilters(filters);
  }

  private async savePreset(): Promise<void> {
    if (!this.presetsAvailable) return;
    const name = this.presetName.value.trim() || this.describe();
    const result = await this.ctx.env.client.savePreset(name, filtersToPreset(this.ctx.state.filters));
    if (this.destroyed) return;
    if (!result.ok) {
      this.presetMessage.textContent = `Could not save: ${result.error}`;
      return;
    }
    this.presetName.value = "";
    this.presetMessage.textContent = `Saved “${result.data.name}”`;
    await this.loadPresets(String(result.data.id));
  }

  private async deletePreset(): Promise<void> {
    const preset = this.selectedPreset();
    if (!preset) return;
    const result = await this.ctx.env.client.deletePreset(preset.id);
    if (this.destroyed) return;
    this.presetMessage.textContent = result.ok ? `Deleted “${preset.name}”` : `Could not delete: ${result.error}`;
    await this.loadPresets();
  }

  // Table -----------------------------------------------------------------------------------------------------

  async load(): Promise<void> {
    const generation = ++this.generation;
    this.caption.textContent = "Loading…";
    const result = await this.ctx.env.client.runs(this.ctx.state.filters, this.ctx.state.table);
    if (this.destroyed || generation !== this.generation) return;
    if (!result.ok) {
      this.loaded = false;
      this.caption.textContent = "";
      setChildren(
        this.tableHost,
        notice(result.missing ? "This server does not serve runs yet (/telemetry/runs)." : `Could not load runs: ${result.error}`, "error"),
      );
      this.pager.replaceChildren();
      return;
    }
    this.rows = result.data.runs ?? [];
    this.total = result.data.total ?? this.rows.length;
    this.meta = { totalCapped: result.data.total_capped === true, nextCursor: result.data.next_cursor };
    this.loaded = true;
    this.renderTable();
    // Runs pushed while closed flash once; after a reload (filter, page) nothing is new any more.
    this.flash.clear();
  }

  onRun(run: RunSummary): void {
    if (!this.loaded) return;
    const matches = runMatchesFilters(run, this.ctx.state.filters, this.ctx.env.now());
    const merged = mergeLiveRun(this.rows, this.total, this.ctx.state.table, run, matches);
    if (!merged) {
      if (matches) this.caption.textContent = `${this.describe()} · new runs arrived (first page)`;
      return;
    }
    if (!this.rows.some((r) => r.run_id === run.run_id)) this.flash.add(run.run_id);
    this.rows = merged.rows;
    this.total = merged.total;
    const focusedId = (document.activeElement as HTMLElement | null)?.dataset?.runId;
    this.renderTable();
    if (focusedId) this.rowElement(focusedId)?.focus();
  }

  private rowElement(runId: string): HTMLElement | null {
    for (const tr of this.tableHost.querySelectorAll<HTMLElement>("tr.rt-row")) {
      if (tr.dataset.runId === runId) return tr;
    }
    return null;
  }

  private renderTable(): void {
    const state = this.ctx.state;
    const info = pageInfo(state.table, this.rows.length, this.total, this.meta);
    const count = `${formatCount(this.total)}${info.totalCapped ? "+" : ""}`;
    this.caption.textContent = `${this.describe()} · ${count} run${this.total === 1 && !info.totalCapped ? "" : "s"}`;
    if (this.rows.length === 0) {
      setChildren(this.tableHost, h("div", { class: "rt-empty" }, "No runs match these filters."));
    } else {
      setChildren(this.tableHost, this.table());
    }
    setChildren(
      this.pager,
      button("‹ Prev", () => this.page(prevPage(state.table)), { disabled: !info.hasPrev, "aria-label": "Previous page" }),
      h("span", { class: "rt-grow rt-small rt-muted" }, `${formatCount(info.from)}–${formatCount(info.to)} of ${count}`),
      h(
        "select",
        {
          "aria-label": "Rows per page",
          on: { change: (e) => this.page(withLimit(state.table, Number((e.target as HTMLSelectElement).value))) },
        },
        PAGE_SIZES.map((n) => h("option", { value: String(n), selected: n === state.table.limit }, `${n} / page`)),
      ),
      button("Next ›", () => this.page(nextPage(state.table, this.total, this.meta.nextCursor)), {
        disabled: !info.hasNext,
        "aria-label": "Next page",
      }),
    );
  }

  private page(table: typeof this.ctx.state.table): void {
    this.ctx.state.table = table;
    void this.load();
  }

  private sortHeader(label: string, column: SortColumn, extraClass: string): HTMLElement {
    const sort = ariaSort(this.ctx.state.table, column);
    const arrow = sort === "descending" ? " ▼" : sort === "ascending" ? " ▲" : "";
    return h(
      "th",
      { scope: "col", "aria-sort": sort, class: extraClass },
      button(`${label}${arrow}`, () => this.page(toggleSort(this.ctx.state.table, column)), {
        title: `Sort by ${label.toLowerCase()}`,
      }),
    );
  }

  private table(): HTMLElement {
    const units = this.ctx.env.settings().units;
    const now = this.ctx.env.now();
    const selected = new Set(this.ctx.state.selected);
    const body = h("tbody");
    for (const run of this.rows) {
      const labels = labelsList(run.labels);
      const started = formatShortTime(run.started_at_ms ?? run.queued_at_ms, now);
      const startedFull = formatDateTime(run.started_at_ms ?? run.queued_at_ms, true);
      const checkbox = h("input", {
        type: "checkbox",
        "aria-label": `Select run ${run.run_id} for compare`,
        checked: selected.has(run.run_id),
        on: {
          click: (e) => e.stopPropagation(),
          keydown: (e) => e.stopPropagation(),
          change: (e) => this.select(run.run_id, (e.target as HTMLInputElement).checked),
        },
      });
      const row = h(
        "tr",
        {
          class: ["rt-row", this.flash.has(run.run_id) && "rt-new"],
          tabindex: "0",
          dataset: { runId: run.run_id, status: run.status },
          "aria-label": `${workflowLabel(run)}, ${statusLabel(run.status)}, ${durationText(run)}. Press Enter for details.`,
          on: {
            click: () => this.ctx.navigate({ view: "detail", runId: run.run_id }),
            keydown: (e) => this.rowKey(e, run.run_id),
          },
        },
        h("td", null, checkbox),
        h("td", null, statusBadge(run.status)),
        h(
          "td",
          { class: "rt-cell-wf", title: `${workflowLabel(run)} · ${startedFull}` },
          workflowLabel(run),
          h("div", { class: "rt-narrow-only rt-small rt-muted" }, started),
        ),
        h("td", { class: "rt-cell-labels rt-col-labels", title: labels.join(", ") }, labels.join(", ")),
        h("td", { class: "rt-col-started", title: startedFull }, started),
        h("td", { class: "rt-num" }, durationText(run)),
        h("td", { class: "rt-num rt-col-frames" }, formatCount(run.frame_count ?? 0)),
        h("td", { class: "rt-num rt-col-gpu" }, formatBytes(run.gpu_peak_bytes, units)),
      );
      body.append(row);
    }
    return h(
      "table",
      { class: "rt-table", "aria-label": "Runs" },
      h(
        "thead",
        null,
        h(
          "tr",
          null,
          h("th", { scope: "col" }, h("span", { class: "rt-sr" }, "Compare")),
          h("th", { scope: "col" }, "Status"),
          h("th", { scope: "col" }, "Workflow"),
          h("th", { scope: "col", class: "rt-col-labels" }, "Labels"),
          this.sortHeader("Started", "started_at_ms", "rt-col-started"),
          this.sortHeader("Duration", "duration_ms", "rt-num"),
          h("th", { scope: "col", class: "rt-num rt-col-frames" }, "Frames"),
          h("th", { scope: "col", class: "rt-num rt-col-gpu" }, "GPU peak"),
        ),
      ),
      body,
    );
  }

  private rowKey(e: KeyboardEvent, runId: string): void {
    const row = e.currentTarget as HTMLElement;
    if (e.key === "Enter") {
      e.preventDefault();
      this.ctx.navigate({ view: "detail", runId });
    } else if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      const next = (e.key === "ArrowDown" ? row.nextElementSibling : row.previousElementSibling) as HTMLElement | null;
      next?.focus();
    } else if (e.key === " ") {
      e.preventDefault();
      this.select(runId, !this.ctx.state.selected.includes(runId));
      this.renderTable();
      this.rowElement(runId)?.focus();
    }
  }

  // Compare selection -----------------------------------------------------------------------------------------

  private select(runId: string, on: boolean): void {
    let selected = this.ctx.state.selected.filter((id) => id !== runId);
    if (on) selected = [...selected, runId].slice(-2);
    this.ctx.state.selected = selected;
    for (const box of this.tableHost.querySelectorAll<HTMLInputElement>("tr.rt-row input[type=checkbox]")) {
      const id = (box.closest("tr") as HTMLElement | null)?.dataset.runId;
      box.checked = !!id && selected.includes(id);
    }
    this.renderCompareBar();
  }

  private renderCompareBar(): void {
    const selected = this.ctx.state.selected;
    this.compareBar.classList.toggle("rt-hidden", selected.length === 0);
    setChildren(
      this.compareBar,
      h("span", { class: "rt-grow" }, selected.length === 2 ? "2 runs selected" : "Select one more run to compare"),
      button(
        "Compare",
        () => {
          const [a, b] = this.ctx.state.selected;
          if (a && b) this.ctx.navigate({ view: "compare", a, b });
        },
        { class: "rt-primary", disabled: selected.length !== 2, "data-testid": "compare" },
      ),
      button("Clear", () => {
        this.ctx.state.selected = [];
        this.select("", false);
      }),
    );
  }
}
