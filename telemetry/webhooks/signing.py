"""Webhook signatures and idempotency keys.

`X-Run-Telemetry-Signature: sha256=<hex>` is the HMAC-SHA256 of the raw request body under
`TELEMETRY_WEBHOOK_SECRET`. A receiver recomputes it over the bytes it received and compares in constant time
(`verify_signature` is that check). `X-Run-Telemetry-Event` is the event's idempotency key: the same for every
retry of one event to one URL, so a receiver that sees it twice (at-least-once delivery) can drop the copy.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Run-Telemetry-Signature"
EVENT_HEADER = "X-Run-Telemetry-Event"
EVENT_TYPE_HEADER = "X-Run-Telemetry-Event-Type"


def sign(body: bytes, secret: str) -> str:
    """The signature header's value for `body`."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, header: str | None, secret: str) -> bool:
    return bool(header) and hmac.compare_digest(sign(body, secret), header or "")


def event_key(event: str, subject: str, target_key: str, instance: str | None) -> str:
    """The idempotency key of one event (`subject`: the run id, or the recommendation and its version) to one
    target: stable across retries and restarts, different per target."""
    raw = "\x1f".join((instance or "", event, subject, target_key))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:40]
