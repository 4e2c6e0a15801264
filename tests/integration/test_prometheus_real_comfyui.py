"""A real Prometheus (Debian's `prometheus`, on loopback, scraping every second) against a real ComfyUI with the
pack: the runs counter and the duration histogram come back through Prometheus's own HTTP API, labelled with
`comfyui_instance` beside Prometheus's own `instance` target label (never renamed to `exported_instance`)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from comfy_harness import failing_workflow, free_port, image_workflow, matrix_versions
from matrix import skip_or_fail

from telemetry.metrics import DURATION_BUCKETS_S

pytestmark = pytest.mark.comfyui

# One leg is enough (what is tested is the exposition, not ComfyUI): 0.3.75's, unless the matrix leaves it out.
LEG = "0.3.75" if "0.3.75" in matrix_versions() else matrix_versions()[0]
INSTANCE = "studio-a"
WAIT_S = 60.0


class Prometheus:
    def __init__(self, binary: str, base_dir: Path, target: str) -> None:
        self.port = free_port()
        self.base_dir = base_dir
        self.log_path = base_dir / "prometheus.log"
        config = base_dir / "prometheus.yml"  # JSON is YAML
        config.write_text(json.dumps({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "comfyui", "metrics_path": "/telemetry/metrics",
                                "static_configs": [{"targets": [target]}]}],
        }))
        self.args = [binary, f"--config.file={config}", f"--storage.tsdb.path={base_dir / 'tsdb'}",
                     f"--web.listen-address=127.0.0.1:{self.port}"]
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Prometheus:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.args, cwd=self.base_dir, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        wait_until(lambda: self._ready(), "Prometheus to be ready", self)
        return self

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            pytest.fail(f"prometheus exited with {self.process.returncode}:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, OSError):
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(20)

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        data = self.api("query", query=promql)
        assert data["resultType"] == "vector", data
        return data["result"]

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


def wait_until(check: Callable[[], Any], what: str, prometheus: Prometheus) -> Any:
    """Poll `check` until it returns something truthy (Prometheus scrapes every second); fail saying what never
    came, with Prometheus's log."""
    deadline = time.monotonic() + WAIT_S
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"waited {WAIT_S:.0f}s for {what}; prometheus log:\n{prometheus.log_tail()}")
        time.sleep(0.5)


@pytest.fixture
def prometheus_binary() -> str:
    binary = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
    if binary is None:
        skip_or_fail("no prometheus binary (scripts/provision.sh installs Debian's prometheus package)")
    return binary


def _bucket_bounds(seconds: float) -> tuple[float, float]:
    """The histogram bucket that holds `seconds`: (its lower bound, its upper bound)."""
    lower = 0.0
    for bound in DURATION_BUCKETS_S:
        if seconds <= bound:
            return lower, float(bound)
        lower = float(bound)
    return lower, math.inf


@pytest.mark.parametrize("comfy_tree", [LEG], indirect=True, ids=[f"comfy{LEG}"])
def test_a_real_prometheus_scrapes_the_runs_counter_and_the_duration_histogram(comfy_factory, prometheus_binary,
                                                                               tmp_path):
    comfy = comfy_factory(env={"TELEMETRY_INSTANCE": INSTANCE}).start()
    prometheus = Prometheus(prometheus_binary, tmp_path, f"127.0.0.1:{comfy.port}")
    try:
        prometheus.start()
        runs = [comfy.run_and_wait(image_workflow(prefix="prom", color=c))[2] for c in (11, 12)]
        runs.append(comfy.run_and_wait(failing_workflow())[2])
        assert [r["status"] for r in runs] == ["success", "success", "failed"]

        def counted() -> list[dict[str, Any]] | None:
            result = prometheus.query(f'comfyui_telemetry_runs_total{{comfyui_instance="{INSTANCE}"}}')
            by_status: dict[str, float] = {}
            for series in result:
                status = series["metric"]["status"]
                by_status[status] = by_status.get(status, 0.0) + float(series["value"][1])
            return result if by_status == {"success": 2.0, "failed": 1.0} else None

        series = wait_until(counted, "2 successful and 1 failed run in comfyui_telemetry_runs_total", prometheus)
        for s in series:
            labels = s["metric"]
            assert labels["comfyui_instance"] == INSTANCE
            assert labels["instance"] == f"127.0.0.1:{comfy.port}" and labels["job"] == "comfyui"
            assert "exported_instance" not in labels, labels
        assert prometheus.query('count({job="comfyui", exported_instance!=""})') == []
        (target,) = prometheus.api("targets")["activeTargets"]
        assert target["health"] == "up" and target["lastError"] == "", target

        timed = sorted(r["duration_ms"] / 1000.0 for r in runs if r["duration_ms"] is not None)
        selector = f'{{comfyui_instance="{INSTANCE}"}}'
        (count,) = wait_until(lambda: [s for s in prometheus.query(
            f"comfyui_telemetry_run_duration_seconds_count{selector}") if float(s["value"][1]) == len(timed)],
            f"{len(timed)} observations in the duration histogram", prometheus)
        assert "exported_instance" not in count["metric"]
        buckets = prometheus.query(f"comfyui_telemetry_run_duration_seconds_bucket{selector}")
        assert {float(s["metric"]["le"]) for s in buckets} == {*map(float, DURATION_BUCKETS_S), math.inf}
        (median,) = prometheus.query(
            f"histogram_quantile(0.5, sum by (le) (comfyui_telemetry_run_duration_seconds_bucket{selector}))")
        p50 = float(median["value"][1])
        # histogram_quantile interpolates inside the bucket that holds the observation of rank ceil(0.5 * count)
        lower, upper = _bucket_bounds(timed[math.ceil(0.5 * len(timed)) - 1])
        assert lower <= p50 <= upper, (p50, timed)
    finally:
        prometheus.stop()
