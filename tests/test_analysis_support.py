"""Shared builders for the analysis tests: synthetic runs with known ground truth, stored through the real Store
(SQLite file, and PostgreSQL for tests marked `postgres`). No tests here."""

from __future__ import annotations

import pytest

from telemetry.analysis.service import AnalysisService
from telemetry.model import ErrorKind, NodeRun, Run, RunError, RunLabels
from telemetry.store.store import Store

GIB = 1024**3
T0 = 1_760_000_000_000  # a fixed start (ms)
HOUR = 3_600_000
MINUTE = 60_000


@pytest.fixture
def service(store) -> AnalysisService:
    return AnalysisService(store)


def make_run(run_id: str, wf: str, t_ms: int, *, status: str = "success", duration_ms: float = 10_000.0,
             gpu_peak: int | None = 8 * GIB, gpu_total: int | None = 24 * GIB, params: dict | None = None,
             sampler_share: float = 0.45, error_kind: str | None = None, error_node: str | None = None,
             scene: str | None = None, story: str | None = None, fingerprint: str | None = None,
             frames: int = 1, name: str | None = None) -> Run:
    """One finished run of workflow `wf` that started at `t_ms`, with a KSampler taking `sampler_share` of it."""
    params = dict(params if params is not None else {"width": 1024, "height": 1024, "pixels": 1024 * 1024,
                                                      "steps": 20, "batch": 1})
    error = None
    if status == "failed":
        error = RunError(node_id="8", node_type=error_node or "KSampler",
                         exception_type="OutOfMemoryError" if error_kind == ErrorKind.OOM else "RuntimeError",
                         message="CUDA out of memory" if error_kind == ErrorKind.OOM else "boom",
                         kind=error_kind or ErrorKind.ERROR)
    nodes = [
        NodeRun("4", "CheckpointLoaderSimple", "executed", t_ms, duration_ms * 0.05),
        NodeRun("3", "KSampler", "executed", t_ms, duration_ms * sampler_share),
        NodeRun("8", "VAEDecode", "failed" if status == "failed" else "executed", t_ms,
                duration_ms * (0.9 - sampler_share) / 2),
        NodeRun("9", "SaveImage", "executed", t_ms, duration_ms * 0.05),
    ]
    return Run(
        run_id=run_id, status=status, queued_at_ms=t_ms, started_at_ms=t_ms,
        finished_at_ms=int(t_ms + duration_ms), duration_ms=duration_ms, queue_wait_ms=0.0,
        workflow_id=wf, workflow_name=name or f"workflow {wf}", workflow_name_source="api",
        fingerprint=fingerprint or f"fp-{wf}", node_count=4, executed_node_count=4, frame_count=frames,
        error=error, gpu_name="Test GPU", gpu_total_bytes=gpu_total, gpu_peak_bytes=gpu_peak,
        labels=RunLabels(story_title=story, scene=scene), parameters=params, nodes=nodes,
    )


def store_and_evaluate(store: Store, service: AnalysisService, runs: list[Run]) -> list[dict]:
    """Store runs one by one, as the recorder does, calling on_run_stored after each. Returns what opened."""
    opened = []
    for run in runs:
        store.save_runs([run])
        opened.extend(service.on_run_stored(run))
    return opened
