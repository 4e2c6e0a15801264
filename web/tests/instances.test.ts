// @vitest-environment jsdom
import { describe, expect, it } from "vitest";
import { instanceChoices, instanceLabel } from "../src/instances";
import type { InstanceInfo } from "../src/types";
import { createPanelState, TelemetryPanel } from "../src/views/panel";
import { FakeBackend, fakeEnv, settle } from "./fakes";
import { summary } from "./sample";

const NOW = Date.UTC(2025, 2, 5, 12, 0, 0);

function info(name: string, lastSeenAgoMs: number | null, extra: Partial<InstanceInfo> = {}): InstanceInfo {
  return { instance: name, source: "plugin", last_seen_ms: lastSeenAgoMs === null ? null : NOW - lastSeenAgoMs, online: true, runs: 3, ...extra };
}

describe("instances", () => {
  it("marks an instance not seen for 2 minutes as offline, whatever the server said when the list was loaded", () => {
    const choices = instanceChoices([info("gpu-b:8188", 121_000), info("gpu-a:8188", 5_000), info("old", null)], NOW);
    expect(choices.map((c) => [c.name, c.online])).toEqual([["gpu-a:8188", true], ["gpu-b:8188", false], ["old", false]]);
    expect(choices.map(instanceLabel)).toEqual(["gpu-a:8188", "gpu-b:8188 (offline)", "old (offline)"]);
  });

  it("shows one choice per name when a plugin and a watcher share it (online if either is)", () => {
    const choices = instanceChoices([info("box:8188", 200_000), info("box:8188", 1_000, { source: "watcher" })], NOW);
    expect(choices).toHaveLength(1);
    expect(choices[0].online).toBe(true);
  });

  it("puts an instance selector in the toolbar of every view; choosing one filters what the views ask for", async () => {
    const backend = new FakeBackend()
      .on("GET", /^\/telemetry\/instances$/, { instances: [info("gpu-a:8188", 1_000), info("gpu-b:8188", 300_000)] })
      .on("GET", /^\/telemetry\/runs$/, { runs: [summary("r1")], total: 1, limit: 50, offset: 0 });
    const env = fakeEnv(backend, { now: NOW });
    const panel = new TelemetryPanel(env, createPanelState(env.settings()));
    const host = document.createElement("div");
    document.body.append(host);
    panel.mount(host);
    await settle();
    for (const view of ["overview", "runs", "advice"] as const) {
      panel.navigate({ view });
      await settle();
      const select = host.querySelector<HTMLSelectElement>("[data-testid=instance-select]");
      expect(select, view).not.toBeNull();
      expect(select!.classList.contains("rt-hidden")).toBe(false);
      expect([...select!.options].map((o) => o.textContent)).toEqual(["All instances", "gpu-a:8188", "gpu-b:8188 (offline)"]);
    }
    panel.navigate({ view: "runs" });
    await settle();
    const select = host.querySelector<HTMLSelectElement>("[data-testid=instance-select]")!;
    select.value = "gpu-b:8188";
    select.dispatchEvent(new Event("change"));
    await settle();
    expect(backend.paths().filter((p) => p.startsWith("/telemetry/runs?")).at(-1)).toContain("instance=gpu-b%3A8188");
    panel.unmount();
  });
});
