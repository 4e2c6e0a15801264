"""Trends find a planted slope and a planted change point, and stay quiet on pure noise (fixed seeds); the
trends of a stored workflow name the run after which the level shifted."""

from __future__ import annotations

import numpy as np
import pytest
import test_analysis_support as support
from test_analysis_support import HOUR, T0, make_run

from telemetry.analysis import trends
from telemetry.analysis.service import AnalysisNotFound
from telemetry.filters import FilterError

service = support.service  # fixture; `store` (SQLite file and PostgreSQL) comes from conftest

DAY = 86_400_000.0


def _times(n: int) -> np.ndarray:
    return T0 + np.arange(n) * 4 * HOUR  # six runs a day


def test_planted_slope_is_found_with_its_size_and_significance():
    rng = np.random.default_rng(7)
    t = _times(200)
    per_day = 1.5
    values = 100 + per_day * (t - t[0]) / DAY + rng.normal(0, 5, t.size)
    result = trends.analyse(t, values)
    assert result.slope_per_day == pytest.approx(per_day, rel=0.1)
    assert result.mann_kendall.trend == "increasing" and result.mann_kendall.p_value < 1e-6


def test_planted_change_point_is_found_at_the_right_run():
    rng = np.random.default_rng(11)
    values = np.r_[rng.normal(100, 8, 120), rng.normal(130, 8, 80)]
    cps = trends.change_points(values)
    assert len(cps) == 1
    assert abs(cps[0].index - 120) <= 2
    assert cps[0].before == pytest.approx(100, abs=4) and cps[0].after == pytest.approx(130, abs=4)


def test_two_planted_shifts_are_both_found():
    rng = np.random.default_rng(5)
    values = np.r_[rng.normal(50, 3, 60), rng.normal(80, 3, 60), rng.normal(60, 3, 60)]
    assert [abs(cp.index - want) <= 2 for cp, want in zip(trends.change_points(values), (60, 120), strict=True)] \
        == [True, True]


@pytest.mark.parametrize("seed", range(20))
def test_pure_noise_gives_no_change_point(seed):
    rng = np.random.default_rng(seed)
    values = rng.lognormal(np.log(10_000), 0.15, 200)
    assert trends.change_points(values) == []


def test_pure_noise_rarely_shows_a_trend():
    flagged = 0
    for seed in range(40):
        rng = np.random.default_rng(1000 + seed)
        t = _times(150)
        result = trends.analyse(t, rng.normal(100, 10, t.size))
        flagged += result.mann_kendall.trend != "no trend"
        assert result.change_points == []
    assert flagged <= 4  # 5% test level: about 2 of 40 expected by chance


def test_outliers_do_not_make_change_points():
    rng = np.random.default_rng(3)
    values = rng.normal(100, 5, 200)
    values[::17] *= 6  # rare huge outliers (model reloads)
    assert trends.change_points(values) == []


def test_rolling_percentiles_follow_the_window():
    values = np.arange(1, 101, dtype=float)
    result = trends.analyse(_times(100), values, rolling_window=10)
    assert result.rolling_p50[-1] == pytest.approx(95.5) and result.rolling_p95[-1] == pytest.approx(99.55)
    assert np.isnan(result.rolling_p50[0]) and result.rolling_p50[2] == pytest.approx(2.0)


def test_stored_workflow_trends_name_the_shift_run(store, service):
    rng = np.random.default_rng(2)
    runs = [make_run(f"s-{i}", "shift", T0 + i * HOUR,
                     duration_ms=float((10_000 if i < 50 else 15_000) * rng.lognormal(0, 0.05)),
                     status="failed" if i % 10 == 9 else "success", frames=16) for i in range(100)]
    store.save_runs(runs)
    data = service.trends("shift", "duration_ms")
    assert data["workflow"] == "shift" and len(data["points"]) == 90
    (cp,) = data["change_points"]
    assert cp["run_id"] == "s-50" and cp["after"] / cp["before"] == pytest.approx(1.5, rel=0.05)
    assert data["mann_kendall"]["trend"] == "increasing" and data["slope_per_day"] > 0
    assert len(data["rolling"]) == len(data["points"])
    rate = service.trends("workflow shift", "success_rate")  # by name
    assert len(rate["points"]) == 100 and rate["rolling"][-1]["p50"] == pytest.approx(0.9)
    assert rate["change_points"] == []
    fps = service.trends("shift", "fps")
    assert fps["points"][0]["value"] == pytest.approx(16 / (runs[0].duration_ms / 1000))
    node = service.trends("shift", "duration_ms", node_type="KSampler")
    assert node["change_points"][0]["run_id"] == "s-50"
    assert node["points"][0]["value"] == pytest.approx(runs[0].duration_ms * 0.45)


def test_trends_say_what_is_wrong(service):
    with pytest.raises(FilterError, match="'metric' must be one of duration_ms, gpu_peak_bytes, success_rate, fps"):
        service.trends("x", "speed")
    with pytest.raises(FilterError, match="'workflow' is required"):
        service.trends(None, "duration_ms")
    with pytest.raises(AnalysisNotFound, match="no runs for workflow 'nope'"):
        service.trends("nope", "duration_ms")
