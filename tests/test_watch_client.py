"""The watcher's network edge (`ComfyClient`, aiohttp) against a small aiohttp server that answers ComfyUI's routes
with the recorded real 0.3.75 responses; and the whole watcher over it, websocket included."""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

from telemetry.collector import BuildContext
from telemetry.recorder import Recorder
from telemetry.store.database import sqlite_url
from telemetry.store.store import Store
from telemetry.watch.client import CLIENT_ID_PREFIX, ComfyClient, ComfyUnavailable, normalize_base_url
from telemetry.watch.watcher import Watcher


class RecordedComfy:
    """ComfyUI's /queue, /history, /history/{id}, /system_stats and /ws, answering from the recorded fixture."""

    def __init__(self, recorded: dict) -> None:
        self.recorded = recorded
        self.queue = {"queue_running": [], "queue_pending": []}
        self.history: OrderedDict[str, dict] = OrderedDict(recorded["history_max3"])
        self.ws_client_ids: list[str] = []
        self.sockets: list[web.WebSocketResponse] = []
        self.fail_with: int | None = None
        self.app = web.Application()
        self.app.add_routes([
            web.get("/queue", self.get_queue), web.get("/history", self.get_history),
            web.get("/history/{prompt_id}", self.get_history_item), web.get("/system_stats", self.system_stats),
            web.get("/ws", self.websocket), web.get("/broken", self.broken),
        ])

    async def get_queue(self, request: web.Request) -> web.Response:
        if self.fail_with:
            return web.Response(status=self.fail_with, text="boom")
        return web.json_response(self.queue)

    async def get_history(self, request: web.Request) -> web.Response:
        items = list(self.history.items())
        if "max_items" in request.query:
            items = items[-int(request.query["max_items"]):]
        return web.json_response(dict(items))

    async def get_history_item(self, request: web.Request) -> web.Response:
        pid = request.match_info["prompt_id"]
        return web.json_response({pid: self.history[pid]} if pid in self.history else {})

    async def system_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.recorded["system_stats"])

    async def broken(self, request: web.Request) -> web.Response:
        return web.Response(text="<html>not json</html>")

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.query.get("clientId", "")
        self.ws_client_ids.append(sid)
        self.sockets.append(ws)
        await ws.send_json({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": sid}})
        async for _ in ws:
            pass
        return ws

    async def push(self, frame: dict) -> None:
        for ws in self.sockets:
            if not ws.closed:
                await ws.send_json(frame)

    async def push_binary(self, data: bytes) -> None:
        for ws in self.sockets:
            if not ws.closed:
                await ws.send_bytes(data)


def test_base_url_forms():
    assert normalize_base_url("127.0.0.1:8188") == "http://127.0.0.1:8188"
    assert normalize_base_url("https://host/comfy/") == "https://host/comfy"
    assert ComfyClient("https://host/comfy").ws_url.startswith("wss://host/comfy/ws?clientId=" + CLIENT_ID_PREFIX)
    with pytest.raises(ValueError):
        normalize_base_url("ftp://host")


def test_client_reads_queue_and_history_as_comfyui_serves_them(recorded_runs):
    comfy = RecordedComfy(recorded_runs)
    comfy.queue = recorded_runs["queue"]

    async def go() -> None:
        async with TestServer(comfy.app) as server:
            async with ComfyClient(str(server.make_url(""))) as client:
                assert await client.queue() == recorded_runs["queue"]
                last_two = await client.history(2)
                assert list(last_two) == list(recorded_runs["history_max3"])[-2:]
                pid = next(iter(recorded_runs["history_max3"]))
                assert await client.history_item(pid) == recorded_runs["history_max3"][pid]
                assert await client.history_item("no-such-prompt") is None
                assert (await client.system_stats())["system"]["comfyui_version"]

    asyncio.run(go())


def test_every_failure_to_reach_comfyui_is_comfy_unavailable(recorded_runs):
    comfy = RecordedComfy(recorded_runs)

    async def go() -> None:
        async with TestServer(comfy.app) as server:
            async with ComfyClient(str(server.make_url(""))) as client:
                comfy.fail_with = 500
                with pytest.raises(ComfyUnavailable, match="HTTP 500"):
                    await client.queue()
                with pytest.raises(ComfyUnavailable, match="not answer JSON"):
                    await client.get_json("/broken")
            port = server.port
        async with ComfyClient(f"http://127.0.0.1:{port}", timeout_s=2) as client:  # the server is gone
            with pytest.raises(ComfyUnavailable):
                await client.queue()
            with pytest.raises(ComfyUnavailable):
                async for _ in client.frames():
                    pass

    asyncio.run(go())


def test_websocket_uses_its_own_client_id_and_yields_text_frames(recorded_runs):
    comfy = RecordedComfy(recorded_runs)
    events = [e["msg"] for e in recorded_runs["cases"][0]["events"]][1:6]

    async def go() -> list:
        async with TestServer(comfy.app) as server:
            browser_id = "a981ce0c-5963-4eb9-beb4-713ec43ee445"
            a = ComfyClient(str(server.make_url("")))
            b = ComfyClient(str(server.make_url("")))
            assert a.client_id != b.client_id != browser_id
            got = []

            async def listen() -> None:
                async for kind, data in a.frames():
                    got.append((kind, data))
                    if len(got) == 1 + len(events):
                        return

            task = asyncio.create_task(listen())
            while not comfy.sockets:
                await asyncio.sleep(0.01)
            await comfy.push_binary(b"\x00\x00\x00\x01\x00\x00\x00\x02PNG...")  # a preview: skipped
            for frame in events:
                await comfy.push(frame)
            await asyncio.wait_for(task, 5)
            await a.close()
            await b.close()
            assert comfy.ws_client_ids == [a.client_id]
            return got

    got = asyncio.run(go())
    assert got[0][0] == "status" and got[0][1]["sid"].startswith(CLIENT_ID_PREFIX)
    assert [k for k, _ in got[1:]] == [e["type"] for e in events]
    assert WSMsgType.BINARY not in [k for k, _ in got]


def test_the_watcher_over_http_and_websocket(recorded_runs, tmp_path):
    comfy = RecordedComfy(recorded_runs)
    comfy.history = OrderedDict()
    case = recorded_runs["cases"][0]
    ((prompt_id, item),) = case["history"].items()
    store = Store(sqlite_url(str(tmp_path / "w.db")))
    recorder = Recorder(store, instance="t:1")
    recorder.start()

    async def go() -> None:
        async with TestServer(comfy.app) as server:
            client = ComfyClient(str(server.make_url("")))
            watcher = Watcher(client, recorder, BuildContext(instance="t:1", source="watcher"), interval_s=5.0)
            task = asyncio.create_task(watcher.run())
            for _ in range(300):
                if watcher.state.websocket and watcher.state.connected:
                    break
                await asyncio.sleep(0.01)
            assert watcher.state.websocket and watcher.state.connected
            # The prompt runs and finishes while the 5 s /queue poll sleeps: only the status frames tell.
            comfy.queue = {"queue_running": [item["prompt"][:5]], "queue_pending": []}
            await comfy.push({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1}}}})
            for _ in range(300):
                if watcher.state.running_recorded:
                    break
                await asyncio.sleep(0.01)
            comfy.queue = {"queue_running": [], "queue_pending": []}
            comfy.history[prompt_id] = item
            await comfy.push({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}}})
            for _ in range(300):
                if watcher.state.runs_recorded:
                    break
                await asyncio.sleep(0.01)
            watcher.stop()
            await asyncio.wait_for(task, 5)
            await client.close()
            assert watcher.state.running_recorded == 1 and watcher.state.runs_recorded == 1

    asyncio.run(go())
    assert recorder.flush(10)
    recorder.stop()
    run = store.get_run(prompt_id)
    assert run.status == "success" and run.source == "watcher"
    assert json.dumps(run.output_counts) == json.dumps({"images": 2, "videos": 0, "audio": 0, "other": 0})
    store.close()


