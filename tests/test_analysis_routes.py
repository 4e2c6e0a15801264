"""The analysis REST routes through aiohttp's test client against a real Store: shapes, 400 messages that say
what is wrong, 404 for unknown things, JSON-safe payloads; the config file round trip; the timeline buckets."""

from __future__ import annotations

import asyncio
import json

import pytest
import test_analysis_support as support
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from test_analysis_support import HOUR, T0, make_run, store_and_evaluate

from telemetry.analysis.config import AnalysisConfig, load_config
from telemetry.analysis.service import AnalysisService
from telemetry.api.analysis_routes import add_analysis_routes

service = support.service  # fixture; `store` (SQLite file and PostgreSQL) comes from conftest


def call(service: AnalysisService | None, requests: list[tuple[str, str, object]], queue: list | None = None
         ) -> list[tuple[int, object]]:
    """Run (method, path, json body) requests against a fresh app; returns (status, parsed JSON) for each."""

    async def go() -> list[tuple[int, object]]:
        routes = web.RouteTableDef()
        add_analysis_routes(routes, lambda: service, lambda: list(queue or []))
        app = web.Application()
        app.add_routes(routes)
        async with TestClient(TestServer(app)) as client:
            out = []
            for method, path, body in requests:
                kwargs = {} if body is None else ({"data": body} if isinstance(body, str) else {"json": body})
                resp = await client.request(method, path, **kwargs)
                text = await resp.text()
                out.append((resp.status, json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))))
            return out

    return asyncio.run(go())


def _seed(store, service) -> None:
    runs = [make_run(f"r-{i}", "wf-a", T0 + i * HOUR, status="failed" if i >= 24 else "success",
                     duration_ms=10_000 + i * 10, frames=2) for i in range(30)]
    runs += [make_run(f"b-{i}", "wf-b", T0 + i * HOUR + 1, duration_ms=70_000) for i in range(5)]
    store_and_evaluate(store, service, runs)


def test_recommendations_list_filter_and_dismiss(store, service):
    _seed(store, service)
    (s1, listing), (s2, warnings), (s3, for_b), (s4, bad_state), (s5, bad_sev) = call(service, [
        ("GET", "/telemetry/recommendations", None),
        ("GET", "/telemetry/recommendations?severity=warning", None),
        ("GET", "/telemetry/recommendations?workflow=wf-b&state=open", None),
        ("GET", "/telemetry/recommendations?state=closed", None),
        ("GET", "/telemetry/recommendations?severity=bad", None),
    ])
    assert s1 == s2 == s3 == 200
    recs = listing["recommendations"]
    assert {r["kind"] for r in recs} == {"low_success_rate", "long_duration"}
    keys = {"id", "kind", "severity", "workflow", "workflow_name", "evidence_run_ids", "message", "action",
            "created_at_ms", "updated_at_ms", "state"}
    assert all(keys <= set(r) for r in recs)
    assert {r["kind"] for r in warnings["recommendations"]} == {"low_success_rate"}
    assert {r["workflow"] for r in for_b["recommendations"]} == {"wf-b"}
    assert (s4, bad_state) == (400, {"error": "'state' must be one of open, dismissed, resolved, got 'closed'"})
    assert s5 == 400 and "'severity' must be one of info, warning, critical" in bad_sev["error"]
    rec_id = warnings["recommendations"][0]["id"]
    (d1, dismissed), (d2, missing), (d3, bad_id), (d4, after) = call(service, [
        ("POST", f"/telemetry/recommendations/{rec_id}/dismiss", None),
        ("POST", "/telemetry/recommendations/4242/dismiss", None),
        ("POST", "/telemetry/recommendations/abc/dismiss", None),
        ("GET", "/telemetry/recommendations?state=dismissed", None),
    ])
    assert d1 == 200 and dismissed["state"] == "dismissed"
    assert (d2, missing) == (404, {"error": "no recommendation with id 4242"})
    assert d3 == 400 and "must be an integer" in bad_id["error"]
    assert [r["id"] for r in after["recommendations"]] == [rec_id]


