"""The running run, live (issue 11, item 3), on a real ComfyUI with the tests' sleep node: while a run executes,
`GET /telemetry/runs/{id}` names the node it is in, how long that node usually takes (median of the graph's
history) and the time left; with no panel listening no `telemetry.progress` event is sent, and once a panel
holds a lease, progress arrives at most once a second and `telemetry.slow` names a node running past 3x its usual
time, over ComfyUI's own websocket."""

from __future__ import annotations

import asyncio
import json
import statistics
import threading
import time
import uuid

import pytest
from comfy_harness import ComfyServer

pytestmark = pytest.mark.comfyui


def sleep_workflow(first: float, second: float) -> dict:
    return {"1": {"class_type": "TelemetryTestSleep", "inputs": {"seconds": first}},
            "2": {"class_type": "TelemetryTestSleep", "inputs": {"seconds": second}}}


class WebsocketEvents:
    """ComfyUI's /ws as a browser tab sees it: every telemetry.* message, with its arrival time."""

    def __init__(self, server: ComfyServer) -> None:
        self.url = server.url.replace("http", "ws") + f"/ws?clientId={uuid.uuid4().hex}"
        self.events: list[tuple[float, str, dict]] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        import aiohttp

        async with aiohttp.ClientSession() as session, session.ws_connect(self.url) as ws:
            self._ready.set()
            while not self._stop.is_set():
                try:
                    msg = await ws.receive(timeout=0.2)
                except asyncio.TimeoutError:
                    continue
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                if str(data.get("type", "")).startswith("telemetry."):
                    self.events.append((time.monotonic(), data["type"], data.get("data") or {}))

    def __enter__(self) -> WebsocketEvents:
        self._thread.start()
        assert self._ready.wait(20), "the websocket did not connect"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def of(self, kind: str, run_id: str) -> list[tuple[float, dict]]:
        return [(t, d) for t, k, d in self.events if k == kind and d.get("run_id") == run_id]


def _live_while_running(server: ComfyServer, run_id: str, at_least_ms: float, timeout: float = 30.0) -> dict:
    """GET /telemetry/runs/{id} while the run runs, once its current node has run `at_least_ms`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        code, last = server.request("GET", f"/telemetry/runs/{run_id}")
        if code == 200 and last["status"] == "running" and (last.get("current_node") or {}).get(
                "elapsed_ms", 0) >= at_least_ms:
            return last
        time.sleep(0.05)
    raise AssertionError(f"never saw the run live: {str(last)[:400]}")


def test_current_node_eta_progress_and_slow_event_of_a_running_run(comfy_factory, comfy_tree, tmp_path):
    server = comfy_factory(base_dir=tmp_path / "comfy-live").start()
    # the graph's history: node 1 takes about 0.2 s, node 2 about 0.4 s (different inputs: both execute)
    durations: dict[str, list[float]] = {"1": [], "2": []}
    for first, second in ((0.2, 0.4), (0.21, 0.41), (0.22, 0.42)):
        _, _, stored = server.run_and_wait(sleep_workflow(first, second))
        for node in server.get(f"/telemetry/runs/{stored['run_id']}")["nodes"]:
            durations[node["node_id"]].append(node["duration_ms"])
    usual = {node_id: statistics.median(values) for node_id, values in durations.items()}

    with WebsocketEvents(server) as ws:
        # no panel listens: the run is live over REST, and no progress event is sent
        quiet_id = server.submit(sleep_workflow(1.5, 1.0))
        run = _live_while_running(server, quiet_id, at_least_ms=300)
        node = run["current_node"]
        assert node["class_type"] == "TelemetryTestSleep" and node["node_id"] in ("1", "2")
        assert abs(node["expected_ms"] - usual[node["node_id"]]) < 1, (node, usual)
        assert node["elapsed_ms"] >= 300
        other = "2" if node["node_id"] == "1" else "1"
        if not any(n["node_id"] == other for n in run["nodes"]):  # the other node has not run yet
            left = max(0.0, node["expected_ms"] - node["elapsed_ms"])
            assert abs(run["eta_ms"] - (left + usual[other])) < 1, (run["eta_ms"], node, usual)
        server.wait_run(quiet_id)
        assert ws.of("telemetry.progress", quiet_id) == [], "no progress events while no panel listens"

        # a panel listens: progress at most once a second, and a slow event for a node past 3x its usual time
        status, lease = server.request("POST", "/telemetry/live/listen", {"seconds": 30})
        assert status == 200 and lease["lease_s"] == 30 and lease["slow_node_factor"] == 3.0
        slow_id = server.submit(sleep_workflow(2.5, 0.2))
        server.wait_run(slow_id, timeout=60)
        time.sleep(0.5)
    progress = ws.of("telemetry.progress", slow_id)
    assert len(progress) >= 2, ws.events
    gaps = [b[0] - a[0] for a, b in zip(progress, progress[1:], strict=False)]
    assert min(gaps) > 0.8, gaps  # at most once a second (arrival jitter allowed)
    assert any(p["current_node"] and p["current_node"]["node_id"] == "1" for _, p in progress)
    assert all(p["queue_wait_ms"] is not None and p["run_ms"] >= 0 for _, p in progress)
    (slow,) = [d for _, d in ws.of("telemetry.slow", slow_id)]
    assert slow["node_id"] == "1" and slow["class_type"] == "TelemetryTestSleep"
    assert slow["elapsed_ms"] > 3 * slow["expected_ms"]
    assert slow["message"].startswith("TelemetryTestSleep is taking ") and "longer than usual" in slow["message"]

    # bad input gets a 400 with the reason
    status, body = server.request("POST", "/telemetry/live/listen", {"seconds": "forever"})
    assert status == 400 and "seconds" in body["error"]
    assert server.get("/telemetry/live")["run"] is None
