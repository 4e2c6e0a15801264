"""In a real browser: ComfyUI's own frontend lists a run from before a restart in its job history, on ComfyUI 0.8.0
with its pinned frontend (1.35.9) and on 0.3.75 with its pinned one (1.32.9); and the Telemetry panel's live card
follows a running run (0.8.0).

How each frontend lists history: in both, the queue store and the "assets" sidebar tab (generated media, the job
history; 1.32.9 also has the older "queue" tab, fed by the same store) load with the public `api.getHistory()`,
which fetches `/history?max_items=N` (fetchHistoryV1; neither build calls `/api/jobs`, which 0.3.75 lacks). The
test calls that API in the page, opens the assets tab and checks the `/history` answer the tab fetched and the
restored run's image it shows.

Test ids: `[comfy0.8.0]` and `[comfy0.3.75]`, so scripts/test.sh's parallel legs (`-k "comfy0.8.0 and not
fe1.58.1"` / `-k "not comfy0.8.0 or fe1.58.1"`) each take exactly one.
"""

from __future__ import annotations

import json

import pytest
from comfy_harness import ComfyServer, image_workflow
from history_records import wait_history_records
from matrix import require_tree
from panel_page import PanelPage

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = [pytest.mark.browser, pytest.mark.comfyui, pytest.mark.timeout(300)]


def sleep_workflow(first: float, second: float) -> dict:
    return {"1": {"class_type": "TelemetryTestSleep", "inputs": {"seconds": first}},
            "2": {"class_type": "TelemetryTestSleep", "inputs": {"seconds": second}}}


# ComfyUI versions, each served its own pinned frontend.
HISTORY_LEGS = ["0.8.0", "0.3.75"]


def _leg_id(version: str) -> str:
    return f"comfy{version}"


@pytest.fixture(scope="module", params=HISTORY_LEGS, ids=_leg_id)
def restarted(request, tmp_path_factory):
    """A ComfyUI (of this leg, with its pinned frontend) that ran an image workflow and the sleep graph's history,
    then restarted."""
    tree = require_tree(request.param)
    base = tmp_path_factory.mktemp(f"comfy-history-browser-{request.param}")
    user = base / "user" / "default"
    user.mkdir(parents=True)
    (user / "comfy.settings.json").write_text(json.dumps({"Comfy.TutorialCompleted": True}))
    server = ComfyServer.for_tree(tree, base)
    server.start()
    image_id, image_item, _ = server.run_and_wait(image_workflow(prefix="browser-restore", color=51, batch=1))
    for first, second in ((0.2, 0.3), (0.21, 0.31), (0.22, 0.32)):
        server.run_and_wait(sleep_workflow(first, second))
    wait_history_records(server, 4)
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

    # the frontend's generated-media (job history) tab loads the history from /history, which lists the run
    with page.page.expect_response(lambda r: "/history?" in r.url and r.request.method == "GET") as answer:
        page.page.locator(".assets-tab-button").first.click()
    assert answer.value.ok and image_id in answer.value.json(), answer.value.url
    thumb = page.page.locator(f"img[src*='{image['filename']}']")
    expect(thumb.first).to_be_visible(timeout=20_000)
    page.shot("queue-history-after-restart", full=True)
    page.page.locator(".assets-tab-button").first.click()


# The live card needs no second frontend: 0.8.0's leg only.
@pytest.mark.parametrize("restarted", ["0.8.0"], indirect=True, ids=_leg_id)
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
