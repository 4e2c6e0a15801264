"""Predicting a run's duration and GPU peak from the history of the same fingerprint, before it executes.

The model is a robust linear fit with non-negative coefficients (Huber weights, relative residuals, NNLS):

    duration  ~ c0 + c1 * work + c2 * latent          gpu_peak ~ m0 + m1 * latent
    latent = pixels x frames x batch                  work = latent x steps

A missing parameter counts as 1, and a feature that does not vary in the history is dropped, so a workflow run
with fixed settings gets a robust location estimate. The interval comes from the spread of actual/predicted
ratios in the history (conformal-style quantiles, widened for the parameters fitted). Fewer than
`min_runs` runs give "not enough history" instead of a guess.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import nnls

DURATION = "duration_ms"
GPU_PEAK = "gpu_peak_bytes"
_HUBER_K = 1.345
_IRLS_STEPS = 8


def _positive(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        return 1.0
    return float(value)


@dataclass(frozen=True)
class Workload:
    """The parameters a prediction depends on (None: not in the prompt)."""

    pixels: float | None = None
    steps: float | None = None
    frames: float | None = None
    batch: float | None = None

    @classmethod
    def from_parameters(cls, params: Mapping[str, Any] | None) -> Workload:
        params = params or {}

        def num(key: str) -> float | None:
            value = params.get(key)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            return float(value) if ok and value > 0 else None

        return cls(num("pixels"), num("steps"), num("frames"), num("batch"))

    @property
    def latent(self) -> float:
        return _positive(self.pixels) * _positive(self.frames) * _positive(self.batch)

    @property
    def work(self) -> float:
        return self.latent * _positive(self.steps)

    def features(self, metric: str) -> list[float]:
        return [self.work, self.latent] if metric == DURATION else [self.latent]

    def to_dict(self) -> dict[str, float | None]:
        return {"pixels": self.pixels, "steps": self.steps, "frames": self.frames, "batch": self.batch}


@dataclass
class FittedModel:
    metric: str
    coefficients: np.ndarray  # intercept first, then per kept feature (already divided by scale)
    kept: list[int]
    scales: np.ndarray
    ratio_low: float
    ratio_high: float
    runs: int
    feature_max: np.ndarray

    @property
    def kind(self) -> str:
        return "linear" if self.kept else "constant"

    def point(self, workload: Workload) -> float:
        return self.point_features(np.asarray(workload.features(self.metric), dtype=float))

    def point_features(self, feats: np.ndarray) -> float:
        x = np.concatenate(([1.0], feats[self.kept] / self.scales)) if self.kept else np.array([1.0])
        return float(max(x @ self.coefficients, 0.0))

    def predict(self, workload: Workload) -> dict[str, Any]:
        value = self.point(workload)
        feats = np.asarray(workload.features(self.metric), dtype=float)
        extrapolated = bool(self.kept) and bool(np.any(feats[self.kept] > 1.5 * self.feature_max[self.kept]))
        return {"value": value, "low": value * self.ratio_low, "high": value * self.ratio_high,
                "model": self.kind, "runs": self.runs, "extrapolated": extrapolated}


def median(values: np.ndarray) -> float:
    """`np.median` of a 1-D array without NaN, bit for bit (the middle value, or the mean of the two middle
    ones), at a fraction of its overhead on the few hundred values of a fit."""
    ordered = np.sort(values)
    half = ordered.size // 2
    if ordered.size % 2:
        return float(ordered[half])
    return float((ordered[half - 1] + ordered[half]) / 2.0)


def sorted_quantile(ordered: np.ndarray, q: float) -> float:
    """`np.quantile(ordered, q)` (its default, linear method) of a sorted 1-D array, bit for bit: the same index,
    fraction and two-sided interpolation as numpy's `_lerp`, without its per-call overhead."""
    n = ordered.size
    virtual = (n - 1) * q
    if virtual >= n - 1:
        return float(ordered[-1])
    if virtual < 0:
        return float(ordered[0])
    below = math.floor(virtual)
    a, b = ordered[below], ordered[below + 1]
    t = virtual - below
    diff = b - a
    return float(b - diff * (1 - t) if t >= 0.5 else a + diff * t)


