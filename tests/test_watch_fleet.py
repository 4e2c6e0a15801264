"""The watcher for fleets without a real ComfyUI: several ComfyUIs in one process (one store, one recorder), the
command line's forms, the backoff, the cursor across a restart, and `/api/jobs` where ComfyUI serves it (an aiohttp
server answering ComfyUI's routes, `/api/jobs` shaped on 0.8.0's code in tests/fakes/comfy_jobs.py), with the real
Recorder and Store on SQLite."""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections import OrderedDict

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from fakes.comfy_jobs import jobs_response
from test_watch_watcher import FakeComfy

from telemetry.cli import build_parser, main, watch_options
from telemetry.collector import BuildContext
from telemetry.recorder import Recorder
from telemetry.store.database import sqlite_url
from telemetry.store.store import Store
from telemetry.watch.app import UsageError, build, default_instance, fleet_report, resolve_targets
from telemetry.watch.backoff import Backoff
from telemetry.watch.client import ComfyClient
from telemetry.watch.watcher import STALE_REASON, Watcher


def _template(recorded_runs) -> dict:
    case = next(c for c in recorded_runs["cases"] if c["case"] == "success")
    ((_, item),) = case["history"].items()
    return item


def _items(template: dict, count: int, first_create: int = 1_790_000_000_000) -> OrderedDict[str, dict]:
    """`count` finished prompts as ComfyUI's history holds them: oldest first, create_time rising."""
    out: OrderedDict[str, dict] = OrderedDict()
    for i in range(count):
        pid = str(uuid.uuid4())
        item = copy.deepcopy(template)
        item["prompt"][1] = pid
        item["prompt"][3]["create_time"] = first_create + i * 1000
        out[pid] = item
    return out


class ComfyRoutes:
    """ComfyUI's /queue, /history, /history/{id}, /system_stats and (with `jobs`) /api/jobs over `history`."""

    def __init__(self, jobs: bool) -> None:
        self.history: OrderedDict[str, dict] = OrderedDict()
        self.requests: list[str] = []
        routes = [web.get("/queue", self.queue), web.get("/history", self.get_history),
                  web.get("/history/{prompt_id}", self.history_item), web.get("/system_stats", self.stats)]
        if jobs:
            routes.append(web.get("/api/jobs", self.jobs))
        self.app = web.Application(middlewares=[self.log])
        self.app.add_routes(routes)

    @web.middleware
    async def log(self, request: web.Request, handler):
        self.requests.append(request.path_qs)
        return await handler(request)

    async def queue(self, request: web.Request) -> web.Response:
        return web.json_response({"queue_running": [], "queue_pending": []})

    async def get_history(self, request: web.Request) -> web.Response:
        items = list(self.history.items())
        if "max_items" in request.query:
            items = items[-int(request.query["max_items"]):]
        return web.json_response(dict(items))

    async def history_item(self, request: web.Request) -> web.Response:
        pid = request.match_info["prompt_id"]
        return web.json_response({pid: self.history[pid]} if pid in self.history else {})

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response({"system": {"comfyui_version": "0.8.0"}})

    async def jobs(self, request: web.Request) -> web.Response:
        return jobs_response(self.history, request.query)


# -- command line ----------------------------------------------------------------------------------------------

def _targets(argv: list[str]) -> list[tuple[str, str]]:
    return [(t.instance, t.url) for t in resolve_targets(watch_options(build_parser().parse_args(["watch", *argv])))]


def test_comfyui_is_repeatable_comma_separated_and_named(monkeypatch):
    monkeypatch.delenv("TELEMETRY_COMFYUI_URL", raising=False)
    assert _targets(["--comfyui", "http://a:8188", "--comfyui", "b:8189,studio=http://c:8188/"]) == [
        ("a:8188", "http://a:8188"), ("b:8189", "http://b:8189"), ("studio", "http://c:8188")]
    assert _targets(["--comfyui", "http://a:8188", "--instance", "box-a"]) == [("box-a", "http://a:8188")]
    monkeypatch.setenv("TELEMETRY_COMFYUI_URL", "http://x:1, y=http://y:2")
    assert _targets([]) == [("x:1", "http://x:1"), ("y", "http://y:2")]
    assert _targets(["--comfyui", "http://z:3"]) == [("z:3", "http://z:3")]  # the flag wins over the environment
    monkeypatch.delenv("TELEMETRY_COMFYUI_URL")
    assert _targets([]) == [(default_instance("http://127.0.0.1:8188"), "http://127.0.0.1:8188")]


