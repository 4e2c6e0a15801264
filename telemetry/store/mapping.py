"""Run <-> rows. The only place that knows how the domain model is laid out in tables."""

from __future__ import annotations

import json
from typing import Any

from peewee import BigIntegerField, CharField, IntegerField, Model

from ..model import EnergySource, GpuSample, NodeRun, OutputKind, Run, RunError, RunGpu, RunLabels, RunOutput
from .schema import GpuSampleRow, NodeRunRow, RunOutputRow, RunRow

_INT64 = (1 << 63) - 1
_INT32 = (1 << 31) - 1

_OUTPUT_COLUMNS = {
    OutputKind.IMAGES: "image_count",
    OutputKind.VIDEOS: "video_count",
    OutputKind.AUDIO: "audio_count",
    OutputKind.OTHER: "other_output_count",
}


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))


def _loads(text: str | None, default: Any) -> Any:
    if not text:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


def fit(model: type[Model], row: dict[str, Any]) -> dict[str, Any]:
    """Make an odd run storable instead of rejected: strings cut to their column's length, integers that no
    database column can hold become null."""
    for name, value in row.items():
        column = model._meta.fields.get(name)
        if isinstance(column, CharField) and isinstance(value, str) and len(value) > column.max_length:
            row[name] = value[: column.max_length]
        elif isinstance(value, int) and not isinstance(value, bool) and isinstance(column, (IntegerField,)):
            limit = _INT64 if isinstance(column, BigIntegerField) else _INT32
            if not -limit <= value <= limit:
                row[name] = None
        elif isinstance(value, float) and value != value:  # NaN
            row[name] = None
    return row


def workflow_key(run: Run) -> str | None:
    return run.workflow_id or run.fingerprint


def run_to_row(run: Run, updated_at_ms: int) -> dict[str, Any]:
    params = run.parameters or {}
    pixels = params.get("pixels")
    steps = params.get("steps")
    row = {
        "run_id": run.run_id,
        "status": run.status,
        "queued_at_ms": run.queued_at_ms,
        "started_at_ms": run.started_at_ms,
        "finished_at_ms": run.finished_at_ms,
        "duration_ms": run.duration_ms,
        "queue_wait_ms": run.queue_wait_ms,
        "workflow_id": run.workflow_id,
        "workflow_name": run.workflow_name,
        "workflow_name_source": run.workflow_name_source,
        "workflow_key": workflow_key(run),
        "fingerprint": run.fingerprint,
        "node_count": run.node_count,
        "executed_node_count": run.executed_node_count,
        "cached_node_count": run.cached_node_count,
        "frame_count": run.frame_count,
        "error_node_id": run.error.node_id if run.error else None,
        "error_node_type": run.error.node_type if run.error else None,
        "error_exception_type": run.error.exception_type if run.error else None,
        "error_message": run.error.message if run.error else None,
        "error_kind": run.error.kind if run.error else None,
        "error_traceback": _dumps(run.error.traceback) if run.error else None,
        "interrupted_reason": run.interrupted_reason,
        "gpu_name": run.gpu_name,
        "gpu_total_bytes": run.gpu_total_bytes,
        "gpu_peak_bytes": run.gpu_peak_bytes,
        "gpu_reserved_peak_bytes": run.gpu_reserved_peak_bytes,
        "gpu_used_peak_bytes": run.gpu_used_peak_bytes,
        "ram_peak_bytes": run.ram_peak_bytes,
        "gpu_peak_source": run.gpu_peak_source,
        "dynamic_vram": run.dynamic_vram,
        "energy_j": _finite(run.energy_j),
        "energy_source": run.energy_source if run.energy_source in EnergySource.ALL else None,
        "gpus": _dumps([_gpu_dict(g) for g in run.gpus]) if run.gpus else None,
        "story_title": run.labels.story_title,
        "scene": run.labels.scene,
        "tags": _dumps(run.labels.tags) if run.labels.tags else None,
        "instance": run.instance,
        "source": run.source,
        "parameters": _dumps(params),
        "pixels": int(pixels) if isinstance(pixels, (int, float)) and not isinstance(pixels, bool) else None,
        "steps": int(steps) if isinstance(steps, (int, float)) and not isinstance(steps, bool) else None,
        "updated_at_ms": updated_at_ms,
    }
    for kind, column in _OUTPUT_COLUMNS.items():
        row[column] = int(run.output_counts.get(kind, 0))
    return fit(RunRow, row)


