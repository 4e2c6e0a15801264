"""The one validated configuration: the environment, the config file (with its "analysis" section) and
`PUT /telemetry/config` read values the same way; what cannot be used is a warning that says why, shown in
`/telemetry/health`; nothing in a config raises, and a config file that does not parse is never overwritten."""

from __future__ import annotations

import asyncio
import json
import os
import stat

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from telemetry.analysis.config import AnalysisConfig
from telemetry.analysis.service import AnalysisService
from telemetry.api.analysis_routes import add_analysis_routes
from telemetry.api.routes import add_core_routes
from telemetry.config import load_config
from telemetry.model import Run
from telemetry.recorder import Recorder
from telemetry.service import TelemetryService
from telemetry.store.database import sqlite_url
from telemetry.store.store import Store


def write_config(tmp_path, data) -> str:
    path = tmp_path / "config.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return str(path)


def test_numbers_and_booleans_written_as_strings_are_read_as_such(tmp_path):
    write_config(tmp_path, {"queue_max_events": "50000", "enabled": "false", "retention_days": "7.5",
                            "buffer_max_runs": " 20 ", "analysis": {"duration_threshold_ms": "90000"}})
    config = load_config(str(tmp_path), environ={})
    assert config.queue_max_events == 50_000 and isinstance(config.queue_max_events, int)
    assert config.enabled is False
    assert config.retention_days == 7.5 and config.buffer_max_runs == 20
    assert config.analysis.duration_threshold_ms == 90_000.0
    assert config.warnings == []


@pytest.mark.parametrize("raw,expected", [("false", False), ("0", False), ("off", False), ("no", False),
                                          ("true", True), ("1", True), ("yes", True)])
def test_enabled_from_the_environment(tmp_path, raw, expected):
    assert load_config(str(tmp_path), environ={"TELEMETRY_ENABLED": raw}).enabled is expected


def test_the_environment_wins_over_the_file(tmp_path):
    write_config(tmp_path, {"instance": "from-file", "gpu_sample_interval_ms": 250, "retention_max_runs": 10})
    config = load_config(str(tmp_path), environ={"TELEMETRY_INSTANCE": "from-env",
                                                  "TELEMETRY_RETENTION_MAX_RUNS": "null"})
    assert (config.instance, config.gpu_sample_interval_ms, config.retention_max_runs) == ("from-env", 250, None)


def test_an_unusable_value_is_a_warning_naming_key_value_expectation_and_default(tmp_path):
    path = write_config(tmp_path, {"queue_max_events": "lots", "buffer_max_runs": -3, "enabled": "maybe",
                                   "colour": "red", "analysis": {"baseline_factor": 0, "history_runs": "300"}})
    config = load_config(str(tmp_path), environ={"TELEMETRY_GPU_SAMPLE_INTERVAL_MS": "fast"})
    assert (config.queue_max_events, config.buffer_max_runs, config.enabled) == (50_000, 10_000, True)
    assert (config.analysis.baseline_factor, config.analysis.history_runs) == (1.5, 300)
    assert config.gpu_sample_interval_ms == 100
    messages = {w.key: w.message for w in config.warnings}
    assert messages["queue_max_events"] == (f'config file {path}: queue_max_events = "lots" cannot be used '
                                            "(expected an integer between 1 and 4611686018427387904); using 50000")
    assert "buffer_max_runs = -3" in messages["buffer_max_runs"] and messages["buffer_max_runs"].endswith("10000")
    assert '"maybe"' in messages["enabled"] and "true or false" in messages["enabled"]
    assert "unknown key 'colour'" in messages["colour"]
    assert messages["analysis.baseline_factor"].endswith(
        "analysis.baseline_factor = 0 cannot be used (expected a number between 1 and 1000); using 1.5")
    assert messages["gpu_sample_interval_ms"].startswith('environment: gpu_sample_interval_ms = "fast"')


@pytest.mark.parametrize("content", ["{broken", "[1, 2]", "null", "\"text\"", "\udcff".encode(
    "utf-8", "surrogateescape").decode("latin-1"), ""])
def test_a_config_file_that_does_not_parse_gives_defaults_and_a_warning(tmp_path, content):
    write_config(tmp_path, content)
    config = load_config(str(tmp_path), environ={"TELEMETRY_INSTANCE": "box"})
    assert config.instance == "box" and config.queue_max_events == 50_000 and config.enabled is True
    assert config.analysis == AnalysisConfig()
    (warning,) = config.warnings
    assert warning.kind == "file" and "config.json" in warning.message
    assert "using the defaults and the environment" in warning.message


def test_cross_field_problems_fall_back_to_consistent_values(tmp_path):
    write_config(tmp_path, {"retry_initial_s": 30, "retry_max_s": 5,
                            "analysis": {"success_rate_threshold": 0.3}})
    config = load_config(str(tmp_path), environ={})
    assert (config.retry_initial_s, config.retry_max_s) == (1.0, 60.0)
    assert (config.analysis.success_rate_threshold, config.analysis.success_rate_critical) == (0.8, 0.5)
    assert {w.key for w in config.warnings} == {"retry_max_s", "analysis.success_rate_critical"}


def test_the_admin_token_is_never_shown(tmp_path):
    write_config(tmp_path, {"admin_token": "short"})
    config = load_config(str(tmp_path), environ={})
    assert config.admin_token is None
    assert "short" not in json.dumps([w.to_dict() for w in config.warnings])
    config = load_config(str(tmp_path), environ={"TELEMETRY_ADMIN_TOKEN": "a-long-enough-secret"})
    assert config.admin_token == "a-long-enough-secret"
    assert "a-long-enough-secret" not in json.dumps(config.to_dict()) and config.to_dict()["admin_token_set"]


