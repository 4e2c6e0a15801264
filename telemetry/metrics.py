"""Prometheus metrics for fleets: counters kept in memory as runs are stored, so a scrape never scans the
database. Served as text exposition format 0.0.4 at /telemetry/metrics by the plugin and the watcher.

Counters start at zero with the process, as Prometheus expects (rate() handles restarts).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from .model import Run, RunStatus

DURATION_BUCKETS_S = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_MAX_WORKFLOW_SERIES = 200  # beyond this, workflows share the label "other" (bounded cardinality)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Mapping[str, Any]) -> str:
    inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in pairs.items() if v is not None)
    return "{" + inner + "}" if inner else ""


class RunMetrics:
    def __init__(self, instance: str | None, *, energy_price_per_kwh: float | None = None) -> None:
        self.instance = instance or "unknown"
        self.energy = _EnergyMetrics(energy_price_per_kwh)
        self._lock = threading.Lock()
        self._runs: dict[tuple[str, str], int] = {}
        self._frames: dict[str, int] = {}
        self._errors: dict[tuple[str, str], int] = {}
        self._buckets = [0] * (len(DURATION_BUCKETS_S) + 1)
        self._duration_sum_s = 0.0
        self._duration_count = 0
        self._last_gpu_peak: int | None = None
        self._last_ram_peak: int | None = None
        self._workflows: set[str] = set()

    def observe(self, run: Run) -> None:
        """Recorder listener: count a run once it is final."""
        if run.status not in RunStatus.STORED_FINAL:
            return
        workflow = run.workflow_name or "unknown"
        with self._lock:
            if workflow not in self._workflows and len(self._workflows) >= _MAX_WORKFLOW_SERIES:
                workflow = "other"
            self._workflows.add(workflow)
            key = (run.status, workflow)
            self._runs[key] = self._runs.get(key, 0) + 1
            self._frames[workflow] = self._frames.get(workflow, 0) + (run.frame_count or 0)
            if run.error is not None:
                error_key = (run.error.kind, run.error.node_type or "unknown")
                self._errors[error_key] = self._errors.get(error_key, 0) + 1
            if run.duration_ms is not None:
                seconds = run.duration_ms / 1000.0
                self._duration_sum_s += seconds
                self._duration_count += 1
                index = next((i for i, b in enumerate(DURATION_BUCKETS_S) if seconds <= b), len(DURATION_BUCKETS_S))
                self._buckets[index] += 1
            self._last_gpu_peak = run.gpu_peak_bytes if run.gpu_peak_bytes is not None else self._last_gpu_peak
            self._last_ram_peak = run.ram_peak_bytes if run.ram_peak_bytes is not None else self._last_ram_peak
            self.energy.observe(run, workflow)

    def render(self, health: Callable[[], Mapping[str, Any]] | None = None) -> str:
        inst = {"instance": self.instance}
        lines: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")

        with self._lock:
            family("comfyui_telemetry_runs_total", "counter", "Runs finished, by status and workflow.")
            for (status, workflow), n in sorted(self._runs.items()):
                labels = _labels({**inst, "status": status, "workflow": workflow})
                lines.append(f"comfyui_telemetry_runs_total{labels} {n}")
            family("comfyui_telemetry_frames_total", "counter", "Frames produced (images and video frames).")
            for workflow, n in sorted(self._frames.items()):
                lines.append(f"comfyui_telemetry_frames_total{_labels({**inst, 'workflow': workflow})} {n}")
            family("comfyui_telemetry_errors_total", "counter", "Failed runs, by error kind and failing node type.")
            for (kind, node_type), n in sorted(self._errors.items()):
                labels = _labels({**inst, "kind": kind, "node_type": node_type})
                lines.append(f"comfyui_telemetry_errors_total{labels} {n}")
            family("comfyui_telemetry_run_duration_seconds", "histogram", "Run duration.")
            cumulative = 0
            for bound, count in zip((*DURATION_BUCKETS_S, float("inf")), self._buckets, strict=True):
                cumulative += count
                le = "+Inf" if bound == float("inf") else repr(float(bound))
                lines.append(f"comfyui_telemetry_run_duration_seconds_bucket{_labels({**inst, 'le': le})} {cumulative}")
            lines.append(f"comfyui_telemetry_run_duration_seconds_sum{_labels(inst)} {self._duration_sum_s:.6f}")
            lines.append(f"comfyui_telemetry_run_duration_seconds_count{_labels(inst)} {self._duration_count}")
            for name, value, help_text in (
                ("comfyui_telemetry_last_run_gpu_peak_bytes", self._last_gpu_peak, "GPU peak of the last run."),
                ("comfyui_telemetry_last_run_ram_peak_bytes", self._last_ram_peak, "RAM peak of the last run."),
            ):
                if value is not None:
                    family(name, "gauge", help_text)
                    lines.append(f"{name}{_labels(inst)} {value}")
            self.energy.render(lines, inst, family)
        if health is not None:
            h = health()
            for name, key, help_text in (
                ("comfyui_telemetry_buffered_runs", "buffered", "Runs waiting in memory for the database."),
                ("comfyui_telemetry_dropped_runs", "dropped", "Run records that could not be kept."),
                ("comfyui_telemetry_queue_depth", "queue_depth", "Records waiting for the recorder thread."),
            ):
                family(name, "gauge", help_text)
                lines.append(f"{name}{_labels(inst)} {int(h.get(key) or 0)}")
            family("comfyui_telemetry_database_up", "gauge", "1 when the telemetry database accepts writes.")
            lines.append(f"comfyui_telemetry_database_up{_labels(inst)} {1 if h.get('database_ready') else 0}")
        return "\n".join(lines) + "\n"


class _EnergyMetrics:
    """GPU energy and its cost, by workflow (runs with an energy figure only; kept under RunMetrics' lock)."""

    def __init__(self, price_per_kwh: float | None) -> None:
        self.price_per_kwh = price_per_kwh
        self.joules: dict[str, float] = {}
        self.last_run_j: float | None = None

    def observe(self, run: Run, workflow: str) -> None:
        if run.energy_j is None:
            return
        self.joules[workflow] = self.joules.get(workflow, 0.0) + run.energy_j
        self.last_run_j = run.energy_j

    def render(self, lines: list[str], inst: Mapping[str, str], family: Callable[[str, str, str], None]) -> None:
        family("comfyui_telemetry_energy_joules_total", "counter", "GPU energy of finished runs (ComfyUI's GPU).")
        for workflow, joules in sorted(self.joules.items()):
            lines.append(f"comfyui_telemetry_energy_joules_total{_labels({**inst, 'workflow': workflow})} {joules:.3f}")
        if self.price_per_kwh is not None:
            family("comfyui_telemetry_energy_cost_total", "counter",
                   "What that energy cost at the configured energy_price_per_kwh.")
            for workflow, joules in sorted(self.joules.items()):
                cost = joules / 3_600_000.0 * self.price_per_kwh
                lines.append(f"comfyui_telemetry_energy_cost_total{_labels({**inst, 'workflow': workflow})} {cost:.6f}")
        if self.last_run_j is not None:
            family("comfyui_telemetry_last_run_energy_joules", "gauge", "GPU energy of the last run.")
            lines.append(f"comfyui_telemetry_last_run_energy_joules{_labels(inst)} {self.last_run_j:.3f}")
