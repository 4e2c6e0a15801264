"""The recommendation rules: pure functions from a workflow's recent runs to findings.

Each finding carries a stable `condition_key` ("<kind>:<workflow key>[:<detail>]") so that re-evaluation updates
the same recommendation instead of adding one, and every evaluation says which condition keys it is authoritative
for (`Evaluation.scopes`): a recommendation in scope whose condition no longer holds is resolved.

Rules (thresholds in `AnalysisConfig`):
- low_success_rate: under `success_rate_threshold` over the last `success_window_runs` completed runs.
- gpu_peak: one of the last `recent_window_runs` runs peaked over `gpu_peak_threshold_bytes` or over
  `gpu_peak_fraction` of the device's total.
- long_duration: one of the last `recent_window_runs` successful runs took over `duration_threshold_ms`.
- duration_above_baseline: ... over `baseline_factor` x the p95 of the successful runs before them.
- retry: the latest run is the `retry_min_attempts`-th (or later) re-run after failures, each started within
  `retry_gap_ms` of the failure; by labelled scene (story + scene) when the run has one, else by workflow.
- oom: one of the last `recent_window_runs` runs failed out of memory (GPU, or RAM without a GPU); advice from that run.
- dominant_node: in the latest successful run (at least `dominant_node_min_run_ms`) one node type took over
  `dominant_node_fraction` of the time.
- regression: duration or GPU peak of runs with the latest run's parameters rose by `regression_min_change`,
  as a change point or a significant Mann-Kendall/Theil-Sen trend.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..model import ErrorKind, RunStatus
from . import advice
from .config import AnalysisConfig
from .stats import format_bytes, format_ms, percentile, success_rate
from .trends import change_points, mann_kendall, theil_sen_slope


class Severity:
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    ALL = (INFO, WARNING, CRITICAL)
    RANK = {INFO: 0, WARNING: 1, CRITICAL: 2}


def parse_parameters(text: str | None) -> dict[str, Any]:
    """A run's stored parameters JSON as a dict ({} when missing or malformed)."""
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


@dataclass
class RunPoint:
    """The columns of one run that the rules read (see `queries.RUN_POINT_COLUMNS`)."""

    run_id: str
    status: str
    started_at_ms: int | None
    finished_at_ms: int | None
    duration_ms: float | None
    gpu_peak_bytes: int | None
    gpu_total_bytes: int | None
    frame_count: int
    error_kind: str | None
    error_node_id: str | None
    error_node_type: str | None
    error_exception_type: str | None
    workflow_name: str | None
    story_title: str | None
    scene: str | None
    parameters_json: str | None

    @property
    def parameters(self) -> dict[str, Any]:
        return parse_parameters(self.parameters_json)

    @property
    def ok(self) -> bool:
        return self.status == RunStatus.SUCCESS


@dataclass
class Finding:
    kind: str
    condition_key: str
    severity: str
    workflow_key: str | None
    workflow_name: str | None
    evidence_run_ids: list[str]
    message: str
    action: str
    score: float
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Evaluation:
    findings: list[Finding] = field(default_factory=list)
    scopes: list[str] = field(default_factory=list)

    def covers(self, condition_key: str) -> bool:
        return any(condition_key == s or condition_key.startswith(s + ":") for s in self.scopes)


def scene_key(story_title: str | None, scene: str) -> str:
    digest = hashlib.sha1(f"{story_title or ''}\x1f{scene}".encode()).hexdigest()[:16]
    return f"retry:scene:{digest}"


def _name(points: Sequence[RunPoint], wf: str) -> str:
    for p in reversed(points):
        if p.workflow_name:
            return p.workflow_name
    return wf[:16]


def _top_error(points: Sequence[RunPoint]) -> str | None:
    errors = Counter(f"{p.error_exception_type or 'an error'} in {p.error_node_type or 'an unknown node'}"
                     for p in points if p.status == RunStatus.FAILED)
    if not errors:
        return None
    text, count = errors.most_common(1)[0]
    return f"{text} ({count}x)"


