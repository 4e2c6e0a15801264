"""Webhooks, against a real HTTP receiver on loopback and a real SQLite file (and PostgreSQL for the outbox that
survives a restart): every stored run becomes a signed POST with a stable idempotency key, delivered after a
receiver that was down comes back, retried through 500s, marked failed after the retry window, and kept in the
outbox across a restart of the sender. Secrets (the webhook secret, ComfyUI's API keys, credentials in a URL)
never reach a body, the health report or the log."""

from __future__ import annotations

import json
import logging
import re
import time
import urllib.request
from pathlib import Path

import pytest
from webhook_receiver import Receiver

from telemetry.config import load_config
from telemetry.model import Run, RunError
from telemetry.recorder import Recorder
from telemetry.service import TelemetryService
from telemetry.store.database import sqlite_url
from telemetry.store.store import Store
from telemetry.webhooks import attach_webhooks
from telemetry.webhooks.config import parse_targets, redact_webhook_url
from telemetry.webhooks.payloads import RUN_LINK_PARAM, run_api_link, run_link
from telemetry.webhooks.sender import backoff_s

SECRET = "whsec-test-5f2c9a"
FAST = {"TELEMETRY_WEBHOOK_RETRY_INITIAL_S": "0.05", "TELEMETRY_WEBHOOK_RETRY_MAX_S": "0.15",
        "TELEMETRY_WEBHOOK_TIMEOUT_S": "2"}
QUIET_S = 0.3  # "nothing more is sent": twice FAST's longest backoff


