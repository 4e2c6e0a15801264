"""AnalysisConfig: the thresholds of the recommendation rules, trends and predictions.

Read from and written to the `"analysis"` object of the pack's JSON config file (other keys are kept), and
changed at run time through `GET|PUT /telemetry/config`. `validate_settings` turns any bad value into a
`ConfigError` whose message names the setting, what it accepts and what it got.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..filters import FilterError

GIB = 1024**3


class ConfigError(FilterError):
    """A bad analysis setting (served as a 400)."""


@dataclass(frozen=True)
class AnalysisConfig:
    # Success rate: fires when fewer than `success_rate_threshold` of the last `success_window_runs` completed
    # runs (success or failed; interrupted runs are user cancels and do not count) succeeded.
    success_window_runs: int = 20
    success_min_runs: int = 5
    success_rate_threshold: float = 0.8
    success_rate_critical: float = 0.5
    # GPU peak and duration look at the last `recent_window_runs` runs of a workflow: the condition holds while
    # one of them is over, and resolves once that many runs in a row are under.
    recent_window_runs: int = 5
    gpu_peak_threshold_bytes: int = 20 * GIB
    gpu_peak_fraction: float = 0.9
    duration_threshold_ms: float = 60_000.0
    # "Far above the baseline": over `baseline_factor` x the p95 of the successful runs before the recent window.
    baseline_factor: float = 1.5
    baseline_min_runs: int = 20
    # Retries: a run that starts within `retry_gap_ms` after a failed run of the same workflow (or labelled scene).
    retry_min_attempts: int = 3
    retry_gap_ms: float = 30 * 60_000.0
    dominant_node_fraction: float = 0.5
    dominant_node_min_run_ms: float = 10_000.0
    # Regressions: a level shift (change point) or a significant trend that made the metric this much higher.
    regression_min_change: float = 0.2
    regression_p_value: float = 0.01
    # How many recent runs of a workflow the per-run evaluation reads (the baseline and regression window).
    history_runs: int = 200
    trend_max_points: int = 500
    trend_rolling_window: int = 20
    trend_p_value: float = 0.05
    change_point_p_value: float = 0.001
    change_point_min_size: int = 8
    change_point_min_change: float = 0.1
    predict_min_runs: int = 5
    predict_history_runs: int = 300
    interval_coverage: float = 0.8
    backtest_runs: int = 30
    accuracy_max_workflows: int = 50
    # A dismissed recommendation stays dismissed while its condition holds, unless it turns critical or its
    # score (failure rate, peak, duration ratio, retries...) grows to this factor x the score at dismissal.
    dismissed_reopen_factor: float = 1.5

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# name -> (kind, minimum, maximum); kind "int" | "float" | "fraction"
_LIMITS: dict[str, tuple[str, float, float]] = {
    "success_window_runs": ("int", 2, 10_000),
    "success_min_runs": ("int", 1, 10_000),
    "success_rate_threshold": ("fraction", 0, 1),
    "success_rate_critical": ("fraction", 0, 1),
    "recent_window_runs": ("int", 1, 1_000),
    "gpu_peak_threshold_bytes": ("int", 1, 2**62),
    "gpu_peak_fraction": ("fraction", 0.01, 1),
    "duration_threshold_ms": ("float", 1, 1e12),
    "baseline_factor": ("float", 1, 1_000),
    "baseline_min_runs": ("int", 3, 100_000),
    "retry_min_attempts": ("int", 1, 1_000),
    "retry_gap_ms": ("float", 1, 1e12),
    "dominant_node_fraction": ("fraction", 0.01, 1),
    "dominant_node_min_run_ms": ("float", 0, 1e12),
    "regression_min_change": ("float", 0.01, 100),
    "regression_p_value": ("fraction", 1e-12, 0.5),
    "history_runs": ("int", 20, 5_000),
    "trend_max_points": ("int", 10, 5_000),
    "trend_rolling_window": ("int", 2, 1_000),
    "trend_p_value": ("fraction", 1e-12, 0.5),
    "change_point_p_value": ("fraction", 1e-12, 0.5),
    "change_point_min_size": ("int", 2, 1_000),
    "change_point_min_change": ("float", 0, 100),
    "predict_min_runs": ("int", 2, 10_000),
    "predict_history_runs": ("int", 5, 5_000),
    "interval_coverage": ("fraction", 0.5, 0.99),
    "backtest_runs": ("int", 1, 1_000),
    "accuracy_max_workflows": ("int", 1, 1_000),
    "dismissed_reopen_factor": ("float", 1, 1_000),
}
SETTING_NAMES = tuple(f.name for f in fields(AnalysisConfig))
assert set(_LIMITS) == set(SETTING_NAMES), "every setting needs limits"


def _check(name: str, value: Any) -> int | float:
    kind, low, high = _LIMITS[name]
    what = {"int": "an integer", "float": "a number", "fraction": "a number"}[kind]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"'{name}' must be {what} between {low:g} and {high:g}, got {json.dumps(value)[:60]}")
    if kind == "int":
        if isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"'{name}' must be an integer, got {value!r}")
        value = int(value)
    else:
        value = float(value)
    if not (low <= value <= high):  # NaN fails this too
        raise ConfigError(f"'{name}' must be between {low:g} and {high:g}, got {value!r}")
    return value


def validate_settings(base: AnalysisConfig, changes: Any) -> AnalysisConfig:
    """`base` with `changes` (a partial mapping of settings) applied, or a ConfigError saying what is wrong."""
    if not isinstance(changes, Mapping):
        raise ConfigError("the analysis config must be a JSON object of settings, "
                          "e.g. {\"duration_threshold_ms\": 90000}")
    unknown = [k for k in changes if k not in _LIMITS]
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(map(repr, map(str, unknown)))}; "
                          f"known: {', '.join(SETTING_NAMES)}")
    values = base.to_dict()
    values.update({name: _check(name, value) for name, value in changes.items()})
    config = AnalysisConfig(**values)
    if config.success_rate_critical > config.success_rate_threshold:
        raise ConfigError(f"'success_rate_critical' ({config.success_rate_critical:g}) must not be above "
                          f"'success_rate_threshold' ({config.success_rate_threshold:g})")
    if config.success_min_runs > config.success_window_runs:
        raise ConfigError(f"'success_min_runs' ({config.success_min_runs}) must not be above "
                          f"'success_window_runs' ({config.success_window_runs})")
    return config


def load_config(path: str | None) -> AnalysisConfig:
    """The `"analysis"` section of the JSON file at `path` (defaults when there is none). Raises ConfigError
    when the file or a setting is invalid, naming the file."""
    if not path or not os.path.isfile(path):
        return AnalysisConfig()
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"config file {path}: cannot be read as JSON ({exc})") from None
    section = data.get("analysis", {}) if isinstance(data, dict) else None
    try:
        return validate_settings(AnalysisConfig(), section)
    except ConfigError as exc:
        raise ConfigError(f"config file {path}, \"analysis\": {exc}") from None


def save_config(path: str, config: AnalysisConfig) -> None:
    """Write `config` as the `"analysis"` section of the JSON file at `path`, keeping its other keys. The file is
    replaced atomically."""
    data: dict[str, Any] = {}
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as handle:
                loaded = json.load(handle)
            data = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            data = {}
    data["analysis"] = config.to_dict()
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
