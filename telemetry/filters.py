"""Run filters shared by `/runs`, `/stats`, `/export`, the analysis routes and saved presets.

`parse_run_filters` turns a query string into `RunFilters` or raises `FilterError` with a message that says
what is wrong (served as a 400). Integers are ASCII digits within 64 bits (`INT64_MAX`): the databases store
64-bit integers, and anything larger would fail inside a query instead of here.
"""

from __future__ import annotations

import base64
import binascii
import json
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
COUNT_CAP = 10_000  # `total` counts up to this many matching runs unless `count=exact` asks for all
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


@dataclass(frozen=True)
class Cursor:
    """Where a page of runs ended (its sort, the last run's sort value and id): the next page starts after it
    without counting the rows before it, so page 10,000 costs what page 1 does."""
    sort: str
    value: int | float | None
    run_id: str

    def encode(self) -> str:
        raw = json.dumps([self.sort, self.value, self.run_id], separators=(",", ":"), ensure_ascii=False)
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(raw: Any) -> Cursor:
    """A cursor from a response's `next_cursor`, or a FilterError saying it is not one."""
    bad = FilterError("'cursor' is not a cursor this server gave out: pass a response's 'next_cursor' unchanged")
    text = str(raw).strip()
    if len(text) > 1000:
        raise bad
    try:
        sort, value, run_id = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode())
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise bad from None
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if sort not in SORTS or not isinstance(run_id, str) or not (value is None or numeric):
        raise bad
    if numeric and (abs(value) > INT64_MAX or value != value):
        raise bad
    return Cursor(sort, value, run_id)


@dataclass
class Page:
    sort: str = DEFAULT_SORT
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    cursor: Cursor | None = None
    exact_total: bool = False


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
    cursor = query.get("cursor")
    if cursor not in (None, ""):
        page.cursor = decode_cursor(cursor)
        if page.offset:
            raise FilterError("give either 'offset' or 'cursor', not both")
        if page.cursor.sort != page.sort:
            raise FilterError(f"'cursor' continues sort {page.cursor.sort!r}, not {page.sort!r}: pass the same "
                              "'sort' as the page it came from")
    count = query.get("count")
    if count not in (None, "", "capped", "exact"):
        raise FilterError(f"'count' must be 'capped' (up to {COUNT_CAP:,}) or 'exact', got {str(count)[:60]!r}")
    page.exact_total = count == "exact"
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
