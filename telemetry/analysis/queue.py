"""The pending queue with predicted start and finish per item, and the queued runs whose predicted GPU peak
exceeds the free memory. Pure functions over ComfyUI queue items and a `predict` callable.

A queue item is ComfyUI's `(number, prompt_id, prompt, extra_data, outputs_to_execute)`, running items first.
An item without a prediction ("not enough history") has no duration, and the items after it have no start or
finish: they are not guessed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

Predict = Callable[[Any], dict[str, Any]]


def item_parts(item: Any) -> tuple[str | None, Any, Mapping[str, Any]]:
    """(prompt_id, prompt, extra_data) of a queue item; tolerant of short or odd items."""
    if isinstance(item, Mapping):
        return item.get("prompt_id"), item.get("prompt"), item.get("extra_data") or {}
    if isinstance(item, (list, tuple)) and len(item) >= 3:
        extra = item[3] if len(item) > 3 and isinstance(item[3], Mapping) else {}
        return (str(item[1]) if item[1] is not None else None), item[2], extra
    return None, None, {}


def eta(items: Sequence[Any], predict: Predict, now_ms: int, started: Mapping[str, int]) -> dict[str, Any]:
    """`started`: prompt_id -> started_at_ms of the items executing now."""
    out = []
    cursor: float | None = float(now_ms)
    low_cursor: float | None = float(now_ms)
    high_cursor: float | None = float(now_ms)
    any_prediction = False
    for position, item in enumerate(items):
        prompt_id, prompt, extra = item_parts(item)
        prediction = predict(prompt)
        duration = prediction.get("duration_ms") or {}
        value = duration.get("value")
        name = extra.get("workflow_name") if isinstance(extra.get("workflow_name"), str) else None
        entry: dict[str, Any] = {
            "prompt_id": prompt_id, "position": position,
            "workflow_name": name or prediction.get("workflow_name"),
            "running": prompt_id in started,
            "predicted_duration_ms": value,
            "predicted_start_ms": None, "predicted_finish_ms": None,
            "interval_ms": [duration.get("low"), duration.get("high")] if value is not None else None,
            "finish_interval_ms": None,
            "reason": duration.get("reason") if value is None else None,
        }
        if prompt_id in started:
            begin = started[prompt_id]
            entry["predicted_start_ms"] = begin
            if value is not None:
                any_prediction = True
                finish = max(begin + value, now_ms)
                entry["predicted_finish_ms"] = finish
                entry["finish_interval_ms"] = [max(begin + duration["low"], now_ms),
                                               max(begin + duration["high"], now_ms)]
                cursor, low_cursor, high_cursor = (max(cursor or 0, finish), entry["finish_interval_ms"][0],
                                                   entry["finish_interval_ms"][1])
            else:
                cursor = low_cursor = high_cursor = None
        elif cursor is not None:
            entry["predicted_start_ms"] = cursor
            if value is not None:
                any_prediction = True
                entry["predicted_finish_ms"] = cursor + value
                entry["finish_interval_ms"] = [low_cursor + duration["low"], high_cursor + duration["high"]]
                cursor += value
                low_cursor += duration["low"]
                high_cursor += duration["high"]
            else:
                cursor = low_cursor = high_cursor = None
        out.append(entry)
    return {"items": out, "has_predictions": any_prediction}


def memory_warnings(items: Sequence[Any], predict: Predict, free_bytes: int) -> list[dict[str, Any]]:
    """Queued items whose predicted GPU peak is over `free_bytes`: critical when even the interval's low end is
    over, else a warning."""
    warnings = []
    for position, item in enumerate(items):
        prompt_id, prompt, extra = item_parts(item)
        if prompt_id is None:
            continue
        prediction = predict(prompt)
        peak = prediction.get("gpu_peak_bytes") or {}
        value = peak.get("value")
        if value is None or value <= free_bytes:
            continue
        warnings.append({"prompt_id": prompt_id, "position": position, "prediction": prediction,
                         "predicted_gpu_peak_bytes": value, "low": peak.get("low"), "free_bytes": free_bytes,
                         "critical": (peak.get("low") or 0) > free_bytes, "extra_data": extra})
    return warnings
