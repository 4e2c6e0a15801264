"""Protection of the state-changing routes, through aiohttp's test client over the real route tables and a real
SQLite file: cross-origin requests are refused with a message, prune and config writes need the admin token when
the server listens beyond loopback, and reads stay open."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from telemetry.analysis.service import AnalysisService
from telemetry.api.analysis_routes import add_analysis_routes
from telemetry.api.routes import add_core_routes
from telemetry.api.security import Protection, listens_beyond_loopback, same_origin
from telemetry.model import Run
from telemetry.service import TelemetryService
from telemetry.store.database import sqlite_url
from telemetry.store.store import Store

TOKEN = "s3cret-token-for-tests"


@pytest.fixture
def app_for(tmp_path):
    stores = []

    def make(protection: Protection | None = None):
        store = Store(sqlite_url(str(tmp_path / "sec.db")))
        store.open()
        store.save_runs([Run(f"r{i}", "success", started_at_ms=1_000 + i) for i in range(5)])
        stores.append(store)
        service = TelemetryService(store, None)
        analysis = AnalysisService(store, config_path=str(tmp_path / "config.json"))
        routes = web.RouteTableDef()
        add_core_routes(routes, lambda: service, protection)
        add_analysis_routes(routes, lambda: analysis, list, protection)
        app = web.Application()
        app.add_routes(routes)
        return app

    yield make
    for store in stores:
        store.close()


def call(app, requests):
    """(method, path, json body or None, headers) -> [(status, parsed JSON)]. Host is the test server's."""
    async def go():
        async with TestClient(TestServer(app)) as client:
            out = []
            for method, path, body, headers in requests:
                resp = await client.request(method, path, json=body, headers=headers)
                out.append((resp.status, await resp.json(content_type=None)))
            return out
    return asyncio.run(go())



def test_cross_origin_writes_are_refused_and_reads_stay_open(app_for):
    app = app_for()
    evil = {"Origin": "http://evil.example"}
    preset = {"name": "mine", "filters": {"status": ["failed"]}}
    results = call(app, [
        ("POST", "/telemetry/presets", preset, evil),
        ("POST", "/telemetry/workflows", {"id": "wf", "name": "x"}, evil),
        ("DELETE", "/telemetry/presets/1", None, evil),
        ("POST", "/telemetry/recommendations/evaluate", None, evil),
        ("POST", "/telemetry/recommendations/1/dismiss", None, evil),
        ("POST", "/telemetry/predict", {"1": {"class_type": "X", "inputs": {}}}, evil),
        ("PUT", "/telemetry/config", {"backtest_runs": 3}, evil),
        ("DELETE", "/telemetry/runs?keep=1", None, evil),
        ("POST", "/telemetry/presets", preset, {"Origin": "null"}),
        ("GET", "/telemetry/runs", None, evil),
        ("GET", "/telemetry/presets", None, evil),
        ("POST", "/telemetry/presets", preset, {}),  # no Origin: curl, scripts
    ])
    for status, body in results[:9]:
        assert status == 403 and body["error"].startswith("cross-origin request refused: Origin ")
        assert "does not match Host" in body["error"]
    assert [s for s, _ in results[9:]] == [200, 200, 201]
    assert results[9][1]["total"] == 5 and results[10][1]["presets"] == []


def test_same_origin_writes_pass(app_for):
    async def go():
        async with TestClient(TestServer(app_for())) as client:
            origin = f"http://127.0.0.1:{client.port}"
            created = await client.post("/telemetry/presets", json={"name": "n", "filters": {}},
                                        headers={"Origin": origin})
            other_port = await client.post("/telemetry/presets", json={"name": "n", "filters": {}},
                                           headers={"Origin": f"http://127.0.0.1:{client.port + 1}"})
            return created.status, other_port.status
    assert asyncio.run(go()) == (201, 403)


