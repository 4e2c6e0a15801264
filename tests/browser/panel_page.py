"""The browser tests' view of ComfyUI: a page with the frontend loaded, the Telemetry tab, and workflows queued
from the frontend.

Workflows are loaded into the frontend and queued from it (`app.loadGraphData` + `app.queuePrompt`), the way a
user runs them, so the panel's workflow-name reporting and the websocket push are exercised for real.
"""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from typing import Any

from comfy_harness import ComfyServer

REPO = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1280, "height": 900}
# The Telemetry tab's button in the sidebar: frontends up to 1.35 give it the class `<tab id>-tab-button`; newer
# ones (1.58.1) a `data-testid` of that name, or only the tooltip as its aria-label.
TAB_BUTTON = (".run-telemetry-tab-button, [data-testid=run-telemetry-tab-button], "
              "button.side-bar-button[aria-label='Run telemetry']")
# A toast as each frontend renders it: PrimeVue's `.p-toast-message` (1.32-1.45), the toast store's reka-ui
# `ToastRoot` with `data-testid=toast` (1.58: src/components/ui/toast).
TOASTS = ".p-toast-message, [data-testid=toast]"

# Console errors ComfyUI 0.3.75's own frontend (1.32.9) logs on a fresh install with no network, with or without
# this pack (checked by loading the page with the pack's script blocked): missing user files, the unreachable
# comfy.org API, and a TypeError in a core setting's onChange while the graph view loads.
CORE_RESOURCE_ERRORS = ("/api/userdata", "/user.css", "/favicon.ico", "api.comfy.org")
CORE_STARTUP_ERROR = "Cannot read properties of undefined (reading 'id')"

# Errors of one ComfyUI + frontend pair, keyed by (ComfyUI version, frontend version), each a pattern a whole
# console error must match. ComfyUI 0.8.0's /api/jobs accepts the statuses pending, in_progress, completed and failed
# (comfy_execution/jobs.py JobStatus.ALL) and answers 400 to any other; frontend 1.58.1 asks it for
# `status=completed,failed,cancelled` (its queue and assets lists) and logs each 400 twice: the failed resource and
# its Jobs API error. A core/frontend mismatch, with or without this pack.
CORE_LEG_ERRORS: dict[tuple[str, str], tuple[re.Pattern[str], ...]] = {
    ("0.8.0", "1.58.1"): (
        re.compile(r"Failed to load resource: the server responded with a status of 400 \(Bad Request\) @ "
                   r"http://127\.0\.0\.1:\d+/api/jobs\?status=completed,failed,cancelled&[^\s]*"),
        re.compile(r"\[Jobs API\] Error fetching jobs: JobsApiError: Failed to fetch jobs: 400\n.*", re.DOTALL),
    ),
}


def known_leg_error(version: str, frontend: str | None, error: str) -> bool:
    """Is `error` one that this ComfyUI + frontend pair logs by itself (`CORE_LEG_ERRORS`)?"""
    return any(p.fullmatch(error) for p in CORE_LEG_ERRORS.get((version, frontend or ""), ()))


