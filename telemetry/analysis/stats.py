"""Small numeric helpers shared by trends, predictions, rules and the timeline: percentiles, rolling
percentiles, success rates. Pure functions over lists and numpy arrays; nothing here reads the store.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from ..model import RunStatus


def finite(values: Iterable[float | int | None]) -> np.ndarray:
    """The finite values as a float array (None, NaN and inf dropped)."""
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    return arr[np.isfinite(arr)]


def percentile(values: Sequence[float] | np.ndarray, q: float) -> float | None:
    """The q-th percentile (0..100, linear interpolation), or None for no values."""
    arr = finite(values) if not isinstance(values, np.ndarray) else values[np.isfinite(values)]
    return float(np.percentile(arr, q)) if arr.size else None


def rolling_percentiles(values: np.ndarray, window: int, min_points: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Trailing p50 and p95 over the last `window` values at each position (NaN until `min_points` values)."""
    n = values.size
    p50 = np.full(n, np.nan)
    p95 = np.full(n, np.nan)
    if n == 0:
        return p50, p95
    window = max(1, min(window, n))
    if n >= window:
        views = np.lib.stride_tricks.sliding_window_view(values, window)
        p50[window - 1:] = np.percentile(views, 50, axis=1)
        p95[window - 1:] = np.percentile(views, 95, axis=1)
    for i in range(min(window - 1, n)):
        if i + 1 >= min_points:
            head = values[: i + 1]
            p50[i] = np.percentile(head, 50)
            p95[i] = np.percentile(head, 95)
    return p50, p95


def success_rate(statuses: Iterable[str]) -> tuple[float | None, int]:
    """Share of successes among completed runs (success or failed) and how many completed runs there were.
    Interrupted runs are mostly cancels by the user and are left out."""
    done = [s for s in statuses if s in (RunStatus.SUCCESS, RunStatus.FAILED)]
    if not done:
        return None, 0
    return sum(1 for s in done if s == RunStatus.SUCCESS) / len(done), len(done)


def relative_change(before: float | None, after: float | None) -> float | None:
    """(after - before) / |before|, or None when it has no meaning."""
    if before is None or after is None or not math.isfinite(before) or not math.isfinite(after) or before == 0:
        return None
    return (after - before) / abs(before)


def format_bytes(value: float | None) -> str:
    if value is None:
        return "unknown"
    return f"{value / 1024**3:.1f} GiB"


def format_ms(value: float | None) -> str:
    if value is None:
        return "unknown"
    seconds = value / 1000.0
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"