@pytest.mark.parametrize("origin,host,scheme,expected", [
    ("http://127.0.0.1:8188", "127.0.0.1:8188", "http", True),
    ("http://LOCALHOST:8188", "localhost:8188", "http", True),
    ("https://comfy.lan", "comfy.lan", "https", True),
    ("https://comfy.lan", "comfy.lan:443", "https", True),
    ("http://comfy.lan", "comfy.lan:8188", "http", False),
    ("http://[::1]:8188", "[::1]:8188", "http", True),
    ("http://127.0.0.1:8189", "127.0.0.1:8188", "http", False),
    ("http://evil.example", "127.0.0.1:8188", "http", False),
    ("null", "127.0.0.1:8188", "http", False),
    ("file://", "127.0.0.1:8188", "http", False),
    ("http://127.0.0.1:99999", "127.0.0.1:8188", "http", False),
])
def test_same_origin_compares_host_and_port(origin, host, scheme, expected):
    assert same_origin(origin, host, scheme) is expected


@pytest.mark.parametrize("listen,expected", [
    ("127.0.0.1", False), ("127.0.0.1,::1", False), ("localhost", False), (None, False),
    ("0.0.0.0", True), ("0.0.0.0,::", True), ("127.0.0.1,192.168.1.5", True), ("comfy.lan", True),
])
def test_beyond_loopback_reads_comfyuis_listen_list(listen, expected):
    assert listens_beyond_loopback(listen) is expected


def test_beyond_loopback_without_a_token_prune_and_config_writes_say_to_set_one(app_for):
    app = app_for(Protection(admin_token=None, exposed=lambda: True))
    (s1, prune), (s2, put), (s3, runs), (s4, preset) = call(app, [
        ("DELETE", "/telemetry/runs?keep=1", None, {}),
        ("PUT", "/telemetry/config", {"backtest_runs": 3}, {}),
        ("GET", "/telemetry/runs", None, {}),
        ("POST", "/telemetry/presets", {"name": "p", "filters": {}}, {}),
    ])
    assert s1 == s2 == 403
    assert "set TELEMETRY_ADMIN_TOKEN" in prune["error"] and "set TELEMETRY_ADMIN_TOKEN" in put["error"]
    assert s3 == 200 and runs["total"] == 5 and s4 == 201


def test_beyond_loopback_prune_and_config_writes_need_the_bearer_token(app_for):
    app = app_for(Protection(admin_token=TOKEN, exposed=lambda: True))
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    results = call(app, [
        ("DELETE", "/telemetry/runs?keep=1", None, {}),
        ("DELETE", "/telemetry/runs?keep=1", None, {"Authorization": "Bearer wrong"}),
        ("DELETE", "/telemetry/runs?keep=1", None, {"Authorization": TOKEN}),
        ("PUT", "/telemetry/config", {"backtest_runs": 3}, {"Authorization": "Basic " + TOKEN}),
        ("DELETE", "/telemetry/runs?keep=3", None, bearer),
        ("PUT", "/telemetry/config", {"backtest_runs": 3}, bearer),
        ("DELETE", "/telemetry/runs?keep=1", None, {**bearer, "Origin": "http://evil.example"}),
        ("GET", "/telemetry/runs", None, {}),
    ])
    for status, body in results[:4]:
        assert status == 401 and "Authorization: Bearer <TELEMETRY_ADMIN_TOKEN>" in body["error"]
    assert results[4] == (200, {"deleted": 2, "before_ms": None, "keep": 3})
    assert results[5][0] == 200 and results[5][1]["backtest_runs"] == 3
    assert results[6][0] == 403 and "cross-origin" in results[6][1]["error"]
    assert results[7][1]["total"] == 3


def test_on_loopback_prune_and_config_writes_are_as_open_as_comfyuis_routes(app_for):
    app = app_for(Protection(admin_token=None, exposed=lambda: False))
    (s1, pruned), (s2, _) = call(app, [("DELETE", "/telemetry/runs?keep=4", None, {}),
                                       ("PUT", "/telemetry/config", {"backtest_runs": 3}, {})])
    assert (s1, pruned["deleted"], s2) == (200, 1, 200)
