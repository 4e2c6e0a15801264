"""Webhook targets: which URLs get which events in which body format, read from `webhook_urls`.

`TELEMETRY_WEBHOOK_URLS` is a comma list of URLs (every event, JSON bodies). In the config file `webhook_urls`
is a list whose entries are a URL or `{"url": ..., "events": [...], "format": "json" | "slack" | "discord"}`.
Events: `failed` (a run that failed), `finished` (a run that ended: success, partial success, interrupted, and
failed runs too when the target does not also ask for `failed`), `recommendation` (a recommendation opened).
Each run sends one event per target, the most specific it asked for.

An entry that cannot be used (not http/https, no host, an unknown format) is left out, and an unknown event name
is dropped from its entry; each is a `ConfigWarning` (served in `/telemetry/health`). URLs are shown redacted
(`redact_webhook_url`): a webhook URL is often a credential itself (Slack's and Discord's are).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..validation import ConfigWarning

EVENTS = ("failed", "finished", "recommendation")
TEST_EVENT = "test"
FORMATS = ("json", "slack", "discord")
SCHEMES = ("http", "https")
KEY = "webhook_urls"


@dataclass(frozen=True)
class WebhookTarget:
    url: str
    events: frozenset[str]
    format: str = "json"

    @property
    def key(self) -> str:
        """Identifies the target in the outbox without storing its URL (which may hold a token)."""
        return target_key(self.url)

    @property
    def label(self) -> str:
        return redact_webhook_url(self.url)

    def run_event(self, status: str) -> str | None:
        """The event a run of `status` sends to this target (None: none)."""
        if status == "failed" and "failed" in self.events:
            return "failed"
        if "finished" in self.events:
            return "finished"
        return None


def target_key(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:32]


def redact_webhook_url(url: str) -> str:
    """The URL for health reports and logs: no user or password, the query's values hidden, and only the first
    path segment kept (Slack's /services/T/B/token and Discord's /api/webhooks/id/token end in their secret)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(unparseable URL)"
    netloc = ("***@" if "@" in parts.netloc else "") + (f"[{host}]" if ":" in host else host)
    if port is not None:
        netloc += f":{port}"
    segments = [s for s in parts.path.split("/") if s]
    path = ("/" + segments[0] if segments else "") + ("/***" if len(segments) > 1 else "")
    query = "***" if parts.query else ""
    return urlunsplit((parts.scheme, netloc, path, query, ""))


def _problem(source: str, value: Any, expected: str, used: Any) -> ConfigWarning:
    return ConfigWarning(source, KEY, value, expected, used)


def parse_targets(value: Any, source: str = "config") -> tuple[list[WebhookTarget], list[ConfigWarning]]:
    """The usable targets of a `webhook_urls` value, and a warning for each part that is not. Never raises."""
    if value is None:
        return [], []
    if isinstance(value, str):
        entries: list[Any] = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, (list, tuple)):
        entries = list(value)
    else:
        return [], [_problem(source, type(value).__name__, "a comma list of URLs or a list of targets", "no webhooks")]
    targets: list[WebhookTarget] = []
    warnings: list[ConfigWarning] = []
    seen: set[str] = set()
    for entry in entries:
        target, found = _parse_entry(entry, source)
        warnings += found
        if target is not None and target.url not in seen:
            seen.add(target.url)
            targets.append(target)
    return targets, warnings


def _parse_entry(entry: Any, source: str) -> tuple[WebhookTarget | None, list[ConfigWarning]]:
    warnings: list[ConfigWarning] = []
    if isinstance(entry, str):
        entry = {"url": entry}
    if not isinstance(entry, Mapping):
        return None, [_problem(source, type(entry).__name__, "a URL or {\"url\", \"events\", \"format\"}",
                               "entry left out")]
    url = entry.get("url")
    if not isinstance(url, str) or not url.strip():
        return None, [_problem(source, "(no url)", "each entry to have a \"url\"", "entry left out")]
    url = url.strip()
    shown = redact_webhook_url(url)
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return None, [_problem(source, shown, "an http:// or https:// URL", "entry left out")]
    if parts.scheme.lower() not in SCHEMES:
        return None, [_problem(source, shown, f"an http:// or https:// URL (got scheme {parts.scheme or 'none'!r})",
                               "entry left out")]
    if not host:
        return None, [_problem(source, shown, "a URL with a host", "entry left out")]
    unknown_keys = sorted(str(k) for k in entry if k not in ("url", "events", "format"))
    if unknown_keys:
        warnings.append(ConfigWarning(source, f"{KEY}[{shown}]", unknown_keys, "url, events, format", None,
                                      kind="unknown"))
    fmt = entry.get("format", "json")
    if not isinstance(fmt, str) or fmt.lower() not in FORMATS:
        return None, [*warnings, _problem(source, f"{shown} format {fmt!r}", f"format one of {', '.join(FORMATS)}",
                                          "entry left out")]
    events_value = entry.get("events", list(EVENTS))
    if isinstance(events_value, str):
        events_value = [e.strip() for e in events_value.split(",") if e.strip()]
    if not isinstance(events_value, (list, tuple)):
        return None, [*warnings, _problem(source, f"{shown} events", f"a list of events ({', '.join(EVENTS)})",
                                          "entry left out")]
    events = {e.lower() for e in events_value if isinstance(e, str) and e.lower() in EVENTS}
    unknown = [e for e in events_value if not (isinstance(e, str) and e.lower() in EVENTS)]
    if unknown:
        warnings.append(_problem(source, f"{shown} events {unknown!r}", f"event names among {', '.join(EVENTS)}",
                                 f"events {sorted(events)}" if events else "entry left out"))
    if not events:
        if not unknown:
            warnings.append(_problem(source, f"{shown} events []", "at least one event", "entry left out"))
        return None, warnings
    return WebhookTarget(url, frozenset(events), fmt.lower()), warnings


def target_warnings(config: Any) -> list[ConfigWarning]:
    """Warnings about the configured targets (for `load_config`), and about targets without a secret."""
    targets, warnings = parse_targets(getattr(config, KEY, None))
    if targets and not getattr(config, "webhook_secret", None):
        warnings.append(ConfigWarning("config", "webhook_secret", None, "a secret to sign webhook bodies with",
                                      "unsigned deliveries (no X-Run-Telemetry-Signature header)"))
    return warnings


def targets_of(config: Any) -> list[WebhookTarget]:
    return parse_targets(getattr(config, KEY, None))[0]
