"""Reducing a run's sample series to what is stored, keeping its peaks. Pure."""

from __future__ import annotations

from collections.abc import Sequence

from ...model import GpuSample


def downsample_samples(samples: list[GpuSample], max_points: int) -> list[GpuSample]:
    """At most `max_points` samples, in time order, keeping the first, the last and the peaks of `used_bytes`
    and `ram_rss_bytes`: the interior is cut into buckets and each bucket keeps its max-used and max-RSS sample.
    With fewer than 4 points allowed, the peak wins over the ends. Several GPUs (`gpu_index`) share the points
    and each keeps its own first, last and peaks. Pure."""
    groups: dict[int | None, list[GpuSample]] = {}
    for sample in samples:
        groups.setdefault(sample.gpu_index, []).append(sample)
    if len(groups) <= 1 or len(samples) <= max_points:
        return _downsample_series(samples, max_points)
    share = max(1, max_points // len(groups))
    kept = [s for group in groups.values() for s in _downsample_series(group, share)]
    order = {id(s): i for i, s in enumerate(samples)}
    return sorted(kept, key=lambda s: order[id(s)])


def _downsample_series(samples: list[GpuSample], max_points: int) -> list[GpuSample]:
    n = len(samples)
    if max_points <= 0:
        return []
    if n <= max_points:
        return list(samples)
    if max_points < 4:
        priority = dict.fromkeys([_argmax(samples, "used_bytes"), _argmax(samples, "ram_rss_bytes"), 0, n - 1])
        return [samples[i] for i in sorted(list(priority)[:max_points])]
    interior = n - 2
    buckets = (max_points - 2) // 2
    kept = [samples[0]]
    for b in range(buckets):
        lo, hi = 1 + b * interior // buckets, 1 + (b + 1) * interior // buckets
        if lo >= hi:
            continue
        chunk = samples[lo:hi]
        picks = {lo + _argmax(chunk, "used_bytes"), lo + _argmax(chunk, "ram_rss_bytes")}
        kept.extend(samples[i] for i in sorted(picks))
    kept.append(samples[-1])
    return kept


def _argmax(samples: Sequence[GpuSample], attr: str) -> int:
    best, best_value = 0, None
    for i, sample in enumerate(samples):
        value = getattr(sample, attr)
        if value is not None and (best_value is None or value > best_value):
            best, best_value = i, value
    return best
