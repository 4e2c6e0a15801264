"""The run metrics: prometheus_client's metric objects in an app's own registry, told of each stored run.

Every series carries `comfyui_instance` (the TELEMETRY_INSTANCE of the plugin or watcher), not `instance`:
Prometheus sets `instance` itself to the scraped target and would rename ours to `exported_instance`.
Label cardinality is bounded: no run ids, and beyond MAX_WORKFLOW_SERIES workflows share `workflow="other"`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ..model import Run, RunStatus
from .recorder_health import RecorderHealthCollector

NAMESPACE = "comfyui_telemetry"
INSTANCE_LABEL = "comfyui_instance"
DURATION_BUCKETS_S = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
MAX_WORKFLOW_SERIES = 200
JOULES_PER_KWH = 3_600_000.0


class RunMetrics:
    """One app's metrics. `observe(run)` is a recorder listener (recorder thread, right after the commit);
    prometheus_client's metrics are thread-safe, the lock only guards the workflow cap."""

    def __init__(self, instance: str | None, *, energy_price_per_kwh: float | None = None,
                 health: Callable[[], Mapping[str, Any]] | None = None) -> None:
        self.instance = instance or "unknown"
        self.price_per_kwh = energy_price_per_kwh
        self.registry = CollectorRegistry()
        self._lock = threading.Lock()
        self._workflows: set[str] = set()
        i, r, ns = INSTANCE_LABEL, self.registry, NAMESPACE
        self.runs = Counter("runs", "Runs finished, by status and workflow.", [i, "status", "workflow"],
                            namespace=ns, registry=r)
        self.frames = Counter("frames", "Frames produced (images and video frames), by workflow.", [i, "workflow"],
                              namespace=ns, registry=r)
        self.errors = Counter("errors", "Failed runs, by error kind and failing node type.", [i, "kind", "node_type"],
                              namespace=ns, registry=r)
        self.duration = Histogram("run_duration", "Run duration, from the run's start to its end.", [i],
                                  unit="seconds", buckets=DURATION_BUCKETS_S, namespace=ns, registry=r)
        self.gpu_peak = Gauge("last_run_gpu_peak", "GPU memory peak of the last run that reported one.", [i],
                              unit="bytes", namespace=ns, registry=r)
        self.ram_peak = Gauge("last_run_ram_peak", "RAM peak of the last run that reported one.", [i],
                              unit="bytes", namespace=ns, registry=r)
        self.energy = Counter("energy", "GPU energy of finished runs (ComfyUI's GPU), by workflow.", [i, "workflow"],
                              unit="joules", namespace=ns, registry=r)
        self.last_energy = Gauge("last_run_energy", "GPU energy of the last run that reported one.", [i],
                                 unit="joules", namespace=ns, registry=r)
        self.cost = None if energy_price_per_kwh is None else Counter(
            "energy_cost", "What that energy cost at the configured energy_price_per_kwh (its currency), by workflow.",
            [i, "workflow"], namespace=ns, registry=r)
        self.duration.labels(self.instance)  # the histogram exists, at zero, before the first run
        if health is not None:
            self.registry.register(RecorderHealthCollector(self.instance, health))

    def observe(self, run: Run) -> None:
        """Recorder listener: count a run once it is final (each stored final run is told once)."""
        if run.status not in RunStatus.STORED_FINAL:
            return
        inst = self.instance
        workflow = self._workflow_label(run.workflow_name or "unknown")
        self.runs.labels(inst, run.status, workflow).inc()
        self.frames.labels(inst, workflow).inc(run.frame_count or 0)
        if run.error is not None:
            self.errors.labels(inst, run.error.kind or "unknown", run.error.node_type or "unknown").inc()
        if run.duration_ms is not None:
            self.duration.labels(inst).observe(max(0.0, run.duration_ms / 1000.0))
        if run.gpu_peak_bytes is not None:
            self.gpu_peak.labels(inst).set(run.gpu_peak_bytes)
        if run.ram_peak_bytes is not None:
            self.ram_peak.labels(inst).set(run.ram_peak_bytes)
        if run.energy_j is not None and run.energy_j >= 0:
            self.energy.labels(inst, workflow).inc(run.energy_j)
            self.last_energy.labels(inst).set(run.energy_j)
            if self.cost is not None and self.price_per_kwh is not None:
                self.cost.labels(inst, workflow).inc(run.energy_j / JOULES_PER_KWH * self.price_per_kwh)

    def _workflow_label(self, workflow: str) -> str:
        with self._lock:
            if workflow in self._workflows:
                return workflow
            if len(self._workflows) >= MAX_WORKFLOW_SERIES:
                return "other"
            self._workflows.add(workflow)
            return workflow
