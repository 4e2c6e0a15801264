"""Run filters shared by `/runs`, `/stats`, `/export`, the analysis routes and saved presets.

`parse_run_filters` turns a query string into `RunFilters` or raises `FilterError` with a message that says
what is wrong (served as a 400).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .model import RunStatus

SORTS = ("started_at_ms", "-started_at_ms", "duration_ms", "-duration_ms")
DEFAULT_SORT = "-started_at_ms"
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
FILTER_KEYS = ("status", "workflow", "since_ms", "until_ms", "label", "q", "instance")


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


def _int_param(query: Mapping[str, Any], name: str, minimum: int | None = None,
               maximum: int | None = None) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise FilterError(f"'{name}' must be an integer, got {str(raw)[:60]!r}") from None
    if minimum is not None and value < minimum:
        raise FilterError(f"'{name}' must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise FilterError(f"'{name}' must be at most {maximum}, got {value}")
    return value


def _text_param(query: Mapping[str, Any], name: str, limit: int = 500) -> str | None:
    raw = query.get(name)
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise FilterError(f"'{name}' must be a string")
    text = raw.strip()
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
    query = {k: (",".join(v) if isinstance(v, list) else str(v)) for k, v in data.items() if v is not None}
    return parse_run_filters(query)
