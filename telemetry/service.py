"""TelemetryService: what the REST layer asks of the pack, the same for the plugin and the standalone watcher.

Methods are synchronous and may touch the database: REST handlers call them off the event loop. Every parameter
is validated before the database is touched (400 with a message), and an export is validated and its first rows
read before its streamed response starts.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .errors import NotFoundError
from .filters import (
    FILTER_KEYS,
    FilterError,
    check_text,
    filters_from_preset,
    parse_id,
    parse_page,
    parse_prune,
    parse_run_filters,
)
from .jsonsafe import json_safe
from .recorder import Recorder
from .store.comfy_history import prompt_of_record, record_text, ui_workflow_of_record
from .store.database import redact_url
from .store.sqlite_file import file_health
from .store.store import Store
from .store.write_health import apply_write_problem

EXPORT_COLUMNS = (
    "run_id", "status", "workflow_id", "workflow_name", "fingerprint", "queued_at_ms", "started_at_ms",
    "finished_at_ms", "duration_ms", "queue_wait_ms", "node_count", "executed_node_count", "cached_node_count",
    "images", "videos", "audio", "other", "frame_count", "error_kind", "error_node_type", "error_exception_type",
    "error_message", "interrupted_reason", "gpu_name", "gpu_total_bytes", "gpu_peak_bytes", "gpu_used_peak_bytes",
    "ram_peak_bytes", "story_title", "scene", "tags", "instance", "parameters",
    "energy_j", "energy_source", "energy_per_frame_j", "gpus",
)


class TelemetryService:
    def __init__(self, store: Store, recorder: Recorder | None, *, hooks: Callable[[], Mapping[str, Any]] | None = None,
                 source: str = "plugin", instance: str | None = None,
                 config_warnings: list[dict[str, Any]] | None = None,
                 optional: Callable[[], Mapping[str, str]] | None = None,
                 energy_price_per_kwh: float | None = None, currency: str | None = None) -> None:
        self.store = store
        self.energy_price_per_kwh = energy_price_per_kwh
        self.currency = currency
        self.config_warnings = list(config_warnings or [])
        self._optional = optional or (lambda: {})
        self.recorder = recorder
        self._hooks = hooks or (lambda: {})
        self.source = source
        self.instance = instance
        # telemetry.metrics.RunMetrics, or None with `metrics_error` when prometheus_client cannot be imported
        # (the app reports it under /telemetry/health "optional"; everything else still records and serves)
        self.metrics: Any = None
        self.metrics_error: BaseException | None = None
        try:
            from .metrics import RunMetrics

            self.metrics = RunMetrics(instance, energy_price_per_kwh=energy_price_per_kwh,
                                      health=recorder.health if recorder is not None else None)
        except ImportError as exc:
            self.metrics_error = exc
        self.webhooks: Any = None  # telemetry.webhooks.WebhookSender, set by attach_webhooks
        # The running run, live (telemetry.live.LiveMonitor); only inside ComfyUI.
        self.live: Any = None
        if recorder is not None and self.metrics is not None:
            recorder.add_listener(self.metrics.observe)

    def list_runs(self, query: Mapping[str, Any]) -> dict[str, Any]:
        self.store.ensure_schema()
        filters, page = parse_run_filters(query), parse_page(query)
        found = self.store.query_runs(filters, page)
        return {"runs": [json_safe(r.to_dict(detail=False)) for r in found.runs], "total": found.total,
                "total_capped": found.total_capped, "limit": page.limit, "offset": page.offset,
                "next_cursor": found.next_cursor.encode() if found.next_cursor else None}

    def get_run(self, run_id: str) -> dict[str, Any]:
        if len(run_id) > 200 or "\x00" in run_id:
            raise FilterError("a run id is at most 200 characters, without NUL characters")
        self.store.ensure_schema()
        run = self.store.get_run(run_id)
        if run is None:
            raise NotFoundError(f"no run with id {run_id!r}")
        data = run.to_dict(detail=True)
        data["cost"] = (run.energy_j / 3_600_000.0 * self.energy_price_per_kwh
                        if run.energy_j is not None and self.energy_price_per_kwh is not None else None)
        data["currency"] = self.currency
        data["node_types"] = _totals_by(data["nodes"], "class_type")
        data["subgraphs"] = _totals_by(data["nodes"], "parent_node_id")
        if data["status"] == "running" and self.live is not None:
            snapshot = self.live.snapshot(run_id) or {}
            data["current_node"] = snapshot.get("current_node")
            data["eta_ms"] = snapshot.get("eta_ms")
            data["run_ms"] = snapshot.get("run_ms")
        return json_safe(data)

    def get_run_workflow(self, run_id: str) -> dict[str, Any]:
        """The graph of a run as ComfyUI recorded it: its API prompt and the UI workflow the frontend sent with it
        (null when the run came without one, e.g. from a script); what "Apply to a copy" falls back to."""
        if len(run_id) > 200 or "\x00" in run_id:
            raise FilterError("a run id is at most 200 characters, without NUL characters")
        self.store.ensure_schema()
        text = record_text(self.store, run_id)
        if text is None and self.store.get_run(run_id) is None:
            raise NotFoundError(f"no run with id {run_id!r}")
        return json_safe({"run_id": run_id, "prompt": prompt_of_record(text), "workflow": ui_workflow_of_record(text)})

    def live_state(self) -> dict[str, Any]:
        """The running run as the live card shows it, or `{"run": null}`."""
        if self.live is None:
            raise NotFoundError("live progress is only available inside ComfyUI")
        return json_safe({"run": self.live.snapshot(), "listening": self.live.listening})

    def live_listen(self, body: Any) -> dict[str, Any]:
        """A panel announces that it listens: `telemetry.progress` events for the lease (1-120 s, default 30)."""
        if self.live is None:
            raise NotFoundError("live progress is only available inside ComfyUI")
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise FilterError("the body must be a JSON object, e.g. {\"seconds\": 30}")
        unknown = set(body) - {"seconds"}
        if unknown:
            raise FilterError(f"unknown field(s): {', '.join(sorted(map(str, unknown)))[:200]}; only 'seconds'")
        seconds = body.get("seconds", 30)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 1 <= seconds <= 120:
            raise FilterError("'seconds' must be a number from 1 to 120")
        return self.live.listen(float(seconds))

    def stats(self, query: Mapping[str, Any]) -> dict[str, Any]:
        self.store.ensure_schema()
        stats = self.store.stats(parse_run_filters(query), price_per_kwh=self.energy_price_per_kwh)
        stats["currency"] = self.currency
        return json_safe(stats)

    def node_type_stats(self, query: Mapping[str, Any]) -> dict[str, Any]:
        self.store.ensure_schema()
        return json_safe({"node_types": self.store.node_type_stats(parse_run_filters(query))})

    def health(self) -> dict[str, Any]:
        db: dict[str, Any] = {"kind": self.store.kind, "url": redact_url(self.store.url),
                              "schema_version": self.store.schema_version}
        if self.store.search is not None:
            db["search"] = self.store.search.state.to_dict()  # text search: its index, or why it scans
        try:
            self.store.ping()
            db["state"] = "ok"
        except Exception as exc:
            db["state"] = "unavailable"
            db["error"] = f"{type(exc).__name__}: {exc}"[:300]
        recorder = self.recorder.health() if self.recorder else {}
        db.update(file_health(self.store.db))
        apply_write_problem(db, recorder)
        return json_safe({
            "status": "ok" if db["state"] == "ok" and not recorder.get("buffered") else "degraded",
            "source": self.source,
            "instance": self.instance,
            "hooks": dict(self._hooks()),
            "optional": dict(self._optional()),  # optional parts that failed to load: part -> error
            "database": db,
            "queue_depth": recorder.get("queue_depth", 0),
            "buffered": recorder.get("buffered", 0),
            "dropped": recorder.get("dropped", 0),
            "recorder": recorder,
            "config_warnings": self.config_warnings,
            # pending and failed deliveries per URL (redacted), the oldest pending age, the last error
            "webhooks": self.webhooks.health() if self.webhooks is not None else {"enabled": False},
        })

    def instances(self) -> dict[str, Any]:
        """The fleet: every instance's last heartbeat, `online` when seen within 2 minutes."""
        from .instances import list_instances

        self.store.ensure_schema()
        return json_safe({"instances": list_instances(self.store)})

    def prometheus(self, accept: str | None = None) -> tuple[bytes, str]:
        """The metrics exposition and its content type (OpenMetrics when `accept` asks for it); in memory only."""
        if self.metrics is None:
            raise NotFoundError(f"the Prometheus metrics are off: {type(self.metrics_error).__name__}: "
                                f"{self.metrics_error} (install prometheus-client, see requirements.txt)"[:500])
        from .metrics import exposition

        return exposition(self.metrics.registry, accept)

    def list_presets(self) -> dict[str, Any]:
        self.store.ensure_schema()
        return {"presets": [p.to_dict() for p in self.store.list_presets()]}

    def save_preset(self, body: Any) -> dict[str, Any]:
        self.store.ensure_schema()
        if not isinstance(body, Mapping):
            raise FilterError("the body must be a JSON object {\"name\": ..., \"filters\": {...}}")
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise FilterError("'name' must be a non-empty string")
        if len(name) > 200:
            raise FilterError("'name' is longer than 200 characters")
        check_text(name, "name")
        filters = filters_from_preset(body.get("filters", {})).to_dict()
        return self.store.save_preset(name.strip(), filters).to_dict()

    def delete_preset(self, preset_id: str) -> dict[str, Any]:
        self.store.ensure_schema()
        key = parse_id(preset_id, "preset id")
        if not self.store.delete_preset(key):
            raise NotFoundError(f"no preset with id {key}")
        return {"deleted": key}

    def set_workflow_name(self, body: Any) -> dict[str, Any]:
        self.store.ensure_schema()
        if not isinstance(body, Mapping):
            raise FilterError("the body must be a JSON object {\"id\": ..., \"name\": ...}")
        workflow_id, name = body.get("id"), body.get("name")
        if not isinstance(workflow_id, str) or not workflow_id.strip() or len(workflow_id) > 128:
            raise FilterError("'id' must be the UI workflow's id (a non-empty string of at most 128 characters)")
        if not isinstance(name, str) or not name.strip() or len(name) > 500:
            raise FilterError("'name' must be a non-empty string of at most 500 characters")
        check_text(workflow_id, "id")
        check_text(name, "name")
        renamed = self.store.set_workflow_name(workflow_id.strip(), name.strip())
        return {"id": workflow_id.strip(), "name": name.strip(), "runs_renamed": renamed}

    def prune_runs(self, query: Mapping[str, Any]) -> dict[str, Any]:
        """Delete runs that started before `before_ms` and/or beyond the newest `keep` (batched by the store)."""
        before_ms, keep = parse_prune(query)
        self.store.ensure_schema()
        deleted = self.store.prune_runs(before_ms=before_ms, keep=keep)
        return {"deleted": deleted, "before_ms": before_ms, "keep": keep}

    def prune_preview(self, query: Mapping[str, Any]) -> dict[str, Any]:
        """What `prune_runs(query)` would delete now (count, oldest and newest start), deleting nothing."""
        before_ms, keep = parse_prune(query)
        self.store.ensure_schema()
        preview = self.store.prune_preview(self.store.prune_plan(before_ms=before_ms, keep=keep))
        return {**preview, "before_ms": before_ms, "keep": keep, "total_runs": self.store.count_runs()}

    def export_chunks(self, query: Mapping[str, Any], fmt: str,
                      on_run: Callable[[], None] | None = None) -> Iterator[str]:
        """The export, as text chunks to stream. Validates everything before the first chunk (`limit`/`offset`
        too, though an export is every matching run), so a bad request is a 400, never a broken stream.
        `on_run()` is called once per run written (the CLI's progress bar)."""
        if fmt not in ("csv", "jsonl"):
            raise FilterError(f"'format' must be csv or jsonl, got {fmt[:20]!r}")
        filters = parse_run_filters(query)
        page = parse_page({k: v for k, v in query.items() if k in ("sort", "limit", "offset")})
        self.store.ensure_schema()
        runs = self.store.iter_runs(filters, page.sort)
        if on_run is not None:
            runs = _counted(runs, on_run)
        return _csv_chunks(runs) if fmt == "csv" else _jsonl_chunks(runs)


