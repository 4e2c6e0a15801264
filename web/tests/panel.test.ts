// @vitest-environment jsdom
import { beforeEach, describe, expect, it } from "vitest";
import { createPanelState, TelemetryPanel } from "../src/views/panel";
import { FakeBackend, fakeEnv, settle } from "./fakes";
import { detail, failedDetail, recommendation, summary, T0, XSS_NAME } from "./sample";

function backendWithRuns(): FakeBackend {
  const runs = [
    summary("run-b", { started_at_ms: T0 + 60_000 }),
    summary("run-xss", { workflow_name: XSS_NAME, labels: { story_title: XSS_NAME, tags: ["<b>t</b>"] } }),
    summary("run-failed", { status: "failed", workflow_name: "Broken" }),
  ];
  return new FakeBackend()
    .on("GET", /^\/telemetry\/runs$/, { runs, total: 3, limit: 50, offset: 0 })
    .on("GET", /^\/telemetry\/runs\/run-failed$/, failedDetail)
    .on("GET", /^\/telemetry\/runs\/run-a$/, detail("run-a"))
    .on("GET", /^\/telemetry\/runs\/run-b$/, detail("run-b", {
      started_at_ms: T0 + 60_000,
      parameters: { width: 768, height: 512, steps: 20 },
      nodes: [
        { node_id: "1", class_type: "EmptyImage", status: "cached" },
        { node_id: "2", class_type: "ImageBlur", status: "executed", started_at_ms: T0 + 60_010, duration_ms: 3000 },
        { node_id: "3", class_type: "SaveImage", status: "executed", started_at_ms: T0 + 63_100, duration_ms: 300 },
      ],
    }))
    .on("GET", /^\/telemetry\/stats$/, {
      total_runs: 3, success_rate: 2 / 3, total_frames: 2, avg_duration_ms: 2000, p50_duration_ms: 2000, p95_duration_ms: 2000,
      max_gpu_peak_bytes: 3 * 1024 ** 3, by_status: { success: 2, failed: 1 },
      by_workflow: [
        { workflow: "wf-1", workflow_name: "Portrait", runs: 1, success_rate: 1, avg_duration_ms: 2000 },
        { workflow: "wf-xss", workflow_name: XSS_NAME, runs: 1, success_rate: 1, avg_duration_ms: 2000 },
      ],
    })
    .on("GET", /^\/telemetry\/presets$/, { presets: [{ id: 1, name: "Failures this week", filters: { status: ["failed"] } }] });
}

function mount(backend: FakeBackend, options: Parameters<typeof fakeEnv>[1] = {}) {
  const env = fakeEnv(backend, options);
  const panel = new TelemetryPanel(env, createPanelState(env.settings()));
  const host = document.createElement("div");
  document.body.append(host);
  return { env, panel, host };
}

async function openRuns(panel: TelemetryPanel, host: HTMLElement) {
  panel.mount(host);
  panel.navigate({ view: "runs" });
  await settle();
}

function rows(host: HTMLElement): HTMLElement[] {
  return [...host.querySelectorAll<HTMLElement>("tr.rt-row")];
}

function buttonNamed(host: HTMLElement, text: string): HTMLButtonElement {
  const b = [...host.querySelectorAll("button")].find((x) => x.textContent?.trim() === text);
  if (!b) throw new Error(`no button "${text}" in: ${[...host.querySelectorAll("button")].map((x) => x.textContent).join(" | ")}`);
  return b as HTMLButtonElement;
}

beforeEach(() => {
  document.body.replaceChildren();
});