def _wait(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


class Pack:
    """Store, recorder, service and webhooks as the plugin assembles them, on one database URL."""

    def __init__(self, tmp_path, url: str, env: dict[str, str], instance: str = "render-1:8188") -> None:
        self.config = load_config(str(tmp_path), environ={"TELEMETRY_CONFIG": str(tmp_path / "none.json"), **env})
        self.store = Store(url)
        self.recorder = Recorder(self.store, instance=instance)
        self.service = TelemetryService(self.store, self.recorder, instance=instance,
                                        config_warnings=self.config.warning_dicts())
        self.webhooks = attach_webhooks(self.config, self.store, self.recorder, self.service, instance=instance)
        self.recorder.start()
        self.webhooks.start()

    def record(self, *runs: Run) -> None:
        assert self.recorder.submit(lambda: list(runs))
        assert self.recorder.flush()

    def health(self) -> dict:
        with self.store.db.connection_context():
            return self.service.health()["webhooks"]

    def stop(self) -> None:
        self.webhooks.stop()
        self.recorder.stop()
        self.store.shutdown()


def failed_run(run_id: str = "run-failed-1") -> Run:
    now = int(time.time() * 1000)
    return Run(run_id, "failed", started_at_ms=now - 4200, finished_at_ms=now,
               duration_ms=4200.0, workflow_id="wf-1", workflow_name="story/scene-3", instance="render-1:8188",
               error=RunError("7", "KSampler", "OutOfMemoryError", "CUDA out of memory. Tried to allocate 2 GiB",
                              kind="oom"),
               parameters={"steps": 30})


@pytest.fixture
def receiver():
    server = Receiver().start()
    yield server
    server.stop()


def test_a_failed_run_is_posted_signed_with_its_summary_and_a_stable_event_key(tmp_path, receiver, caplog):
    caplog.set_level(logging.DEBUG)
    pack = Pack(tmp_path, sqlite_url(str(tmp_path / "t.db")), {
        "TELEMETRY_WEBHOOK_URLS": receiver.url("/hook"), "TELEMETRY_WEBHOOK_SECRET": SECRET,
        "TELEMETRY_PUBLIC_URL": "https://render-1.studio.lan:8188/", **FAST})
    try:
        pack.record(failed_run(), Run("run-ok-1", "success", duration_ms=1000.0, workflow_name="story/scene-3"))
        got = receiver.wait_for(lambda r: len(r) == 2)
        by_event = {r.json["event"]: r for r in got}
        assert set(by_event) == {"failed", "finished"}
        failed = by_event["failed"]
        assert failed.signed_with(SECRET) and not failed.signed_with("another secret")
        assert failed.headers["X-Run-Telemetry-Signature"].startswith("sha256=")
        assert failed.headers["Content-Type"].startswith("application/json")
        assert failed.headers["X-Run-Telemetry-Event-Type"] == "failed"
        body = failed.json
        assert failed.event_id == body["event_id"] and len(failed.event_id) >= 32
        run = body["run"]
        assert (run["run_id"], run["status"], run["workflow_name"], run["duration_ms"]) == (
            "run-failed-1", "failed", "story/scene-3", 4200.0)
        assert run["error"] == {"kind": "oom", "message": "CUDA out of memory. Tried to allocate 2 GiB",
                                "node_id": "7", "node_type": "KSampler", "exception_type": "OutOfMemoryError"}
        assert run["instance"] == "render-1:8188" and body["instance"] == "render-1:8188"
        assert run["url"] == "https://render-1.studio.lan:8188/?telemetry_run=run-failed-1"
        assert _wait(lambda: pack.health()["delivered"] == 2)
        # the same run stored again (a rename, a retry of the write) is not a second event
        pack.record(failed_run())
        time.sleep(QUIET_S)
        assert len(receiver.received) == 2
        health = pack.health()
        assert health["pending"] == 0 and health["failed"] == 0 and health["signed"] is True
    finally:
        pack.stop()
    assert SECRET not in caplog.text and SECRET not in json.dumps(health)


def test_a_receiver_that_is_down_for_a_while_gets_the_event_when_it_comes_up(tmp_path):
    receiver = Receiver()  # not started yet: connection refused
    pack = Pack(tmp_path, sqlite_url(str(tmp_path / "t.db")), {
        "TELEMETRY_WEBHOOK_URLS": receiver.url(), "TELEMETRY_WEBHOOK_SECRET": SECRET, **FAST})
    try:
        pack.record(failed_run())
        assert _wait(lambda: (pack.health()["targets"][0]["last_error"] or "").startswith("URLError"))
        health = pack.health()
        assert health["pending"] == 1 and health["oldest_pending_age_ms"] >= 0
        assert "refused" in health["targets"][0]["last_error"].lower()
        time.sleep(QUIET_S)
        receiver.start()
        got = receiver.wait_for(lambda r: len(r) >= 1)
        assert got[0].json["run"]["run_id"] == "run-failed-1" and got[0].signed_with(SECRET)
        assert _wait(lambda: pack.health()["delivered"] == 1)
        assert pack.health()["pending"] == 0
    finally:
        pack.stop()
        receiver.stop()


def test_a_receiver_answering_500_is_retried_with_the_same_body_and_key_until_it_succeeds(tmp_path):
    receiver = Receiver(statuses=[500, 500, 503]).start()
    pack = Pack(tmp_path, sqlite_url(str(tmp_path / "t.db")), {
        "TELEMETRY_WEBHOOK_URLS": receiver.url(), "TELEMETRY_WEBHOOK_SECRET": SECRET, **FAST})
    try:
        pack.record(failed_run())
        got = receiver.wait_for(lambda r: len(r) == 4)
        assert receiver.answered == [500, 500, 503, 200]
        assert len({r.event_id for r in got}) == 1 and len({r.body for r in got}) == 1
        assert all(r.signed_with(SECRET) for r in got)
        assert _wait(lambda: pack.health()["delivered"] == 1)
        target = pack.health()["targets"][0]
        assert target["last_status"] == 200 and "HTTP 503" in target["last_error"]
    finally:
        pack.stop()
        receiver.stop()


def test_a_receiver_that_keeps_failing_is_marked_failed_after_the_retry_window(tmp_path):
    receiver = Receiver(statuses=[500] * 1000).start()
    pack = Pack(tmp_path, sqlite_url(str(tmp_path / "t.db")), {
        "TELEMETRY_WEBHOOK_URLS": receiver.url(), "TELEMETRY_WEBHOOK_SECRET": SECRET,
        "TELEMETRY_WEBHOOK_RETRY_WINDOW_S": "0.8", **FAST})
    try:
        pack.record(failed_run())
        assert _wait(lambda: pack.health()["failed"] == 1, timeout=30)
        attempts = len(receiver.received)
        assert attempts >= 3  # retried with backoff within the window
        health = pack.health()
        assert health["pending"] == 0 and health["targets"][0]["last_status"] == 500
        time.sleep(QUIET_S)
        assert len(receiver.received) == attempts  # given up: no more attempts
    finally:
        pack.stop()
        receiver.stop()


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_pending_deliveries_survive_a_restart_of_the_sender_and_are_delivered_once(tmp_path, kind, request):
    url = sqlite_url(str(tmp_path / "t.db")) if kind == "sqlite" else request.getfixturevalue("pg_schema_url")
    receiver = Receiver()  # down while the first process runs
    env = {"TELEMETRY_WEBHOOK_URLS": receiver.url(), "TELEMETRY_WEBHOOK_SECRET": SECRET, **FAST}
    first = Pack(tmp_path, url, env)
    first.record(*[failed_run(f"run-{i}") for i in range(3)])
    assert _wait(lambda: all(t["last_error"] for t in first.health()["targets"]))
    assert first.health()["pending"] == 3
    first.stop()  # ComfyUI stops with three deliveries pending

    receiver.start()
    second = Pack(tmp_path, url, env)  # the next start: the outbox is read again
    try:
        receiver.wait_for(lambda r: len(r) >= 3)
        assert _wait(lambda: second.health()["delivered"] == 3)
        time.sleep(QUIET_S)
        got = list(receiver.received)
        assert sorted(r.json["run"]["run_id"] for r in got) == ["run-0", "run-1", "run-2"]  # each once
        assert len({r.event_id for r in got}) == 3 and all(r.signed_with(SECRET) for r in got)
        assert second.health()["pending"] == 0
    finally:
        second.stop()
        receiver.stop()


def test_events_are_sent_only_to_the_targets_that_want_them_in_their_format(tmp_path, receiver):
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps({"webhook_secret": SECRET, "webhook_urls": [
        {"url": receiver.url("/failures"), "events": ["failed"]},
        {"url": receiver.url("/slack"), "events": ["failed", "finished"], "format": "slack"},
        {"url": receiver.url("/discord"), "events": ["finished"], "format": "discord"},
    ]}))
    pack = Pack(tmp_path, sqlite_url(str(tmp_path / "t.db")), {"TELEMETRY_CONFIG": str(config_file), **FAST})
    try:
        assert pack.config.warning_dicts() == []
        pack.record(failed_run(), Run("run-ok", "success", duration_ms=2500.0, workflow_name="portrait"))
        got = receiver.wait_for(lambda r: len(r) == 5)
        by_path: dict[str, list] = {}
        for r in got:
            by_path.setdefault(r.path, []).append(r)
        assert [r.json["run"]["run_id"] for r in by_path["/failures"]] == ["run-failed-1"]
        slack = sorted((r.json for r in by_path["/slack"]), key=lambda b: b["text"])
        assert [b["text"] for b in slack] == ["Run portrait finished after 2.5 s",
                                              "Run story/scene-3 FAILED after 4.2 s on render-1:8188"]
        assert all(b["blocks"][0]["type"] == "section" for b in slack)
        assert "KSampler (node 7)" in json.dumps(slack[1]["blocks"])
        # discord wants `finished` only: a failed run is a finished one for it
        assert all(r.signed_with(SECRET) for r in got)
        contents = sorted(r.json["content"] for r in by_path["/discord"])
        assert contents == ["Run portrait finished after 2.5 s",
                            "Run story/scene-3 FAILED after 4.2 s on render-1:8188"]
        assert all(r.json["embeds"][0]["title"] for r in by_path["/discord"])
    finally:
        pack.stop()