def test_trends_route(store, service):
    _seed(store, service)
    (s1, data), (s2, bad), (s3, missing), (s4, no_wf) = call(service, [
        ("GET", "/telemetry/trends?workflow=wf-a&metric=duration_ms", None),
        ("GET", "/telemetry/trends?workflow=wf-a&metric=speed", None),
        ("GET", "/telemetry/trends?workflow=zzz&metric=fps", None),
        ("GET", "/telemetry/trends?metric=fps", None),
    ])
    assert s1 == 200 and data["workflow"] == "wf-a" and data["metric"] == "duration_ms"
    assert {"points", "rolling", "slope_per_day", "mann_kendall", "change_points"} <= set(data)
    assert set(data["points"][0]) == {"run_id", "t_ms", "value"} and set(data["rolling"][0]) == {"t_ms", "p50", "p95"}
    assert data["rolling"][0]["p50"] is None  # NaN before enough points: served as null
    assert set(data["mann_kendall"]) == {"tau", "p_value", "trend"}
    assert s2 == 400 and bad["error"].startswith("'metric' must be one of duration_ms, gpu_peak_bytes")
    assert (s3, missing) == (404, {"error": "no runs for workflow 'zzz'"})
    assert s4 == 400 and "'workflow' is required" in no_wf["error"]


