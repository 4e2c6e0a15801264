"""Energy of a GPU over a time span, from NVML readings taken on the sampler thread. Pure.

Two sources, in order of preference:

* the total energy counter (`nvmlDeviceGetTotalEnergyConsumption`: millijoules since the driver loaded, Volta and
  newer): the energy of a span is the counter's rise across it, the counter being interpolated linearly between
  its two readings nearest each end of the span;
* power samples (`nvmlDeviceGetPowerUsage`, milliwatts): the trapezoid rule over the samples inside the span,
  with the power interpolated linearly at each end.

A span outside the readings is clipped to them; fewer than two readings give None, never a guess.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

Reading = tuple[int, float]
"""(wall-clock ms, value): a counter in millijoules or a power in watts."""

MILLIJOULES_PER_JOULE = 1000.0
JOULES_PER_WH = 3600.0
JOULES_PER_KWH = 3_600_000.0


def _interpolate(points: Sequence[Reading], t: float) -> float:
    """The value at `t` (clipped to the readings), linear between the two readings around it."""
    if t <= points[0][0]:
        return points[0][1]
    if t >= points[-1][0]:
        return points[-1][1]
    i = bisect_left(points, (t, float("-inf")))
    (t0, v0), (t1, v1) = points[i - 1], points[i]
    if t1 == t0:
        return v1
    return v0 + (v1 - v0) * (t - t0) / (t1 - t0)


def counter_energy_j(points: Sequence[Reading], start_ms: float, end_ms: float) -> float | None:
    """Joules the counter rose by between `start_ms` and `end_ms`; None with fewer than two readings. A counter
    that went down (a driver reload resets it) gives None rather than a negative or wrapped number."""
    if len(points) < 2 or end_ms < start_ms:
        return None
    rise = _interpolate(points, end_ms) - _interpolate(points, start_ms)
    if rise < 0:
        return None
    return rise / MILLIJOULES_PER_JOULE


def power_energy_j(points: Sequence[Reading], start_ms: float, end_ms: float) -> float | None:
    """Joules from power samples (watts) between `start_ms` and `end_ms`, by the trapezoid rule; None with fewer
    than two samples."""
    if len(points) < 2 or end_ms < start_ms:
        return None
    lo, hi = max(start_ms, points[0][0]), min(end_ms, points[-1][0])
    if hi <= lo:
        return 0.0
    inner = [p for p in points if lo < p[0] < hi]
    series = [(lo, _interpolate(points, lo)), *inner, (hi, _interpolate(points, hi))]
    watt_ms = sum((t1 - t0) * (w0 + w1) / 2.0 for (t0, w0), (t1, w1) in zip(series, series[1:], strict=False))
    return watt_ms / 1000.0


def cost(energy_j: float | None, price_per_kwh: float | None) -> float | None:
    """What `energy_j` costs at `price_per_kwh`; None when either is unknown."""
    if energy_j is None or price_per_kwh is None:
        return None
    return energy_j / JOULES_PER_KWH * price_per_kwh
