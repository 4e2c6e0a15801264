import { describe, expect, it } from "vitest";
import { TelemetryClient } from "../src/client";
import { defaultFilters } from "../src/filters";
import { defaultTableState } from "../src/paging";
import { FakeBackend } from "./fakes";

const NOW = Date.UTC(2025, 2, 5, 12, 0, 0);

describe("TelemetryClient", () => {
  it("sends filters and paging to /telemetry/runs", async () => {
    const backend = new FakeBackend().on("GET", /^\/telemetry\/runs$/, { runs: [], total: 0, limit: 50, offset: 0 });
    const client = new TelemetryClient(backend.fetchApi, () => NOW);
    const result = await client.runs({ ...defaultFilters("all"), statuses: ["failed"], q: "x y" }, defaultTableState());
    expect(result.ok).toBe(true);
    expect(backend.paths()).toEqual(["/telemetry/runs?status=failed&q=x+y&sort=-started_at_ms&limit=50&offset=0"]);
  });

  it("marks a missing route (plain 404) as missing and a JSON 404 as an error", async () => {
    const backend = new FakeBackend().on("GET", /^\/telemetry\/runs\/.+/, { error: "no such run" }, 404);
    const client = new TelemetryClient(backend.fetchApi);
    const missing = await client.recommendations("open");
    expect(missing).toMatchObject({ ok: false, status: 404, missing: true });
    const unknownRun = await client.run("nope");
    expect(unknownRun).toMatchObject({ ok: false, status: 404, missing: false, error: "no such run" });
  });

  it("reports 400 errors with the server's message", async () => {
    const backend = new FakeBackend().on("GET", /stats$/, { error: "bad since_ms" }, 400);
    const result = await new TelemetryClient(backend.fetchApi).stats(defaultFilters());
    expect(result).toMatchObject({ ok: false, status: 400, error: "bad since_ms" });
  });

  it("never throws on network failure or non-JSON", async () => {
    const broken = new TelemetryClient(() => Promise.reject(new Error("offline")));
    expect(await broken.health()).toMatchObject({ ok: false, status: 0, error: "offline" });
    const html = new TelemetryClient(async () => new Response("<html>", { status: 200 }));
    expect((await html.health()).ok).toBe(false);
  });

  it("posts JSON for presets, dismissals and workflow names", async () => {
    const backend = new FakeBackend()
      .on("POST", /presets$/, { id: 1, name: "n", filters: {} })
      .on("POST", /dismiss$/, { id: "r/1", state: "dismissed" })
      .on("POST", /workflows$/, { ok: true })
      .on("DELETE", /presets\/1$/, { deleted: true });
    const client = new TelemetryClient(backend.fetchApi);
    await client.savePreset("n", { status: "failed" });
    await client.dismiss("r/1");
    expect((await client.reportWorkflow("uuid", "name")).ok).toBe(true);
    await client.deletePreset(1);
    expect(backend.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
      "POST /telemetry/presets",
      "POST /telemetry/recommendations/r%2F1/dismiss",
      "POST /telemetry/workflows",
      "DELETE /telemetry/presets/1",
    ]);
    expect(backend.requests[0].body).toEqual({ name: "n", filters: { status: "failed" } });
    expect(backend.requests[2].body).toEqual({ id: "uuid", name: "name" });
  });

  it("asks the trends route for one workflow and metric without the status filter", async () => {
    const backend = new FakeBackend();
    await new TelemetryClient(backend.fetchApi, () => NOW).trends("w&x", "duration_ms", {
      ...defaultFilters("all"),
      statuses: ["failed"],
    });
    expect(backend.paths()).toEqual(["/telemetry/trends?workflow=w%26x&metric=duration_ms"]);
  });
});
