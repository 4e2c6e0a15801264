"""Advice you can apply, in a real browser against a real ComfyUI: a workflow loaded into the canvas and queued
from it runs out of memory (a 16384² × 4096 EmptyImage), the OOM recommendation offers "Halve the batch size",
and "Apply to a copy" opens a copy in a new workflow tab with the change made and the node highlighted, while the
user's own workflow keeps its batch of 4096. With another graph on the canvas, the copy is made from the workflow
stored with the run (GET /telemetry/runs/{id}/workflow). Screenshots: advice-apply-copy*.png."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from panel_page import PanelPage, ui_workflow

pytestmark = [pytest.mark.browser, pytest.mark.comfyui, pytest.mark.timeout(300)]

HIGHLIGHT = "#b35c00"  # web/src/graph-actions.ts HIGHLIGHT.color


def _wait_for(predicate, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise TimeoutError(f"condition not met within {timeout}s (last value: {value!r})")


def _oom_with_actions(ui: PanelPage, workflow_id: str) -> dict[str, Any] | None:
    recs = ui.server.get(f"/telemetry/recommendations?state=open&workflow={workflow_id}")["recommendations"]
    return next((r for r in recs if r["kind"] == "oom" and r["actions"]), None)


def _graph_state(ui: PanelPage) -> dict[str, Any]:
    """The active tab's path and workflow id, node 1 of its graph, and every open workflow's path."""
    return ui.page.evaluate(
        """() => {
             const store = window.app.extensionManager.workflow;
             const graph = (window.app.rootGraph ?? window.app.graph).serialize();
             const node = graph.nodes.find((n) => String(n.id) === '1') ?? null;
             return {path: store.activeWorkflow?.path ?? null, id: graph.id ?? null,
                     node: node && {type: node.type, widgets_values: node.widgets_values, color: node.color ?? null,
                                    properties: node.properties ?? {}},
                     open: (store.openWorkflows ?? []).map((w) => w.path)};
           }"""
    )


def _saved_state_of(ui: PanelPage, path: str) -> dict[str, Any] | None:
    """Node 1 of an open workflow's own state (its change tracker's), by path."""
    return ui.page.evaluate(
        """(path) => {
             const wf = (window.app.extensionManager.workflow.openWorkflows ?? []).find((w) => w.path === path);
             const state = wf?.changeTracker?.activeState ?? wf?.activeState;
             const node = state?.nodes?.find((n) => String(n.id) === '1');
             return node ? {widgets_values: node.widgets_values, color: node.color ?? null} : null;
           }""",
        path,
    )


def _apply(ui: PanelPage, rec_id: int, action: str, shot: str | None = None) -> str:
    ui.show("advice")
    fix = ui.panel.locator(f".rt-rec[data-rec-id='{rec_id}'] .rt-rec-fix[data-action={action}]")
    fix.wait_for()
    if shot:
        ui.shot(shot, focus=f".rt-rec[data-rec-id='{rec_id}']")
    fix.locator("[data-testid=apply-copy]").click()
    status = ui.panel.locator(f".rt-rec[data-rec-id='{rec_id}'] [role=status][data-outcome]")
    status.wait_for()
    return status.text_content() or ""


def test_apply_to_a_copy_opens_the_changed_workflow_in_a_new_tab(ui: PanelPage) -> None:
    workflow = ui_workflow("failing")
    info = ui.queue_workflow(workflow, "Huge batch")
    run = ui.wait_stored(info["id"])[0]
    assert run["status"] == "failed" and run["error"]["kind"] == "oom"
    ui.close_error_dialog()
    rec = _wait_for(lambda: _oom_with_actions(ui, info["id"]))
    halve = next(a for a in rec["actions"] if a["kind"] == "halve_batch")
    assert halve["run_id"] == run["run_id"]
    assert halve["changes"] == [{"node_id": "1", "class_type": "EmptyImage", "input": "batch_size", "from": 4096,
                                 "to": 2048}]
    split = next(a for a in rec["actions"] if a["kind"] == "split_scenes")
    assert sum(c["changes"][0]["to"] for c in split["copies"]) == 4096

    before = _graph_state(ui)
    assert before["path"] == info["path"] and before["node"]["widgets_values"][2] == 4096
    message = _apply(ui, rec["id"], "halve_batch", shot="advice-apply-copy-offered")
    assert "Your workflow is unchanged." in message and "changed node 1" in message, message

    after = _graph_state(ui)
    assert after["path"] != before["path"] and after["path"] not in before["open"]
    assert set(before["open"]) < set(after["open"])
    assert after["id"] != before["id"]
    assert after["node"]["type"] == "EmptyImage"
    assert after["node"]["widgets_values"][:4] == [16384, 16384, 2048, 0]
    assert after["node"]["color"] == HIGHLIGHT
    assert "batch_size 4096 → 2048" in after["node"]["properties"]["Run Telemetry"]
    original = _saved_state_of(ui, before["path"])
    assert original == {"widgets_values": [16384, 16384, 4096, 0], "color": None}
    ui.shot("advice-apply-copy", full=True)

    # Another graph on the canvas: the copy comes from the workflow ComfyUI stored with the run.
    empty = {"id": str(uuid.uuid4()), "revision": 0, "last_node_id": 0, "last_link_id": 0, "nodes": [], "links": [],
             "groups": [], "config": {}, "extra": {}, "version": 0.4}
    ui.page.evaluate("async (wf) => { await window.app.loadGraphData(wf, true, true, 'Empty canvas'); }", empty)
    stored = ui.server.get(f"/telemetry/runs/{run['run_id']}/workflow")
    assert stored["workflow"]["id"] == info["id"] and stored["prompt"]["1"]["class_type"] == "EmptyImage"
    message = _apply(ui, rec["id"], "halve_batch")
    assert f"from the workflow stored with run {run['run_id']}" in message, message
    copied = _graph_state(ui)
    assert copied["node"]["widgets_values"][:4] == [16384, 16384, 2048, 0]
    assert copied["path"] not in after["open"]
    assert _saved_state_of(ui, before["path"])["widgets_values"] == [16384, 16384, 4096, 0]
    ui.shot("advice-apply-copy-from-run", full=True)

    assert ui.page_errors == [], f"uncaught errors: {ui.page_errors}"
    assert ui.telemetry_failures == [], f"telemetry requests that failed: {ui.telemetry_failures}"
    assert ui.dialogs == []