def low_success_rate(points: Sequence[RunPoint], wf: str, cfg: AnalysisConfig) -> Finding | None:
    done = [p for p in points if p.status in (RunStatus.SUCCESS, RunStatus.FAILED)][-cfg.success_window_runs:]
    rate, n = success_rate(p.status for p in done)
    if rate is None or n < cfg.success_min_runs or rate >= cfg.success_rate_threshold:
        return None
    failed = [p for p in done if p.status == RunStatus.FAILED]
    name = _name(points, wf)
    top = _top_error(failed)
    return Finding(
        "low_success_rate", f"low_success_rate:{wf}",
        Severity.CRITICAL if rate < cfg.success_rate_critical else Severity.WARNING, wf, name,
        [p.run_id for p in failed],
        f"{name}: only {n - len(failed)} of the last {n} completed runs succeeded ({rate:.0%}, "
        f"threshold {cfg.success_rate_threshold:.0%}).",
        (f"Most failures are {top}. Open one of the failed runs and fix that node's inputs or model."
         if top else "Open the failed runs to see which node fails."),
        1.0 - rate, {"success_rate": rate, "completed_runs": n, "top_error": top},
    )


def gpu_peak(points: Sequence[RunPoint], wf: str, cfg: AnalysisConfig) -> Finding | None:
    recent = points[-cfg.recent_window_runs:]
    over = []
    for p in recent:
        if p.gpu_peak_bytes is None:
            continue
        limit = float(cfg.gpu_peak_threshold_bytes)
        if p.gpu_total_bytes:
            limit = min(limit, cfg.gpu_peak_fraction * p.gpu_total_bytes)
        if p.gpu_peak_bytes > limit:
            over.append((p, p.gpu_peak_bytes / limit))
    if not over:
        return None
    worst, ratio = max(over, key=lambda item: item[1])
    total = worst.gpu_total_bytes
    near_full = bool(total) and worst.gpu_peak_bytes >= 0.98 * total
    name = _name(points, wf)
    where = f" of {format_bytes(total)} ({worst.gpu_peak_bytes / total:.0%})" if total else ""
    return Finding(
        "gpu_peak", f"gpu_peak:{wf}", Severity.CRITICAL if near_full else Severity.WARNING, wf, name,
        [p.run_id for p, _ in over],
        f"{name}: GPU memory peaked at {format_bytes(worst.gpu_peak_bytes)}{where}; the limit is "
        f"{format_bytes(cfg.gpu_peak_threshold_bytes)} or {cfg.gpu_peak_fraction:.0%} of the device.",
        advice.memory_advice(worst.parameters, worst.error_node_type),
        ratio, {"gpu_peak_bytes": worst.gpu_peak_bytes, "gpu_total_bytes": total},
    )


def long_duration(points: Sequence[RunPoint], wf: str, cfg: AnalysisConfig) -> Finding | None:
    recent = [p for p in points[-cfg.recent_window_runs:] if p.ok and p.duration_ms is not None]
    over = [p for p in recent if p.duration_ms > cfg.duration_threshold_ms]
    if not over:
        return None
    worst = max(over, key=lambda p: p.duration_ms)
    name = _name(points, wf)
    return Finding(
        "long_duration", f"long_duration:{wf}", Severity.INFO, wf, name, [p.run_id for p in over],
        f"{name}: a run took {format_ms(worst.duration_ms)}, over the {format_ms(cfg.duration_threshold_ms)} "
        "threshold.",
        advice.speed_advice(worst.parameters),
        worst.duration_ms / cfg.duration_threshold_ms, {"duration_ms": worst.duration_ms},
    )


def duration_above_baseline(points: Sequence[RunPoint], wf: str, cfg: AnalysisConfig) -> Finding | None:
    window = cfg.recent_window_runs
    baseline = [p.duration_ms for p in points[:-window] if p.ok and p.duration_ms is not None]
    if len(baseline) < cfg.baseline_min_runs:
        return None
    p95 = percentile(baseline, 95)
    if not p95:
        return None
    over = [p for p in points[-window:] if p.ok and p.duration_ms is not None
            and p.duration_ms > cfg.baseline_factor * p95]
    if not over:
        return None
    worst = max(over, key=lambda p: p.duration_ms)
    name = _name(points, wf)
    return Finding(
        "duration_above_baseline", f"duration_above_baseline:{wf}", Severity.WARNING, wf, name,
        [p.run_id for p in over],
        f"{name}: a run took {format_ms(worst.duration_ms)}, {worst.duration_ms / p95:.1f}x the workflow's usual "
        f"p95 of {format_ms(p95)} ({len(baseline)} earlier runs).",
        "Compare it with an earlier run of the same workflow: changed resolution, steps, frames or models, another "
        "job sharing the GPU, or models being reloaded (low VRAM offloading) make a run this much slower.",
        worst.duration_ms / p95, {"duration_ms": worst.duration_ms, "baseline_p95_ms": p95},
    )