def test_webhook_config_problems_are_clear_warnings_and_urls_are_redacted():
    targets, warnings = parse_targets([
        "ftp://files.example/hook", "https://hooks.slack.com/services/T0/B0/SECRETTOKEN",
        {"url": "http://user:pw@127.0.0.1:9/h", "events": ["failed", "crashed"]},
        {"url": "https://example.com/x", "format": "teams"}, {"url": "https://example.com/y", "events": []}, 42])
    assert [(t.url, sorted(t.events), t.format) for t in targets] == [
        ("https://hooks.slack.com/services/T0/B0/SECRETTOKEN", ["failed", "finished", "recommendation"], "json"),
        ("http://user:pw@127.0.0.1:9/h", ["failed"], "json")]
    messages = [w.message for w in warnings]
    assert len(messages) == 5
    assert "http:// or https://" in messages[0] and "'ftp'" in messages[0]
    assert "crashed" in messages[1] and "failed, finished, recommendation" in messages[1]
    assert "teams" in messages[2] and "json, slack, discord" in messages[2]
    assert "at least one event" in messages[3]
    assert "SECRETTOKEN" not in " ".join(messages) and "pw@" not in " ".join(messages)
    assert redact_webhook_url("https://hooks.slack.com/services/T0/B0/SECRETTOKEN") == \
        "https://hooks.slack.com/services/***"
    assert redact_webhook_url("http://user:pw@127.0.0.1:9/h?token=abc") == "http://***@127.0.0.1:9/h?***"
    assert redact_webhook_url("https://discord.com/api/webhooks/1/tok") == "https://discord.com/api/***"


