/**
 * The live card: the run executing now, from the backend's `telemetry.progress` events (at most once a second,
 * sent only while this panel holds a listening lease). It shows the node it is in against that node's usual time,
 * the time left, queue wait and run time apart, and a waterfall that fills in as nodes finish.
 *
 * `LiveLease` announces the open panel (`POST /telemetry/live/listen`) and renews the lease through the panel's
 * timer registry, so closing the tab stops it and the backend stops sending. No timers of its own otherwise.
 */

import type { TelemetryClient } from "../client";
import { h, setChildren } from "../dom";
import { formatDuration } from "../format";

export const LIVE_ROUTES = { live: "/telemetry/live", listen: "/telemetry/live/listen" } as const;
export const LEASE_S = 30;
/** Renewed well before it runs out. */
export const RENEW_MS = 20_000;

export interface LiveNode {
  node_id: string;
  class_type: string | null;
  elapsed_ms: number;
  expected_ms: number | null;
}

export interface LiveNodeDone {
  node_id: string;
  class_type: string | null;
  start_offset_ms: number;
  duration_ms: number;
}

export interface LiveRun {
  run_id: string;
  current_node: LiveNode | null;
  eta_ms: number | null;
  run_ms: number;
  queue_wait_ms: number | null;
  history_runs?: number;
  nodes_done: LiveNodeDone[];
}

export interface SlowEvent {
  run_id: string;
  node_id: string;
  class_type: string | null;
  elapsed_ms: number;
  expected_ms: number;
  message: string;
}

export function isLiveRun(value: unknown): value is LiveRun {
  const v = value as LiveRun | null;
  return !!v && typeof v.run_id === "string" && typeof v.run_ms === "number" && Array.isArray(v.nodes_done);
}

export interface LiveBar {
  node_id: string;
  label: string;
  leftPct: number;
  widthPct: number;
  running: boolean;
  title: string;
}

/** Bars in percent of the run so far: finished nodes, then the running one growing to "now". */
export function liveBars(run: LiveRun): LiveBar[] {
  const running = run.current_node;
  const span = Math.max(1, run.run_ms);
  const pct = (ms: number) => Math.max(0, Math.min(100, (ms / span) * 100));
  const bars: LiveBar[] = run.nodes_done.map((n) => ({
    node_id: n.node_id,
    label: n.class_type ?? `#${n.node_id}`,
    leftPct: pct(n.start_offset_ms),
    widthPct: Math.max(0.6, pct(n.duration_ms)),
    running: false,
    title: `${n.class_type ?? "node"} #${n.node_id}: ${formatDuration(n.duration_ms)}`,
  }));
  if (running) {
    const start = Math.max(0, run.run_ms - running.elapsed_ms);
    bars.push({
      node_id: running.node_id,
      label: running.class_type ?? `#${running.node_id}`,
      leftPct: pct(start),
      widthPct: Math.max(0.6, pct(running.elapsed_ms)),
      running: true,
      title: `${running.class_type ?? "node"} #${running.node_id}: running for ${formatDuration(running.elapsed_ms)}`,
    });
  }
  return bars;
}

/** The card's text lines. */
export function liveSummary(run: LiveRun): { node: string; usual: string; eta: string; queue: string; runTime: string } {
  const n = run.current_node;
  return {
    node: n ? `${n.class_type ?? "Node"} #${n.node_id} · ${formatDuration(n.elapsed_ms)}` : "between nodes",
    usual: n && n.expected_ms != null ? `usually ${formatDuration(n.expected_ms)}` : "no history of this node yet",
    eta: run.eta_ms != null ? `about ${formatDuration(run.eta_ms)} left` : "time left unknown",
    queue: `Queue wait ${formatDuration(run.queue_wait_ms)}`,
    runTime: `Run time ${formatDuration(run.run_ms)}`,
  };
}

export class LiveCard {
  readonly el: HTMLElement;
  private runId: string | null = null;

  constructor() {
    this.el = h("section", { class: "rt-live-card rt-hidden", "aria-label": "Running now", "data-testid": "live-card" });
  }

  get shownRunId(): string | null {
    return this.runId;
  }

  update(run: LiveRun): void {
    this.runId = run.run_id;
    const s = liveSummary(run);
    const slow = run.current_node?.expected_ms != null && run.current_node.elapsed_ms > 3 * run.current_node.expected_ms;
    setChildren(
      this.el,
      h("div", { class: "rt-live-head" }, h("strong", null, "Running now"), h("span", { class: "rt-live-eta", "data-testid": "live-eta" }, s.eta)),
      h("div", { class: ["rt-live-node", slow && "rt-live-slow"], "data-testid": "live-node" }, s.node, " · ", s.usual),
      h(
        "div",
        { class: "rt-live-times" },
        h("span", { "data-testid": "live-queue-wait" }, s.queue),
        h("span", { "data-testid": "live-run-time" }, s.runTime),
      ),
      h(
        "div",
        { class: "rt-live-waterfall", "data-testid": "live-waterfall" },
        liveBars(run).map((b) =>
          h(
            "div",
            { class: ["rt-live-row", b.running && "rt-live-running"], title: b.title, dataset: { node: b.node_id } },
            h("span", { class: "rt-live-label" }, b.label),
            h("span", { class: "rt-live-track" }, h("span", { class: "rt-live-bar", style: { left: `${b.leftPct}%`, width: `${b.widthPct}%` } })),
          ),
        ),
      ),
    );
    this.el.classList.remove("rt-hidden");
  }

  /** The run finished (its record arrived) or nothing runs: the card goes away. */
  clear(runId?: string): void {
    if (runId !== undefined && runId !== this.runId) return;
    this.runId = null;
    setChildren(this.el);
    this.el.classList.add("rt-hidden");
  }
}

/** Holds the listening lease while the panel is open; `schedule` is the panel's timer registry. */
export class LiveLease {
  private active = false;

  constructor(
    private readonly client: TelemetryClient,
    private readonly schedule: (fn: () => void, ms: number) => void,
  ) {}

  async start(): Promise<LiveRun | null> {
    this.active = true;
    await this.renew();
    const answer = await this.client.request<{ run: LiveRun | null }>(LIVE_ROUTES.live);
    return answer.ok && isLiveRun(answer.data.run) ? answer.data.run : null;
  }

  stop(): void {
    this.active = false;
  }

  private async renew(): Promise<void> {
    if (!this.active) return;
    const answer = await this.client.request(LIVE_ROUTES.listen, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ seconds: LEASE_S }),
    });
    // A backend without the live routes (an older pack, the standalone host): no renewals.
    if (!answer.ok && answer.missing) return;
    this.schedule(() => void this.renew(), RENEW_MS);
  }
}