@pytest.mark.parametrize("argv, message", [
    (["--comfyui", "http://a:1,http://b:2", "--instance", "x"], "--instance names one ComfyUI"),
    (["--comfyui", "n=http://a:1", "--comfyui", "n=http://b:2"], "own instance: n given twice"),
    (["--comfyui", "http://a:1", "--comfyui", "http://a:1/"], "own url: http://a:1 given twice"),
    (["--comfyui", "http://a:1,ftp://b"], "not an http"),
])
def test_fleet_options_that_cannot_work_exit_with_usage(argv, message, capsys, monkeypatch):
    monkeypatch.delenv("TELEMETRY_COMFYUI_URL", raising=False)
    with pytest.raises(UsageError, match=message.split(":")[0]):
        resolve_targets(watch_options(build_parser().parse_args(["watch", *argv])))
    assert main(["watch", *argv]) == 2
    assert message in capsys.readouterr().err


def test_backoff_doubles_up_to_its_cap_with_bounded_jitter():
    low, high = Backoff(1.0, 30.0, jitter=0.2, rand=lambda: 0.0), Backoff(1.0, 30.0, jitter=0.2, rand=lambda: 1.0)
    assert [round(low.next_delay(), 3) for _ in range(7)] == [0.8, 1.6, 3.2, 6.4, 12.8, 24.0, 24.0]
    assert [round(high.next_delay(), 3) for _ in range(7)] == [1.2, 2.4, 4.8, 9.6, 19.2, 30.0, 30.0]
    high.reset()
    assert high.next_delay() == pytest.approx(1.2)


# -- one process, several ComfyUIs -------------------------------------------------------------------------------

def test_a_fleet_is_one_assembly_with_a_watcher_and_a_heartbeat_per_comfyui(tmp_path, monkeypatch):
    monkeypatch.delenv("TELEMETRY_DATABASE_URL", raising=False)
    options = watch_options(build_parser().parse_args([
        "watch", "--data-dir", str(tmp_path), "--comfyui", "gpu-a=http://127.0.0.1:1,http://127.0.0.1:2"]))
    app = build(options)
    try:
        assert [w.context.instance for w in app.watchers] == ["gpu-a", default_instance("http://127.0.0.1:2")]
        assert {w.recorder for w in app.watchers} == {app.recorder} and app.watcher is app.watchers[0]
        assert [h.instance for h in app.app.heartbeats] == [w.context.instance for w in app.watchers]
        report = fleet_report(app.watchers)
        assert [c["comfyui_url"] for c in report["comfyuis"]] == ["http://127.0.0.1:1", "http://127.0.0.1:2"]
        assert all(c["state"] == "starting" for c in report["comfyuis"])
    finally:
        app.store.close()


@pytest.fixture
def store(tmp_path):
    s = Store(sqlite_url(str(tmp_path / "fleet.db")))
    yield s
    s.close()


@pytest.fixture
def recorder(store):
    r = Recorder(store, instance="a:1", also_instances=("b:2",), retry_initial_s=0.05, source="watcher",
                 stale_reason=STALE_REASON)
    r.start()
    yield r
    r.stop()


async def _until(check, what: str, tries: int = 500) -> None:
    for _ in range(tries):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


def test_one_comfyui_down_never_stops_the_others(recorded_runs, recorder, store):
    template = _template(recorded_runs)
    down, up = FakeComfy(), FakeComfy()
    down.base_url, up.base_url = "http://a:1", "http://b:2"
    down.down = True
    up.history_data.update(_items(template, 3))
    watchers = [Watcher(c, recorder, BuildContext(instance=name, source="watcher"), interval_s=0.01, coalesce_s=0,
                        backoff_initial_s=0.02, max_backoff_s=0.1) for c, name in ((down, "a:1"), (up, "b:2"))]
    late = _items(template, 2, first_create=1_800_000_000_000)

    async def scenario() -> None:
        tasks = [asyncio.create_task(w.run(websocket=False)) for w in watchers]
        await _until(lambda: watchers[1].state.runs_recorded == 3, "the reachable ComfyUI's runs recorded")
        await _until(lambda: watchers[0].state.retries >= 3, "retries of the one that is down")
        state = watchers[0].report()
        assert state["state"] == "reconnecting" and state["connected"] is False
        assert state["reconnecting_since_ms"] is not None and state["next_try_at_ms"] >= state["reconnecting_since_ms"]
        assert "Connect call failed" in state["last_error"]
        assert watchers[1].report()["state"] == "connected" and watchers[1].report()["next_try_at_ms"] is None
        down.history_data.update(late)
        down.down = False
        await _until(lambda: watchers[0].state.runs_recorded == 2, "the recovered ComfyUI's runs recorded")
        assert watchers[0].report()["state"] == "connected" and watchers[0].state.retries == 0
        for w in watchers:
            w.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)

    asyncio.run(scenario())
    assert recorder.flush(10)
    for pid in up.history_data:
        assert store.get_run(pid).instance == "b:2"
    for pid in late:
        assert store.get_run(pid).instance == "a:1"
    assert store.count_runs() == 5


