// @vitest-environment jsdom
/**
 * The run statuses the backend added: `cancelled` (deleted from the queue before it started: a queue time, no
 * start or duration) and `partial_success`. The fixtures are shaped like `Run.to_dict()` of such runs.
 */

import { beforeEach, describe, expect, it } from "vitest";
import { defaultFilters, filtersToParams, paramsToFilters, presetToFilters, runMatchesFilters } from "../src/filters";
import { durationText, statusExplanation, statusLabel } from "../src/status";
import { createPanelState, TelemetryPanel } from "../src/views/panel";
import { FakeBackend, fakeEnv, settle } from "./fakes";
import { cancelledDetail, cancelledSummary, partialDetail, summary, T0 } from "./sample";

const NOW = Date.UTC(2025, 2, 5, 12, 0, 0);

describe("status names and filters", () => {
  it("label both new statuses and keep an unknown one as text", () => {
    expect(statusLabel("partial_success")).toBe("partial success");
    expect(statusLabel("cancelled")).toBe("cancelled");
    expect(statusLabel("some_new_state")).toBe("some new state");
    expect(durationText(cancelledSummary)).toBe("not started");
    expect(durationText(summary("x"))).toBe("2 s");
    expect(statusExplanation(cancelledSummary)).toContain("deleted from the queue before it started after 45 s in the queue");
    expect(statusExplanation(partialDetail)).toContain("Partly succeeded");
  });

  it("filter by them on the server and in presets", () => {
    const filters = { ...defaultFilters("all"), statuses: ["partial_success" as const, "cancelled" as const] };
    expect(filtersToParams(filters, NOW).get("status")).toBe("partial_success,cancelled");
    expect(paramsToFilters(new URLSearchParams("status=cancelled,bogus,partial_success")).statuses).toEqual([
      "partial_success",
      "cancelled",
    ]);
    expect(presetToFilters({ status: ["cancelled"] }).statuses).toEqual(["cancelled"]);
  });

  it("place a cancelled run in time by its queue time, as it never started", () => {
    const lastHour = { ...defaultFilters("1h"), statuses: ["cancelled" as const] };
    expect(runMatchesFilters({ ...cancelledSummary, queued_at_ms: NOW - 60_000 }, lastHour, NOW)).toBe(true);
    expect(runMatchesFilters({ ...cancelledSummary, queued_at_ms: NOW - 7_200_000 }, lastHour, NOW)).toBe(false);
  });
});

function backend(): FakeBackend {
  const runs = [summary("run-ok"), partialDetail, cancelledSummary];
  return new FakeBackend()
    .on("GET", /^\/telemetry\/runs$/, (url: URL) => {
      const wanted = url.searchParams.get("status")?.split(",");
      const shown = wanted ? runs.filter((r) => wanted.includes(r.status)) : runs;
      return { body: { runs: shown, total: shown.length, limit: 50, offset: 0 } };
    })
    .on("GET", /^\/telemetry\/runs\/run-cancelled$/, cancelledDetail)
    .on("GET", /^\/telemetry\/runs\/run-partial$/, partialDetail)
    .on("GET", /^\/telemetry\/stats$/, {
      total_runs: 10, success_rate: 0.6, total_frames: 7, avg_duration_ms: 2000, p50_duration_ms: 2000,
      p95_duration_ms: 2000, max_gpu_peak_bytes: 1024, by_workflow: [],
      by_status: { success: 6, partial_success: 1, failed: 1, cancelled: 2 },
    })
    .on("GET", /^\/telemetry\/presets$/, { presets: [] });
}

function mount(b: FakeBackend) {
  const env = fakeEnv(b);
  const panel = new TelemetryPanel(env, createPanelState(env.settings()));
  const host = document.createElement("div");
  document.body.append(host);
  panel.mount(host);
  return { panel, host };
}

function row(host: HTMLElement, id: string): HTMLElement {
  const r = host.querySelector<HTMLElement>(`tr.rt-row[data-run-id='${id}']`);
  if (!r) throw new Error(`no row ${id}`);
  return r;
}

beforeEach(() => document.body.replaceChildren());

