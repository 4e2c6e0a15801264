"""Make any payload JSON-safe before it leaves the process.

A non-JSON value given to ComfyUI's `send_sync` ends the ComfyUI process (its publish loop has no try/except),
and NaN/Infinity break the browser's JSON.parse. Everything sent to a browser or a script passes through here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any


def json_safe(value: Any, depth: int = 0) -> Any:
    if depth > 100:
        return None
    if isinstance(value, str):
        return storable_text(value)
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {storable_text(str(k)): json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v, depth + 1) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        try:
            return json_safe(value.item(), depth + 1)
        except Exception:
            return str(value)
    return str(value)


def storable_text(value: str) -> str:
    """`value` as text every database and browser accepts: NUL becomes U+FFFD, and so does a lone surrogate (JSON
    can carry "\\ud800", UTF-8 cannot: SQLite, PostgreSQL and aiohttp would all refuse the whole run or answer).
    Other control characters and bidi overrides are kept; the panel renders text, never markup."""
    if value.isascii():
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def make_storable(value: Any, depth: int = 0) -> Any:
    """Apply `storable_text` to every string in a Run (dataclasses, lists and dicts, in place where mutable);
    returns the value. Called by the collector on each Run it builds, on the recorder thread."""
    if isinstance(value, str):
        return storable_text(value)
    if depth > 50 or value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, dict):
        for key in list(value):
            fixed = make_storable(value[key], depth + 1)
            clean_key = storable_text(key) if isinstance(key, str) else key
            if clean_key is not key:
                del value[key]
            value[clean_key] = fixed
        return value
    if isinstance(value, list):
        for i, item in enumerate(value):
            value[i] = make_storable(item, depth + 1)
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            current = getattr(value, f.name)
            fixed = make_storable(current, depth + 1)
            if fixed is not current:
                setattr(value, f.name, fixed)
        return value
    return value
