"""Trends of one metric over a workflow's runs: rolling p50/p95, a robust slope (Theil-Sen) with its
significance (Mann-Kendall, i.e. Kendall's tau between time and value), and change points (the runs after which
the level shifted).

Change points come from binary segmentation with the Pettitt rank test: a segment is split at the point where
the rank sums before and after differ most, only if that split is significant (`p_value`), leaves at least
`min_size` runs on each side and moves the level (median, or mean for 0/1 outcomes) by at least `min_change`
of the level before. Ranks make it robust to outliers; the significance test and the minimum change keep it
quiet on noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as sps

from .stats import rolling_percentiles

MS_PER_DAY = 86_400_000.0


@dataclass
class MannKendall:
    tau: float | None
    p_value: float | None
    trend: str  # "increasing" | "decreasing" | "no trend" | "not enough data"

    def to_dict(self) -> dict:
        return {"tau": self.tau, "p_value": self.p_value, "trend": self.trend}


@dataclass
class ChangePoint:
    index: int  # the first point of the new level
    before: float
    after: float
    p_value: float


@dataclass
class TrendResult:
    slope_per_day: float | None
    intercept: float | None
    mann_kendall: MannKendall
    change_points: list[ChangePoint] = field(default_factory=list)
    rolling_p50: np.ndarray | None = None
    rolling_p95: np.ndarray | None = None


def theil_sen_slope(t_ms: np.ndarray, values: np.ndarray) -> tuple[float | None, float | None]:
    """Theil-Sen slope per day and intercept (at t=0 days), or (None, None) with fewer than 3 points or one
    distinct time."""
    if values.size < 3 or np.ptp(t_ms) == 0:
        return None, None
    days = (t_ms - t_ms[0]) / MS_PER_DAY
    slope, intercept, _lo, _hi = sps.theilslopes(values, days)
    return float(slope), float(intercept)


def mann_kendall(values: np.ndarray, p_value: float = 0.05) -> MannKendall:
    """Mann-Kendall trend test (two-sided, ties handled) on values in time order."""
    if values.size < 4 or np.ptp(values) == 0:
        return MannKendall(None, None, "not enough data" if values.size < 4 else "no trend")
    result = sps.kendalltau(np.arange(values.size), values)
    tau, p = float(result.statistic), float(result.pvalue)
    if not math.isfinite(tau) or not math.isfinite(p):
        return MannKendall(None, None, "no trend")
    trend = "no trend" if p >= p_value else ("increasing" if tau > 0 else "decreasing")
    return MannKendall(tau, p, trend)


def _pettitt(segment: np.ndarray, min_size: int) -> tuple[int, float] | None:
    """Best split of `segment` (index of the first point after it) and its Pettitt p-value."""
    n = segment.size
    if n < 2 * min_size:
        return None
    ranks = sps.rankdata(segment)
    k = np.arange(1, n)  # split after k points
    u = 2.0 * np.cumsum(ranks)[:-1] - k * (n + 1)
    allowed = (k >= min_size) & (k <= n - min_size)
    if not allowed.any():
        return None
    scores = np.where(allowed, np.abs(u), -1.0)
    best = int(np.argmax(scores))
    stat = scores[best]
    p = min(1.0, 2.0 * math.exp(-6.0 * stat**2 / (n**3 + n**2)))
    return best + 1, p


def change_points(values: np.ndarray, p_value: float = 0.001, min_size: int = 8, min_change: float = 0.1,
                  use_mean: bool = False) -> list[ChangePoint]:
    """Level shifts in `values` (time order), by binary segmentation with the Pettitt test."""
    center = np.mean if use_mean else np.median
    found: list[ChangePoint] = []
    stack = [(0, values.size)]
    while stack:
        start, end = stack.pop()
        segment = values[start:end]
        split = _pettitt(segment, min_size)
        if split is None:
            continue
        offset, p = split
        if p >= p_value:
            continue
        before, after = float(center(segment[:offset])), float(center(segment[offset:]))
        scale = abs(before) if before != 0 else max(abs(after), 1e-12)
        if use_mean:
            scale = 1.0  # 0/1 outcomes: the change is in absolute rate
        if abs(after - before) / scale < min_change:
            continue
        found.append(ChangePoint(start + offset, before, after, p))
        stack.append((start, start + offset))
        stack.append((start + offset, end))
    found.sort(key=lambda cp: cp.index)
    # Report levels between neighbouring change points, not within the segment that was first split.
    bounds = [0] + [cp.index for cp in found] + [values.size]
    for i, cp in enumerate(found):
        cp.before = float(center(values[bounds[i]:bounds[i + 1]]))
        cp.after = float(center(values[bounds[i + 1]:bounds[i + 2]]))
    return found


def analyse(t_ms: np.ndarray, values: np.ndarray, *, rolling_window: int = 20, p_value: float = 0.05,
            cp_p_value: float = 0.001, cp_min_size: int = 8, cp_min_change: float = 0.1,
            binary: bool = False) -> TrendResult:
    """Everything the trends route shows for one series (time order). `binary`: 0/1 outcomes (success rate):
    the rolling values are the windowed rate and change points compare means."""
    slope, intercept = theil_sen_slope(t_ms, values)
    mk = mann_kendall(values, p_value)
    if binary:
        if values.size:
            window = max(1, min(rolling_window, values.size))
            kernel = np.ones(window)
            sums = np.convolve(values, kernel)[: values.size]
            counts = np.minimum(np.arange(1, values.size + 1), window)
            rate = sums / counts
        else:
            rate = values
        p50 = p95 = rate
    else:
        p50, p95 = rolling_percentiles(values, rolling_window)
    cps = change_points(values, cp_p_value, cp_min_size, cp_min_change, use_mean=binary)
    return TrendResult(slope, intercept, mk, cps, p50, p95)