def _retry_chain(points: Sequence[RunPoint], gap_ms: float) -> list[RunPoint]:
    """The latest run and the failed runs it retried, back to the first attempt (time order)."""
    chain = [points[-1]] if points else []
    for prev in reversed(points[:-1]):
        nxt = chain[0]
        prev_end = prev.finished_at_ms or prev.started_at_ms
        if prev.status != RunStatus.FAILED or nxt.started_at_ms is None or prev_end is None:
            break
        if nxt.started_at_ms - prev_end > gap_ms:
            break
        chain.insert(0, prev)
    return chain


def retry(points: Sequence[RunPoint], key: str, wf: str, subject: str, cfg: AnalysisConfig) -> Finding | None:
    chain = _retry_chain(points, cfg.retry_gap_ms)
    retries = len(chain) - 1
    if retries < cfg.retry_min_attempts:
        return None
    top = _top_error(chain)
    return Finding(
        "retry", key, Severity.WARNING, wf, _name(points, wf), [p.run_id for p in chain],
        f"{subject} was re-run {retries} times after failures" + (" before it succeeded." if chain[-1].ok else "."),
        (f"The failures are {top}: fix that cause before re-running again." if top
         else "Look at the failed attempts before re-running again."),
        float(retries), {"retries": retries, "succeeded": chain[-1].ok},
    )


def oom(points: Sequence[RunPoint], wf: str, cfg: AnalysisConfig) -> Finding | None:
    hits = [p for p in points[-cfg.recent_window_runs:] if p.error_kind == ErrorKind.OOM]
    if not hits:
        return None
    latest = hits[-1]
    params = latest.parameters
    name = _name(points, wf)
    node = latest.error_node_type or "an unknown node"
    on_gpu = latest.gpu_total_bytes is not None  # no GPU recorded: the run ran out of system RAM
    return Finding(
        "oom", f"oom:{wf}", Severity.CRITICAL, wf, name, [p.run_id for p in hits],
        f"{name}: {len(hits)} of the last {min(len(points), cfg.recent_window_runs)} runs ran out of "
        f"{'GPU memory' if on_gpu else 'memory'} in {node}{advice.describe_size(params)}.",
        advice.memory_advice(params, latest.error_node_type, on_gpu),
        float(len(hits)), {"node_type": latest.error_node_type, "node_id": latest.error_node_id,
                           "parameters": {k: params.get(k) for k in ("width", "height", "batch", "frames")}},
    )


def dominant_node(points: Sequence[RunPoint], nodes: Sequence[tuple[str, str, float | None]], wf: str,
                  cfg: AnalysisConfig) -> Finding | None:
    """`nodes`: (class_type, status, duration_ms) of the latest successful run in `points`."""
    latest = next((p for p in reversed(points) if p.ok and p.duration_ms), None)
    if latest is None or latest.duration_ms < cfg.dominant_node_min_run_ms:
        return None
    totals: Counter[str] = Counter()
    for class_type, status, duration in nodes:
        if status == "executed" and duration:
            totals[class_type] += duration
    if not totals:
        return None
    class_type, spent = totals.most_common(1)[0]
    share = spent / latest.duration_ms
    if share <= cfg.dominant_node_fraction:
        return None
    name = _name(points, wf)
    return Finding(
        "dominant_node", f"dominant_node:{wf}", Severity.INFO, wf, name, [latest.run_id],
        f"{name}: {class_type} took {share:.0%} of the run ({format_ms(spent)} of {format_ms(latest.duration_ms)}).",
        advice.node_advice(class_type, latest.parameters), share, {"node_type": class_type, "share": share},
    )


