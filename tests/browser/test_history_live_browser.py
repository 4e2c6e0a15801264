"""In a real browser on ComfyUI 0.8.0 with its own frontend (1.35.9): ComfyUI's queue/job history lists a run
from before a restart, and the Telemetry panel's live card follows a running run.

What the frontend reads: 1.35.9's queue store and its "assets" sidebar tab (generated media, its job history) load
with `api.getHistory()`, which fetches `/history?max_items=N` (fetchHistoryV1; that build never calls `/api/jobs`).
The test checks that public API in the page, and the assets sidebar tab itself showing the restored run's image.
"""

from __future__ import annotations

import json
import sqlite3
import time

import pytest
from comfy_harness import ComfyServer, image_workflow
from matrix import require_tree
from panel_page import PanelPage

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = [pytest.mark.browser, pytest.mark.comfyui, pytest.mark.timeout(300)]


def sleep_workflow(first: float, second: float) -> dict:
    return {"1": {"class_type": "TelemetryTestSleep", "inputs": {"seconds": first}},
            "2": {"class_type": "TelemetryTestSleep", "inputs": {"seconds": second}}}


def _wait_records(server: ComfyServer, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(server.database_path) as conn:
                if conn.execute("SELECT count(*) FROM comfy_history").fetchone()[0] >= count:
                    return
        except sqlite3.Error:
            pass
        time.sleep(0.2)
    raise AssertionError(f"fewer than {count} history records stored")


@pytest.fixture(scope="module")
def restarted(tmp_path_factory):
    """A ComfyUI 0.8.0 that ran an image workflow and the sleep graph's history, then restarted."""
    tree = require_tree("0.8.0")
    base = tmp_path_factory.mktemp("comfy-history-browser")
    user = base / "user" / "default"
    user.mkdir(parents=True)
    (user / "comfy.settings.json").write_text(json.dumps({"Comfy.TutorialCompleted": True}))
    server = ComfyServer.for_tree(tree, base)
    server.start()
    image_id, image_item, _ = server.run_and_wait(image_workflow(prefix="browser-restore", color=51, batch=1))
    for first, second in ((0.2, 0.3), (0.21, 0.31), (0.22, 0.32)):
        server.run_and_wait(sleep_workflow(first, second))
    _wait_records(server, 4)
    server.stop()
    server.start()
    yield server, image_id, image_item
    server.stop()


@pytest.fixture(scope="module")
def page(restarted, chromium_browser, tmp_path_factory):
    from panel_page import VIEWPORT

    server = restarted[0]
    context = chromium_browser.new_context(viewport=VIEWPORT, color_scheme="dark")
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    ui = PanelPage(tab, server, tmp_path_factory.mktemp("shots"))
    ui.load()
    yield ui
    context.close()


def test_frontend_queue_history_lists_a_run_from_before_the_restart(page, restarted):
    _, image_id, image_item = restarted
    history = page.page.evaluate("async () => (await window.comfyAPI.api.api.getHistory(200)).History")
    by_id = {task["prompt"][1]: task for task in history}
    assert image_id in by_id, list(by_id)
    assert by_id[image_id]["outputs"] == image_item["outputs"]
    assert by_id[image_id]["status"]["status_str"] == "success"
    (image,) = [img for node in image_item["outputs"].values() for img in node.get("images", [])]

    page.page.locator(".assets-tab-button").first.click()  # the frontend's generated-media (job history) tab
    thumb = page.page.locator(f"img[src*='{image['filename']}']")
    expect(thumb.first).to_be_visible(timeout=20_000)
    page.shot("queue-history-after-restart", full=True)
    page.page.locator(".assets-tab-button").first.click()


def test_live_card_follows_the_running_run_and_a_slow_node_toasts(page, restarted):
    server = restarted[0]
    page.open_tab()
    card = page.panel.locator("[data-testid=live-card]")
    run_id = server.submit(sleep_workflow(2.5, 0.3))
    expect(card).to_be_visible(timeout=10_000)
    expect(card.locator("[data-testid=live-node]")).to_contain_text("TelemetryTestSleep")
    expect(card.locator("[data-testid=live-queue-wait]")).to_contain_text("Queue wait")
    expect(card.locator("[data-testid=live-run-time]")).to_contain_text("Run time")
    expect(card.locator("[data-testid=live-node]")).to_contain_text("usually")
    toast = page.page.get_by_text("TelemetryTestSleep is taking", exact=False)
    expect(toast.first).to_be_visible(timeout=10_000)
    assert "longer than usual: model reloads or low VRAM offloading?" in toast.first.text_content()
    page.shot("live-card", focus="[data-testid=live-card]")
    server.wait_run(run_id, timeout=30)
    expect(card).to_be_hidden(timeout=10_000)
    assert page.page_errors == []