def test_urls_from_the_environment_without_a_secret_warn_that_deliveries_are_unsigned(tmp_path):
    config = load_config(str(tmp_path), environ={
        "TELEMETRY_CONFIG": str(tmp_path / "none.json"),
        "TELEMETRY_WEBHOOK_URLS": "http://127.0.0.1:9/a, https://example.com/b,mailto:me@example.com"})
    keys = [(w["key"], w["message"]) for w in config.warning_dicts()]
    assert len(keys) == 2
    assert keys[0][0] == "webhook_urls" and "'mailto'" in keys[0][1]
    assert keys[1][0] == "webhook_secret" and "unsigned" in keys[1][1]
    assert config.to_dict()["webhook_secret_set"] is False and "webhook_secret" not in config.to_dict()
    hidden = load_config(str(tmp_path), environ={"TELEMETRY_CONFIG": str(tmp_path / "none.json"),
                                                  "TELEMETRY_WEBHOOK_SECRET": SECRET})
    assert SECRET not in json.dumps(hidden.to_dict()) and hidden.to_dict()["webhook_secret_set"] is True


@pytest.mark.parametrize(("public_url", "link", "api"), [
    ("http://127.0.0.1:8188", "http://127.0.0.1:8188/?telemetry_run=r-1", "http://127.0.0.1:8188/telemetry/runs/r-1"),
    ("http://127.0.0.1:8190/", "http://127.0.0.1:8190/?telemetry_run=r-1", "http://127.0.0.1:8190/telemetry/runs/r-1"),
    # a reverse proxy's prefix is kept, with or without its slash
    ("https://studio.lan/comfy", "https://studio.lan/comfy/?telemetry_run=r-1", "https://studio.lan/comfy/telemetry/runs/r-1"),
    ("https://studio.lan/comfy/", "https://studio.lan/comfy/?telemetry_run=r-1", "https://studio.lan/comfy/telemetry/runs/r-1"),
    # a query of the page is kept (an old telemetry_run replaced), a fragment dropped
    ("https://studio.lan/?lang=de#x", "https://studio.lan/?lang=de&telemetry_run=r-1", "https://studio.lan/telemetry/runs/r-1"),
    ("https://studio.lan/?telemetry_run=old", "https://studio.lan/?telemetry_run=r-1", "https://studio.lan/telemetry/runs/r-1"),
    (" https://studio.lan ", "https://studio.lan/?telemetry_run=r-1", "https://studio.lan/telemetry/runs/r-1"),
])
def test_the_run_link_opens_the_page_at_public_url_with_the_run_parameter(public_url, link, api):
    assert run_link(public_url, "r-1") == link
    assert run_api_link(public_url, "r-1") == api


def test_the_run_link_encodes_the_run_id_and_is_none_without_a_public_url():
    assert run_link("http://h:8188", "a/b c&d=1") == "http://h:8188/?telemetry_run=a%2Fb%20c%26d%3D1"
    assert run_api_link("http://h:8188", "a/b c") == "http://h:8188/telemetry/runs/a%2Fb%20c"
    for empty in (None, "", "  "):
        assert run_link(empty, "r-1") is None and run_api_link(empty, "r-1") is None


def test_the_panel_reads_the_parameter_the_link_carries():
    source = (Path(__file__).resolve().parents[1] / "web" / "src" / "runlink.ts").read_text()
    assert re.search(r'export const RUN_LINK_PARAM = "([^"]+)"', source).group(1) == RUN_LINK_PARAM


def test_backoff_doubles_with_jitter_and_is_capped():
    assert backoff_s(1, 10, 3600, rng=lambda: 1.0) == 10 and backoff_s(1, 10, 3600, rng=lambda: 0.0) == 5
    assert backoff_s(4, 10, 3600, rng=lambda: 1.0) == 80
    assert backoff_s(30, 10, 3600, rng=lambda: 1.0) == 3600


