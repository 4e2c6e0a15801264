"""Run filters shared by `/runs`, `/stats`, `/export`, the analysis routes and saved presets.

`parse_run_filters` turns a query string into `RunFilters` or raises `FilterError` with a message that says
what is wrong (served as a 400). Integers are ASCII digits within 64 bits (`INT64_MAX`): the databases store
64-bit integers, and anything larger would fail inside a query instead of here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .model import RunStatus

SORTS = ("started_at_ms", "-started_at_ms", "duration_ms", "-duration_ms")
DEFAULT_SORT = "-started_at_ms"
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
FILTER_KEYS = ("status", "workflow", "since_ms", "until_ms", "label", "q", "instance")
INT64_MAX = 2**63 - 1
_INTEGER = re.compile(r"[+-]?[0-9]{1,19}")


class FilterError(ValueError):
    """A malformed filter; the message names the parameter and what it accepts."""


@dataclass
class RunFilters:
    status: list[str] = field(default_factory=list)
    workflow: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    label: str | None = None
    q: str | None = None
    instance: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, [], "")}


@dataclass
class Page:
    sort: str = DEFAULT_SORT
    limit: int = DEFAULT_LIMIT
    offset: int = 0


def parse_int(raw: Any, name: str, minimum: int = 0, maximum: int = INT64_MAX) -> int:
    """`raw` (a string or an int) as an integer in [minimum, maximum], or a FilterError naming `name`."""
    text = str(raw).strip() if not isinstance(raw, bool) else ""
    if not _INTEGER.fullmatch(text):
        raise FilterError(f"'{name}' must be an integer between {minimum} and {maximum}, got {str(raw)[:60]!r}")
    value = int(text)
    if value < minimum:
        raise FilterError(f"'{name}' must be at least {minimum}, got {value}")
    if value > maximum:
        raise FilterError(f"'{name}' must be at most {maximum}, got {value}")
    return value


def _int_param(query: Mapping[str, Any], name: str, minimum: int = 0, maximum: int = INT64_MAX) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    return parse_int(raw, name, minimum, maximum)


def parse_id(raw: Any, what: str) -> int:
    """A row id from a path (preset, recommendation): a positive 64-bit integer."""
    text = str(raw).strip()
    if not _INTEGER.fullmatch(text) or not 0 <= int(text) <= INT64_MAX:
        raise FilterError(f"{what} must be an integer between 0 and {INT64_MAX}, got {text[:60]!r}")
    return int(text)


def parse_prune(query: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """`DELETE /telemetry/runs`: `before_ms` (runs that started before it) and/or `keep` (the newest N)."""
    before_ms = _int_param(query, "before_ms", minimum=0)
    keep = _int_param(query, "keep", minimum=0)
    if before_ms is None and keep is None:
        raise FilterError("say which runs to delete: 'before_ms' (runs that started before this time, in ms since "
                          "the epoch) and/or 'keep' (keep only the newest N runs)")
    return before_ms, keep


def check_text(text: str, name: str) -> str:
    """`text` if a database can store it: no NUL characters (PostgreSQL refuses them) and no lone surrogates
    (UTF-8 cannot encode them); else a FilterError naming `name`."""
    if "\x00" in text:
        raise FilterError(f"'{name[:60]}' must not contain NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise FilterError(f"'{name[:60]}' must be valid Unicode text (it holds a lone surrogate)") from None
    return text


def _text_param(query: Mapping[str, Any], name: str, limit: int = 500) -> str | None:
    raw = query.get(name)
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise FilterError(f"'{name}' must be a string")
    text = check_text(raw.strip(), name)
    if len(text) > limit:
        raise FilterError(f"'{name}' is longer than {limit} characters")
    return text or None


def parse_run_filters(query: Mapping[str, Any]) -> RunFilters:
    filters = RunFilters()
    status = query.get("status")
    if status:
        items = status if isinstance(status, list) else str(status).split(",")
        wanted = [s.strip() for s in items if str(s).strip()]
        unknown = [s for s in wanted if s not in RunStatus.ALL]
        if unknown:
            raise FilterError(f"'status' has unknown value(s) {', '.join(map(repr, unknown))}; "
                              f"use a comma list of {', '.join(sorted(RunStatus.ALL))}")
        filters.status = wanted
    filters.workflow = _text_param(query, "workflow")
    filters.since_ms = _int_param(query, "since_ms", minimum=0)
    filters.until_ms = _int_param(query, "until_ms", minimum=0)
    if filters.since_ms is not None and filters.until_ms is not None and filters.until_ms < filters.since_ms:
        raise FilterError("'until_ms' is before 'since_ms'")
    filters.label = _text_param(query, "label")
    filters.q = _text_param(query, "q")
    filters.instance = _text_param(query, "instance")
    return filters


def parse_page(query: Mapping[str, Any]) -> Page:
    page = Page()
    sort = query.get("sort")
    if sort:
        if sort not in SORTS:
            raise FilterError(f"'sort' must be one of {', '.join(SORTS)}, got {str(sort)[:60]!r}")
        page.sort = sort
    limit = _int_param(query, "limit", minimum=1, maximum=MAX_LIMIT)
    page.limit = DEFAULT_LIMIT if limit is None else limit
    offset = _int_param(query, "offset", minimum=0)
    page.offset = offset or 0
    return page


def filters_from_preset(data: Any) -> RunFilters:
    """Validate a preset's saved filters the same way as a query string."""
    if not isinstance(data, Mapping):
        raise FilterError("'filters' must be an object")
    unknown = [k for k in data if k not in FILTER_KEYS]
    if unknown:
        raise FilterError(f"'filters' has unknown key(s) {', '.join(map(repr, unknown))}; "
                          f"allowed: {', '.join(FILTER_KEYS)}")
    query: dict[str, str] = {}
    for key, value in data.items():
        if value is None:
            continue
        if key == "status" and isinstance(value, list) and all(isinstance(v, str) for v in value):
            query[key] = ",".join(value)
        elif isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            query[key] = str(value)
        else:
            raise FilterError(f"'filters.{key}' must be a string" + (" or a number" if key.endswith("_ms") else "")
                              + (" (or, for status, a list of strings)" if key == "status" else "")
                              + f", got {type(value).__name__}")
    return parse_run_filters(query)
