// @vitest-environment jsdom
/**
 * The admin-token setting: the panel sends `Authorization: Bearer <token>` with every request that changes
 * something, never with reads, and a refused change (401/403) says which setting to fix.
 */

import { beforeEach, describe, expect, it } from "vitest";
import { TelemetryClient } from "../src/client";
import { defaultFilters } from "../src/filters";
import { defaultTableState } from "../src/paging";
import { readAdminToken, settingDefinitions, SETTING_ADMIN_TOKEN } from "../src/settings";
import { createPanelState, TelemetryPanel } from "../src/views/panel";
import { FakeBackend, fakeEnv, settle } from "./fakes";
import { recommendation, summary } from "./sample";

const SETTING_NAME = "Settings › Run Telemetry › Security › Admin token";

function changeRoutes(backend: FakeBackend): FakeBackend {
  return backend
    .on("POST", /^\/telemetry\/presets$/, { id: 1, name: "n", filters: {} })
    .on("DELETE", /^\/telemetry\/presets\/1$/, { deleted: true })
    .on("POST", /dismiss$/, { id: 3, state: "dismissed" })
    .on("POST", /^\/telemetry\/workflows$/, { ok: true })
    .on("PUT", /^\/telemetry\/config$/, { ok: true })
    .on("DELETE", /^\/telemetry\/runs$/, { deleted: 0 });
}

async function everyCall(client: TelemetryClient): Promise<void> {
  await client.runs(defaultFilters("all"), defaultTableState());
  await client.stats(defaultFilters("all"));
  await client.presets();
  await client.health();
  await client.savePreset("n", { status: "failed" });
  await client.deletePreset(1);
  await client.dismiss(3);
  await client.reportWorkflow("wf", "Portrait");
  await client.request("/telemetry/config", { method: "PUT", headers: { "Content-Type": "application/json" }, body: "{}" });
  await client.request("/telemetry/runs?before_ms=1", { method: "DELETE" });
}

describe("admin token on requests", () => {
  it("goes with every change as a bearer token, and with no read", async () => {
    const backend = changeRoutes(new FakeBackend());
    await everyCall(new TelemetryClient(backend.fetchApi, Date.now, () => "s3cret-token"));
    const seen = backend.requests.map((r) => `${r.method} ${r.path.split("?")[0]} ${r.headers.authorization ?? "-"}`);
    expect(seen).toEqual([
      "GET /telemetry/runs -",
      "GET /telemetry/stats -",
      "GET /telemetry/presets -",
      "GET /telemetry/health -",
      "POST /telemetry/presets Bearer s3cret-token",
      "DELETE /telemetry/presets/1 Bearer s3cret-token",
      "POST /telemetry/recommendations/3/dismiss Bearer s3cret-token",
      "POST /telemetry/workflows Bearer s3cret-token",
      "PUT /telemetry/config Bearer s3cret-token",
      "DELETE /telemetry/runs Bearer s3cret-token",
    ]);
    // the other headers of a change are kept
    expect(backend.requests[4].headers["content-type"]).toBe("application/json");
    expect(backend.requests[8].headers["content-type"]).toBe("application/json");
  });

  it("is not sent at all while the setting is empty", async () => {
    const backend = changeRoutes(new FakeBackend());
    await everyCall(new TelemetryClient(backend.fetchApi, Date.now, () => "   "));
    expect(backend.requests.filter((r) => "authorization" in r.headers)).toEqual([]);
  });

  it("is read on every request, so a changed setting applies without a reload", async () => {
    const backend = changeRoutes(new FakeBackend());
    let token = "first";
    const client = new TelemetryClient(backend.fetchApi, Date.now, () => token);
    await client.dismiss(3);
    token = "second";
    await client.dismiss(3);
    expect(backend.requests.map((r) => r.headers.authorization)).toEqual(["Bearer first", "Bearer second"]);
  });

  it("that cannot go into a header is not sent, and the message says to enter it again", async () => {
    const backend = changeRoutes(new FakeBackend());
    const client = new TelemetryClient(backend.fetchApi, Date.now, () => "tökén with space");
    const result = await client.savePreset("n", {});
    expect(result).toMatchObject({ ok: false, denied: true });
    expect(!result.ok && result.error).toContain(SETTING_NAME);
    expect(backend.requests).toEqual([]);
  });
});

