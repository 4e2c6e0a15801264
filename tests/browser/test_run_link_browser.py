"""A webhook's link to a run opens that run in the panel, in a real browser: a real ComfyUI with the pack sends a
finished run to a real receiver (`public_url` is ComfyUI's own address); opening the payload's `url`
(`http://127.0.0.1:<port>/?telemetry_run=<id>`) shows the Telemetry tab open on that run's detail, with no click.
The same link to `python -m telemetry serve` over the same database opens serve's page on the run.

Runs on every browser leg (ComfyUI 0.8.0 with its own frontend, 1.35.9, and with the newest, 1.58.1)."""

from __future__ import annotations

import json

import pytest
from comfy_harness import ComfyServer, free_port, image_workflow
from panel_page import TAB_BUTTON, VIEWPORT, PanelPage
from serve_process import ServeProcess
from webhook_receiver import Receiver

from telemetry.store.database import sqlite_url
from telemetry.webhooks.payloads import run_link

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = [pytest.mark.browser, pytest.mark.comfyui, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def linked(browser_leg, panel_dist, tmp_path_factory):
    """A ComfyUI that ran one image workflow and sent its `finished` webhook: (server, the payload's run)."""
    base = tmp_path_factory.mktemp("comfy-run-link")
    user = base / "user" / "default"
    user.mkdir(parents=True)
    (user / "comfy.settings.json").write_text(json.dumps({"Comfy.TutorialCompleted": True}))
    receiver = Receiver().start()
    port = free_port()
    server = ComfyServer.for_tree(browser_leg, base, port=port,
                                  env={"TELEMETRY_WEBHOOK_URLS": receiver.url("/hook"),
                                       "TELEMETRY_PUBLIC_URL": f"http://127.0.0.1:{port}"})
    try:
        server.start()
        run_id, _, _ = server.run_and_wait(image_workflow(prefix="run-link", color=77, batch=1))
        received = receiver.wait_for(lambda r: any(g.json.get("event") == "finished" for g in r), timeout=30)
        (got,) = [g for g in received if g.json["event"] == "finished"]  # analysis may add recommendation events
        payload = got.json["run"]
        assert payload["run_id"] == run_id, payload
        yield server, payload
    finally:
        server.stop()
        receiver.stop()


@pytest.fixture
def browser_page(chromium_browser):
    context = chromium_browser.new_context(viewport=VIEWPORT, color_scheme="dark")
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def _shows_run(root, run_id: str, name: str) -> None:
    detail = root.locator(f".rt-detail[data-run-id='{run_id}']")
    expect(detail.locator("[data-testid=detail-title]")).to_have_text(name, timeout=30_000)
    expect(detail).to_contain_text(run_id)


def test_the_webhook_link_opens_comfyui_on_the_runs_detail(linked, browser_page, tmp_path):
    server, payload = linked
    run_id = payload["run_id"]
    assert payload["url"] == f"{server.url}/?telemetry_run={run_id}"
    ui = PanelPage(browser_page, server, tmp_path)
    ui.load(payload["url"])
    # the tab opened by itself, on the run (no click on the tab's button)
    _shows_run(ui.panel, run_id, server.get(f"/telemetry/runs/{run_id}")["workflow_name"])
    assert ui.page.locator(TAB_BUTTON).count() >= 1
    ui.shot("run-link")
    # the back button leads into the panel as usual
    ui.panel.locator("button.rt-back").click()
    expect(ui.panel.locator(".rt-detail")).to_have_count(0)
    assert ui.page_errors == [] and ui.telemetry_failures == [] and ui.dialogs == []


def test_the_same_link_to_the_serve_page_opens_it_on_the_run(linked, browser_page, tmp_path):
    server, payload = linked
    run_id = payload["run_id"]
    serve = ServeProcess(sqlite_url(str(server.database_path)), tmp_path).start()
    try:
        link = run_link(serve.url, run_id)  # what a webhook with public_url = serve's page carries
        assert link == f"{serve.url}/?telemetry_run={run_id}"
        errors: list[str] = []
        browser_page.on("pageerror", lambda exc: errors.append(str(exc)))
        browser_page.goto(link)
        tab = browser_page.get_by_test_id("host-tab")
        _shows_run(tab, run_id, server.get(f"/telemetry/runs/{run_id}")["workflow_name"])
        assert errors == []
    finally:
        serve.stop()
