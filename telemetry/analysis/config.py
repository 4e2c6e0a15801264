"""AnalysisConfig: the thresholds of the recommendation rules, trends and predictions.

Read from the `"analysis"` object of the pack's JSON config file by the one config loader (`telemetry.config`),
and changed at run time through `GET|PUT /telemetry/config`; both go through `telemetry.validation`, so a value
reads the same either way ("90000" is 90000). In the file, a value that cannot be used is a warning (shown in
`/telemetry/health`) and its default is used; in a PUT it is a `ConfigError` (400) whose message names the setting,
what it accepts and what it got. `save_config` writes the section back, keeping the file's other keys, and never
overwrites a file it cannot parse (`ConfigFileError`, 409).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from ..validation import (
    ConfigError,
    ConfigFileError,
    ConfigWarning,
    NoBool,
    apply_settings,
    read_config_file,
    write_config_section,
)

GIB = 1024**3
SECTION = "analysis"


def Int(low: int, high: int) -> Any:  # noqa: N802 (a type)
    return Annotated[int, NoBool, Field(ge=low, le=high)]


def Num(low: float, high: float) -> Any:  # noqa: N802 (a type)
    return Annotated[float, NoBool, Field(ge=low, le=high, allow_inf_nan=False)]


class AnalysisConfig(BaseModel):
    """Every setting with its bounds; build changed copies with `validate_settings`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Success rate: fires when fewer than `success_rate_threshold` of the last `success_window_runs` completed
    # runs (success or failed; interrupted runs are user cancels and do not count) succeeded.
    success_window_runs: Int(2, 10_000) = 20
    success_min_runs: Int(1, 10_000) = 5
    success_rate_threshold: Num(0, 1) = 0.8
    success_rate_critical: Num(0, 1) = 0.5
    # GPU peak and duration look at the last `recent_window_runs` runs of a workflow: the condition holds while
    # one of them is over, and resolves once that many runs in a row are under.
    recent_window_runs: Int(1, 1_000) = 5
    gpu_peak_threshold_bytes: Int(1, 2**62) = 20 * GIB
    gpu_peak_fraction: Num(0.01, 1) = 0.9
    duration_threshold_ms: Num(1, 1e12) = 60_000.0
    # "Far above the baseline": over `baseline_factor` x the p95 of the successful runs before the recent window.
    baseline_factor: Num(1, 1_000) = 1.5
    baseline_min_runs: Int(3, 100_000) = 20
    # Retries: a run that starts within `retry_gap_ms` after a failed run of the same workflow (or labelled scene).
    retry_min_attempts: Int(1, 1_000) = 3
    retry_gap_ms: Num(1, 1e12) = 30 * 60_000.0
    dominant_node_fraction: Num(0.01, 1) = 0.5
    dominant_node_min_run_ms: Num(0, 1e12) = 10_000.0
    # Regressions: a level shift (change point) or a significant trend that made the metric this much higher.
    regression_min_change: Num(0.01, 100) = 0.2
    regression_p_value: Num(1e-12, 0.5) = 0.01
    # How many recent runs of a workflow the per-run evaluation reads (the baseline and regression window).
    history_runs: Int(20, 5_000) = 200
    trend_max_points: Int(10, 5_000) = 500
    trend_rolling_window: Int(2, 1_000) = 20
    trend_p_value: Num(1e-12, 0.5) = 0.05
    change_point_p_value: Num(1e-12, 0.5) = 0.001
    change_point_min_size: Int(2, 1_000) = 8
    change_point_min_change: Num(0, 100) = 0.1
    predict_min_runs: Int(2, 10_000) = 5
    predict_history_runs: Int(5, 5_000) = 300
    interval_coverage: Num(0.5, 0.99) = 0.8
    backtest_runs: Int(1, 1_000) = 30
    accuracy_max_workflows: Int(1, 1_000) = 50
    # A dismissed recommendation stays dismissed while its condition holds, unless it turns critical or its
    # score (failure rate, peak, duration ratio, retries...) grows to this factor x the score at dismissal.
    dismissed_reopen_factor: Num(1, 1_000) = 1.5

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


SETTING_NAMES = tuple(AnalysisConfig.model_fields)


def consistency(config: AnalysisConfig) -> list[tuple[tuple[str, ...], str]]:
    """Problems between settings: ((key, the other key), what the key must be)."""
    problems = []
    if config.success_rate_critical > config.success_rate_threshold:
        problems.append((("success_rate_critical", "success_rate_threshold"),
                         f"at most success_rate_threshold ({config.success_rate_threshold:g})"))
    if config.success_min_runs > config.success_window_runs:
        problems.append((("success_min_runs", "success_window_runs"),
                         f"at most success_window_runs ({config.success_window_runs})"))
    return problems


def validate_settings(base: AnalysisConfig, changes: Any) -> AnalysisConfig:
    """`base` with `changes` (a partial mapping of settings) applied, or a ConfigError saying what is wrong."""
    config, _ = apply_settings(AnalysisConfig, base, changes, source="request", strict=True, check=consistency)
    return config


def settings_from_file(section: Any, source: str) -> tuple[AnalysisConfig, list[ConfigWarning]]:
    """The file's `"analysis"` object read leniently: each unusable value is a warning and keeps its default."""
    if section is None:
        return AnalysisConfig(), []
    return apply_settings(AnalysisConfig, AnalysisConfig(), section, source=source, check=consistency)


def load_config(path: str | None) -> AnalysisConfig:
    """The `"analysis"` section of the JSON file at `path` (defaults where there is none or a value is bad; the
    warnings are reported by the pack's config loader). Never raises."""
    data, _ = read_config_file(path)
    return settings_from_file(data.get(SECTION), f"config file {path}")[0]


def save_config(path: str, config: AnalysisConfig) -> None:
    """Write `config` as the `"analysis"` section of the JSON file at `path`, keeping its other keys (atomic,
    owner-only). Raises ConfigFileError, leaving the file as it is, when the file does not parse."""
    write_config_section(path, SECTION, config.to_dict())


__all__ = ["AnalysisConfig", "ConfigError", "ConfigFileError", "SETTING_NAMES", "load_config", "save_config",
           "settings_from_file", "validate_settings"]
