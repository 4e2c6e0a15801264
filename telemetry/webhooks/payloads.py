"""Webhook bodies: a run summary or a recommendation, as plain JSON (`json`) or as the message shapes of Slack
(`{"text", "blocks"}`) and Discord (`{"content", "embeds"}`) incoming webhooks.

Only the fields listed here are sent: a run's id, status, workflow, times, error and instance, and a link to the
run in the panel when `public_url` is set: `<public_url>/?telemetry_run=<run id>`, which opens the Telemetry tab
on that run's detail, in ComfyUI (public_url: where people open ComfyUI) and on the page of
`python -m telemetry serve` (public_url: where that is served) alike; the panel reads the parameter
(web/src/runlink.ts, RUN_LINK_PARAM). ComfyUI's extra_data (where API keys travel) is never part of a Run,
and nothing here reads it.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from ..jsonsafe import json_safe
from ..model import Run

SENDER = "run-telemetry"
RUN_LINK_PARAM = "telemetry_run"
_MESSAGE_MAX = 1500
_STATUS_WORDS = {"success": "finished", "partial_success": "partly succeeded", "failed": "FAILED",
                 "interrupted": "was interrupted", "cancelled": "was cancelled"}
_DISCORD_COLOURS = {"failed": 0xD93F3F, "success": 0x3FA34D, "recommendation": 0xE0A100}


def _clip(text: Any, limit: int = _MESSAGE_MAX) -> str | None:
    if text is None:
        return None
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _base(public_url: str) -> tuple[str, str, str, str]:
    """(scheme, netloc, path ending in "/", query) of public_url; a fragment is dropped."""
    parts = urlsplit(public_url.strip())
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return parts.scheme, parts.netloc, path, parts.query


def run_link(public_url: str | None, run_id: str) -> str | None:
    """The page at public_url (its path kept: a reverse proxy's prefix) with `telemetry_run=<run id>` added to its
    query (an existing one replaced)."""
    if not public_url or not public_url.strip():
        return None
    scheme, netloc, path, query = _base(public_url)
    params = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != RUN_LINK_PARAM]
    params.append((RUN_LINK_PARAM, run_id))
    return urlunsplit((scheme, netloc, path, urlencode(params, quote_via=quote), ""))


def run_api_link(public_url: str | None, run_id: str) -> str | None:
    """The run's REST route under public_url (`/telemetry/runs/<id>`, served by the plugin and serve alike)."""
    if not public_url or not public_url.strip():
        return None
    scheme, netloc, path, _ = _base(public_url)
    return urlunsplit((scheme, netloc, f"{path}telemetry/runs/{quote(run_id, safe='')}", "", ""))


def run_summary(run: Run, public_url: str | None = None) -> dict[str, Any]:
    error = None
    if run.error is not None:
        error = {"kind": run.error.kind, "message": _clip(run.error.message), "node_id": run.error.node_id,
                 "node_type": run.error.node_type, "exception_type": run.error.exception_type}
    return json_safe({
        "run_id": run.run_id, "status": run.status, "workflow_id": run.workflow_id,
        "workflow_name": run.workflow_name, "fingerprint": run.fingerprint, "queued_at_ms": run.queued_at_ms,
        "started_at_ms": run.started_at_ms, "finished_at_ms": run.finished_at_ms, "duration_ms": run.duration_ms,
        "queue_wait_ms": run.queue_wait_ms, "error": error, "interrupted_reason": _clip(run.interrupted_reason),
        "instance": run.instance, "url": run_link(public_url, run.run_id),
        "api_url": run_api_link(public_url, run.run_id),
    })


def recommendation_summary(rec: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "kind", "severity", "workflow", "workflow_name", "message", "action", "evidence_run_ids",
            "created_at_ms", "updated_at_ms", "state")
    return json_safe({k: rec.get(k) for k in keys})


def envelope(event: str, event_id: str, created_at_ms: int, instance: str | None, **subject: Any) -> dict[str, Any]:
    return {"event": event, "event_id": event_id, "sender": SENDER, "instance": instance,
            "created_at_ms": created_at_ms, **subject}


def _seconds(ms: Any) -> str:
    return f"{ms / 1000:.1f} s" if isinstance(ms, (int, float)) else "?"


def headline(data: dict[str, Any]) -> str:
    """One line that says what happened, for chat formats."""
    event = data.get("event")
    if event == "recommendation":
        rec = data.get("recommendation") or {}
        return f"Run Telemetry ({rec.get('severity')}): {rec.get('message')}"
    if event == "test":
        return f"Run Telemetry test event from {data.get('instance')}"
    run = data.get("run") or {}
    name = run.get("workflow_name") or run.get("workflow_id") or run.get("run_id")
    status = _STATUS_WORDS.get(run.get("status"), run.get("status"))
    line = f"Run {name} {status} after {_seconds(run.get('duration_ms'))}"
    if run.get("instance"):
        line += f" on {run['instance']}"
    return line


def _details(data: dict[str, Any]) -> list[tuple[str, str]]:
    rec = data.get("recommendation")
    if rec:
        return [(k, str(rec[k])) for k in ("kind", "workflow_name", "action") if rec.get(k)]
    run = data.get("run") or {}
    fields = [("run", str(run.get("run_id")))]
    err = run.get("error") or {}
    if err:
        where = err.get("node_type") or "?"
        if err.get("node_id"):
            where += f" (node {err['node_id']})"
        fields += [("error", f"{err.get('kind')}: {err.get('exception_type')}: {err.get('message')}"),
                   ("node", where)]
    if run.get("interrupted_reason"):
        fields.append(("reason", str(run["interrupted_reason"])))
    return fields


def _link(data: dict[str, Any]) -> str | None:
    return (data.get("run") or {}).get("url")


def slack_body(data: dict[str, Any]) -> dict[str, Any]:
    text = headline(data)
    lines = "\n".join(f"*{k}*: {_clip(v, 600)}" for k, v in _details(data))
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": _clip(text, 2900)}}]
    if lines:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _clip(lines, 2900)}})
    link = _link(data)
    if link:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{link}|Open in the panel>"}]})
    return {"text": text, "blocks": blocks}


def discord_body(data: dict[str, Any]) -> dict[str, Any]:
    text = headline(data)
    status = (data.get("run") or {}).get("status") or data.get("event")
    embed: dict[str, Any] = {"title": _clip(text, 256), "color": _DISCORD_COLOURS.get(status, 0x808080),
                             "fields": [{"name": k, "value": _clip(v, 1024) or "-", "inline": False}
                                        for k, v in _details(data)][:25],
                             "footer": {"text": f"{SENDER} · {data.get('event_id')}"}}
    link = _link(data)
    if link:
        embed["url"] = link
    return {"content": _clip(text, 2000), "embeds": [embed]}


def render(data: dict[str, Any], fmt: str) -> bytes:
    """The raw body for a target's format: exactly these bytes are signed and sent on every retry."""
    body = slack_body(data) if fmt == "slack" else discord_body(data) if fmt == "discord" else data
    return json.dumps(json_safe(body), ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