def _finished(prompt_id: str, create_time: int, end: str) -> dict:
    status_str = "success" if end == "execution_success" else "error"
    return {"prompt": [create_time, prompt_id, {}, {"create_time": create_time}, []], "outputs": {},
            "status": {"status_str": status_str, "completed": status_str == "success",
                       "messages": [["execution_start", {"timestamp": create_time + 1}],
                                    [end, {"timestamp": create_time + 2}]]}}


@pytest.mark.parametrize("newest", [False, True], ids=["jobs-0.8.0", "jobs-newest"])
def test_finished_jobs_include_the_interrupted_runs_the_newest_jobs_api_calls_cancelled(newest):
    """The newest cores' /api/jobs lists an interrupted run as `cancelled` (comfy_execution/jobs.py), which
    `status=completed,failed` leaves out; 0.8.0 answers 400 to `cancelled`. Either way every finished run is
    listed, and the 400 is taken once per detection, not on every page."""
    from fakes.comfy_jobs import jobs_response

    history = OrderedDict([("ok", _finished("ok", 1_000, "execution_success")),
                           ("stop", _finished("stop", 2_000, "execution_interrupted")),
                           ("bad", _finished("bad", 3_000, "execution_error"))])
    asked: list[tuple[str, int]] = []

    async def jobs(request: web.Request) -> web.Response:
        response = jobs_response(history, request.query, newest=newest)
        asked.append((request.query.get("status", ""), response.status))
        return response

    app = web.Application()
    app.add_routes([web.get("/api/jobs", jobs)])

    async def go() -> tuple[list, list]:
        async with TestServer(app) as server, ComfyClient(str(server.make_url(""))) as client:
            assert await client.supports_jobs() is True
            first, _ = await client.finished_jobs(10)
            second, _ = await client.finished_jobs(10)
            return [j["id"] for j in first], [j["id"] for j in second]

    first, second = asyncio.run(go())
    assert first == second == ["bad", "stop", "ok"]
    pages = asked[1:]  # after the supports_jobs probe
    if newest:
        assert pages == [("completed,failed,cancelled", 200)] * 2
    else:
        assert pages == [("completed,failed,cancelled", 400), ("completed,failed", 200), ("completed,failed", 200)]
