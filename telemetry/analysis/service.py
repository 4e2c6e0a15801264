"""AnalysisService: what the recorder and the REST routes ask of the analysis layer.

`on_run_stored` runs on the recorder thread after each stored run: it reads only that workflow's latest runs
(bounded by `history_runs`), evaluates the rules and writes the workflow's recommendations; it returns those that
opened, for the `telemetry.recommendation` websocket event. The other methods are synchronous and called by REST
handlers through `asyncio.to_thread`. Bad input raises `FilterError` (400), unknown things `AnalysisNotFound`
(404). Predictions and backtests are cached per fingerprint and dropped when a run of that fingerprint is stored.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from .. import prompt_info
from ..errors import NotFoundError
from ..filters import FilterError, parse_run_filters
from ..model import Run, RunStatus
from ..store.mapping import workflow_key
from ..store.schema import RecommendationRow
from ..store.store import Store, now_ms
from . import actions as graph_actions
from . import predict as pred
from . import queries, queue, recommendations, rules, timeline, trends
from .advice import memory_advice
from .config import AnalysisConfig, load_config, save_config, validate_settings
from .rules import Evaluation, Finding, Severity
from .stats import format_bytes

log = logging.getLogger("run_telemetry.analysis")

METRICS = ("duration_ms", "gpu_peak_bytes", "success_rate", "fps")
_CACHE_SIZE = 512
_CACHE_TTL_S = 300.0
_RECENT_SCAN_RUNS = 5000
_EVALUATE_DAYS = 7
_EVALUATE_MAX_WORKFLOWS = 200


class AnalysisNotFound(NotFoundError):
    """An unknown recommendation or workflow (served as a 404)."""


class _Cache:
    """A small LRU of per-fingerprint results with a time-to-live (other instances may write the same store)."""

    def __init__(self) -> None:
        self._data: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        with self._lock:
            hit = self._data.get(key)
            if hit is None or time.monotonic() - hit[0] > _CACHE_TTL_S:
                return None
            self._data.move_to_end(key)
            return hit[1]

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._data[key] = (time.monotonic(), value)
            self._data.move_to_end(key)
            while len(self._data) > _CACHE_SIZE:
                self._data.popitem(last=False)

    def drop(self, key: str | None = None) -> None:
        with self._lock:
            if key is None:
                self._data.clear()
            else:
                self._data.pop(key, None)


class AnalysisService:
    def __init__(self, store: Store, config_path: str | None = None, config: AnalysisConfig | None = None) -> None:
        self.store = store
        self.config_path = config_path
        self.config = config or load_config(config_path)
        self._write_lock = threading.RLock()
        self._models = _Cache()
        self._accuracy = _Cache()
        self._timeline = timeline.TimelineCache()

    # -- recorder thread ------------------------------------------------------------------------------------

    def on_run_stored(self, run: Run) -> list[dict[str, Any]]:
        """Evaluate the rules for the run's workflow; returns the recommendations that opened (JSON-safe)."""
        self._timeline.forget(run.started_at_ms)
        if run.fingerprint:
            self._models.drop(run.fingerprint)
            self._accuracy.drop(run.fingerprint)
        wf = workflow_key(run)
        if not wf or run.status not in RunStatus.FINAL:
            return []
        known = {run.run_id: [(n.class_type, n.status, n.duration_ms) for n in run.nodes]} if run.nodes else {}
        return self._evaluate_workflow(wf, known)

    def _evaluate_workflow(self, wf: str, known_nodes: dict[str, list[tuple[str, str, float | None]]] | None = None
                           ) -> list[dict[str, Any]]:
        """Evaluate one workflow. `known_nodes`: node rows already in hand, by run id (saves a query)."""
        cfg = self.config
        points = queries.workflow_points(wf, max(cfg.history_runs, cfg.success_window_runs))
        if not points:
            return []
        latest_ok = next((p for p in reversed(points) if p.ok), None)
        nodes: list[tuple[str, str, float | None]] = []
        if latest_ok is not None:
            nodes = (known_nodes or {}).get(latest_ok.run_id) or queries.run_nodes(latest_ok.run_id)
        latest = points[-1]
        scene = (queries.scene_points(latest.story_title, latest.scene, cfg.retry_min_attempts + 20)
                 if latest.scene else None)
        evaluation = rules.evaluate_workflow(points, wf, cfg, nodes, scene)
        return self._apply(evaluation, wf)

    def _apply(self, evaluation: Evaluation, wf: str | None, extra_rows: Sequence[RecommendationRow] = ()
               ) -> list[dict[str, Any]]:
        keys = [f.condition_key for f in evaluation.findings] + [s for s in evaluation.scopes if ":scene:" in s]
        with self._write_lock:
            rows = recommendations.existing_rows(wf, keys)
            rows.update({r.condition_key: r for r in extra_rows})
            opened = recommendations.apply(self.store, evaluation, rows, self.config)
        return with_actions(opened)

    def evaluate(self, workflow: str | None = None) -> dict[str, Any]:
        """Re-evaluate one workflow, or every workflow with runs in the last week (up to 200), on demand."""
        if workflow:
            resolved = queries.resolve_workflow(workflow)
            if resolved is None:
                raise AnalysisNotFound(f"no runs for workflow {workflow!r}")
            workflows = [resolved[0]]
        else:
            workflows = queries.recent_workflows(now_ms() - _EVALUATE_DAYS * 86_400_000, _EVALUATE_MAX_WORKFLOWS)
        opened: list[dict[str, Any]] = []
        for wf in workflows:
            opened.extend(self._evaluate_workflow(wf))
        return {"workflows_evaluated": len(workflows), "opened": opened}

    # -- recommendations ------------------------------------------------------------------------------------

    def recommendations(self, state: str | None = None, severity: str | None = None,
                        workflow: str | None = None) -> dict[str, Any]:
        if state and state not in recommendations.RecommendationState.ALL:
            raise FilterError(f"'state' must be one of {', '.join(recommendations.RecommendationState.ALL)}, "
                              f"got {state[:40]!r}")
        if severity and severity not in Severity.ALL:
            raise FilterError(f"'severity' must be one of {', '.join(Severity.ALL)}, got {severity[:40]!r}")
        if workflow and len(workflow) > 500:
            raise FilterError("'workflow' is longer than 500 characters")
        listing = recommendations.listing(state or None, severity or None, workflow or None)
        return {"recommendations": with_actions(listing)}

    def dismiss(self, recommendation_id: int | str) -> dict[str, Any]:
        try:
            key = int(str(recommendation_id))
        except ValueError:
            raise FilterError(f"recommendation id must be an integer, got {str(recommendation_id)[:40]!r}") from None
        with self._write_lock:
            found = recommendations.dismiss(key)
        if found is None:
            raise AnalysisNotFound(f"no recommendation with id {key}")
        return with_actions([found])[0]

    # -- trends and timeline --------------------------------------------------------------------------------

    def trends(self, workflow: str | None, metric: str | None, node_type: str | None = None) -> dict[str, Any]:
        if not workflow:
            raise FilterError("'workflow' is required: a workflow key, UI workflow id, fingerprint or name")
        if metric not in METRICS:
            raise FilterError(f"'metric' must be one of {', '.join(METRICS)}, got {str(metric)[:40]!r}")
        if node_type is not None and (not node_type.strip() or len(node_type) > 256):
            raise FilterError("'node_type' must be a node class name of at most 256 characters")
        resolved = queries.resolve_workflow(workflow)
        if resolved is None:
            raise AnalysisNotFound(f"no runs for workflow {workflow!r}")
        wf, name = resolved
        cfg = self.config
        series = _series(wf, metric, node_type, cfg.trend_max_points)
        t_ms = np.asarray([t for _, t, _ in series], dtype=float)
        values = np.asarray([v for _, _, v in series], dtype=float)
        result = trends.analyse(t_ms, values, rolling_window=cfg.trend_rolling_window, p_value=cfg.trend_p_value,
                                cp_p_value=cfg.change_point_p_value, cp_min_size=cfg.change_point_min_size,
                                cp_min_change=cfg.change_point_min_change, binary=metric == "success_rate")
        rolling = [{"t_ms": int(t), "p50": _num(a), "p95": _num(b)}
                   for t, a, b in zip(t_ms, result.rolling_p50, result.rolling_p95, strict=True)]
        return {
            "workflow": wf, "workflow_name": name, "metric": metric, "node_type": node_type,
            "points": [{"run_id": rid, "t_ms": int(t), "value": v} for rid, t, v in series],
            "rolling": rolling,
            "slope_per_day": result.slope_per_day,
            "mann_kendall": result.mann_kendall.to_dict(),
            "change_points": [{"run_id": series[cp.index][0], "t_ms": int(series[cp.index][1]),
                               "before": cp.before, "after": cp.after, "p_value": cp.p_value}
                              for cp in result.change_points],
        }

    def timeline(self, query: Mapping[str, Any]) -> dict[str, Any]:
        bucket = timeline.parse_bucket(query.get("bucket"))
        filters = parse_run_filters(query)
        now = now_ms()
        since, until = timeline.window(bucket, filters.since_ms, filters.until_ms, now)
        until = until if until is not None else now
        window_free = replace(filters, since_ms=None, until_ms=None)
        size = timeline.BUCKET_MS[bucket]
        from_rollups = queries.timeline_from_rollups(self.store, window_free, since, until, size)
        key = (json.dumps(window_free.to_dict(), sort_keys=True), bucket, from_rollups)

        def fetch(ranges: list[tuple[int, int]]) -> dict[int, dict[str, Any]]:
            return queries.timeline_ranges(self.store, window_free, ranges, size, from_rollups)

        points = timeline.timeline(self._timeline, fetch, key, bucket, since, until, now)
        return {"bucket": bucket, "since_ms": since, "until_ms": until, "points": points}

    # -- predictions ----------------------------------------------------------------------------------------

    def predict(self, prompt: Any) -> dict[str, Any]:
        """Predicted duration and GPU peak for an API-format prompt (or {"prompt": {...}})."""
        return self._predict(_prompt_of(prompt))

    def _predict(self, prompt: Mapping[str, Any]) -> dict[str, Any]:
        cfg = self.config
        fp = prompt_info.fingerprint(prompt)
        workload = pred.Workload.from_parameters(prompt_info.extract_parameters(prompt))
        models = self._models.get(fp)
        if models is None:
            history = queries.fingerprint_history(fp, cfg.predict_history_runs)
            loads = _workloads(history)
            wf, name = (history[-1][4], history[-1][5]) if history else (None, None)
            models = {"runs": len(history), "workflow": wf, "workflow_name": name}
            for metric, column in ((pred.DURATION, 1), (pred.GPU_PEAK, 2)):
                values = [h[column] for h in history]
                have = sum(1 for v in values if v is not None and v > 0)
                model = pred.fit(metric, loads, values, cfg.interval_coverage, cfg.predict_min_runs)
                models[metric] = model if model is not None else pred.not_enough(metric, have, cfg.predict_min_runs)
            self._models.put(fp, models)
        out: dict[str, Any] = {"fingerprint": fp, "workflow": models["workflow"],
                               "workflow_name": models["workflow_name"], "history_runs": models["runs"],
                               "parameters": workload.to_dict(), "interval_coverage": cfg.interval_coverage}
        for metric in (pred.DURATION, pred.GPU_PEAK):
            model = models[metric]
            out[metric] = model.predict(workload) if isinstance(model, pred.FittedModel) else dict(model)
        out["enough_history"] = out[pred.DURATION]["value"] is not None
        return out

    def _predict_item(self, prompt: Any) -> dict[str, Any]:
        if not isinstance(prompt, Mapping) or not prompt_info.prompt_nodes(prompt):
            return {"duration_ms": pred.not_enough("duration_ms", 0, self.config.predict_min_runs),
                    "gpu_peak_bytes": {"value": None}}
        return self._predict(prompt)

    def queue_eta(self, pending_items: Sequence[Any]) -> dict[str, Any]:
        ids = [queue.item_parts(item)[0] for item in pending_items]
        started = queries.running_starts([i for i in ids if i])
        return queue.eta(list(pending_items), self._predict_item, now_ms(), started)

    def fleet_queue_eta(self, queues: Mapping[str, Sequence[Any]], instance: str | None = None) -> dict[str, Any]:
        """Each ComfyUI's queue runs one prompt at a time, so each gets its own chain of starts and finishes
        (`queues`); `items` lists them all, each with its instance. `instance`: only that ComfyUI's queue."""
        per = [{"instance": name, **self.queue_eta(items)} for name, items in queues.items()
               if instance is None or name == instance]
        return {"items": [{**item, "instance": q["instance"]} for q in per for item in q["items"]],
                "has_predictions": any(q["has_predictions"] for q in per), "queues": per}

    def check_queue_memory(self, pending_items: Sequence[Any], free_bytes: int) -> list[dict[str, Any]]:
        """Persist a `queue_memory` recommendation for each queued run whose predicted GPU peak is over
        `free_bytes` (resolving those no longer queued or no longer over); returns those that opened."""
        findings = []
        for w in queue.memory_warnings(pending_items, self._predict_item, int(free_bytes)):
            p = w["prediction"]
            name = w["extra_data"].get("workflow_name") or p.get("workflow_name") or p["fingerprint"]
            params = {k: v for k, v in p["parameters"].items() if v is not None}
            findings.append(Finding(
                "queue_memory", f"queue_memory:{w['prompt_id']}",
                Severity.CRITICAL if w["critical"] else Severity.WARNING, p.get("workflow"), name, [],
                f"Queued run {w['prompt_id']} ({name}, position {w['position']}) is predicted to peak at "
                f"{format_bytes(w['predicted_gpu_peak_bytes'])} of GPU memory; {format_bytes(free_bytes)} is free.",
                memory_advice(params, None), w["predicted_gpu_peak_bytes"] / max(free_bytes, 1),
                {"prompt_id": w["prompt_id"], "predicted_gpu_peak_bytes": w["predicted_gpu_peak_bytes"],
                 "free_bytes": free_bytes}))
        evaluation = Evaluation(findings, ["queue_memory"])
        open_rows = list(RecommendationRow.select().where(RecommendationRow.kind == "queue_memory",
                                                          RecommendationRow.state != "resolved"))
        return self._apply(evaluation, None, open_rows)

    def accuracy(self) -> dict[str, Any]:
        """Backtest per fingerprint (the most active ones among the latest runs): MAPE and interval coverage."""
        cfg = self.config
        out = []
        for fp in queries.recent_fingerprints(_RECENT_SCAN_RUNS)[: cfg.accuracy_max_workflows]:
            entry = self._accuracy.get(fp)
            if entry is None:
                entry = self._backtest(fp)
                self._accuracy.put(fp, entry)
            if entry["duration_ms"]["runs_tested"] or entry["gpu_peak_bytes"]["runs_tested"]:
                out.append(entry)
        overall = {}
        for metric in (pred.DURATION, pred.GPU_PEAK):
            tested = [e[metric] for e in out if e[metric]["runs_tested"]]
            n = sum(t["runs_tested"] for t in tested)
            overall[metric] = {
                "runs_tested": n,
                "mape_percent": sum(t["mape_percent"] * t["runs_tested"] for t in tested) / n if n else None,
                "interval_coverage": sum(t["interval_coverage"] * t["runs_tested"] for t in tested) / n if n else None,
            }
        return {"interval_coverage_target": cfg.interval_coverage, "overall": overall, "workflows": out}

    def _backtest(self, fp: str) -> dict[str, Any]:
        cfg = self.config
        history = queries.fingerprint_history(fp, cfg.predict_history_runs + cfg.backtest_runs)
        loads = _workloads(history)
        wf, name = (history[-1][4], history[-1][5]) if history else (None, None)
        entry: dict[str, Any] = {"fingerprint": fp, "workflow": wf, "workflow_name": name, "runs": len(history)}
        for metric, column in ((pred.DURATION, 1), (pred.GPU_PEAK, 2)):
            entry[metric] = pred.backtest(metric, loads, [h[column] for h in history], cfg.backtest_runs,
                                          cfg.interval_coverage, cfg.predict_min_runs, cfg.predict_history_runs)
        return entry

    # -- config ---------------------------------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        return self.config.to_dict()

    def set_config(self, changes: Any) -> dict[str, Any]:
        """Apply a partial settings object; saved to the config file when there is one."""
        config = validate_settings(self.config, changes)
        if self.config_path:
            save_config(self.config_path, config)
        self.config = config
        self._models.drop()
        self._accuracy.drop()
        return config.to_dict()