def test_the_test_route_sends_a_signed_test_event_and_health_shows_it_redacted(tmp_path, receiver):
    from api_server import ApiServer

    hook = receiver.url("/hook/SECRETPATH?token=abc").replace("http://", "http://alice:hunter2@")
    (tmp_path / "config.json").write_text(json.dumps({"webhook_urls": [hook], "webhook_secret": SECRET,
                                                      "webhook_retry_initial_s": 0.1}))
    server = ApiServer(tmp_path).start()
    server.app.webhooks.start()
    try:
        request = urllib.request.Request(server.url + "/telemetry/webhooks/test", method="POST")
        with urllib.request.urlopen(request) as response:
            assert response.status == 202
            queued = json.loads(response.read())["queued"]
        assert [q["target"] for q in queued] == [f"http://***@127.0.0.1:{receiver.port}/hook/***?***"]
        (got,) = receiver.wait_for(lambda r: len(r) == 1)
        assert got.json["event"] == "test" and got.event_id == queued[0]["event_id"] and got.signed_with(SECRET)
        assert got.headers["Authorization"].startswith("Basic ")  # urllib sends the URL's credentials
        with urllib.request.urlopen(server.url + "/telemetry/health") as response:
            text = response.read().decode()
        assert "hunter2" not in text and "SECRETPATH" not in text and "token=abc" not in text and SECRET not in text
        health = json.loads(text)["webhooks"]
        assert health["targets"][0]["target"] == queued[0]["target"]
    finally:
        server.app.webhooks.stop()
        server.stop()


def test_the_test_route_says_when_no_webhook_is_configured(tmp_path):
    from api_server import ApiServer

    server = ApiServer(tmp_path).start()
    try:
        request = urllib.request.Request(server.url + "/telemetry/webhooks/test", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request)
        assert refused.value.code == 400 and "TELEMETRY_WEBHOOK_URLS" in json.loads(refused.value.read())["error"]
    finally:
        server.stop()


def test_a_recommendation_that_opens_is_sent_to_the_targets_that_want_recommendations(tmp_path, receiver):
    """Through the watcher's assembly: runs stored by the recorder, analysis after each, a webhook per opened
    recommendation. The runs are a history from long ago (as a watcher's backfill finds it): their failures are
    old news and send nothing, the recommendation drawn from them is new."""
    from test_analysis_rules import _fails_in_last_20

    from telemetry.watch.app import WatchOptions, build

    (tmp_path / "config.json").write_text(json.dumps({"webhook_secret": SECRET, "webhook_urls": [
        {"url": receiver.url("/advice"), "events": ["recommendation"]},
        {"url": receiver.url("/failures"), "events": ["failed"]}]}))
    app = build(WatchOptions(data_dir=str(tmp_path), comfyui_url="http://127.0.0.1:9"))
    app.recorder.start()
    app.webhooks.start()
    try:
        runs = _fails_in_last_20("wf-advice", 5)
        for run in runs:
            assert app.recorder.submit(lambda run=run: [run])
        assert app.recorder.flush(30)
        assert runs[-1].finished_at_ms < time.time() * 1000 - 86_400_000
        got = receiver.wait_for(lambda r: any(x.path == "/advice" for x in r), timeout=30)
        advice = [r for r in got if r.path == "/advice"]
        assert all(r.json["event"] == "recommendation" and r.signed_with(SECRET) for r in advice)
        kinds = {r.json["recommendation"]["kind"] for r in advice}
        assert "low_success_rate" in kinds
        rec = next(r.json["recommendation"] for r in advice if r.json["recommendation"]["kind"] == "low_success_rate")
        assert rec["message"] and rec["severity"] and rec["evidence_run_ids"]
        time.sleep(QUIET_S)
        assert not [r for r in receiver.received if r.path == "/failures"]
        # the same failure today is news
        app.recorder.submit(lambda: [failed_run("run-today")])
        assert app.recorder.flush(30)
        got = receiver.wait_for(lambda r: any(x.path == "/failures" for x in r))
        assert [r.json["run"]["run_id"] for r in got if r.path == "/failures"] == ["run-today"]
    finally:
        app.webhooks.stop()
        app.recorder.stop()
        app.store.shutdown()


def test_webhook_urls_that_cannot_be_read_are_reported_without_their_tokens(tmp_path):
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps({"webhook_urls": {"url": "https://hooks.slack.com/services/T/B/TOKEN123"},
                                       "webhook_secret": SECRET}))
    config = load_config(str(tmp_path), environ={"TELEMETRY_CONFIG": str(config_file)})
    (warning,) = config.warning_dicts()
    assert warning["key"] == "webhook_urls" and "TOKEN123" not in json.dumps(warning)
    ok = load_config(str(tmp_path), environ={"TELEMETRY_CONFIG": str(tmp_path / "none.json"),
                                              "TELEMETRY_WEBHOOK_URLS": "https://hooks.slack.com/services/T/B/TOK9"})
    assert ok.to_dict()["webhook_urls"] == ["https://hooks.slack.com/services/***"]