describe("runs table", () => {
  it("lists runs and shows a hostile workflow name as text", async () => {
    const { panel, host } = mount(backendWithRuns());
    await openRuns(panel, host);
    expect(rows(host).map((r) => r.dataset.runId)).toEqual(["run-b", "run-xss", "run-failed"]);
    expect(host.querySelector("img")).toBeNull();
    expect(host.querySelector("b")).toBeNull();
    expect(rows(host)[1].textContent).toContain(XSS_NAME);
    // the workflow picker got the name as an option's text, not markup
    const options = [...host.querySelectorAll("option")].map((o) => o.textContent);
    expect(options).toContain(XSS_NAME);
  });

  it("rows are focusable and Enter opens the run", async () => {
    const { panel, host } = mount(backendWithRuns());
    await openRuns(panel, host);
    const row = rows(host)[2];
    expect(row.tabIndex).toBe(0);
    row.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
    await settle();
    expect(panel.state.route).toEqual({ view: "detail", runId: "run-failed" });
    expect(host.querySelector("[data-testid=error-box]")!.textContent).toContain("can't allocate memory");
  });

  it("status toggles and search go to the server", async () => {
    const backend = backendWithRuns();
    const { panel, host } = mount(backend);
    await openRuns(panel, host);
    buttonNamed(host, "failed").click();
    await settle();
    expect(buttonNamed(host, "failed").getAttribute("aria-pressed")).toBe("true");
    const search = host.querySelector<HTMLInputElement>("input[type=search]")!;
    search.value = "blur";
    search.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter" }));
    await settle();
    const last = backend.paths().filter((p) => p.startsWith("/telemetry/runs?")).pop()!;
    expect(last).toContain("status=failed");
    expect(last).toContain("q=blur");
    expect(last).toContain("since_ms=");
  });

  it("sorting by duration asks the server", async () => {
    const backend = backendWithRuns();
    const { panel, host } = mount(backend);
    await openRuns(panel, host);
    buttonNamed(host, "Duration").click();
    await settle();
    expect(backend.paths().pop()).toContain("sort=-duration_ms");
    expect(host.querySelector("th[aria-sort=descending]")!.textContent).toContain("Duration");
  });

  it("a live run appears at the top; one that arrives while closed is flashed on reopening", async () => {
    const { panel, host } = mount(backendWithRuns());
    await openRuns(panel, host);
    panel.handleRun(summary("run-live", { started_at_ms: T0 + 120_000, workflow_name: "Live one" }));
    expect(rows(host)[0].dataset.runId).toBe("run-live");
    expect(rows(host)[0].classList.contains("rt-new")).toBe(true);
    panel.unmount();
    panel.handleRun(summary("run-while-closed"));
    expect(panel.state.unseen.has("run-while-closed")).toBe(true);
  });

  it("saves and applies presets", async () => {
    const backend = backendWithRuns().on("POST", /^\/telemetry\/presets$/, { id: 2, name: "Mine", filters: {} });
    const { panel, host } = mount(backend);
    await openRuns(panel, host);
    buttonNamed(host, "failed").click();
    await settle();
    host.querySelector<HTMLInputElement>("input[aria-label='Name for the new preset']")!.value = "Mine";
    buttonNamed(host, "Save preset").click();
    await settle();
    const post = backend.requests.find((r) => r.method === "POST" && r.path === "/telemetry/presets")!;
    expect(post.body).toEqual({ name: "Mine", filters: { status: "failed" } });

    const select = host.querySelector<HTMLSelectElement>("select[aria-label='Saved filter presets']")!;
    select.value = "1";
    buttonNamed(host, "Apply").click();
    await settle();
    expect(panel.state.filters.statuses).toEqual(["failed"]);
    expect(panel.state.filters.range).toBe("7d");
  });

  it("compares two selected runs", async () => {
    const { panel, host } = mount(backendWithRuns());
    await openRuns(panel, host);
    const boxes = host.querySelectorAll<HTMLInputElement>("tr.rt-row input[type=checkbox]");
    boxes[0].click();
    expect(host.querySelector<HTMLButtonElement>("[data-testid=compare]")!.disabled).toBe(true);
    panel.state.selected = [];
    panel.navigate({ view: "compare", a: "run-b", b: "run-a" });
    await settle();
    const text = host.textContent!;
    expect(text).toContain("Parameters (1 changed)");
    const changedParam = host.querySelector("tr.rt-changed[data-param=width]");
    expect(changedParam!.textContent).toContain("768");
    const blur = host.querySelector<HTMLElement>("tr[data-node-id='2']")!;
    expect(blur.classList.contains("rt-changed")).toBe(true);
    expect(blur.textContent).toContain("+1.5 s");
  });
});

describe("run detail", () => {
  it("shows the error and selects the failed node on the canvas", async () => {
    const { env, panel, host } = mount(backendWithRuns(), { nodes: ["1", "2", "3"], workflowId: "wf-1" });
    panel.mount(host);
    panel.navigate({ view: "detail", runId: "run-failed" });
    await settle();
    const box = host.querySelector("[data-testid=error-box]")!;
    expect(box.textContent).toContain("RuntimeError");
    expect(box.textContent).toContain("#2");
    const select = host.querySelector<HTMLButtonElement>("[data-testid=select-node]")!;
    expect(select.disabled).toBe(false);
    select.click();
    expect(env.selected).toEqual(["2"]);
    expect(host.querySelector(".rt-wf-row.rt-highlight")!.getAttribute("data-node-id")).toBe("2");
    expect(host.querySelectorAll(".rt-wf-row").length).toBe(3);
  });

  it("disables node selection when another workflow is open", async () => {
    const { panel, host } = mount(backendWithRuns(), { nodes: ["2"], workflowId: "other-workflow" });
    panel.mount(host);
    panel.navigate({ view: "detail", runId: "run-failed" });
    await settle();
    const select = host.querySelector<HTMLButtonElement>("[data-testid=select-node]")!;
    expect(select.disabled).toBe(true);
    expect(host.textContent).toContain("Open “Broken” to select this node");
  });

  it("shows output thumbnails through /view with encoded names", async () => {
    const backend = backendWithRuns().on("GET", /^\/telemetry\/runs\/run-img$/, detail("run-img", {
      outputs: [{ node_id: "3", kind: "images", filename: "a&b.png", subfolder: "s", type: "output" }],
    }));
    const { panel, host } = mount(backend);
    panel.mount(host);
    panel.navigate({ view: "detail", runId: "run-img" });
    await settle();
    expect(host.querySelector("img")!.getAttribute("src")).toBe("/api/view?filename=a%26b.png&type=output&subfolder=s");
  });

  it("says so when a run does not exist", async () => {
    const backend = backendWithRuns().on("GET", /^\/telemetry\/runs\/gone$/, { error: "run not found" }, 404);
    const { panel, host } = mount(backend);
    panel.mount(host);
    panel.navigate({ view: "detail", runId: "gone" });
    await settle();
    expect(host.textContent).toContain("Run gone was not found.");
  });
});