def _solve(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Huber-weighted NNLS on relative residuals (y > 0)."""
    base = x / y[:, None]
    target = np.ones_like(y)
    weights = np.ones_like(y)
    coef = np.zeros(x.shape[1])
    for _ in range(_IRLS_STEPS):
        sw = np.sqrt(weights)
        coef, _norm = nnls(base * sw[:, None], target * sw)
        resid = target - base @ coef
        scale = 1.4826 * median(np.abs(resid - median(resid)))
        if scale <= 1e-9:
            break
        u = np.abs(resid) / (_HUBER_K * scale)
        new = np.where(u <= 1.0, 1.0, 1.0 / np.maximum(u, 1e-12))
        # np.allclose(new, weights, atol=1e-4) for finite weights (both in (0, 1]), without its overhead
        if bool(np.all(np.abs(new - weights) <= 1e-4 + 1e-5 * np.abs(weights))):
            break
        weights = new
    return coef


def feature_matrix(metric: str, workloads: Sequence[Workload]) -> np.ndarray:
    """One row of `Workload.features(metric)` per workload, computed in bulk."""
    raw = np.asarray([(w.pixels, w.steps, w.frames, w.batch) for w in workloads], dtype=float).reshape(-1, 4)
    raw = np.where(np.isfinite(raw) & (raw > 0), raw, 1.0)
    latent = raw[:, 0] * raw[:, 2] * raw[:, 3]
    return np.column_stack([latent * raw[:, 1], latent]) if metric == DURATION else latent[:, None]


def _usable(values: Sequence[float | None]) -> np.ndarray:
    y = np.asarray([np.nan if v is None else v for v in values], dtype=float)
    return np.isfinite(y) & (y > 0)


def fit(metric: str, workloads: Sequence[Workload], values: Sequence[float | None], coverage: float = 0.8,
        min_runs: int = 5) -> FittedModel | None:
    """A model for `metric` from past runs, or None with fewer than `min_runs` usable (positive) values."""
    y = np.asarray([np.nan if v is None else v for v in values], dtype=float)
    ok = _usable(values)
    return fit_arrays(metric, feature_matrix(metric, workloads)[ok], y[ok], coverage, min_runs)


def fit_arrays(metric: str, feats: np.ndarray, y: np.ndarray, coverage: float = 0.8,
               min_runs: int = 5) -> FittedModel | None:
    """`fit` over a feature matrix and positive values."""
    if y.size < min_runs:
        return None
    kept = [j for j in range(feats.shape[1]) if feats[:, j].max() > 1.01 * feats[:, j].min()]
    # Need a few runs per fitted coefficient, else fall back to the robust location.
    if y.size < 3 * (len(kept) + 1):
        kept = []
    scales = feats[:, kept].max(axis=0) if kept else np.ones(0)
    x = np.column_stack([np.ones(len(y))] + [feats[:, j] / scales[i] for i, j in enumerate(kept)])
    coef = _solve(x, y)
    fitted = np.maximum(x @ coef, 1e-9)
    ratios = np.sort(y / fitted)
    n, p = len(y), len(kept) + 1
    # Conformal-style quantile levels, then widen the log-spread for the fitted parameters.
    tail = (1.0 - coverage) / 2.0
    lo_q = max(0.0, math.floor((n + 1) * tail) / n - 1.0 / n)
    hi_q = min(1.0, math.ceil((n + 1) * (1.0 - tail)) / n)
    lo, hi = sorted_quantile(ratios, lo_q), sorted_quantile(ratios, hi_q)
    widen = math.sqrt(n / max(n - p, 1))
    lo = math.exp(min(math.log(max(lo, 1e-6)), 0.0) * widen)
    hi = math.exp(max(math.log(max(hi, 1e-6)), 0.0) * widen)
    return FittedModel(metric, coef, kept, scales, lo, hi, n, feats.max(axis=0))


def not_enough(metric: str, have: int, need: int) -> dict[str, Any]:
    return {"value": None, "low": None, "high": None, "model": None, "runs": have,
            "reason": f"not enough history: {have} successful run(s) with a {metric} of this workflow, need {need}"}


def backtest(metric: str, workloads: Sequence[Workload], values: Sequence[float | None], test_runs: int,
             coverage: float, min_runs: int, history_runs: int) -> dict[str, Any]:
    """Rolling-origin backtest over the last `test_runs` points (time order): each is predicted by a model fitted
    on up to `history_runs` points before it (refitted every few points). Returns MAPE (percent), interval
    coverage and how many runs were tested."""
    ok = _usable(values)
    y = np.asarray([np.nan if v is None else v for v in values], dtype=float)[ok]
    feats = feature_matrix(metric, workloads)[ok]
    n = y.size
    if n <= min_runs:
        return {"runs_tested": 0, "mape_percent": None, "interval_coverage": None}
    first = max(min_runs, n - test_runs)
    refit_every = max(1, (n - first) // 5)
    errors, inside = [], []
    model: FittedModel | None = None
    for i in range(first, n):
        if model is None or (i - first) % refit_every == 0:
            start = max(0, i - history_runs)
            model = fit_arrays(metric, feats[start:i], y[start:i], coverage, min_runs)
        if model is None:
            continue
        value = model.point_features(feats[i])
        actual = y[i]
        errors.append(abs(value - actual) / actual)
        inside.append(value * model.ratio_low <= actual <= value * model.ratio_high)
    if not errors:
        return {"runs_tested": 0, "mape_percent": None, "interval_coverage": None}
    return {"runs_tested": len(errors), "mape_percent": 100.0 * float(np.mean(errors)),
            "interval_coverage": float(np.mean(inside))}
