"""The standalone watcher (`python -m telemetry watch`) against a real ComfyUI.

The ComfyUI under watch also has the pack installed, writing to its own database: so every run is recorded twice,
by the plugin (in-process) and by the watcher (over HTTP/websocket, into a separate SQLite file), and the two
records of the same prompt must agree. Differences that cannot be avoided, because the data exists only
in-process, are listed in `IN_PROCESS_ONLY` and `NODE_IN_PROCESS_ONLY`:

- per-node `started_at_ms` and `duration_ms` (ComfyUI stores no per-node timing; §1.5),
- GPU/RAM figures and samples (no memory statistic leaves the process; §6),
- `source` ("plugin" / "watcher"), by design.
"""

from __future__ import annotations

import time

import pytest
from comfy_harness import failing_workflow, image_workflow, new_client_id, slow_workflow
from watcher_process import WatcherProcess

pytestmark = pytest.mark.comfyui

IN_PROCESS_ONLY = {"source", "gpu_name", "gpu_total_bytes", "gpu_peak_bytes", "gpu_reserved_peak_bytes",
                   "gpu_used_peak_bytes", "ram_peak_bytes", "gpu_samples", "nodes", "node_types", "subgraphs"}
NODE_IN_PROCESS_ONLY = {"started_at_ms", "duration_ms", "gpu_peak_bytes"}


@pytest.fixture
def comfy_server(comfy_factory):
    return comfy_factory().start()


@pytest.fixture
def watcher(comfy_server, tmp_path):
    proc = WatcherProcess(comfy_server.url, tmp_path)
    yield proc
    code = proc.stop()
    assert code == 0, f"watcher exited with {code}:\n{proc.log()}"
    assert "Traceback" not in proc.log(), proc.log()


def assert_same_capture(plugin: dict, watched: dict) -> None:
    """Everything both paths can know must be identical."""
    assert plugin["source"] == "plugin" and watched["source"] == "watcher"
    for key in sorted(set(plugin) | set(watched)):
        if key not in IN_PROCESS_ONLY:
            assert watched.get(key) == plugin.get(key), f"{key}: watcher {watched.get(key)!r} != " \
                                                        f"plugin {plugin.get(key)!r}"
    assert len(watched["nodes"]) == len(plugin["nodes"])
    for p_node, w_node in zip(plugin["nodes"], watched["nodes"], strict=True):
        for key in p_node:
            if key not in NODE_IN_PROCESS_ONLY:
                assert w_node[key] == p_node[key], f"node {p_node['node_id']} {key}"
        assert w_node["duration_ms"] is None and w_node["started_at_ms"] is None


def test_watcher_records_the_same_runs_as_the_plugin(comfy_server, watcher):
    comfy = comfy_server
    client = new_client_id()
    ids: dict[str, str] = {}

    ids["headless"] = comfy.submit(image_workflow(prefix="w-headless", color=11))
    comfy.wait_history(ids["headless"])

    cached = image_workflow(prefix="w-cached", color=22)
    first = comfy.submit(cached, client_id=client)
    comfy.wait_history(first)
    ids["cached"] = comfy.submit(cached, client_id=client)
    comfy.wait_history(ids["cached"])

    ids["failed"] = comfy.submit(failing_workflow(), client_id=client)
    comfy.wait_history(ids["failed"])

    ids["interrupted"] = comfy.submit(slow_workflow(blurs=14, size=1024, batch=4), client_id=client)
    comfy.wait_running(ids["interrupted"])
    live = watcher.run(ids["interrupted"], status="running", timeout=10)  # the panel sees it while it runs
    assert live["source"] == "watcher" and live["finished_at_ms"] is None
    time.sleep(0.5)
    comfy.interrupt()
    comfy.wait_history(ids["interrupted"], timeout=120)

    expected = {"headless": "success", "cached": "success", "failed": "failed", "interrupted": "interrupted"}
    for case, prompt_id in ids.items():
        plugin = comfy.wait_run(prompt_id)
        watched = watcher.run(prompt_id)
        assert watched["status"] == expected[case], case
        assert_same_capture(plugin, watched)

    statuses = {c: {n["node_id"]: n["status"] for n in watcher.run(p)["nodes"]} for c, p in ids.items()}
    assert set(statuses["headless"].values()) == {"executed"}
    assert set(statuses["cached"].values()) == {"cached"}
    assert statuses["failed"] == {"1": "failed", "2": "not_run"}
    assert "interrupted" in statuses["interrupted"].values() and "not_run" in statuses["interrupted"].values()
    assert watcher.run(ids["headless"])["output_counts"]["images"] == 2

    health = watcher.health()
    assert health["source"] == "watcher" and health["hooks"]["connected"] is True
    assert health["hooks"]["websocket"] is True
    assert health["hooks"]["client_id"].startswith("run-telemetry-watch-")
    assert health["dropped"] == 0
    listed = watcher.server.get("/telemetry/runs?limit=50")
    assert listed["total"] == 5  # each prompt once, the first cached-workflow run included
    assert watcher.server.get("/api/telemetry/stats")["total_runs"] == 5


def test_restarted_watcher_backfills_missed_runs_without_duplicates(comfy_server, tmp_path):
    comfy = comfy_server
    first = WatcherProcess(comfy.url, tmp_path)
    seen_id = comfy.submit(image_workflow(prefix="w-before", color=31))
    first.run(seen_id)
    assert first.stop() == 0

    missed_id = comfy.submit(image_workflow(prefix="w-missed", color=32))  # nobody watching
    comfy.wait_history(missed_id)

    second = WatcherProcess(comfy.url, tmp_path)
    try:
        missed = second.run(missed_id)
        assert missed["status"] == "success"
        assert_same_capture(comfy.wait_run(missed_id), missed)
        time.sleep(0.5)
        health = second.health()
        assert health["recorder"]["stored"] == 1, "the run already stored must not be written again"
        assert second.server.get("/telemetry/runs?limit=10")["total"] == 2
    finally:
        assert second.stop() == 0


def test_watcher_survives_comfyui_going_down_and_coming_back(comfy_factory, tmp_path):
    comfy = comfy_factory().start()
    watcher = WatcherProcess(comfy.url, tmp_path)
    try:
        before = comfy.submit(image_workflow(prefix="w-up", color=41))
        watcher.run(before)

        comfy.stop()
        time.sleep(2.0)
        assert watcher.process.poll() is None
        assert watcher.health()["hooks"]["connected"] is False

        again = comfy_factory(base_dir=comfy.base_dir, port=comfy.port).start()  # same port, history is gone
        try:
            after = again.submit(image_workflow(prefix="w-back", color=42))
            run = watcher.run(after, timeout=60)
            assert run["status"] == "success"
            assert_same_capture(again.wait_run(after), run)
            assert watcher.health()["hooks"]["connected"] is True
            log = watcher.log()
            assert log.count("is unreachable") == 1, "one line per state change, not one per retry"
            assert log.count("is reachable") == 2
            assert "Traceback" not in log
        finally:
            again.stop(kill=True)
    finally:
        assert watcher.stop() == 0
