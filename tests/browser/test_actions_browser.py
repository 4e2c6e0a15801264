"""Advice you can apply, in a real browser against a real ComfyUI: a workflow loaded into the canvas and queued
from it runs out of memory (a 16384² × 4096 EmptyImage), the OOM recommendation offers "Halve the batch size",
and "Apply to a copy" opens a copy in a new workflow tab with the change made and the node highlighted, while the
user's own workflow keeps its batch of 4096. With another graph on the canvas, the copy is made from the workflow
stored with the run (GET /telemetry/runs/{id}/workflow).

The replacement of VAE Decode by VAE Decode (Tiled) needs a VAE model this machine does not have, so its failed
run is written into the server's own SQLite file as the recorder would have stored it (run and ComfyUI history
record), and the frontend builds the new node itself. Screenshots: advice-apply-copy*.png."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from panel_page import PanelPage, ui_workflow

from telemetry.model import ErrorKind, NodeRun, Run, RunError
from telemetry.prompt_info import extract_parameters
from telemetry.store.comfy_history import save_record
from telemetry.store.database import sqlite_url
from telemetry.store.store import Store

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

    # Split into scenes: one new tab per copy, their batches adding up to the run's.
    ui.page.evaluate("async (wf) => { await window.app.loadGraphData(wf, true, true, 'Huge batch again'); }",
                     workflow)
    opened_before = set(_graph_state(ui)["open"])
    message = _apply(ui, rec["id"], "split_scenes")
    assert f"Opened {len(split['copies'])} new tabs" in message, message
    batches = ui.page.evaluate(
        """(paths) => window.app.extensionManager.workflow.openWorkflows
             .filter((w) => !paths.includes(w.path))
             .map((w) => (w.changeTracker?.activeState ?? w.activeState).nodes.find((n) => String(n.id) === '1')
                         .widgets_values[2])""",
        sorted(opened_before),
    )
    assert sorted(batches) == sorted(c["changes"][0]["to"] for c in split["copies"]) and sum(batches) == 4096

    assert ui.page_errors == [], f"uncaught errors: {ui.page_errors}"
    assert ui.telemetry_failures == [], f"telemetry requests that failed: {ui.telemetry_failures}"
    assert ui.dialogs == []


GIB = 1 << 30


def _vae_workflow() -> tuple[dict[str, Any], dict[str, Any]]:
    """A UI workflow EmptyLatentImage → VAE Decode (VAE Loader) → Preview Image, and its API prompt."""
    def node(nid: int, ntype: str, x: int, inputs: list, outputs: list, widgets: list) -> dict[str, Any]:
        return {"id": nid, "type": ntype, "pos": [x, 160], "size": [300, 110], "flags": {}, "order": nid,
                "mode": 0, "inputs": inputs, "outputs": outputs, "properties": {"Node name for S&R": ntype},
                "widgets_values": widgets}

    nodes = [
        node(5, "EmptyLatentImage", 40, [], [{"name": "LATENT", "type": "LATENT", "links": [1], "slot_index": 0}],
             [1024, 1024, 1]),
        node(10, "VAELoader", 40, [], [{"name": "VAE", "type": "VAE", "links": [2], "slot_index": 0}],
             ["sdxl_vae.safetensors"]),
        node(8, "VAEDecode", 400, [{"name": "samples", "type": "LATENT", "link": 1},
                                   {"name": "vae", "type": "VAE", "link": 2}],
             [{"name": "IMAGE", "type": "IMAGE", "links": [3], "slot_index": 0}], []),
        node(9, "PreviewImage", 760, [{"name": "images", "type": "IMAGE", "link": 3}], [], []),
    ]
    nodes[1]["pos"] = [40, 360]
    workflow = {"id": str(uuid.uuid4()), "revision": 0, "last_node_id": 10, "last_link_id": 3, "nodes": nodes,
                "links": [[1, 5, 0, 8, 0, "LATENT"], [2, 10, 0, 8, 1, "VAE"], [3, 8, 0, 9, 0, "IMAGE"]],
                "groups": [], "config": {}, "extra": {}, "version": 0.4}
    prompt = {"5": {"class_type": "EmptyLatentImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1}},
              "10": {"class_type": "VAELoader", "inputs": {"vae_name": "sdxl_vae.safetensors"}},
              "8": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["10", 0]}},
              "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}}
    return workflow, prompt


def _store_vae_oom(ui: PanelPage, workflow: dict[str, Any], prompt: dict[str, Any]) -> str:
    run_id = f"vae-oom-{uuid.uuid4().hex[:8]}"
    t0 = int(time.time() * 1000) - 5_000
    run = Run(run_id, "failed", queued_at_ms=t0, started_at_ms=t0, finished_at_ms=t0 + 900, duration_ms=900.0,
              workflow_id=workflow["id"], workflow_name="VAE decode", workflow_name_source="api",
              node_count=4, executed_node_count=3, gpu_name="NVIDIA GeForce RTX 4090", gpu_total_bytes=24 * GIB,
              gpu_peak_bytes=24 * GIB - 1, parameters=extract_parameters(prompt),
              error=RunError("8", "VAEDecode", "OutOfMemoryError", "CUDA out of memory. Tried to allocate 6.00 GiB",
                             ErrorKind.OOM),
              nodes=[NodeRun("5", "EmptyLatentImage", "executed", t0, 2.0),
                     NodeRun("10", "VAELoader", "executed", t0 + 2, 400.0),
                     NodeRun("8", "VAEDecode", "failed", t0 + 402, 498.0)])
    item = {"prompt": [0, run_id, prompt, {"client_id": "browser", "extra_pnginfo": {"workflow": workflow}}, ["9"]],
            "outputs": {}, "status": {"status_str": "error", "completed": False, "messages": []}, "meta": {}}
    store = Store(sqlite_url(str(ui.server.database_path)))
    store.open()
    try:
        store.save_runs([run])
        assert save_record(store, run_id, item)
    finally:
        store.close()
    return run_id


def test_a_copy_decodes_in_tiles_with_a_vae_decode_tiled_in_place_of_vae_decode(ui: PanelPage) -> None:
    workflow, prompt = _vae_workflow()
    run_id = _store_vae_oom(ui, workflow, prompt)
    status, evaluated = ui.server.request("POST", f"/telemetry/recommendations/evaluate?workflow={workflow['id']}")
    assert status == 200, evaluated
    rec = _wait_for(lambda: _oom_with_actions(ui, workflow["id"]))
    tiled = next(a for a in rec["actions"] if a["kind"] == "vae_tiled")
    assert tiled["run_id"] == run_id and tiled["changes"][0] == {
        "node_id": "8", "class_type": "VAEDecode", "replace_class_type": "VAEDecodeTiled"}

    ui.page.evaluate("async (wf) => { await window.app.loadGraphData(wf, true, true, 'VAE decode'); }", workflow)
    before = ui.page.evaluate("() => window.app.extensionManager.workflow.activeWorkflow.path")
    message = _apply(ui, rec["id"], "vae_tiled", shot="advice-apply-copy-tiled-offered")
    assert "changed node 8" in message and "Not applied" not in message, message
    live = ui.page.evaluate(
        """() => {
             const g = window.app.rootGraph ?? window.app.graph;
             const n = g.getNodeById(8);
             // a link as [origin node, origin slot, target node, target slot], the nodes as the graph finds them
             // (node ids are numbers up to frontend 1.35, strings in 1.58)
             const id = (nodeId) => { const n = g.getNodeById(nodeId); return n ? String(n.id) : null; };
             const link = (linkId) => { const l = g.links instanceof Map ? g.links.get(linkId) : g.links[linkId];
                                        return l ? [id(l.origin_id), l.origin_slot, id(l.target_id), l.target_slot]
                                                 : null; };
             const widgets = Object.fromEntries((n.widgets ?? []).map((w) => [w.name, w.value]));
             return {path: window.app.extensionManager.workflow.activeWorkflow.path, type: n.type, color: n.color,
                     pos: Array.from(n.pos), widgets,
                     inputs: n.inputs.filter((i) => i.link != null).map((i) => [i.name, link(i.link)]),
                     outputs: n.outputs.map((o) => [o.name, (o.links ?? []).map(link)])};
           }"""
    )
    assert live["path"] != before
    assert live["type"] == "VAEDecodeTiled" and live["color"] == HIGHLIGHT and live["pos"] == [400, 160]
    assert {k: live["widgets"][k] for k in ("tile_size", "overlap", "temporal_size", "temporal_overlap")} == {
        "tile_size": 512, "overlap": 64, "temporal_size": 64, "temporal_overlap": 8}
    assert live["inputs"] == [["samples", ["5", 0, "8", 0]], ["vae", ["10", 0, "8", 1]]]
    assert live["outputs"] == [["IMAGE", [["8", 0, "9", 0]]]]
    original = ui.page.evaluate(
        """(path) => {
             const wf = window.app.extensionManager.workflow.openWorkflows.find((w) => w.path === path);
             const state = wf?.changeTracker?.activeState ?? wf?.activeState;
             return state.nodes.find((n) => String(n.id) === '8').type;
           }""",
        before,
    )
    assert original == "VAEDecode"
    ui.shot("advice-apply-copy-tiled", full=True)
    assert ui.page_errors == [], f"uncaught errors: {ui.page_errors}"