def test_timeline_buckets_and_filters(store, service):
    day = 86_400_000
    start = (T0 // day) * day
    runs = []
    for d in range(3):
        for i in range(4):
            status = "failed" if (d == 1 and i == 0) else ("interrupted" if (d == 2 and i == 3) else "success")
            runs.append(make_run(f"t-{d}-{i}", "wf-t" if i < 3 else "wf-u", start + d * day + i * HOUR, status=status,
                                 duration_ms=1_000.0 * (i + 1), gpu_peak=(d + 1) * 1000, frames=i))
    store.save_runs(runs)
    since, until = start, start + 3 * day - 1
    (s1, days), (s2, hours), (s3, only_t), (s4, bad_bucket), (s5, bad_filter), (s6, too_wide) = call(service, [
        ("GET", f"/telemetry/stats/timeline?bucket=day&since_ms={since}&until_ms={until}", None),
        ("GET", f"/telemetry/stats/timeline?bucket=hour&since_ms={since}&until_ms={start + day - 1}", None),
        ("GET", f"/telemetry/stats/timeline?since_ms={since}&until_ms={until}&workflow=wf-t", None),
        ("GET", "/telemetry/stats/timeline?bucket=week", None),
        ("GET", "/telemetry/stats/timeline?bucket=day&status=done", None),
        ("GET", "/telemetry/stats/timeline?bucket=hour&since_ms=0", None),
    ])
    (s7, ninety_days), = call(service, [  # the hourly timeline over 90 days (issue 9's list) fits
        ("GET", f"/telemetry/stats/timeline?bucket=hour&since_ms={until - 90 * day}&until_ms={until}", None)])
    assert s7 == 200 and sum(p["runs"] for p in ninety_days["points"]) == len(runs)
    assert s1 == s2 == s3 == 200 and days["bucket"] == "day"
    assert [p["t_ms"] for p in days["points"]] == [start, start + day, start + 2 * day]
    d1 = days["points"][1]
    assert (d1["runs"], d1["success"], d1["failed"], d1["interrupted"]) == (4, 3, 1, 0)
    assert d1["success_rate"] == 0.75 and d1["avg_duration_ms"] == 2_500.0 and d1["frames"] == 6
    assert d1["p95_duration_ms"] == pytest.approx(3_850.0) and d1["max_gpu_peak_bytes"] == 2000
    assert days["points"][2]["interrupted"] == 1
    assert [p["runs"] for p in hours["points"]] == [1, 1, 1, 1]
    assert [p["runs"] for p in only_t["points"]] == [3, 3, 3]
    assert s4 == 400 and bad_bucket["error"] == "'bucket' must be hour or day, got 'week'"
    assert s5 == 400 and "'status' has unknown value(s) 'done'" in bad_filter["error"]
    assert s6 == 400 and "more than 2400 hour buckets" in too_wide["error"] and "bucket=day" in too_wide["error"]


def test_timeline_sees_a_run_stored_after_it_was_read(store, service):
    day = 86_400_000
    start = (T0 // day) * day
    store.save_runs([make_run("late-0", "wf-late", start + HOUR)])
    query = {"bucket": "day", "since_ms": str(start), "until_ms": str(start + 2 * day - 1)}
    assert [p["runs"] for p in service.timeline(query)["points"]] == [1]
    late = make_run("late-1", "wf-late", start + day + HOUR, status="failed")
    store.save_runs([late])
    service.on_run_stored(late)
    assert [(p["runs"], p["failed"]) for p in service.timeline(query)["points"]] == [(1, 0), (1, 1)]
    half = {"bucket": "day", "since_ms": str(start + 2 * HOUR), "until_ms": str(start + 2 * day - 1)}
    assert [p["runs"] for p in service.timeline(half)["points"]] == [1]  # the cut first day is read, not cached


def test_predict_queue_and_accuracy_routes(store, service):
    _seed(store, service)
    prompt = {"3": {"class_type": "KSampler", "inputs": {"steps": 20}}}
    queue = [(1, "q1", prompt, {}, []), (2, "q2", prompt, {}, [])]
    (s1, predicted), (s2, wrapped), (s3, bad), (s4, not_json), (s5, eta), (s6, acc) = call(service, [
        ("POST", "/telemetry/predict", prompt),
        ("POST", "/telemetry/predict", {"prompt": prompt}),
        ("POST", "/telemetry/predict", {"workflow": {"nodes": []}}),
        ("POST", "/telemetry/predict", "{not json"),
        ("GET", "/telemetry/queue/eta", None),
        ("GET", "/telemetry/predict/accuracy", None),
    ], queue=queue)
    assert s1 == s2 == 200 and predicted == wrapped
    assert predicted["enough_history"] is False and "not enough history" in predicted["duration_ms"]["reason"]
    assert s3 == 400 and "not an API-format prompt" in bad["error"]
    assert s4 == 400 and bad["error"] and not_json["error"].startswith("the body is not valid JSON")
    assert s5 == 200 and [i["prompt_id"] for i in eta["items"]] == ["q1", "q2"] and eta["has_predictions"] is False
    assert s6 == 200 and set(acc) == {"interval_coverage_target", "overall", "workflows"}


def test_config_route_validates_and_saves(store, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"database_url": "sqlite:///x.db"}))
    svc = AnalysisService(store, config_path=str(path))
    (s1, current), (s2, changed), (s3, bad_type), (s4, unknown), (s5, bad_range), (s6, after) = call(svc, [
        ("GET", "/telemetry/config", None),
        ("PUT", "/telemetry/config", {"duration_threshold_ms": 90_000, "success_rate_threshold": 0.7}),
        ("PUT", "/telemetry/config", {"retry_min_attempts": "three"}),
        ("PUT", "/telemetry/config", {"colour": "red"}),
        ("PUT", "/telemetry/config", {"success_rate_threshold": 1.5}),
        ("GET", "/telemetry/config", None),
    ])
    assert s1 == 200 and current == AnalysisConfig().to_dict()
    assert s2 == 200 and changed["duration_threshold_ms"] == 90_000 and changed["success_rate_threshold"] == 0.7
    assert s3 == 400
    assert bad_type["error"] == "'retry_min_attempts' must be an integer between 1 and 1000, got \"three\""
    assert s4 == 400 and unknown["error"].startswith("unknown setting(s) 'colour'; known: success_window_runs")
    assert (s5, bad_range) == (400, {"error": "'success_rate_threshold' must be a number between 0 and 1, got 1.5"})
    assert after == changed
    saved = json.loads(path.read_text())
    assert saved["database_url"] == "sqlite:///x.db" and saved["analysis"]["duration_threshold_ms"] == 90_000
    assert load_config(str(path)).success_rate_threshold == 0.7


def test_routes_answer_503_while_analysis_is_off():
    ((status, body),) = call(None, [("GET", "/telemetry/recommendations", None)])
    assert (status, body) == (503, {"error": "telemetry analysis is not running"})