_ACTION_EVIDENCE_RUNS = 3


def with_actions(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each recommendation with its `actions` (`actions.derive`), from the newest of its last evidence runs whose
    prompt is stored; [] when none is. One query for the whole list."""
    wanted = {id(rec): list(reversed(rec.get("evidence_run_ids") or []))[:_ACTION_EVIDENCE_RUNS] for rec in recs}
    runs = queries.action_runs([rid for ids in wanted.values() for rid in ids])
    for rec in recs:
        run = next((runs[rid] for rid in wanted[id(rec)] if rid in runs), None)
        try:
            rec["actions"] = graph_actions.derive(rec.get("kind") or "", rec.get("details") or {}, run)
        except Exception:  # an odd stored prompt costs its actions, never the listing
            log.warning("actions of recommendation %s failed", rec.get("id"), exc_info=True)
            rec["actions"] = []
    return recs


def _workloads(history: Sequence[tuple]) -> list[pred.Workload]:
    """The workload of each `queries.fingerprint_history` row, each distinct parameters text parsed once (runs of
    one fingerprint mostly repeat their settings)."""
    parsed: dict[str | None, pred.Workload] = {}
    out = []
    for row in history:
        text = row[3]
        load = parsed.get(text)
        if load is None:
            load = parsed[text] = pred.Workload.from_parameters(rules.parse_parameters(text))
        out.append(load)
    return out


def _num(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _prompt_of(body: Any) -> Mapping[str, Any]:
    if isinstance(body, Mapping) and isinstance(body.get("prompt"), Mapping):
        body = body["prompt"]
    if not isinstance(body, Mapping) or not body:
        raise FilterError("the body must be an API-format prompt (an object of node id → {class_type, inputs}), "
                          "or {\"prompt\": {...}}")
    bad = [str(k) for k, v in body.items() if not isinstance(v, Mapping) or not isinstance(v.get("class_type"), str)]
    if bad:
        raise FilterError(f"not an API-format prompt: node(s) {', '.join(map(repr, bad[:5]))} have no 'class_type' "
                          "(send the prompt from 'Export (API)', not the UI workflow)")
    return body


def _series(wf: str, metric: str, node_type: str | None, limit: int) -> list[tuple[str, int, float]]:
    """(run_id, t_ms, value) oldest first. Per node type, a node counts as a success unless it failed, and failed
    nodes give no duration, memory or fps point."""
    rows = queries.node_series(wf, node_type, limit) if node_type else queries.metric_series(wf, metric, limit)
    out: list[tuple[str, int, float]] = []
    for run_id, t, status, duration, peak, frames in rows:
        if metric == "success_rate":
            ok = status != "failed" if node_type else status == "success"
            out.append((run_id, t, 1.0 if ok else 0.0))
        elif node_type and status == "failed":
            continue
        elif metric == "duration_ms" and duration is not None:
            out.append((run_id, t, float(duration)))
        elif metric == "gpu_peak_bytes" and peak is not None:
            out.append((run_id, t, float(peak)))
        elif metric == "fps" and duration and frames:
            out.append((run_id, t, frames / (duration / 1000.0)))
    return out