def row_to_run(row: RunRow) -> Run:
    error = None
    if row.error_exception_type or row.error_message:
        error = RunError(
            node_id=row.error_node_id,
            node_type=row.error_node_type,
            exception_type=row.error_exception_type or "Exception",
            message=row.error_message or "",
            kind=row.error_kind or "error",
            traceback=_loads(row.error_traceback, []),
        )
    return Run(
        run_id=row.run_id,
        status=row.status,
        queued_at_ms=row.queued_at_ms,
        started_at_ms=row.started_at_ms,
        finished_at_ms=row.finished_at_ms,
        duration_ms=row.duration_ms,
        queue_wait_ms=row.queue_wait_ms,
        workflow_id=row.workflow_id,
        workflow_name=row.workflow_name,
        workflow_name_source=row.workflow_name_source or "derived",
        fingerprint=row.fingerprint,
        node_count=row.node_count,
        executed_node_count=row.executed_node_count,
        cached_node_count=row.cached_node_count,
        output_counts={kind: getattr(row, column) or 0 for kind, column in _OUTPUT_COLUMNS.items()},
        frame_count=row.frame_count,
        error=error,
        interrupted_reason=row.interrupted_reason,
        gpu_name=row.gpu_name,
        gpu_total_bytes=row.gpu_total_bytes,
        gpu_peak_bytes=row.gpu_peak_bytes,
        gpu_reserved_peak_bytes=row.gpu_reserved_peak_bytes,
        gpu_used_peak_bytes=row.gpu_used_peak_bytes,
        ram_peak_bytes=row.ram_peak_bytes,
        gpu_peak_source=row.gpu_peak_source,
        dynamic_vram=row.dynamic_vram,
        energy_j=row.energy_j,
        energy_source=row.energy_source,
        gpus=_gpus(row.gpus),
        labels=RunLabels(story_title=row.story_title, scene=row.scene, tags=_loads(row.tags, [])),
        instance=row.instance,
        source=row.source,
        parameters=_loads(row.parameters, {}),
    )


def node_rows(run: Run, run_id: str | None = None) -> list[dict[str, Any]]:
    return [
        fit(NodeRunRow, {
            "run": run_id or run.run_id,
            "position": position,
            "node_id": node.node_id,
            "class_type": node.class_type,
            "status": node.status,
            "started_at_ms": node.started_at_ms,
            "duration_ms": node.duration_ms,
            "gpu_peak_bytes": node.gpu_peak_bytes,
            "display_node_id": node.display_node_id,
            "parent_node_id": node.parent_node_id,
            "energy_j": _finite(node.energy_j),
        })
        for position, node in enumerate(run.nodes)
    ]


def output_rows(run: Run, run_id: str | None = None) -> list[dict[str, Any]]:
    return [
        fit(RunOutputRow, {
            "run": run_id or run.run_id,
            "node_id": o.node_id,
            "kind": o.kind,
            "filename": o.filename,
            "subfolder": o.subfolder,
            "type": o.type,
            "frame_count": o.frame_count,
            "format": o.format,
        })
        for o in run.outputs
    ]


def sample_rows(run: Run, samples: list[GpuSample], run_id: str | None = None) -> list[dict[str, Any]]:
    return [
        fit(GpuSampleRow, {
            "run": run_id or run.run_id,
            "t_ms": s.t_ms,
            "used_bytes": s.used_bytes,
            "util_percent": s.util_percent,
            "temperature_c": s.temperature_c,
            "power_w": s.power_w,
            "ram_rss_bytes": s.ram_rss_bytes,
            "gpu_index": s.gpu_index,
        })
        for s in samples
    ]


def row_to_node(row: NodeRunRow) -> NodeRun:
    return NodeRun(
        node_id=row.node_id,
        class_type=row.class_type,
        status=row.status,
        started_at_ms=row.started_at_ms,
        duration_ms=row.duration_ms,
        gpu_peak_bytes=row.gpu_peak_bytes,
        display_node_id=row.display_node_id,
        parent_node_id=row.parent_node_id,
        energy_j=row.energy_j,
    )


def row_to_output(row: RunOutputRow) -> RunOutput:
    return RunOutput(row.node_id, row.kind, row.filename, row.subfolder, row.type, row.frame_count, row.format)


def row_to_sample(row: GpuSampleRow) -> GpuSample:
    return GpuSample(row.t_ms, row.used_bytes, row.util_percent, row.temperature_c, row.power_w, row.ram_rss_bytes,
                     row.gpu_index)


def _finite(value: float | None) -> float | None:
    return float(value) if isinstance(value, (int, float)) and value == value and abs(value) != float("inf") else None


def _gpu_dict(gpu: RunGpu) -> dict[str, Any]:
    return {"index": gpu.index, "name": gpu.name, "uuid": gpu.uuid, "peak_used_bytes": gpu.peak_used_bytes,
            "external_bytes": gpu.external_bytes, "comfyui_device": bool(gpu.comfyui_device),
            "energy_j": _finite(gpu.energy_j)}


def _gpus(text: str | None) -> list[RunGpu]:
    found = []
    for entry in _loads(text, []):
        if isinstance(entry, dict) and isinstance(entry.get("index"), int):
            found.append(RunGpu(entry["index"], entry.get("name"), entry.get("uuid"), entry.get("peak_used_bytes"),
                                entry.get("external_bytes"), bool(entry.get("comfyui_device")),
                                entry.get("energy_j")))
    return found