def _counted(runs: Iterator[Any], on_run: Callable[[], None]) -> Iterator[Any]:
    for run in runs:
        yield run
        on_run()


def _jsonl_chunks(runs) -> Iterator[str]:
    lines: list[str] = []
    for run in runs:
        lines.append(json.dumps(json_safe(run.to_dict(detail=False)), ensure_ascii=False))
        if len(lines) >= 200:
            yield "\n".join(lines) + "\n"
            lines = []
    if lines:
        yield "\n".join(lines) + "\n"


def _csv_row(run) -> list[Any]:
    d = run.to_dict(detail=False)
    err = d.get("error") or {}
    counts = d.get("output_counts") or {}
    labels = d.get("labels") or {}
    values = {**d, **{k: counts.get(k, 0) for k in ("images", "videos", "audio", "other")},
              "error_kind": err.get("kind"), "error_node_type": err.get("node_type"),
              "error_exception_type": err.get("exception_type"), "error_message": err.get("message"),
              "story_title": labels.get("story_title"), "scene": labels.get("scene"),
              "tags": ",".join(labels.get("tags") or []),
              "parameters": json.dumps(d.get("parameters") or {}, ensure_ascii=False),
              "gpus": json.dumps(d.get("gpus") or [], ensure_ascii=False)}
    return [values.get(c) for c in EXPORT_COLUMNS]


def _csv_chunks(runs) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    for run in runs:
        writer.writerow(_csv_row(run))
        count += 1
        if count % 200 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _totals_by(nodes: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Nodes grouped by `key` (class_type, or parent_node_id for subgraphs): count, summed time, peak memory."""
    totals: dict[str, dict[str, Any]] = {}
    for node in nodes:
        group = node.get(key)
        if not group:
            continue
        entry = totals.setdefault(group, {key: group, "nodes": 0, "duration_ms": 0.0, "gpu_peak_bytes": None})
        entry["nodes"] += 1
        entry["duration_ms"] += node.get("duration_ms") or 0.0
        peak = node.get("gpu_peak_bytes")
        if peak is not None:
            entry["gpu_peak_bytes"] = max(entry["gpu_peak_bytes"] or 0, peak)
    return sorted(totals.values(), key=lambda e: -e["duration_ms"])


__all__ = ["TelemetryService", "NotFoundError", "FilterError", "FILTER_KEYS"]