describe("advice", () => {
  it("shows severity badges, opens evidence and dismisses", async () => {
    const backend = backendWithRuns()
      .on("GET", /^\/telemetry\/recommendations$/, { recommendations: [recommendation(1), recommendation(2, { severity: "critical", message: XSS_NAME })] })
      .on("POST", /^\/telemetry\/recommendations\/1\/dismiss$/, recommendation(1, { state: "dismissed" }));
    const { panel, host } = mount(backend);
    panel.mount(host);
    panel.navigate({ view: "advice" });
    await settle();
    const items = host.querySelectorAll<HTMLElement>(".rt-rec");
    expect([...items].map((i) => i.dataset.recId)).toEqual(["2", "1"]);
    expect(items[0].querySelector(".rt-badge")!.textContent).toBe("Critical");
    expect(host.querySelector("img")).toBeNull();
    expect(host.querySelector(".rt-count")!.textContent).toBe("2");

    items[1].querySelector<HTMLButtonElement>("[data-testid=dismiss]")!.click();
    await settle();
    expect(backend.requests.some((r) => r.method === "POST" && r.path.endsWith("/1/dismiss"))).toBe(true);
    expect(host.querySelectorAll(".rt-rec").length).toBe(1);
    expect(host.querySelector(".rt-count")!.textContent).toBe("1");

    buttonNamed(host, "Run run-a").click();
    await settle();
    expect(panel.state.route).toEqual({ view: "detail", runId: "run-a" });
  });

  it("offers Apply to a copy for a recommendation's graph changes, opening the changed copy through the host", async () => {
    const halve = {
      kind: "halve_batch", title: "Halve the batch size (4 → 2)", run_id: "run-a",
      changes: [{ node_id: "1", class_type: "EmptyImage", input: "batch_size", from: 4, to: 2 }],
    };
    const backend = backendWithRuns().on("GET", /^\/telemetry\/recommendations$/, {
      recommendations: [recommendation(1, { kind: "oom", actions: [halve] }), recommendation(2)],
    });
    const canvas = { id: "wf-canvas", nodes: [{ id: 1, type: "EmptyImage", widgets_values: [64, 64, 4, 0] }], links: [] };
    const opened: { workflow: { id?: string; nodes: { widgets_values?: unknown }[] }; name: string }[] = [];
    const env = fakeEnv(backend);
    env.workflowHost = () => ({
      current: () => JSON.parse(JSON.stringify(canvas)),
      currentName: () => "Portrait",
      templateOf: (type) => (type === "EmptyImage" ? { widgetNames: ["width", "height", "batch_size", "color"], node: { id: -1, type } } : null),
      open: async (workflow, name) => (opened.push({ workflow, name }), "tab"),
      newId: () => "copy-id",
    });
    const panel = new TelemetryPanel(env, createPanelState(env.settings()));
    const host = document.createElement("div");
    document.body.append(host);
    panel.mount(host);
    panel.navigate({ view: "advice" });
    await settle();
    const item = host.querySelector<HTMLElement>(".rt-rec[data-rec-id='1']")!;
    expect(item.querySelector(".rt-rec-fix[data-action=halve_batch]")!.textContent).toContain("Halve the batch size (4 → 2)");
    expect(host.querySelector(".rt-rec[data-rec-id='2'] [data-testid=apply-copy]")).toBeNull();
    item.querySelector<HTMLButtonElement>("[data-testid=apply-copy]")!.click();
    await settle();
    expect(opened.map((o) => [o.name, o.workflow.id, o.workflow.nodes[0].widgets_values])).toEqual([
      ["Portrait - Halve the batch size (4 → 2)", "copy-id", [64, 64, 2, 0]],
    ]);
    expect(canvas.nodes[0].widgets_values).toEqual([64, 64, 4, 0]);
    expect(item.querySelector("[role=status]")!.textContent).toContain("Your workflow is unchanged.");
    host.remove();
  });

  it("shows the offered changes without a button where it cannot open workflows (the standalone page)", async () => {
    const action = { kind: "lower_steps", title: "Lower the steps of KSampler (30 → 15)", run_id: "run-a", changes: [] };
    const backend = backendWithRuns().on("GET", /^\/telemetry\/recommendations$/, {
      recommendations: [recommendation(1, { actions: [action] })],
    });
    const { panel, host } = mount(backend);
    panel.mount(host);
    panel.navigate({ view: "advice" });
    await settle();
    expect(host.querySelector(".rt-rec-fix")!.textContent).toBe("Lower the steps of KSampler (30 → 15)");
    expect(host.querySelector("[data-testid=apply-copy]")).toBeNull();
  });

  it("a pushed recommendation appears without reload", async () => {
    const backend = backendWithRuns().on("GET", /^\/telemetry\/recommendations$/, { recommendations: [] });
    const { panel, host } = mount(backend);
    panel.mount(host);
    panel.navigate({ view: "advice" });
    await settle();
    expect(host.textContent).toContain("No open recommendations");
    panel.handleRecommendation(recommendation(5, { message: "New advice" }));
    expect(host.textContent).toContain("New advice");
  });
});

