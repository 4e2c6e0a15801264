"""Fixtures for the panel's browser tests: one real ComfyUI with the pack (its own scratch directory and database),
Debian's Chromium driven by Playwright, and a page with the ComfyUI frontend loaded (see panel_page.py).

The module runs once per browser leg (`BROWSER_LEGS`): ComfyUI 0.8.0 with its own frontend (1.35.9), and with the
newest frontend package served with --front-end-root. RUN_TELEMETRY_BROWSER_LEGS (comma-separated ids, e.g.
`comfy0.8.0-fe1.58.1,comfy0.3.75`) picks others."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from comfy_harness import NEWEST_FRONTEND, ComfyServer, ComfyTree, comfyui_trees
from matrix import require_tree, skip_or_fail
from panel_page import CHROMIUM_ARGS, REPO, VIEWPORT, PanelPage

# (ComfyUI version, frontend version or None for the tree's own pinned frontend)
BROWSER_LEGS = [("0.8.0", None), ("0.8.0", NEWEST_FRONTEND)]


def _leg_id(leg: tuple[str, str | None]) -> str:
    return f"comfy{leg[0]}" + (f"-fe{leg[1]}" if leg[1] else "")


def _legs() -> list[tuple[str, str | None]]:
    wanted = os.environ.get("RUN_TELEMETRY_BROWSER_LEGS")
    if not wanted:
        return BROWSER_LEGS
    legs = []
    for item in wanted.split(","):
        version, _, frontend = item.strip().removeprefix("comfy").partition("-fe")
        legs.append((version, frontend or None))
    return legs


_skip_or_fail = skip_or_fail


# Module scope, not session: while Playwright's sync API is running, asyncio.run() fails in this thread ("cannot be
# called from a running event loop"), so the browser must be gone before the rest of the suite runs.
@pytest.fixture(scope="module")
def chromium_browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip_or_fail("the playwright package is not installed (pip install -r requirements-dev.txt)")
    if not comfyui_trees():  # every browser test needs a ComfyUI: no Chromium launched only to skip
        _skip_or_fail("no ComfyUI is provisioned (scripts/provision.sh), and every browser test needs one")
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


@pytest.fixture(scope="module", params=_legs(), ids=_leg_id)
def browser_leg(request) -> ComfyTree:
    """This leg's ComfyUI tree and the frontend it is served with."""
    return require_tree(*request.param)


def _shots_name(tree: ComfyTree) -> str:
    return f"comfy{tree.version}-fe{tree.frontend or 'installed'}"


@pytest.fixture(scope="module")
def browser_comfy(browser_leg, panel_dist, tmp_path_factory) -> ComfyServer:
    """A ComfyUI of its own for the browser tests, so the runs they see are only theirs. The first-run template
    dialog is switched off through the user's settings file, as a returning user would have it."""
    tree = browser_leg
    base = tmp_path_factory.mktemp(f"comfy-browser-{_shots_name(tree)}")
    user = base / "user" / "default"
    user.mkdir(parents=True)
    (user / "comfy.settings.json").write_text(json.dumps({"Comfy.TutorialCompleted": True}))
    server = ComfyServer.for_tree(tree, base)
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
def ui(request, browser_leg, chromium_browser, browser_comfy, screenshots_dir) -> PanelPage:
    # browser_leg first: a leg that is not provisioned skips before Chromium is launched for nothing
    # A test module's cache of runs it queued (`_runs`) belongs to one leg's server: a new leg starts empty.
    getattr(request.module, "_runs", {}).clear()
    context = chromium_browser.new_context(viewport=VIEWPORT, color_scheme="dark")
    page = context.new_page()
    page.set_default_timeout(30_000)
    shots = screenshots_dir
    if not os.environ.get("RUN_TELEMETRY_SCREENSHOTS"):  # docs/screenshots: one set; test output: one per leg
        shots = screenshots_dir / _shots_name(browser_leg)
    shots.mkdir(parents=True, exist_ok=True)
    panel_page = PanelPage(page, browser_comfy, shots)
    panel_page.load()
    yield panel_page
    context.close()
