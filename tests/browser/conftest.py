"""Fixtures for the panel's browser tests: one real ComfyUI with the pack (its own scratch directory and database),
Debian's Chromium driven by Playwright, and a page with the ComfyUI frontend loaded (see panel_page.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from comfy_harness import ComfyServer
from panel_page import CHROMIUM_ARGS, REPO, VIEWPORT, PanelPage


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("RUN_TELEMETRY_REQUIRE_ALL") == "1":
        pytest.fail(f"{reason} (RUN_TELEMETRY_REQUIRE_ALL=1: nothing may be skipped)")
    pytest.skip(reason)


# Module scope, not session: while Playwright's sync API is running, asyncio.run() fails in this thread ("cannot be
# called from a running event loop"), so the browser must be gone before the rest of the suite runs.
@pytest.fixture(scope="module")
def chromium_browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip_or_fail("the playwright package is not installed (pip install -r requirements-dev.txt)")
    executable = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
    if not Path(executable).exists():
        _skip_or_fail(f"no Chromium at {executable} (scripts/provision.sh installs Debian's chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def panel_dist() -> Path:
    bundle = REPO / "web" / "dist" / "telemetry.js"
    if not bundle.is_file():
        pytest.fail("web/dist/telemetry.js is missing: run `npm run build` in web/")
    return bundle


@pytest.fixture(scope="module")
def browser_comfy(comfy_available, panel_dist, tmp_path_factory) -> ComfyServer:
    """A ComfyUI of its own for the browser tests, so the runs they see are only theirs. The first-run template
    dialog is switched off through the user's settings file, as a returning user would have it."""
    base = tmp_path_factory.mktemp("comfy-browser")
    user = base / "user" / "default"
    user.mkdir(parents=True)
    (user / "comfy.settings.json").write_text(json.dumps({"Comfy.TutorialCompleted": True}))
    server = ComfyServer(base)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def screenshots_dir(tmp_path_factory) -> Path:
    """RUN_TELEMETRY_SCREENSHOTS (e.g. docs/screenshots to refresh the README's pictures), else the test output
    folder, else a temporary one."""
    target = os.environ.get("RUN_TELEMETRY_SCREENSHOTS")
    if target:
        path = Path(target)
        if not path.is_absolute():
            path = REPO / path
    elif os.environ.get("RUN_TELEMETRY_TEST_OUTPUT"):
        path = Path(os.environ["RUN_TELEMETRY_TEST_OUTPUT"]) / "screenshots"
    else:
        path = tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def ui(chromium_browser, browser_comfy, screenshots_dir) -> PanelPage:
    context = chromium_browser.new_context(viewport=VIEWPORT, color_scheme="dark")
    page = context.new_page()
    page.set_default_timeout(30_000)
    panel_page = PanelPage(page, browser_comfy, screenshots_dir)
    panel_page.load()
    yield panel_page
    context.close()