def test_a_queue_bound_written_as_a_string_does_not_break_the_hand_off(tmp_path):
    """`"queue_max_events": "50000"` used to reach the recorder as a string: every hand-off on ComfyUI's worker
    raised and every run was lost."""
    write_config(tmp_path, {"queue_max_events": "50000", "buffer_max_runs": "100", "retry_initial_s": "0.5"})
    config = load_config(str(tmp_path), environ={})
    store = Store(sqlite_url(str(tmp_path / "t.db")))
    recorder = Recorder(store, instance="t:1", queue_max=config.queue_max_events, buffer_max=config.buffer_max_runs,
                        retry_initial_s=config.retry_initial_s, retry_max_s=config.retry_max_s)
    recorder.start()
    try:
        assert recorder.submit(lambda: [Run("r1", "success", started_at_ms=1)])
        assert recorder.flush() and store.get_run("r1") is not None
    finally:
        recorder.stop()


def _serve(tmp_path, config_path: str | None, warnings: list | None = None):
    store = Store(sqlite_url(str(tmp_path / "api.db")))
    store.open()
    config = load_config(str(tmp_path), environ={"TELEMETRY_CONFIG": config_path} if config_path else {})
    service = TelemetryService(store, None, config_warnings=warnings if warnings is not None
                               else config.warning_dicts())
    analysis = AnalysisService(store, config_path=config.path, config=config.analysis)
    routes = web.RouteTableDef()
    add_core_routes(routes, lambda: service)
    add_analysis_routes(routes, lambda: analysis, list)
    app = web.Application()
    app.add_routes(routes)
    return store, app


def call(app, requests):
    async def go():
        async with TestClient(TestServer(app)) as client:
            out = []
            for method, path, body in requests:
                kwargs = {} if body is None else {"json": body}
                resp = await client.request(method, path, **kwargs)
                out.append((resp.status, await resp.json()))
            return out
    return asyncio.run(go())


def test_health_lists_the_config_warnings(tmp_path):
    path = write_config(tmp_path, {"queue_max_events": "lots", "analysis": {"history_runs": -1}})
    store, app = _serve(tmp_path, path)
    ((status, health),) = call(app, [("GET", "/telemetry/health", None)])
    store.close()
    assert status == 200
    keys = {w["key"]: w for w in health["config_warnings"]}
    assert set(keys) == {"queue_max_events", "analysis.history_runs"}
    assert keys["queue_max_events"]["value"] == '"lots"' and keys["queue_max_events"]["used"] == 50_000
    assert "an integer between 20 and 5000" in keys["analysis.history_runs"]["message"]


def test_put_config_reads_values_like_the_file_and_keeps_the_other_keys(tmp_path):
    path = write_config(tmp_path, {"database_url": "sqlite:///keep-me.db", "analysis": {"history_runs": 300}})
    store, app = _serve(tmp_path, path)
    (s1, changed), (s2, bad) = call(app, [
        ("PUT", "/telemetry/config", {"duration_threshold_ms": "90000", "retry_min_attempts": "4"}),
        ("PUT", "/telemetry/config", {"retry_min_attempts": True}),
    ])
    store.close()
    assert s1 == 200 and changed["duration_threshold_ms"] == 90_000 and changed["retry_min_attempts"] == 4
    assert changed["history_runs"] == 300
    assert (s2, bad) == (400, {"error": "'retry_min_attempts' must be an integer between 1 and 1000, got true"})
    saved = json.loads(open(path, encoding="utf-8").read())
    assert saved["database_url"] == "sqlite:///keep-me.db" and saved["analysis"]["retry_min_attempts"] == 4
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_config(str(tmp_path), environ={"TELEMETRY_CONFIG": path}).analysis.duration_threshold_ms == 90_000


@pytest.mark.parametrize("content", ['{"database_url": "postgresql://db/telemetry", oops', "[1]"])
def test_put_config_never_overwrites_a_file_it_cannot_parse(tmp_path, content):
    path = write_config(tmp_path, content)
    store, app = _serve(tmp_path, path)
    ((status, body), (after_status, current)) = call(app, [
        ("PUT", "/telemetry/config", {"duration_threshold_ms": 90_000}),
        ("GET", "/telemetry/config", None),
    ])
    store.close()
    assert status == 409
    assert body["error"].startswith(f"the config file {path} ") and "left unchanged" in body["error"]
    assert open(path, encoding="utf-8").read() == content
    assert after_status == 200 and current["duration_threshold_ms"] == 60_000.0


def test_put_config_creates_a_missing_file_owner_only(tmp_path):
    path = str(tmp_path / "new-dir" / "config.json")
    store, app = _serve(tmp_path, path)
    ((status, _),) = call(app, [("PUT", "/telemetry/config", {"backtest_runs": 12})])
    store.close()
    assert status == 200 and json.loads(open(path).read()) == {"analysis": {**AnalysisConfig().to_dict(),
                                                                            "backtest_runs": 12}}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700


def test_an_unsupported_database_url_falls_back_to_sqlite_with_a_warning_that_hides_the_password(tmp_path):
    config = load_config(str(tmp_path), environ={"TELEMETRY_DATABASE_URL": "postgress://render:hunter2@db/t"})
    assert config.database_url is None  # the SQLite file in the data dir: runs are still recorded
    (warning,) = config.warning_dicts()
    assert warning["key"] == "database_url" and "hunter2" not in json.dumps(warning)
    assert "postgresql://user:password@host:5432/database" in warning["message"]
    good = load_config(str(tmp_path), environ={"TELEMETRY_DATABASE_URL": "postgresql://render:hunter2@db/t"})
    assert good.database_url == "postgresql://render:hunter2@db/t" and good.warnings == []