def test_the_test_route_is_protected_like_config_writes(tmp_path, receiver):
    import asyncio

    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from telemetry.api.security import Protection
    from telemetry.webhooks.routes import add_webhook_routes

    token = "webhook-admin-token"
    pack = Pack(tmp_path, sqlite_url(str(tmp_path / "t.db")), {"TELEMETRY_WEBHOOK_URLS": receiver.url(),
                                                               "TELEMETRY_WEBHOOK_SECRET": SECRET, **FAST})

    def app(protection: Protection) -> web.Application:
        routes = web.RouteTableDef()
        add_webhook_routes(routes, lambda: pack.webhooks, protection)
        application = web.Application()
        application.add_routes(routes)
        return application

    async def statuses(application: web.Application, requests: list[dict]) -> list[tuple[int, dict]]:
        async with TestClient(TestServer(application)) as client:
            out = []
            for headers in requests:
                resp = await client.post("/telemetry/webhooks/test", headers=headers)
                out.append((resp.status, await resp.json()))
            return out

    try:
        exposed = asyncio.run(statuses(app(Protection(admin_token=token, exposed=lambda: True)), [
            {}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Bearer {token}"},
            {"Authorization": f"Bearer {token}", "Origin": "http://evil.example"}]))
        assert [s for s, _ in exposed] == [401, 401, 202, 403]
        assert "cross-origin" in exposed[3][1]["error"]
        unset = asyncio.run(statuses(app(Protection(admin_token=None, exposed=lambda: True)), [{}]))
        assert unset[0][0] == 403 and "TELEMETRY_ADMIN_TOKEN" in unset[0][1]["error"]
        (got,) = receiver.wait_for(lambda r: len(r) == 1)  # only the authorised request queued an event
        assert got.json["event"] == "test"
    finally:
        pack.stop()


def test_machines_sharing_one_database_send_only_their_own_events(tmp_path):
    receiver = Receiver()  # down while render-1 records
    url = sqlite_url(str(tmp_path / "shared.db"))
    env = {"TELEMETRY_WEBHOOK_URLS": receiver.url(), "TELEMETRY_WEBHOOK_SECRET": SECRET, **FAST}
    first = Pack(tmp_path, url, env, instance="render-1:8188")
    first.record(failed_run("run-of-render-1"))
    assert _wait(lambda: first.health()["targets"][0]["last_error"])
    first.stop()
    receiver.start()
    other = Pack(tmp_path, url, env, instance="render-2:8188")
    try:
        other.record(failed_run("run-of-render-2"))
        receiver.wait_for(lambda r: len(r) >= 1)
        time.sleep(QUIET_S)
        assert [r.json["run"]["run_id"] for r in receiver.received] == ["run-of-render-2"]
        assert other.health()["pending"] == 0 and other.health()["delivered"] == 1
    finally:
        other.stop()
    again = Pack(tmp_path, url, env, instance="render-1:8188")
    try:
        receiver.wait_for(lambda r: len(r) >= 2)
        assert sorted(r.json["run"]["run_id"] for r in receiver.received) == ["run-of-render-1", "run-of-render-2"]
    finally:
        again.stop()
        receiver.stop()


def test_a_webhook_urls_value_of_the_wrong_shape_says_what_is_expected(tmp_path):
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps({"webhook_urls": 42}))
    (warning,) = load_config(str(tmp_path), environ={"TELEMETRY_CONFIG": str(config_file)}).warning_dicts()
    assert warning["key"] == "webhook_urls" and "a comma list of URLs or a list of targets" in warning["message"]


def test_a_receiver_slower_than_the_timeout_is_retried(tmp_path):
    receiver = Receiver(delays_s=[1.0]).start()  # twice the timeout
    pack = Pack(tmp_path, sqlite_url(str(tmp_path / "t.db")), {
        "TELEMETRY_WEBHOOK_URLS": receiver.url(), "TELEMETRY_WEBHOOK_SECRET": SECRET, **FAST,
        "TELEMETRY_WEBHOOK_TIMEOUT_S": "0.5"})
    try:
        pack.record(failed_run())
        got = receiver.wait_for(lambda r: len(r) == 2)  # the first attempt is cut at 0.5 s, then retried
        assert got[0].event_id == got[1].event_id
        assert _wait(lambda: pack.health()["delivered"] == 1)
        assert "timed out" in pack.health()["targets"][0]["last_error"]
    finally:
        pack.stop()
        receiver.stop()