describe("the runs table", () => {
  it("shows a cancelled and a partly successful run with their own badges", async () => {
    const { panel, host } = mount(backend());
    panel.navigate({ view: "runs" });
    await settle();
    const cancelled = row(host, "run-cancelled");
    const badge = cancelled.querySelector(".rt-badge")!;
    expect(badge.textContent).toBe("cancelled");
    expect(badge.classList.contains("rt-cancelled")).toBe(true);
    expect(cancelled.textContent).toContain("not started");
    expect(cancelled.getAttribute("aria-label")).toContain("cancelled, not started");
    const partial = row(host, "run-partial").querySelector(".rt-badge")!;
    expect(partial.textContent).toBe("partial success");
    expect(partial.classList.contains("rt-partial_success")).toBe(true);
  });

  it("has a filter button for each, which asks the server", async () => {
    const b = backend();
    const { panel, host } = mount(b);
    panel.navigate({ view: "runs" });
    await settle();
    const toggle = (status: string) => host.querySelector<HTMLButtonElement>(`button.rt-status-toggle[data-status='${status}']`)!;
    expect(toggle("partial_success").textContent).toBe("partial");
    toggle("cancelled").click();
    await settle();
    expect(toggle("cancelled").getAttribute("aria-pressed")).toBe("true");
    expect(b.paths().filter((p) => p.startsWith("/telemetry/runs?")).pop()).toContain("status=cancelled");
    expect([...host.querySelectorAll<HTMLElement>("tr.rt-row")].map((r) => r.dataset.runId)).toEqual(["run-cancelled"]);
  });

  it("takes a cancelled run pushed live", async () => {
    const { panel, host } = mount(backend());
    panel.navigate({ view: "runs" });
    await settle();
    panel.handleRun({ ...cancelledSummary, run_id: "run-live-cancel", queued_at_ms: T0 + 90_000 });
    expect(row(host, "run-live-cancel").querySelector(".rt-badge")!.textContent).toBe("cancelled");
  });
});

describe("the overview", () => {
  it("counts and colours both statuses", async () => {
    const { host } = mount(backend());
    await settle();
    const cards = host.textContent ?? "";
    expect(cards).toContain("6 ok · 2 cancelled");
    expect(cards).toContain("1 failed · 1 partial success");
    const bar = host.querySelector(".rt-statusbar")!;
    expect(bar.getAttribute("aria-label")).toBe(
      "success 6, partial success 1, failed 1, interrupted 0, cancelled 2, running 0",
    );
    const cancelled = bar.querySelector<HTMLElement>(".rt-seg-cancelled")!;
    expect(cancelled.style.width).toBe("20%");
    expect(cancelled.style.background).toBe("var(--rt-cancelled)");
    expect(bar.querySelector<HTMLElement>(".rt-seg-partial_success")!.style.width).toBe("10%");
  });
});

describe("the run detail", () => {
  it("explains a cancelled run: queued, never started, no duration", async () => {
    const { panel, host } = mount(backend());
    panel.navigate({ view: "detail", runId: "run-cancelled" });
    await settle();
    expect(host.querySelector("[data-testid=status-note]")!.textContent).toContain("Cancelled: deleted from the queue");
    const facts = [...host.querySelectorAll(".rt-kv dt")].map((dt) => `${dt.textContent}=${dt.nextElementSibling?.textContent}`);
    expect(facts).toContain("Started=never");
    expect(facts).toContain("Duration=not started");
    expect(facts.some((f) => f.startsWith("Queued=2025-03-05"))).toBe(true);
  });

  it("shows a partly successful run's error and its explanation", async () => {
    const { panel, host } = mount(backend());
    panel.navigate({ view: "detail", runId: "run-partial" });
    await settle();
    expect(host.querySelector(".rt-detail-head .rt-badge")!.textContent).toBe("partial success");
    expect(host.querySelector("[data-testid=status-note]")!.textContent).toContain("Partly succeeded");
    expect(host.querySelector("[data-testid=error-box]")!.textContent).toContain("blur failed");
  });
});

describe("comparing", () => {
  it("names both statuses in the summary", async () => {
    const { panel, host } = mount(backend());
    panel.navigate({ view: "compare", a: "run-partial", b: "run-cancelled" });
    await settle();
    const status = [...host.querySelectorAll(".rt-compare tr")].find((tr) => tr.firstElementChild?.textContent === "Status")!;
    expect([...status.querySelectorAll("td")].map((td) => td.textContent).slice(0, 3)).toEqual([
      "Status",
      "partial success",
      "cancelled",
    ]);
  });
});
