"""The webhook outbox: store access for `webhook_deliveries` (telemetry.store.schema.WebhookDeliveryRow).

A delivery is written here before anything is sent (from the recorder thread, right after its run is stored)
and changed only by the delivery thread (`sender`): pending → delivered, or pending → failed once its retry
window is over. Rows survive restarts, so a pending delivery is sent after the next start: at-least-once (a
kill between a receiver's 2xx and the row's update sends that event again, with the same idempotency key).
Every function works on the database the calling thread is bound to (`Store.bind_thread` / `Store.bound`), and
only on the rows of one instance: ComfyUI machines that share a PostgreSQL database send their own events.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from peewee import fn

from ..store.schema import WebhookDeliveryRow

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
KEEP_DELIVERED_MS = 7 * 86_400_000
KEEP_FAILED_MS = 30 * 86_400_000


def now_ms() -> int:
    return int(time.time() * 1000)


def _mine(instance: str | None) -> Any:
    column = WebhookDeliveryRow.instance
    return column.is_null() if instance is None else column == instance


def insert(rows: Iterable[dict[str, Any]]) -> int:
    """Add deliveries (returns how many were offered); one whose event_id is already there is left as it is
    (a run stored twice sends once)."""
    rows = list(rows)
    if not rows:
        return 0
    with WebhookDeliveryRow._meta.database.atomic():
        WebhookDeliveryRow.insert_many(rows).on_conflict_ignore().execute()
    return len(rows)


def due(instance: str | None, at_ms: int, limit: int = 20) -> list[WebhookDeliveryRow]:
    return list(WebhookDeliveryRow.select()
                .where(_mine(instance), WebhookDeliveryRow.state == PENDING,
                       WebhookDeliveryRow.next_attempt_at_ms <= at_ms)
                .order_by(WebhookDeliveryRow.next_attempt_at_ms, WebhookDeliveryRow.id).limit(limit))


def next_due_ms(instance: str | None) -> int | None:
    return (WebhookDeliveryRow.select(fn.MIN(WebhookDeliveryRow.next_attempt_at_ms))
            .where(_mine(instance), WebhookDeliveryRow.state == PENDING).scalar())


def record_attempt(row_id: int, *, state: str, attempts: int, at_ms: int, status: int | None, error: str | None,
                   next_attempt_at_ms: int | None = None) -> None:
    """The outcome of one attempt. A delivered row keeps the error of its attempt before (health shows it)."""
    values: dict[Any, Any] = {WebhookDeliveryRow.state: state, WebhookDeliveryRow.attempts: attempts,
                              WebhookDeliveryRow.last_attempt_at_ms: at_ms, WebhookDeliveryRow.last_status: status}
    if error is not None:
        values[WebhookDeliveryRow.last_error] = error
    if state == DELIVERED:
        values[WebhookDeliveryRow.delivered_at_ms] = at_ms
    if next_attempt_at_ms is not None:
        values[WebhookDeliveryRow.next_attempt_at_ms] = next_attempt_at_ms
    WebhookDeliveryRow.update(values).where(WebhookDeliveryRow.id == row_id).execute()


def prune(instance: str | None, at_ms: int) -> int:
    """Forget delivered rows after a week and failed ones after a month."""
    rows = WebhookDeliveryRow
    old_delivered = (rows.state == DELIVERED) & (rows.created_at_ms < at_ms - KEEP_DELIVERED_MS)
    old_failed = (rows.state == FAILED) & (rows.created_at_ms < at_ms - KEEP_FAILED_MS)
    return rows.delete().where(_mine(instance), old_delivered | old_failed).execute()


def summary(instance: str | None, at_ms: int) -> dict[str, dict[str, Any]]:
    """Per target key: its label, counts by state, the oldest pending age, and its last error."""
    rows = WebhookDeliveryRow
    out: dict[str, dict[str, Any]] = {}
    query = (rows.select(rows.target_key, rows.state, fn.COUNT(rows.id).alias("n"),
                         fn.MIN(rows.created_at_ms).alias("oldest"), fn.MAX(rows.target_label).alias("label"))
             .where(_mine(instance)).group_by(rows.target_key, rows.state).tuples())
    for key, state, count, oldest, label in query:
        entry = out.setdefault(key, {"target": label, PENDING: 0, DELIVERED: 0, FAILED: 0,
                                     "oldest_pending_age_ms": None, "last_error": None, "last_status": None,
                                     "last_error_at_ms": None, "last_delivered_at_ms": None})
        entry[state] = count
        if state == PENDING and oldest is not None:
            entry["oldest_pending_age_ms"] = max(0, at_ms - oldest)
    for key, entry in out.items():
        last = (rows.select(rows.last_status).where(_mine(instance), rows.target_key == key,
                                                   rows.last_attempt_at_ms.is_null(False))
                .order_by(rows.last_attempt_at_ms.desc()).first())
        if last is not None:
            entry["last_status"] = last.last_status  # of the latest attempt
        error = (rows.select(rows.last_error, rows.last_attempt_at_ms)
                 .where(_mine(instance), rows.target_key == key, rows.last_error.is_null(False))
                 .order_by(rows.last_attempt_at_ms.desc()).first())
        if error is not None:
            entry.update(last_error=error.last_error, last_error_at_ms=error.last_attempt_at_ms)
        entry["last_delivered_at_ms"] = (rows.select(fn.MAX(rows.delivered_at_ms))
                                         .where(_mine(instance), rows.target_key == key).scalar())
    return out


def deliveries(instance: str | None, event_id: str | None = None) -> list[dict[str, Any]]:
    """Rows as dicts (tests and diagnostics)."""
    query = WebhookDeliveryRow.select().where(_mine(instance)).order_by(WebhookDeliveryRow.id)
    if event_id is not None:
        query = query.where(WebhookDeliveryRow.event_id == event_id)
    return list(query.dicts())
