"""The Telemetry panel in a real browser against a real ComfyUI: what a user sees and does.

Each test saves a screenshot of the view it checks (see `screenshots_dir`). Tests share one page and build on
runs queued earlier in the module; each still creates what it needs when run alone (the `_runs` cache).
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from panel_page import CORE_RESOURCE_ERRORS, CORE_STARTUP_ERROR, TOASTS, PanelPage, known_leg_error, ui_workflow

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = [pytest.mark.browser, pytest.mark.comfyui, pytest.mark.timeout(300)]

XSS_NAME = "<img src=x onerror=alert(1)>"
_runs: dict[str, Any] = {}


def queue_and_store(ui: PanelPage, key: str, workflow: dict[str, Any], name: str, count: int = 1) -> dict[str, Any]:
    info = ui.queue_workflow(workflow, name)
    runs = ui.wait_stored(info["id"], count=count)
    if runs[0]["status"] == "failed":
        ui.close_error_dialog()
    _runs[key] = {"workflow_id": info["id"], "path": info["path"], "run": runs[0], "workflow": workflow}
    return _runs[key]


def portrait(ui: PanelPage) -> dict[str, Any]:
    if "portrait" not in _runs:
        # Not width=64: when the live-row test queued that workflow and then failed before keeping its run, ComfyUI
        # would answer this one from its cache (every node `cached`, no waterfall bar).
        queue_and_store(ui, "portrait", ui_workflow(width=88), "Portrait upscale")
    return _runs["portrait"]


def broken(ui: PanelPage) -> dict[str, Any]:
    if "broken" not in _runs:
        queue_and_store(ui, "broken", ui_workflow("failing"), "Broken")
    return _runs["broken"]


def open_detail_by_keyboard(ui: PanelPage, run_id: str) -> None:
    ui.show("runs")
    row = ui.row(run_id)
    row.wait_for()
    row.focus()
    ui.page.keyboard.press("Enter")
    ui.panel.locator(".rt-detail h2").wait_for()


def test_tab_opens_on_the_overview(ui: PanelPage) -> None:
    ui.open_tab()
    cards = ui.panel.locator(".rt-card")
    cards.first.wait_for()
    labels = ui.panel.locator(".rt-card-label").all_text_contents()
    assert labels == ["Runs", "Success rate", "Frames", "Avg duration", "GPU peak"]
    ui.shot("overview-empty")


def test_a_run_queued_in_the_ui_appears_live_with_its_workflow_name(ui: PanelPage) -> None:
    ui.show("runs")
    ui.panel.locator(".rt-pager").wait_for()
    # Without the fragment: frontend 1.58 writes `#<workflow id>` into the URL when a workflow opens, which is no
    # navigation; the point is that the page did not go anywhere else, nor reload (the marker would be gone).
    url_before = ui.page.url.split("#", 1)[0]
    ui.page.evaluate("() => { window.__rtSamePage = true; }")
    info = ui.queue_workflow(ui_workflow(width=64), "Portrait upscale")
    assert info["path"] == "workflows/Portrait upscale.json"
    # The row arrives over the websocket: no reload, no navigation.
    row = ui.panel.locator("tr.rt-row", has_text="Portrait upscale").first
    row.wait_for(timeout=30_000)
    assert ui.page.url.split("#", 1)[0] == url_before
    assert ui.page.evaluate("() => window.__rtSamePage === true")
    run = ui.wait_stored(info["id"])[0]
    _runs["portrait"] = {"workflow_id": info["id"], "run": run}
    assert run["workflow_name"] == "Portrait upscale"
    assert run["status"] == "success"
    expect(ui.row(run["run_id"])).to_have_attribute("data-status", "success")
    expect(ui.row(run["run_id"])).to_have_class(re.compile(r"\brt-new\b"))
    ui.shot("runs-live")


def test_run_detail_shows_the_waterfall_outputs_and_parameters(ui: PanelPage) -> None:
    run = portrait(ui)["run"]
    open_detail_by_keyboard(ui, run["run_id"])
    detail = ui.panel.locator(".rt-detail")
    assert detail.locator("[data-testid=detail-title]").inner_text() == "Portrait upscale"
    waterfall = detail.locator("[data-testid=waterfall] .rt-wf-row")
    assert waterfall.count() == 3
    assert {waterfall.nth(i).get_attribute("data-node-id") for i in range(3)} == {"1", "2", "3"}
    assert detail.locator(".rt-wf-bar").count() >= 1
    thumbnail = detail.locator(".rt-outputs img").first
    thumbnail.scroll_into_view_if_needed()  # thumbnails load lazily
    ui.page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=thumbnail.element_handle())
    text = detail.inner_text()
    assert "Parameters" in text and "width" in text
    ui.shot("detail")
    ui.shot("detail-nodes", focus="[data-testid=waterfall]")


def test_failed_run_shows_its_error_and_selects_the_node_on_the_canvas(ui: PanelPage) -> None:
    ui.show("runs")
    # The toasts setting is on by default: a failed run raises one (PrimeVue's `toast.add` on frontends up to 1.45,
    # `toast.error` on newer ones), and it goes away by itself: the panel always gives it a duration (8 s), which
    # new-style toasts need, as they otherwise stay until closed. Looked for inside a toast of either frontend (not
    # anywhere on the page: 1.58 also announces each toast's title in an aria-live paragraph), from the moment the
    # run is queued, so a slow machine does not let its 8 s pass before the check.
    workflow = ui_workflow("failing")  # one object: each ui_workflow() has an id of its own
    info = ui.queue_workflow(workflow, "Broken")
    toast = ui.page.locator(TOASTS).filter(has_text=re.compile(r"Run failed: Broken")).first
    expect(toast).to_be_visible(timeout=60_000)
    assert "RuntimeError" in toast.inner_text()
    runs = ui.wait_stored(info["id"])
    ui.close_error_dialog()
    _runs["broken"] = {"workflow_id": info["id"], "path": info["path"], "run": runs[0], "workflow": workflow}
    run = runs[0]
    assert run["status"] == "failed"
    open_detail_by_keyboard(ui, run["run_id"])
    box = ui.panel.locator("[data-testid=error-box]")
    assert "RuntimeError" in box.inner_text()
    assert "can't allocate memory" in box.inner_text()
    failed_node = run["error"]["node_id"]
    assert ui.panel.locator(".rt-wf-row.rt-highlight").get_attribute("data-node-id") == failed_node
    select = box.locator("[data-testid=select-node]")
    assert select.is_enabled()
    select.click()
    selected = ui.page.evaluate("() => Object.keys(window.app.canvas.selected_nodes || {})")
    assert selected == [str(failed_node)]
    ui.shot("error")
    expect(toast).to_be_hidden(timeout=60_000)  # it has a duration: gone by itself (bound generous for load)


def test_filters_and_a_saved_preset(ui: PanelPage) -> None:
    portrait(ui)
    broken(ui)
    ui.show("runs")
    panel = ui.panel
    panel.locator("button.rt-status-toggle[data-status=failed]").click()
    panel.locator("tr.rt-row").first.wait_for()
    ui.page.wait_for_function(
        "() => [...document.querySelectorAll('tr.rt-row')].every(r => r.dataset.status === 'failed')")
    panel.locator("input[aria-label='Name for the new preset']").fill("Failures this week")
    panel.locator("[data-testid=preset-save]").click()
    panel.get_by_text("Saved “Failures this week”").wait_for()
    presets = ui.server.get("/telemetry/presets")["presets"]
    saved = next(p for p in presets if p["name"] == "Failures this week")
    assert saved["filters"]["status"] in ("failed", ["failed"])
    ui.shot("runs-preset")

    # Clear the filter, then apply the preset: only failed runs again.
    panel.locator("button.rt-status-toggle[data-status=failed]").click()
    ui.page.wait_for_function(
        "() => [...document.querySelectorAll('tr.rt-row')].some(r => r.dataset.status === 'success')")
    panel.locator("select[aria-label='Saved filter presets']").select_option(str(saved["id"]))
    panel.locator("[data-testid=preset-apply]").click()
    ui.page.wait_for_function(
        "() => { const rows = [...document.querySelectorAll('tr.rt-row')];"
        " return rows.length > 0 && rows.every(r => r.dataset.status === 'failed'); }")
    assert panel.locator("button.rt-status-toggle[data-status=failed]").get_attribute("aria-pressed") == "true"
    panel.locator("button.rt-status-toggle[data-status=failed]").click()


def test_compare_two_runs(ui: PanelPage) -> None:
    first = portrait(ui)["run"]
    second = queue_and_store(ui, "portrait-wide", ui_workflow(width=96), "Portrait upscale wide")["run"]
    ui.show("runs")
    for run in (first, second):
        ui.row(run["run_id"]).locator("input[type=checkbox]").check()
    ui.panel.locator("[data-testid=compare]").click()
    compare = ui.panel.locator(".rt-compare")
    compare.locator("h2", has_text="Compare runs").wait_for()
    width_row = compare.locator("tr[data-param=width]")
    assert "rt-changed" in (width_row.get_attribute("class") or "")
    assert re.search(r"width\s+64\s+96", width_row.inner_text())
    assert compare.locator("table[aria-label='Node times'] tbody tr").count() == 3
    ui.shot("compare")
    ui.shot("compare-nodes", focus="table[aria-label='Parameters']")


def test_a_recommendation_appears_and_is_dismissed(ui: PanelPage) -> None:
    status, _ = ui.server.request("GET", "/telemetry/recommendations?state=open")
    if status == 404:
        pytest.fail("GET /telemetry/recommendations is not served by the backend (404)")
    b = broken(ui)
    ui.show("advice")
    # A second out-of-memory failure of the same workflow makes the backend recommend something.
    ui.queue_workflow(b["workflow"], "Broken")
    ui.wait_stored(b["workflow_id"], count=2)
    ui.close_error_dialog()
    item = ui.panel.locator(".rt-rec").first
    item.wait_for(timeout=30_000)
    rec_id = item.get_attribute("data-rec-id")
    assert item.locator(".rt-badge").inner_text() in {"Info", "Warning", "Critical"}
    assert item.locator("button", has_text=re.compile(r"^Run ")).count() >= 1
    ui.shot("advice")
    item.locator("[data-testid=dismiss]").click()
    ui.panel.locator(f".rt-rec[data-rec-id='{rec_id}']").wait_for(state="detached")
    dismissed = ui.server.get("/telemetry/recommendations?state=dismissed")["recommendations"]
    assert any(str(r["id"]) == rec_id for r in dismissed)


def test_a_hostile_workflow_name_renders_as_text(ui: PanelPage) -> None:
    ui.show("runs")
    entry = queue_and_store(ui, "xss", ui_workflow(width=80), XSS_NAME)
    row = ui.row(entry["run"]["run_id"])
    row.wait_for()
    assert XSS_NAME in row.inner_text()
    assert ui.wait_named(entry["run"]["run_id"], XSS_NAME)["workflow_name"] == XSS_NAME
    assert ui.page.locator("img[src='x']").count() == 0
    ui.show("overview")
    ui.panel.locator(".rt-card").first.wait_for()
    ui.panel.locator(".rt-overview .rt-table").get_by_text(XSS_NAME).wait_for()
    option = ui.panel.locator("select[aria-label=Workflow] option", has_text=XSS_NAME)
    assert option.count() == 1 and option.inner_text() == XSS_NAME
    assert ui.page.locator("img[src='x']").count() == 0
    assert ui.dialogs == []
    ui.panel.locator(".rt-charts canvas").first.wait_for()
    ui.shot("overview")
    ui.shot("overview-charts", focus=".rt-charts")


def test_units_setting_changes_how_memory_reads(ui: PanelPage) -> None:
    run = portrait(ui)["run"]
    if not run.get("ram_peak_bytes"):
        pytest.skip("this run recorded no RAM peak to show")
    open_detail_by_keyboard(ui, run["run_id"])
    assert re.search(r"RAM peak\s+[\d.]+ (MiB|GiB)", ui.panel.inner_text())
    ui.page.evaluate("() => window.app.extensionManager.setting.set('RunTelemetry.Units', 'decimal')")
    try:
        ui.page.wait_for_function(
            "() => /RAM peak\\s+[\\d.]+ (MB|GB)/.test(document.querySelector('.rt-detail')?.innerText || '')")
    finally:
        ui.page.evaluate("() => window.app.extensionManager.setting.set('RunTelemetry.Units', 'binary')")


def test_light_theme(ui: PanelPage) -> None:
    ui.show("overview")
    ui.panel.locator(".rt-card").first.wait_for()
    ui.page.evaluate("() => window.app.extensionManager.setting.set('Comfy.ColorPalette', 'light')")
    try:
        ui.page.wait_for_timeout(500)
        colors = ui.page.evaluate(
            "() => { const s = getComputedStyle(document.querySelector('.rt-panel'));"
            " return [s.color, s.backgroundColor]; }")
        fg, bg = (_luminance(c) for c in colors)
        assert bg > fg, f"light palette should give dark text on a light background, got {colors}"
        ui.shot("overview-light")
    finally:
        ui.page.evaluate("() => window.app.extensionManager.setting.set('Comfy.ColorPalette', 'dark')")


def test_closing_the_tab_removes_the_panel_and_reopening_shows_new_runs(ui: PanelPage) -> None:
    ui.show("runs")
    ui.close_tab()
    assert ui.page.locator(".rt-panel").count() == 0
    entry = queue_and_store(ui, "while-closed", ui_workflow(width=72), "Queued while closed")
    assert ui.page.locator(".rt-panel").count() == 0
    ui.open_tab()
    row = ui.row(entry["run"]["run_id"])
    row.wait_for()
    assert "rt-new" in (row.get_attribute("class") or "")


def test_narrow_sidebar_keeps_the_table_usable(ui: PanelPage) -> None:
    ui.show("runs")
    ui.panel.locator("tr.rt-row").first.wait_for()
    width = ui.page.evaluate("() => document.querySelector('.rt-panel').getBoundingClientRect().width")
    overflow = ui.page.evaluate(
        "() => { const w = document.querySelector('.rt-table-wrap'); return w.scrollWidth - w.clientWidth; }")
    assert width < 420, f"the default sidebar is narrow ({width}px); this test checks that case"
    assert overflow <= 2, f"the runs table overflows the narrow sidebar by {overflow}px"
    ui.shot("runs")


def test_queue_eta_appears_while_predicted_prompts_wait(ui: PanelPage) -> None:
    from comfy_harness import slow_workflow

    def prompt(color: int) -> dict[str, Any]:  # a new colour each time, or ComfyUI serves the run from its cache
        p = slow_workflow(blurs=3, size=384, batch=2)
        p["1"]["inputs"]["color"] = color
        return p

    for color in range(5):  # the predictor needs five runs of a workflow before it guesses
        ui.server.run_and_wait(prompt(color))
    ui.show("overview")
    eta = ui.panel.locator("[data-testid=queue-eta]")
    for color in range(10, 14):
        ui.server.submit(prompt(color))
    try:
        expect(eta).to_be_visible(timeout=15_000)
        expect(eta).to_contain_text("Queue:")
        expect(eta.locator("li").first).to_contain_text("~")
        ui.shot("queue-eta")
    finally:
        deadline = time.monotonic() + 60
        while ui.server.get("/queue")["queue_pending"] or ui.server.get("/queue")["queue_running"]:
            assert time.monotonic() < deadline, "the queue did not drain"
            time.sleep(0.2)
    expect(eta).to_be_hidden(timeout=15_000)


def test_choosing_a_workflow_shows_its_duration_trend(ui: PanelPage) -> None:
    from comfy_harness import slow_workflow

    runs = ui.server.get("/telemetry/runs?limit=500")["runs"]
    node_count = len(slow_workflow(blurs=3, size=384, batch=2))  # the ETA test's workflow: five or more runs
    keyed = [r for r in runs if r["node_count"] == node_count and r["status"] == "success"]
    if len(keyed) < 3:
        for color in range(20, 25):
            prompt = slow_workflow(blurs=3, size=384, batch=2)
            prompt["1"]["inputs"]["color"] = color
            ui.server.run_and_wait(prompt)
        runs = ui.server.get("/telemetry/runs?limit=500")["runs"]
        keyed = [r for r in runs if r["node_count"] == node_count and r["status"] == "success"]
    key = keyed[0]["workflow_id"] or keyed[0]["fingerprint"]
    ui.show("overview")
    ui.panel.locator("select[aria-label=Workflow]").select_option(key)
    title = ui.panel.locator(".rt-chart-title", has_text="Duration of")
    expect(title).to_be_visible()
    expect(ui.panel.locator("[data-testid=trend]")).to_contain_text(re.compile(r"trend|slower|faster"))
    expect(ui.panel.locator(".rt-card-value").first).to_have_text(re.compile(r"^\d+$"))
    ui.shot("overview-workflow-trend", focus=".rt-charts")
    ui.panel.locator("select[aria-label=Workflow]").select_option("")


def test_the_admin_token_setting_goes_with_changes_and_never_with_reads(ui: PanelPage) -> None:
    """The token a user enters in Settings › Run Telemetry › Security travels as a bearer token on what changes
    something (here: saving a preset), never on reads. On loopback the server does not ask for it, so both succeed."""
    portrait(ui)
    ui.show("runs")
    panel = ui.panel
    panel.locator("tr.rt-row").first.wait_for()
    ui.page.evaluate("() => window.app.extensionManager.setting.set('RunTelemetry.AdminToken', '  browser-token  ')")
    try:
        panel.locator("input[aria-label='Name for the new preset']").fill("With token")
        with ui.page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/telemetry/presets")) as posted:
            panel.locator("[data-testid=preset-save]").click()
        assert posted.value.headers.get("authorization") == "Bearer browser-token"
        panel.get_by_text("Saved “With token”").wait_for()
        with ui.page.expect_request(lambda r: r.method == "GET" and "/telemetry/runs?" in r.url) as read:
            panel.locator("button.rt-status-toggle[data-status=success]").click()
        assert "authorization" not in read.value.headers
        panel.locator("button.rt-status-toggle[data-status=success]").click()
    finally:
        ui.page.evaluate("() => window.app.extensionManager.setting.set('RunTelemetry.AdminToken', '')")
    # Empty again: no header at all.
    panel.locator("input[aria-label='Name for the new preset']").fill("Without token")
    with ui.page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/telemetry/presets")) as posted:
        panel.locator("[data-testid=preset-save]").click()
    assert "authorization" not in posted.value.headers


def test_a_prompt_deleted_from_the_queue_shows_as_cancelled(ui: PanelPage) -> None:
    """A prompt deleted from the queue before it started appears in the runs table as `cancelled`, with its queue
    time and "not started" for its duration. Needs the backend to record such prompts (issue 8 item 5): until it
    does, no run is stored for the deleted prompt and this test fails on the wait below."""
    from comfy_harness import slow_workflow

    ui.show("runs")
    ui.panel.locator(".rt-pager").wait_for()
    blocker = slow_workflow(blurs=4, size=512, batch=2)
    blocker["1"]["inputs"]["color"] = 777  # a colour of its own, or ComfyUI serves it from its cache
    running = ui.server.submit(blocker)
    ui.server.wait_running(running)
    waiting = slow_workflow(blurs=1, size=64, batch=1)
    waiting["1"]["inputs"]["color"] = 778
    deleted = ui.server.submit(waiting)
    status, _ = ui.server.request("POST", "/queue", {"delete": [deleted]})
    assert status == 200
    assert deleted not in [item[1] for item in ui.server.get("/queue")["queue_pending"]]
    ui.server.wait_run(running, timeout=60)
    try:
        run = ui.server.wait_run(deleted, timeout=20, status="cancelled")
    except TimeoutError as err:
        pytest.fail(f"the backend did not record the deleted prompt as cancelled: {err}")
    # No duration (it never ran); its start and end are the moment it left the queue (build_cancelled_run), so it
    # sorts and filters by time with the other runs (the panel's time range filters on the start).
    assert run["queued_at_ms"] and run.get("duration_ms") is None
    assert run["started_at_ms"] == run["finished_at_ms"] == run["queued_at_ms"] + run["queue_wait_ms"]
    row = ui.row(deleted)
    if row.count() == 0:  # pushed before the table was listening: a reload of the tab shows it
        ui.close_tab()
        ui.show("runs")
    expect(row).to_have_attribute("data-status", "cancelled")
    expect(row.locator(".rt-badge")).to_have_text("cancelled")
    expect(row).to_contain_text("not started")
    row.focus()
    ui.page.keyboard.press("Enter")
    expect(ui.panel.locator("[data-testid=status-note]")).to_contain_text("deleted from the queue before it started")
    ui.shot("detail-cancelled")


def test_no_console_errors(ui: PanelPage, browser_leg) -> None:
    time.sleep(0.5)
    ours = [e for e in ui.startup_errors if "telemetry" in e.lower()]
    assert ours == [], f"errors from the pack while ComfyUI loaded: {ours}"
    unexpected = [
        e for e in ui.console_errors
        if not (e.startswith("Failed to load resource") and any(p in e for p in CORE_RESOURCE_ERRORS))
        and CORE_STARTUP_ERROR not in e
        and not known_leg_error(browser_leg.version, browser_leg.frontend, e)
    ]
    assert unexpected == [], f"console errors: {unexpected}"
    assert ui.page_errors == [], f"uncaught errors: {ui.page_errors}"
    assert ui.telemetry_failures == [], f"telemetry requests that failed: {ui.telemetry_failures}"
    assert ui.dialogs == []


def _luminance(css_color: str) -> float:
    parts = [float(x) for x in re.findall(r"[\d.]+", css_color)[:3]]
    r, g, b = (parts + [0, 0, 0])[:3]
    return 0.2126 * r + 0.7152 * g + 0.0722 * b