@pytest.mark.parametrize("jobs", [True, False], ids=["api-jobs", "history"])
def test_a_restart_records_every_run_once_even_beyond_the_first_window(recorded_runs, store, jobs):
    """Watcher stopped, 120 prompts finish, watcher restarted with a 10-entry first window: the walk back through
    ComfyUI's history goes on until it meets the stored cursor."""
    comfy = ComfyRoutes(jobs)
    template = _template(recorded_runs)
    comfy.history.update(_items(template, 30))

    async def watch_once(server: TestServer) -> Watcher:
        recorder = Recorder(store, instance="box:8188", retry_initial_s=0.05, source="watcher",
                            stale_reason=STALE_REASON)
        recorder.start()
        client = ComfyClient(str(server.make_url("")))
        watcher = Watcher(client, recorder, BuildContext(instance="box:8188", source="watcher"), history_items=4,
                          backfill_items=10)
        await watcher.poll_once()
        await asyncio.to_thread(recorder.flush, 10)
        await client.close()
        recorder.stop()
        return watcher

    async def go() -> tuple[Watcher, Watcher]:
        async with TestServer(comfy.app) as server:
            first = await watch_once(server)
            comfy.history.update(_items(template, 120, first_create=1_795_000_000_000))
            comfy.requests.clear()
            second = await watch_once(server)
            return first, second

    first, second = asyncio.run(go())
    assert first.recorder.stats.stored == 30 and first.state.caught_up == 30
    assert second.recorder.stats.stored == 120 and second.state.caught_up == 120
    assert second.report()["cursor"]["known_runs"] == 30 + 120
    assert store.count_runs() == 150
    assert all(store.get_run(pid).status == "success" for pid in comfy.history)
    assert second.report()["history_api"] == ("jobs" if jobs else "history")
    listing = [r for r in comfy.requests if r.startswith("/api/jobs") or r.startswith("/history?")]
    if jobs:
        assert all(r.startswith("/api/jobs") for r in listing)
        assert sum(r.startswith("/history/") for r in comfy.requests) == 120  # only the new ones are read in full
    else:  # one probe (404), then /history
        assert [r for r in listing if r.startswith("/api/jobs")] == ["/api/jobs?status=completed&limit=1"]
        assert listing[1:] and all(r.startswith("/history?") for r in listing[1:])


def test_health_of_a_fleet_names_each_comfyui_as_openapi_describes_it(tmp_path, monkeypatch):
    from aiohttp.test_utils import TestClient

    from telemetry.api.openapi import openapi_spec
    from telemetry.watch.app import make_web_app

    monkeypatch.delenv("TELEMETRY_DATABASE_URL", raising=False)
    app = build(watch_options(build_parser().parse_args([
        "watch", "--data-dir", str(tmp_path), "--comfyui", "http://127.0.0.1:1", "--comfyui", "b=http://127.0.0.1:2"])))
    schema = openapi_spec()["components"]["schemas"]["WatchedComfyUI"]

    async def go() -> dict:
        async with TestClient(TestServer(make_web_app(app))) as client:
            return await (await client.get("/telemetry/health")).json()

    try:
        health = asyncio.run(go())
    finally:
        app.store.close()
    comfyuis = health["hooks"]["comfyuis"]
    assert [c["instance"] for c in comfyuis] == [default_instance("http://127.0.0.1:1"), "b"]
    for entry in comfyuis:
        assert set(schema["required"]) <= set(entry) and set(entry) <= set(schema["properties"]) | {
            "mode", "polls", "history_polls", "last_poll_at_ms", "running_recorded", "missing_closed",
            "comfyui_version"}
        assert entry["state"] in schema["properties"]["state"]["enum"]


def test_the_queue_eta_of_a_fleet_lists_each_comfyuis_queue_by_instance(tmp_path, monkeypatch):
    from aiohttp.test_utils import TestClient

    from telemetry.watch.app import make_web_app

    monkeypatch.delenv("TELEMETRY_DATABASE_URL", raising=False)
    app = build(watch_options(build_parser().parse_args([
        "watch", "--data-dir", str(tmp_path), "--comfyui", "a=http://127.0.0.1:1", "--comfyui", "b=http://127.0.0.1:2"])))
    app.watchers[0].queue_items = [[1, "a-running", {}, {}, []], [2, "a-next", {}, {}, []]]
    app.watchers[1].queue_items = [[5, "b-running", {}, {}, []]]

    async def go() -> tuple[dict, dict]:
        async with TestClient(TestServer(make_web_app(app))) as client:
            every = await (await client.get("/telemetry/queue/eta")).json()
            only_b = await (await client.get("/telemetry/queue/eta?instance=b")).json()
            return every, only_b

    try:
        every, only_b = asyncio.run(go())
    finally:
        app.store.close()
    assert [(i["instance"], i["prompt_id"], i["position"]) for i in every["items"]] == [
        ("a", "a-running", 0), ("a", "a-next", 1), ("b", "b-running", 0)]
    assert [q["instance"] for q in every["queues"]] == ["a", "b"]
    assert [i["prompt_id"] for i in only_b["items"]] == ["b-running"]
