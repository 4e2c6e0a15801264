"""Make any payload JSON-safe before it leaves the process.

A non-JSON value given to ComfyUI's `send_sync` ends the ComfyUI process (its publish loop has no try/except),
and NaN/Infinity break the browser's JSON.parse. Everything sent to a browser or a script passes through here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def json_safe(value: Any, depth: int = 0) -> Any:
    if depth > 100:
        return None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v, depth + 1) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        try:
            return json_safe(value.item(), depth + 1)
        except Exception:
            return str(value)
    return str(value)