def ui_workflow(kind: str = "image", width: int = 64) -> dict[str, Any]:
    """A UI-format (litegraph) workflow that needs no model files: EmptyImage → ImageBlur → SaveImage, or a
    "failing" one whose 16384² × 4096 EmptyImage allocation fails at once (docs: real-comfyui.md)."""
    def node(nid: int, ntype: str, x: int, inputs: list, outputs: list, widgets: list) -> dict[str, Any]:
        return {"id": nid, "type": ntype, "pos": [x, 120], "size": [300, 120], "flags": {}, "order": nid - 1,
                "mode": 0, "inputs": inputs, "outputs": outputs, "properties": {}, "widgets_values": widgets}

    if kind == "failing":
        nodes = [node(1, "EmptyImage", 60, [], [{"name": "IMAGE", "type": "IMAGE", "links": [1]}],
                      [16384, 16384, 4096, 0]),
                 node(2, "PreviewImage", 420, [{"name": "images", "type": "IMAGE", "link": 1}], [], [])]
        links = [[1, 1, 0, 2, 0, "IMAGE"]]
    else:
        nodes = [node(1, "EmptyImage", 60, [], [{"name": "IMAGE", "type": "IMAGE", "links": [1]}], [width, 64, 1, 0]),
                 node(2, "ImageBlur", 420, [{"name": "image", "type": "IMAGE", "link": 1}],
                      [{"name": "IMAGE", "type": "IMAGE", "links": [2]}], [1, 1.0]),
                 node(3, "SaveImage", 780, [{"name": "images", "type": "IMAGE", "link": 2}], [], ["rt_browser"])]
        links = [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"]]
    return {"id": str(uuid.uuid4()), "revision": 0, "last_node_id": len(nodes), "last_link_id": len(links),
            "nodes": nodes, "links": links, "groups": [], "config": {}, "extra": {}, "version": 0.4}



class PanelPage:
    """The ComfyUI page with helpers for the Telemetry tab. Collects console errors, page errors, failed
    telemetry requests and dialogs (an XSS would open one) for the final no-errors check."""

    def __init__(self, page: Any, server: ComfyServer, shots: Path) -> None:
        self.page = page
        self.server = server
        self.shots = shots
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.telemetry_failures: list[str] = []
        self.dialogs: list[str] = []
        self.startup_errors: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda err: self.page_errors.append(f"{err}\n{getattr(err, 'stack', '')}"))
        page.on("response", self._on_response)
        page.on("dialog", self._on_dialog)

    def _on_console(self, msg: Any) -> None:
        if msg.type == "error":
            url = (msg.location or {}).get("url", "")
            self.console_errors.append(f"{msg.text} @ {url}")

    def _on_response(self, response: Any) -> None:
        if "/telemetry" in response.url and response.status >= 400:
            self.telemetry_failures.append(f"{response.status} {response.request.method} {response.url}")

    def _on_dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    # -- ComfyUI ---------------------------------------------------------------------------------------------

    def load(self, url: str | None = None) -> None:
        """Opens ComfyUI (at `url`, e.g. a link with a query, else its root) and waits for the frontend and the
        Telemetry tab's button."""
        self.page.goto(url or self.server.url)
        self.page.wait_for_selector(TAB_BUTTON, timeout=90_000)
        self.page.wait_for_function("() => window.app && window.app.graph && window.app.extensionManager")
        self.page.wait_for_timeout(500)
        self.startup_errors = list(self.console_errors)
        self.console_errors.clear()

    def queue_workflow(self, workflow: dict[str, Any], name: str) -> dict[str, Any]:
        """Opens `workflow` in the canvas under `name` and queues it from the frontend; answers the active
        workflow's path and id as the frontend sees them."""
        return self.page.evaluate(
            """async ([wf, name]) => {
                 await window.app.loadGraphData(wf, true, true, name);
                 const active = window.app.extensionManager.workflow.activeWorkflow;
                 const info = {path: active?.path ?? null, id: active?.activeState?.id ?? window.app.graph.id};
                 await window.app.queuePrompt(0, 1);
                 return info;
               }""",
            [workflow, name],
        )

    def close_error_dialog(self, appear_timeout_ms: int = 5000) -> None:
        """ComfyUI opens a dialog with the error when a run it queued fails; close it as a user would (Escape)."""
        mask = self.page.locator(".p-dialog-mask")
        try:
            mask.first.wait_for(timeout=appear_timeout_ms)
        except Exception:
            return
        for _ in range(10):
            if mask.count() == 0:
                return
            self.page.keyboard.press("Escape")
            self.page.wait_for_timeout(200)

    def wait_stored(self, workflow_id: str, count: int = 1, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Runs of a UI workflow id once `count` of them are final in the store (newest first)."""
        deadline = time.monotonic() + timeout
        runs: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            data = self.server.get("/telemetry/runs?limit=500")
            runs = [r for r in data["runs"] if r.get("workflow_id") == workflow_id and r["status"] != "running"]
            if len(runs) >= count:
                return runs
            time.sleep(0.2)
        raise TimeoutError(f"{count} final run(s) of workflow {workflow_id} not stored within {timeout}s: {runs}")

    def wait_named(self, run_id: str, name: str, timeout: float = 15.0) -> dict[str, Any]:
        """The stored run once the backend has applied the name the panel reported for its workflow (the report
        races with a fast run; the backend renames runs whose name was derived)."""
        deadline = time.monotonic() + timeout
        run: dict[str, Any] = {}
        while time.monotonic() < deadline:
            run = self.server.get(f"/telemetry/runs/{run_id}")
            if run.get("workflow_name") == name:
                return run
            time.sleep(0.2)
        raise TimeoutError(f"run {run_id} still named {run.get('workflow_name')!r}, not {name!r}")

    # -- the panel ----------------------------------------------------------------------------------------------

    @property
    def panel(self) -> Any:
        return self.page.locator("[data-testid=telemetry-panel]")

    def open_tab(self) -> None:
        if self.panel.count() == 0:
            self.page.locator(TAB_BUTTON).first.click()
        self.panel.wait_for(state="visible")

    def close_tab(self) -> None:
        if self.panel.count() > 0:
            self.page.locator(TAB_BUTTON).first.click()
        self.panel.wait_for(state="detached")

    def show(self, tab: str) -> None:
        self.open_tab()
        self.panel.locator(f"button[data-tab={tab}]").click()

    def row(self, run_id: str) -> Any:
        return self.panel.locator(f"tr.rt-row[data-run-id='{run_id}']")

    def shot(self, name: str, focus: str | None = None, full: bool = False) -> Path:
        """A screenshot of the sidebar as the user sees it (or of the whole page) into the screenshots folder;
        `focus` scrolls that element of the panel to the top first, else the panel is shown from its top."""
        self.page.wait_for_timeout(300)
        path = self.shots / f"{name}.png"
        if full:
            self.page.screenshot(path=str(path))
            return path
        clip = self.page.evaluate(
            """(focus) => {
                 const panel = document.querySelector('[data-testid=telemetry-panel]');
                 let box = panel.parentElement;
                 const scrolls = (el) => el.scrollHeight > el.clientHeight
                   && /(auto|scroll)/.test(getComputedStyle(el).overflowY);
                 while (box && !scrolls(box)) box = box.parentElement;
                 box = box || panel;
                 const target = focus ? panel.querySelector(focus) : null;
                 box.scrollTop = target
                   ? box.scrollTop + target.getBoundingClientRect().top - box.getBoundingClientRect().top - 8
                   : 0;
                 const r = box.getBoundingClientRect();
                 return {x: r.left, y: r.top, width: r.width, height: Math.min(r.height, window.innerHeight - r.top)};
               }""",
            focus,
        )
        self.page.wait_for_timeout(150)
        self.page.screenshot(path=str(path), clip=clip)
        return path


