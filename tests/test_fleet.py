"""Fleets without ComfyUI: the one assembly (plugin, watcher and serve read the config file alike), instance
heartbeats from the recorder thread, and `python -m telemetry serve` as a real process over a real SQLite file
(the token, the page, the OpenAPI description of its routes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from comfy_harness import free_port

from telemetry.api.openapi import described_routes
from telemetry.app import assemble
from telemetry.config import load_config
from telemetry.instances import OFFLINE_AFTER_MS, Heartbeat, list_instances
from telemetry.model import Run
from telemetry.serve import ServeOptions, make_serve_app
from telemetry.serve import build as build_serve
from telemetry.store.database import sqlite_url
from telemetry.store.store import Store
from telemetry.watch.app import WatchOptions
from telemetry.watch.app import build as build_watch

ROOT = Path(__file__).resolve().parent.parent


def _write_config(data_dir: Path, analysis: dict) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "config.json").write_text(json.dumps({"analysis": analysis}))


def test_the_watcher_and_serve_use_the_config_files_analysis_section(tmp_path, monkeypatch):
    """The copies of the assembly drifted: the watcher ignored the config file's analysis section. All paths
    now build the analysis the same way, from the same file."""
    monkeypatch.delenv("TELEMETRY_CONFIG", raising=False)
    monkeypatch.delenv("TELEMETRY_DATABASE_URL", raising=False)
    _write_config(tmp_path, {"duration_threshold_ms": 1234, "success_rate_threshold": 0.55})
    watch = build_watch(WatchOptions(data_dir=str(tmp_path), comfyui_url="http://127.0.0.1:9"))
    serve = build_serve(ServeOptions(data_dir=str(tmp_path)))
    try:
        for app in (watch.app, serve):
            assert app is not None and app.analysis is not None
            config = app.analysis.get_config()
            assert config["duration_threshold_ms"] == 1234 and config["success_rate_threshold"] == 0.55
            assert app.analysis.config_path == str(tmp_path / "config.json")
    finally:
        watch.store.close()
        serve.store.close()


def test_a_recording_app_writes_heartbeats_from_the_recorder_thread(tmp_path):
    config = load_config(str(tmp_path), environ={})
    threads: list[str] = []

    def info() -> dict:
        threads.append(threading.current_thread().name)
        return {"comfyui_version": "0.3.75", "frontend_version": "1.35.9", "gpu_name": "NVIDIA H200",
                "queue_depth": 2}

    app = assemble(config, source="plugin", url=sqlite_url(str(tmp_path / "t.db")), instance="gpu-a:8188",
                   heartbeat_info=info)
    app.recorder.start()
    try:
        deadline = time.monotonic() + 20
        while app.heartbeat.beats == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert app.heartbeat.beats == 1
        listed = app.service.instances()["instances"]
    finally:
        app.recorder.stop()
        app.store.shutdown()
    assert threads and all(name != threading.main_thread().name for name in threads)
    (row,) = listed
    assert row["instance"] == "gpu-a:8188" and row["online"] is True and row["source"] == "plugin"
    assert (row["comfyui_version"], row["frontend_version"], row["gpu_name"], row["queue_depth"]) == (
        "0.3.75", "1.35.9", "NVIDIA H200", 2)
    assert row["health"] == "ok" and row["pack_version"] and row["last_seen_ms"] > time.time() * 1000 - 60_000


def test_an_instance_not_seen_for_two_minutes_is_offline_and_one_beat_brings_it_back(tmp_path):
    store = Store(sqlite_url(str(tmp_path / "t.db")))
    store.open()
    clock = [0.0]
    beat = Heartbeat(store, "gpu-b:8188", "watcher", lambda: {"health": "ok"}, clock=lambda: clock[0])
    store.save_runs([Run(run_id="old-run", status="success", instance="before-heartbeats", started_at_ms=1)])
    assert beat.maybe_beat() and not beat.maybe_beat()  # every 30 s, not every call
    seen = store.heartbeats()[0]["last_seen_ms"]
    rows = {r["instance"]: r for r in list_instances(store, now=seen + OFFLINE_AFTER_MS - 1)}
    assert rows["gpu-b:8188"]["online"] is True
    assert rows["before-heartbeats"]["online"] is False and rows["before-heartbeats"]["runs"] == 1
    assert {r["instance"]: r["online"] for r in list_instances(store, now=seen + OFFLINE_AFTER_MS)} == {
        "before-heartbeats": False, "gpu-b:8188": False}
    clock[0] += 30
    assert beat.maybe_beat()
    assert len(store.heartbeats()) == 1  # the same row, updated
    store.close()


def test_serves_routes_are_exactly_the_described_ones_plus_the_page(tmp_path):
    from test_openapi import registered_routes

    app = build_serve(ServeOptions(data_dir=str(tmp_path)))
    try:
        registered = registered_routes(make_serve_app(app, "127.0.0.1", "a-token-123"))
    finally:
        app.store.close()
    own = {(m, p) for m, p in registered if p.startswith("/telemetry")}
    assert own == described_routes() and ("GET", "/telemetry/instances") in own
    assert registered - own - {(m, "/api" + p) for m, p in own} == {
        ("GET", "/"), ("GET", "/host/host.js"), ("GET", "/extensions/run-telemetry/telemetry.js"),
        ("GET", "/scripts/app.js"), ("GET", "/scripts/api.js")}


def _serve_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "telemetry", "serve", *args]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
    env.update(extra)
    return env


@pytest.fixture
def serve_cli(cli, monkeypatch):
    """`python -m telemetry serve ARGS` in this process (the `cli` fixture), for arguments it must refuse: a
    server that starts anyway fails the test instead of serving forever."""
    import telemetry.serve

    async def started(options):
        raise AssertionError(f"serve started with {options}")

    monkeypatch.setattr(telemetry.serve, "run_serve", started)
    return lambda *args: cli("serve", *args)


@pytest.mark.parametrize("listen", ["0.0.0.0:8199", "192.168.1.10:8199"])
def test_serve_refuses_to_listen_beyond_loopback_without_a_token(listen, tmp_path, serve_cli):
    out = serve_cli("--listen", listen, "--data-dir", str(tmp_path))
    assert out.returncode == 2
    assert "--token" in out.stderr and "TELEMETRY_TOKEN" in out.stderr and "Traceback" not in out.stderr


def _get(url: str, token: str | None = None) -> tuple[int, bytes, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def test_serve_with_a_token_needs_it_on_every_request_but_the_page(tmp_path):
    db = tmp_path / "fleet.db"
    store = Store(sqlite_url(str(db)))
    store.open()
    store.save_runs([Run(run_id="r1", status="success", instance="gpu-a:8188", started_at_ms=1_700_000_000_000)])
    store.close()
    port = free_port()
    token = "s3cret-token"
    process = subprocess.Popen(_serve_cmd("--listen", f"127.0.0.1:{port}", "--database-url", sqlite_url(str(db)),
                                          "--data-dir", str(tmp_path)),
                               cwd=ROOT, env=_env(TELEMETRY_TOKEN=token), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, _, _ = _get(base + "/")
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "serve did not start"
                time.sleep(0.2)
        assert status == 200
        for path in ("/telemetry/runs", "/api/telemetry/instances", "/telemetry/openapi.json"):
            status, body, headers = _get(base + path)
            assert status == 401 and "Bearer" in json.loads(body)["error"], path
            assert _get(base + path, "wrong-token")[0] == 401
        status, body, _ = _get(base + "/api/telemetry/runs", token)
        assert status == 200 and [r["run_id"] for r in json.loads(body)["runs"]] == ["r1"]
        status, body, _ = _get(base + "/telemetry/instances", token)
        assert [(i["instance"], i["online"]) for i in json.loads(body)["instances"]] == [("gpu-a:8188", False)]
        status, body, headers = _get(base + "/scripts/app.js")
        assert status == 200 and b"/host/host.js" in body and "javascript" in headers["Content-Type"]
        status, body, _ = _get(base + "/extensions/run-telemetry/telemetry.js")
        assert status == 200 and body == (ROOT / "web" / "dist" / "telemetry.js").read_bytes()
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert process.returncode == 0, output
    assert token not in output


def test_a_watcher_heartbeats_too_saying_whether_its_comfyui_answers(tmp_path, monkeypatch):
    monkeypatch.delenv("TELEMETRY_DATABASE_URL", raising=False)
    watch = build_watch(WatchOptions(data_dir=str(tmp_path), comfyui_url="http://127.0.0.1:9", instance="box-c"))
    watch.recorder.start()
    try:
        deadline = time.monotonic() + 20
        while watch.app.heartbeat.beats == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        (row,) = watch.service.instances()["instances"]
    finally:
        watch.recorder.stop()
        watch.store.shutdown()
    assert (row["instance"], row["source"], row["online"]) == ("box-c", "watcher", True)
    assert row["health"] == "degraded" and row["details"]["comfyui_url"] == "http://127.0.0.1:9"
    assert row["queue_depth"] == 0


@pytest.mark.parametrize(("args", "message"), [
    (["--listen", "abc:xyz"], "--listen must be HOST:PORT"),
    (["--token", "short"], "at least 8 characters"),
])
def test_serve_usage_errors_exit_2_with_a_message(args, message, tmp_path, serve_cli):
    out = serve_cli(*args, "--data-dir", str(tmp_path))
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("module", ["telemetry/capture/plugin.py", "telemetry/watch/app.py", "telemetry/serve.py"])
def test_the_app_is_assembled_in_one_place(module):
    """The plugin, the watcher and serve build store, recorder, service and analysis only through
    telemetry/app.py: a second copy of the assembly is what let the watcher drift from the plugin."""
    source = (ROOT / module).read_text()
    for constructor in ("Store(", "Recorder(", "TelemetryService(", "AnalysisService("):
        assert constructor not in source, f"{module} builds {constructor[:-1]} itself; use telemetry.app.assemble"
    assert "assemble(" in source