describe("a refused change", () => {
  it("without a token (401) tells the user to enter TELEMETRY_ADMIN_TOKEN in the setting", async () => {
    const backend = new FakeBackend().on("POST", /presets$/, { error: "admin token required" }, 401);
    const result = await new TelemetryClient(backend.fetchApi).savePreset("n", {});
    expect(result).toMatchObject({ ok: false, status: 401, denied: true, missing: false });
    expect(!result.ok && result.error).toBe(
      `admin token required. This server requires its admin token for changes: enter TELEMETRY_ADMIN_TOKEN in ${SETTING_NAME}.`,
    );
  });

  it("with a wrong token (403) says the token was not accepted and where to check it", async () => {
    const backend = new FakeBackend().on("DELETE", /presets\/1$/, { error: "invalid admin token" }, 403);
    const result = await new TelemetryClient(backend.fetchApi, Date.now, () => "wrong").deletePreset(1);
    expect(result).toMatchObject({ ok: false, status: 403, denied: true });
    expect(!result.ok && result.error).toContain("invalid admin token. The server did not accept the admin token");
    expect(!result.ok && result.error).toContain(SETTING_NAME);
  });

  it("is told apart from a refused read, which keeps the server's own message", async () => {
    const backend = new FakeBackend().on("GET", /health$/, { error: "forbidden" }, 403);
    const result = await new TelemetryClient(backend.fetchApi, Date.now, () => "t").health();
    expect(result).toMatchObject({ ok: false, status: 403, error: "forbidden" });
    expect(!result.ok && result.denied).toBeFalsy();
  });
});

describe("in the panel", () => {
  beforeEach(() => document.body.replaceChildren());

  function mount(backend: FakeBackend, adminToken?: () => string) {
    const env = fakeEnv(backend, { adminToken });
    const panel = new TelemetryPanel(env, createPanelState(env.settings()));
    const host = document.createElement("div");
    document.body.append(host);
    panel.mount(host);
    return { panel, host };
  }

  function buttonNamed(host: HTMLElement, text: string): HTMLButtonElement {
    const b = [...host.querySelectorAll("button")].find((x) => x.textContent?.trim() === text);
    if (!b) throw new Error(`no button "${text}"`);
    return b as HTMLButtonElement;
  }

  it("saving a preset on a server that wants the token shows the message that names the setting", async () => {
    const backend = new FakeBackend()
      .on("GET", /^\/telemetry\/runs$/, { runs: [summary("run-a")], total: 1, limit: 50, offset: 0 })
      .on("GET", /^\/telemetry\/presets$/, { presets: [] })
      .on("POST", /^\/telemetry\/presets$/, { error: "admin token required" }, 401);
    const { panel, host } = mount(backend);
    panel.navigate({ view: "runs" });
    await settle();
    buttonNamed(host, "Save preset").click();
    await settle();
    expect(host.textContent).toContain(`Could not save: admin token required.`);
    expect(host.textContent).toContain(SETTING_NAME);
  });

  it("dismissing advice with the token set sends it, and a refusal keeps the advice with the message", async () => {
    const backend = new FakeBackend()
      .on("GET", /^\/telemetry\/recommendations$/, { recommendations: [recommendation(7)] })
      .on("POST", /dismiss$/, { error: "invalid admin token" }, 403);
    const { panel, host } = mount(backend, () => "abc");
    panel.navigate({ view: "advice" });
    await settle();
    host.querySelector<HTMLButtonElement>("[data-testid=dismiss]")!.click();
    await settle();
    const post = backend.requests.find((r) => r.method === "POST")!;
    expect(post.headers.authorization).toBe("Bearer abc");
    expect(host.querySelector("[data-rec-id='7']")).not.toBeNull();
    expect(host.textContent).toContain("Could not dismiss: invalid admin token. The server did not accept the admin token");
    expect(host.textContent).toContain(SETTING_NAME);
  });
});

describe("the setting", () => {
  it("is a password-like text field under Run Telemetry › Security", () => {
    const token = settingDefinitions(() => {}).find((d) => d.id === SETTING_ADMIN_TOKEN)!;
    expect(token).toMatchObject({ type: "text", defaultValue: "", category: ["Run Telemetry", "Security", "Admin token"] });
    expect(token.attrs).toMatchObject({ type: "password", autocomplete: "off" });
    expect(token.name).toContain("TELEMETRY_ADMIN_TOKEN");
  });

  it("reads trimmed, and empty for anything that is not a string or a store that is not ready", () => {
    expect(readAdminToken((id) => (id === SETTING_ADMIN_TOKEN ? "  tok\n" : undefined))).toBe("tok");
    expect(readAdminToken(() => 42)).toBe("");
    expect(readAdminToken(undefined)).toBe("");
    expect(
      readAdminToken(() => {
        throw new Error("not ready");
      }),
    ).toBe("");
  });
});