def _level_rise(t_ms: np.ndarray, values: np.ndarray, cfg: AnalysisConfig) -> dict[str, Any] | None:
    """How much the metric rose (change point or trend), or None when it did not rise significantly."""
    cps = change_points(values, cfg.change_point_p_value, cfg.change_point_min_size, cfg.regression_min_change)
    if cps:
        last = cps[-1]
        current = float(np.median(values[-cfg.change_point_min_size:]))
        if last.before > 0 and last.after >= (1 + cfg.regression_min_change) * last.before \
                and current >= (1 + cfg.regression_min_change) * last.before:
            return {"how": "change point", "index": last.index, "before": last.before, "after": last.after}
    mk = mann_kendall(values, cfg.regression_p_value)
    if mk.trend == "increasing":
        slope, intercept = theil_sen_slope(t_ms, values)
        if slope is not None and intercept and intercept > 0:
            span = (t_ms[-1] - t_ms[0]) / 86_400_000.0
            end = intercept + slope * span
            if end >= (1 + cfg.regression_min_change) * intercept:
                return {"how": "trend", "index": 0, "before": intercept, "after": end, "p_value": mk.p_value}
    return None


def regressions(points: Sequence[RunPoint], wf: str, cfg: AnalysisConfig) -> list[Finding]:
    ok = [p for p in points if p.ok and p.started_at_ms is not None]
    if not ok:
        return []
    latest_params = ok[-1].parameters
    same = [p for p in ok if _same_workload(p.parameters, latest_params)]
    findings = []
    name = _name(points, wf)
    for metric, label, fmt in (("duration_ms", "slower", format_ms), ("gpu_peak_bytes", "hungrier", format_bytes)):
        series = [p for p in same if getattr(p, metric) is not None]
        if len(series) < 2 * cfg.change_point_min_size:
            continue
        values = np.asarray([getattr(p, metric) for p in series], dtype=float)
        t_ms = np.asarray([p.started_at_ms for p in series], dtype=float)
        rise = _level_rise(t_ms, values, cfg)
        if rise is None:
            continue
        change = rise["after"] / rise["before"] - 1
        since = series[rise["index"]]
        findings.append(Finding(
            "regression", f"regression:{wf}:{metric}", Severity.WARNING, wf, name,
            [p.run_id for p in series[rise["index"]:]][-20:],
            f"{name} got {change:.0%} {label} with the same parameters: {fmt(rise['before'])} → "
            f"{fmt(rise['after'])} ({rise['how']}" + (f" at run {since.run_id})." if rise["how"] == "change point"
                                                       else f" over {len(series)} runs)."),
            advice.regression_advice(series[max(rise["index"] - 1, 0)].parameters, series[-1].parameters),
            1.0 + change, {"metric": metric, **{k: v for k, v in rise.items() if k != "index"}},
        ))
    return findings


_WORKLOAD_KEYS = ("pixels", "width", "height", "steps", "frames", "batch")


def _same_workload(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(a.get(k) == b.get(k) for k in _WORKLOAD_KEYS)


WORKFLOW_KINDS = ("low_success_rate", "gpu_peak", "long_duration", "duration_above_baseline", "retry:wf", "oom",
                  "dominant_node", "regression")


def evaluate_workflow(points: Sequence[RunPoint], wf: str, cfg: AnalysisConfig,
                      latest_nodes: Sequence[tuple[str, str, float | None]] = (),
                      scene_points: Sequence[RunPoint] | None = None) -> Evaluation:
    """Every workflow rule over `points` (the workflow's recent runs, time order). `scene_points`: the recent runs
    of the latest run's labelled scene, when it has one (retries are then counted per scene)."""
    result = Evaluation(scopes=[f"{kind}:{wf}" for kind in WORKFLOW_KINDS])
    if not points:
        return result
    for rule in (low_success_rate, gpu_peak, long_duration, duration_above_baseline, oom):
        found = rule(points, wf, cfg)
        if found:
            result.findings.append(found)
    found = dominant_node(points, latest_nodes, wf, cfg)
    if found:
        result.findings.append(found)
    result.findings.extend(regressions(points, wf, cfg))
    latest = points[-1]
    if latest.scene and scene_points:
        key = scene_key(latest.story_title, latest.scene)
        result.scopes.append(key)
        subject = f"Scene '{latest.scene}'" + (f" of '{latest.story_title}'" if latest.story_title else "")
        found = retry(scene_points, key, wf, subject, cfg)
    else:
        found = retry(points, f"retry:wf:{wf}", wf, _name(points, wf), cfg)
    if found:
        result.findings.append(found)
    return result
