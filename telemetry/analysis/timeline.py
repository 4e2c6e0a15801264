"""Run statistics per hour or day bucket for charts (`GET /telemetry/stats/timeline`).

Buckets are UTC hours or days (bucket start = started_at_ms rounded down). Without `since_ms` the window is the
last `DEFAULT_SPAN_BUCKETS[bucket]` buckets; a window of more than `MAX_BUCKETS` buckets is refused with a message
that says how to narrow it. `success_rate` is successes over completed runs (success, failed, interrupted), as in
`/telemetry/stats`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..filters import FilterError
from ..model import RunStatus

BUCKET_MS = {"hour": 3_600_000, "day": 86_400_000}
DEFAULT_SPAN_BUCKETS = {"hour": 48, "day": 30}
MAX_BUCKETS = 2000


def parse_bucket(value: str | None) -> str:
    bucket = (value or "day").strip()
    if bucket not in BUCKET_MS:
        raise FilterError(f"'bucket' must be hour or day, got {bucket[:40]!r}")
    return bucket


def window(bucket: str, since_ms: int | None, until_ms: int | None, now: int) -> tuple[int, int | None]:
    """The [since, until] window, defaulted and checked against MAX_BUCKETS."""
    size = BUCKET_MS[bucket]
    end = until_ms if until_ms is not None else now
    start = since_ms if since_ms is not None else (end // size - DEFAULT_SPAN_BUCKETS[bucket] + 1) * size
    if (end - start) // size + 1 > MAX_BUCKETS:
        raise FilterError(f"the window from since_ms={start} to {end} spans more than {MAX_BUCKETS} {bucket} buckets; "
                          f"narrow since_ms/until_ms" + (" or use bucket=day" if bucket == "hour" else ""))
    return start, until_ms


def aggregate(rows: Sequence[tuple[int, str, float | None, int | None, int | None]]) -> list[dict[str, Any]]:
    """rows: (bucket start, status, duration_ms, gpu_peak_bytes, frame_count). One point per bucket with runs."""
    if not rows:
        return []
    buckets = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    status = np.array([r[1] for r in rows])
    duration = np.array([np.nan if r[2] is None else r[2] for r in rows], dtype=float)
    peak = np.array([np.nan if r[3] is None else r[3] for r in rows], dtype=float)
    frames = np.array([r[4] or 0 for r in rows], dtype=np.int64)
    order = np.lexsort((duration, buckets))  # by bucket, then duration (NaN last)
    buckets, status, duration, peak, frames = buckets[order], status[order], duration[order], peak[order], frames[order]
    starts = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]])
    ends = np.r_[starts[1:], buckets.size]
    points = []
    for s, e in zip(starts, ends, strict=True):
        st = status[s:e]
        ok = int(np.count_nonzero(st == RunStatus.SUCCESS))
        failed = int(np.count_nonzero(st == RunStatus.FAILED))
        interrupted = int(np.count_nonzero(st == RunStatus.INTERRUPTED))
        done = ok + failed + interrupted
        d = duration[s:e]
        d = d[~np.isnan(d)]  # sorted ascending already
        p = peak[s:e]
        p = p[~np.isnan(p)]
        points.append({
            "t_ms": int(buckets[s]),
            "runs": int(e - s),
            "success": ok,
            "failed": failed,
            "interrupted": interrupted,
            "success_rate": ok / done if done else None,
            "avg_duration_ms": float(d.mean()) if d.size else None,
            "p95_duration_ms": float(np.percentile(d, 95)) if d.size else None,
            "max_gpu_peak_bytes": int(p.max()) if p.size else None,
            "frames": int(frames[s:e].sum()),
        })
    return points
