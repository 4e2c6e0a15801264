"""Hostile and odd input to the REST routes, through aiohttp's test client over the real route tables and a real
SQLite file: integers beyond 64 bits, malformed numbers and NUL characters get a 400 that names the parameter
(never a 500), an export is validated before its stream starts, and the prune route deletes what it says."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from telemetry.analysis.service import AnalysisService
from telemetry.api.analysis_routes import add_analysis_routes
from telemetry.api.routes import add_core_routes
from telemetry.model import Run
from telemetry.service import TelemetryService
from telemetry.store.store import Store

HUGE = str(2**64)
INT64_MAX = 2**63 - 1


@pytest.fixture
def store(tmp_path, migrated_sqlite):
    opened = Store(migrated_sqlite(tmp_path / "input.db"))
    opened.open()
    runs = [Run(f"r{i:02d}", "success", started_at_ms=1_000 * i, workflow_id="wf") for i in range(1, 11)]
    runs.append(Run("live", "running", started_at_ms=100))
    opened.save_runs(runs)
    yield opened
    opened.close()


def call(store, requests):
    """[(method, path)] -> [(status, text)] against the core and analysis routes."""
    service = TelemetryService(store, None)
    analysis = AnalysisService(store)

    async def go():
        routes = web.RouteTableDef()
        add_core_routes(routes, lambda: service)
        add_analysis_routes(routes, lambda: analysis, list)
        app = web.Application()
        app.add_routes(routes)
        async with TestClient(TestServer(app)) as client:
            out = []
            for method, path in requests:
                resp = await client.request(method, path)
                out.append((resp.status, await resp.text()))
            return out
    return asyncio.run(go())


def error_of(text: str) -> str:
    return json.loads(text)["error"]


@pytest.mark.parametrize("path,param", [
    (f"/telemetry/runs?since_ms={HUGE}", "since_ms"),
    (f"/telemetry/runs?until_ms={HUGE}", "until_ms"),
    (f"/telemetry/runs?offset={HUGE}", "offset"),
    (f"/telemetry/stats?since_ms={HUGE}", "since_ms"),
    (f"/telemetry/stats/node_types?until_ms={HUGE}", "until_ms"),
    (f"/telemetry/stats/timeline?since_ms={HUGE}", "since_ms"),
    (f"/telemetry/export?since_ms={HUGE}", "since_ms"),
    (f"/telemetry/export?format=csv&offset={HUGE}", "offset"),
    ("/telemetry/export?offset=abc", "offset"),
    ("/telemetry/export?limit=-1", "limit"),
    ("/telemetry/runs?offset=1e3", "offset"),
    ("/telemetry/runs?offset=5_000", "offset"),
    ("/telemetry/runs?offset=%D9%A5", "offset"),  # an Arabic-Indic digit, which int() would take
    ("/telemetry/runs?since_ms=" + "9" * 5000, "since_ms"),
    (f"/telemetry/runs?keep=1&since_ms=-{HUGE}", "since_ms"),
])
def test_bad_integers_answer_400_naming_the_parameter(store, path, param):
    ((status, text),) = call(store, [("GET", path)])
    assert status == 400, text
    assert error_of(text).startswith(f"'{param}' must be")


def test_integers_at_the_64_bit_edge_are_answered(store):
    (s1, runs), (s2, export), (s3, stats) = call(store, [
        ("GET", f"/telemetry/runs?since_ms=0&until_ms={INT64_MAX}&offset={INT64_MAX}"),
        ("GET", f"/telemetry/export?until_ms={INT64_MAX}"),
        ("GET", f"/telemetry/stats?since_ms={INT64_MAX}"),
    ])
    assert s1 == 200 and json.loads(runs)["runs"] == [] and json.loads(runs)["total"] == 11
    assert s2 == 200 and len(export.splitlines()) == 11
    assert s3 == 200 and json.loads(stats)["total_runs"] == 0


@pytest.mark.parametrize("path,message", [
    (f"/telemetry/presets/{HUGE}", "preset id must be an integer between 0 and"),
    ("/telemetry/presets/-1", "preset id must be an integer between 0 and"),
])
def test_ids_beyond_64_bits_answer_400(store, path, message):
    ((status, text),) = call(store, [("DELETE", path)])
    assert status == 400 and error_of(text).startswith(message)


def test_recommendation_ids_beyond_64_bits_answer_400(store):
    ((status, text),) = call(store, [("POST", f"/telemetry/recommendations/{HUGE}/dismiss")])
    assert status == 400 and error_of(text).startswith("recommendation id must be an integer")


@pytest.mark.parametrize("path", ["/telemetry/runs?q=a%00b", "/telemetry/stats?workflow=%00",
                                  "/telemetry/runs/ab%00cd", "/telemetry/trends?workflow=%00&metric=fps",
                                  "/telemetry/recommendations?workflow=x%00"])
def test_nul_characters_answer_400(store, path):
    ((status, text),) = call(store, [("GET", path)])
    assert status == 400 and "must not contain NUL characters" in error_of(text)


def test_an_export_is_validated_before_its_stream_starts(store):
    (s1, bad), (s2, good) = call(store, [("GET", f"/telemetry/export?format=csv&until_ms={HUGE}"),
                                         ("GET", "/telemetry/export?format=jsonl&sort=started_at_ms")])
    assert s1 == 400 and error_of(bad).startswith("'until_ms' must be an integer between 0 and 9223372036854775807")
    assert s2 == 200 and [json.loads(line)["run_id"] for line in good.splitlines()][:2] == ["live", "r01"]


def test_prune_deletes_finished_runs_before_a_time_or_beyond_the_newest(store):
    (s1, before), (s2, keep), (s3, listing) = call(store, [
        ("DELETE", "/telemetry/runs?before_ms=3500"),
        ("DELETE", "/telemetry/runs?keep=4"),
        ("GET", "/telemetry/runs?limit=500&sort=started_at_ms"),
    ])
    assert (s1, json.loads(before)) == (200, {"deleted": 3, "before_ms": 3500, "keep": None})
    assert (s2, json.loads(keep)) == (200, {"deleted": 3, "before_ms": None, "keep": 4})
    assert [r["run_id"] for r in json.loads(listing)["runs"]] == ["live", "r07", "r08", "r09", "r10"]


@pytest.mark.parametrize("query,message", [
    ("", "say which runs to delete: 'before_ms'"),
    ("?before_ms=", "say which runs to delete"),
    ("?before_ms=yesterday", "'before_ms' must be an integer"),
    (f"?before_ms={HUGE}", "'before_ms' must be an integer between 0 and 9223372036854775807"),
    ("?keep=-5", "'keep' must be"),
    ("?keep=x&before_ms=y", "'before_ms' must be an integer"),
])
def test_prune_without_a_usable_bound_answers_400_and_deletes_nothing(store, query, message):
    (status, text), (_, listing) = call(store, [("DELETE", "/telemetry/runs" + query), ("GET", "/telemetry/runs")])
    assert status == 400 and error_of(text).startswith(message)
    assert json.loads(listing)["total"] == 11


@pytest.mark.parametrize("path,body,field", [
    ("/telemetry/presets", {"name": "a\x00b", "filters": {}}, "name"),
    ("/telemetry/presets", {"name": "ok", "filters": {"q": "\ud800"}}, "q"),
    ("/telemetry/workflows", {"id": "wf", "name": "half \ud83d"}, "name"),
    ("/telemetry/workflows", {"id": "w\x00f", "name": "n"}, "id"),
])
def test_text_no_database_can_store_answers_400(store, path, body, field):
    service = TelemetryService(store, None)

    async def go():
        routes = web.RouteTableDef()
        add_core_routes(routes, lambda: service)
        app = web.Application()
        app.add_routes(routes)
        async with TestClient(TestServer(app)) as client:
            resp = await client.post(path, data=json.dumps(body), headers={"Content-Type": "application/json"})
            return resp.status, await resp.json()
    status, answer = asyncio.run(go())
    assert status == 400 and answer["error"].startswith(f"'{field}' must")