describe("lifecycle and missing routes", () => {
  it("leaves no timers or DOM behind when closed", async () => {
    const { panel, host } = mount(backendWithRuns());
    await openRuns(panel, host);
    const search = host.querySelector<HTMLInputElement>("input[type=search]")!;
    search.value = "x";
    search.dispatchEvent(new Event("input"));
    panel.handleQueueChanged();
    expect(panel.activeTimers).toBeGreaterThan(0);
    panel.unmount();
    expect(panel.activeTimers).toBe(0);
    expect(host.childNodes.length).toBe(0);
    panel.handleQueueChanged();
    expect(panel.activeTimers).toBe(0);
  });

  it("reopening restores the view and filters", async () => {
    const { panel, host } = mount(backendWithRuns());
    await openRuns(panel, host);
    buttonNamed(host, "failed").click();
    panel.unmount();
    panel.mount(host);
    await settle();
    expect(panel.state.route.view).toBe("runs");
    expect(buttonNamed(host, "failed").getAttribute("aria-pressed")).toBe("true");
  });

  it("the overview's workflow table filters by the workflow's key and shows its name", async () => {
    const backend = backendWithRuns();
    const { panel, host } = mount(backend);
    panel.mount(host);
    await settle();
    buttonNamed(host, "Portrait").click();
    await settle();
    expect(panel.state.filters.workflow).toBe("wf-1");
    const picker = host.querySelector<HTMLSelectElement>("select[aria-label=Workflow]")!;
    expect(picker.value).toBe("wf-1");
    expect(picker.selectedOptions[0].textContent).toBe("Portrait");
    expect(backend.paths().filter((p) => p.startsWith("/telemetry/stats?")).pop()).toContain("workflow=wf-1");
  });

  it("a live run of a new workflow joins the workflow picker", async () => {
    const { panel, host } = mount(backendWithRuns());
    panel.mount(host);
    await settle();
    panel.handleRun(summary("run-new", { workflow_id: "wf-new", workflow_name: "Fresh" }));
    const options = [...host.querySelectorAll<HTMLOptionElement>("select[aria-label=Workflow] option")];
    expect(options.map((o) => [o.value, o.textContent])).toContainEqual(["wf-new", "Fresh"]);
  });

  it("an overview without analysis routes degrades to notices", async () => {
    const backend = new FakeBackend();
    const { panel, host } = mount(backend);
    panel.mount(host);
    await settle();
    expect(host.textContent).toContain("does not serve statistics yet");
    expect(host.querySelector("[data-testid=queue-eta]")!.classList.contains("rt-hidden")).toBe(true);
  });

  it("shows the queue ETA only when predictions exist", async () => {
    const backend = backendWithRuns().on("GET", /^\/telemetry\/queue\/eta$/, {
      has_predictions: true,
      items: [{ prompt_id: "p1", position: 1, workflow_name: XSS_NAME, predicted_duration_ms: 30_000, predicted_start_ms: Date.UTC(2025, 2, 5, 12, 0, 20), predicted_finish_ms: Date.UTC(2025, 2, 5, 12, 0, 50), interval_ms: [20_000, 40_000] }],
    });
    const { panel, host } = mount(backend);
    panel.mount(host);
    await settle();
    const eta = host.querySelector<HTMLElement>("[data-testid=queue-eta]")!;
    expect(eta.classList.contains("rt-hidden")).toBe(false);
    expect(eta.textContent).toContain(XSS_NAME);
    expect(eta.textContent).toContain("starts in 20 s");
    expect(host.querySelector("img")).toBeNull();
  });
});
