"""The Prometheus exposition (prometheus_client), parsed back with prometheus_client's own parsers: the names by
Prometheus conventions, the `comfyui_instance` label, bounded labels, per-app registries, content negotiation.
The runs go through the real recorder into a real SQLite file and are served by the real REST app."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from contextlib import contextmanager

import prometheus_client
from api_server import ApiServer
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from telemetry.metrics import DURATION_BUCKETS_S, INSTANCE_LABEL, MAX_WORKFLOW_SERIES, RunMetrics, exposition
from telemetry.model import Run, RunError

PROM_TEXT = "text/plain; version=0.0.4; charset=utf-8"
# What Prometheus 2.x sends when it scrapes
PROM_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
               "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


def sample_runs() -> list[Run]:
    oom = RunError("4", "KSampler", "OutOfMemoryError", "CUDA out of memory", kind="oom")
    return [
        Run("r1", "success", started_at_ms=1, duration_ms=1500.0, workflow_name="portrait", frame_count=4,
            gpu_peak_bytes=3 << 30, ram_peak_bytes=5 << 30, energy_j=7200.0),
        Run("r2", "success", started_at_ms=2, duration_ms=40_000.0, workflow_name="portrait", frame_count=2,
            energy_j=3600.0),
        Run("r3", "failed", started_at_ms=3, duration_ms=250.0, workflow_name='quote " and \\ slash', error=oom),
        Run("r4", "cancelled", queued_at_ms=4),  # never ran: no duration
        Run("r5", "running", started_at_ms=5),  # not final: not counted
    ]


def parse(text: str) -> dict[str, list]:
    """family name -> its samples."""
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def families(text: str) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(text)}


def value(samples: list, name: str, **labels: str) -> float:
    (match,) = [s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    return match


def observed(instance: str = "studio-a", **kwargs) -> RunMetrics:
    metrics = RunMetrics(instance, **kwargs)
    for run in sample_runs():
        metrics.observe(run)
    return metrics


def test_the_exposition_has_every_metric_under_conventional_names():
    metrics = observed(energy_price_per_kwh=0.30,
                       health=lambda: {"buffered": 2, "queue_depth": 1, "dropped": 3, "database_ready": True})
    body, content_type = exposition(metrics.registry)
    assert content_type == PROM_TEXT
    text = body.decode()
    assert families(text) == {
        "comfyui_telemetry_runs": "counter", "comfyui_telemetry_frames": "counter",
        "comfyui_telemetry_errors": "counter", "comfyui_telemetry_run_duration_seconds": "histogram",
        "comfyui_telemetry_last_run_gpu_peak_bytes": "gauge", "comfyui_telemetry_last_run_ram_peak_bytes": "gauge",
        "comfyui_telemetry_energy_joules": "counter", "comfyui_telemetry_last_run_energy_joules": "gauge",
        "comfyui_telemetry_energy_cost": "counter", "comfyui_telemetry_recorder_buffered_runs": "gauge",
        "comfyui_telemetry_recorder_queue_depth": "gauge", "comfyui_telemetry_recorder_dropped_runs": "counter",
        "comfyui_telemetry_database_up": "gauge",
        # prometheus_client's own counterpart of each counter and histogram: when its series began
        **{f"comfyui_telemetry_{n}_created": "gauge" for n in ("runs", "frames", "errors", "run_duration_seconds",
                                                               "energy_joules", "energy_cost")},
    }
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    assert all(s.labels[INSTANCE_LABEL] == "studio-a" and "instance" not in s.labels for s in samples)
    assert not any("run_id" in s.labels or "r1" in s.labels.values() for s in samples)  # no run ids as labels
    m = parse(text)
    runs = m["comfyui_telemetry_runs"]
    assert value(runs, "comfyui_telemetry_runs_total", status="success", workflow="portrait") == 2
    assert value(runs, "comfyui_telemetry_runs_total", status="failed", workflow='quote " and \\ slash') == 1
    assert value(runs, "comfyui_telemetry_runs_total", status="cancelled", workflow="unknown") == 1
    assert not [s for s in runs if s.labels.get("status") == "running"]
    assert value(m["comfyui_telemetry_frames"], "comfyui_telemetry_frames_total", workflow="portrait") == 6
    assert value(m["comfyui_telemetry_errors"], "comfyui_telemetry_errors_total", kind="oom",
                 node_type="KSampler") == 1
    hist = m["comfyui_telemetry_run_duration_seconds"]
    assert value(hist, "comfyui_telemetry_run_duration_seconds_count") == 3
    assert value(hist, "comfyui_telemetry_run_duration_seconds_sum") == 41.75
    assert [s.labels["le"] for s in hist if s.name.endswith("_bucket")] == [
        *(str(float(b)) for b in DURATION_BUCKETS_S), "+Inf"]
    assert value(hist, "comfyui_telemetry_run_duration_seconds_bucket", le="0.5") == 1
    assert value(hist, "comfyui_telemetry_run_duration_seconds_bucket", le="2.0") == 2
    assert value(hist, "comfyui_telemetry_run_duration_seconds_bucket", le="60.0") == 3
    assert value(m["comfyui_telemetry_last_run_gpu_peak_bytes"], "comfyui_telemetry_last_run_gpu_peak_bytes") == 3 << 30
    assert value(m["comfyui_telemetry_last_run_ram_peak_bytes"], "comfyui_telemetry_last_run_ram_peak_bytes") == 5 << 30
    assert value(m["comfyui_telemetry_energy_joules"], "comfyui_telemetry_energy_joules_total",
                 workflow="portrait") == 10800.0
    assert abs(value(m["comfyui_telemetry_energy_cost"], "comfyui_telemetry_energy_cost_total",
                     workflow="portrait") - 0.0009) < 1e-12
    assert value(m["comfyui_telemetry_last_run_energy_joules"], "comfyui_telemetry_last_run_energy_joules") == 3600.0
    assert value(m["comfyui_telemetry_recorder_buffered_runs"], "comfyui_telemetry_recorder_buffered_runs") == 2
    assert value(m["comfyui_telemetry_recorder_queue_depth"], "comfyui_telemetry_recorder_queue_depth") == 1
    assert value(m["comfyui_telemetry_recorder_dropped_runs"], "comfyui_telemetry_recorder_dropped_runs_total") == 3
    assert value(m["comfyui_telemetry_database_up"], "comfyui_telemetry_database_up") == 1


def test_before_any_run_the_histogram_is_at_zero_and_last_run_gauges_have_no_series():
    m = parse(exposition(RunMetrics(None).registry)[0].decode())
    assert value(m["comfyui_telemetry_run_duration_seconds"], "comfyui_telemetry_run_duration_seconds_count",
                 comfyui_instance="unknown") == 0
    assert m["comfyui_telemetry_runs"] == [] and m["comfyui_telemetry_last_run_gpu_peak_bytes"] == []
    assert "comfyui_telemetry_energy_cost" not in m  # no price, no cost
    assert "comfyui_telemetry_database_up" not in m  # no recorder (serve): no recorder gauges


def test_workflow_labels_are_capped_and_the_rest_share_other():
    metrics = RunMetrics("i")
    for n in range(MAX_WORKFLOW_SERIES + 25):
        metrics.observe(Run(f"r{n}", "success", duration_ms=10.0, workflow_name=f"wf-{n}"))
    metrics.observe(Run("again", "success", workflow_name="wf-0"))  # a known workflow keeps its own series
    runs = parse(exposition(metrics.registry)[0].decode())["comfyui_telemetry_runs"]
    workflows = {s.labels["workflow"] for s in runs if s.name == "comfyui_telemetry_runs_total"}
    assert len(workflows) == MAX_WORKFLOW_SERIES + 1 and "other" in workflows
    assert value(runs, "comfyui_telemetry_runs_total", workflow="other") == 25
    assert value(runs, "comfyui_telemetry_runs_total", workflow="wf-0") == 2


def test_each_app_has_its_own_registry_and_the_default_one_is_untouched():
    first, second = observed("a"), RunMetrics("b")
    assert parse(exposition(second.registry)[0].decode())["comfyui_telemetry_runs"] == []
    assert {s.labels[INSTANCE_LABEL] for s in parse(exposition(first.registry)[0].decode())["comfyui_telemetry_runs"]
            } == {"a"}
    default = prometheus_client.generate_latest(prometheus_client.REGISTRY).decode()
    assert "comfyui_telemetry" not in default


def test_openmetrics_when_the_scraper_asks_for_it():
    body, content_type = exposition(observed().registry, PROM_ACCEPT)
    assert content_type.startswith("application/openmetrics-text")
    text = body.decode()
    assert text.endswith("# EOF\n") and "# UNIT comfyui_telemetry_run_duration_seconds seconds" in text
    by_name = {f.name: f for f in openmetrics_families(text)}
    assert by_name["comfyui_telemetry_runs"].type == "counter"
    assert by_name["comfyui_telemetry_run_duration_seconds"].unit == "seconds"
    success = [s for s in by_name["comfyui_telemetry_runs"].samples
               if s.name == "comfyui_telemetry_runs_total" and s.labels["status"] == "success"]
    assert [s.value for s in success] == [2]


@contextmanager
def recording_server(tmp_path, config: dict):
    """The REST app (the watcher's assembly, real SQLite) with its recorder running, on a loopback port."""
    (tmp_path / "config.json").write_text(json.dumps(config))
    server = ApiServer(tmp_path).start()
    recorder = server.app.recorder
    recorder.start()
    try:
        yield server
    finally:
        recorder.stop()
        server.stop()


def scrape(url: str, accept: str | None = None) -> tuple[str, str]:
    request = urllib.request.Request(url + "/telemetry/metrics", headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.headers["Content-Type"], response.read().decode()


def test_the_route_serves_recorded_runs_and_negotiates_the_format(tmp_path):
    with recording_server(tmp_path, {"instance": "studio-a", "energy_price_per_kwh": "0.30"}) as server:
        for run in sample_runs():
            assert server.app.recorder.submit(lambda run=run: [run])
        assert server.app.recorder.flush()
        content_type, text = scrape(server.url)
        assert content_type == PROM_TEXT
        m = parse(text)
        assert value(m["comfyui_telemetry_runs"], "comfyui_telemetry_runs_total", comfyui_instance="studio-a",
                     status="success", workflow="portrait") == 2
        assert value(m["comfyui_telemetry_database_up"], "comfyui_telemetry_database_up") == 1
        assert value(m["comfyui_telemetry_recorder_dropped_runs"],
                     "comfyui_telemetry_recorder_dropped_runs_total") == 0
        content_type, text = scrape(server.url, PROM_ACCEPT)
        assert content_type.startswith("application/openmetrics-text") and text.endswith("# EOF\n")
        assert "comfyui_telemetry_energy_cost" in {f.name for f in openmetrics_families(text)}


def test_a_scrape_never_queries_the_database(tmp_path, monkeypatch):
    """Issue 9: /metrics costs the same at a million runs as at one, because it reads only in-memory counters."""
    with recording_server(tmp_path, {"instance": "studio-a"}) as server:
        for run in sample_runs():
            assert server.app.recorder.submit(lambda run=run: [run])
        assert server.app.recorder.flush()
        server.app.recorder.stop()  # its heartbeat and retention are the only other database users here
        queries: list[str] = []
        real = server.app.store.db.execute_sql
        monkeypatch.setattr(server.app.store.db, "execute_sql",
                            lambda sql, *args, **kwargs: queries.append(sql) or real(sql, *args, **kwargs))
        _, text = scrape(server.url)
        assert value(parse(text)["comfyui_telemetry_runs"], "comfyui_telemetry_runs_total", status="success",
                     workflow="portrait") == 2
        assert queries == []
        with urllib.request.urlopen(server.url + "/telemetry/health", timeout=30) as response:
            health = json.loads(response.read())
        assert health["database"]["state"] == "ok" and queries  # the spy does see the queries of other routes


def test_without_prometheus_client_runs_are_still_recorded_and_health_says_why(tmp_path, monkeypatch):
    """prometheus_client fails to import (as when a ComfyUI lacks it): /metrics says so (404), /health reports it
    under `optional`, and runs are still recorded and served."""
    import sys

    for name in [n for n in sys.modules if n == "telemetry.metrics" or n.startswith("telemetry.metrics.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # `import prometheus_client` raises ImportError
    with recording_server(tmp_path, {"instance": "studio-a"}) as server:
        assert server.app.recorder.submit(lambda: [sample_runs()[0]])
        assert server.app.recorder.flush()
        try:
            urllib.request.urlopen(server.url + "/telemetry/metrics", timeout=30)
            raise AssertionError("the metrics route answered without prometheus_client")
        except urllib.error.HTTPError as err:
            assert err.code == 404 and "prometheus-client" in json.loads(err.read())["error"]
        with urllib.request.urlopen(server.url + "/telemetry/health", timeout=30) as response:
            reason = json.loads(response.read())["optional"]["metrics"]
        assert reason.startswith("ModuleNotFoundError: ") and "prometheus_client" in reason, reason
        with urllib.request.urlopen(server.url + "/telemetry/runs/r1", timeout=30) as response:
            assert json.loads(response.read())["status"] == "success"
