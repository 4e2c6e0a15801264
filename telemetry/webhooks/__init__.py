"""Signed webhooks with a durable outbox: `failed`, `finished` and `recommendation` events POSTed as JSON (or
Slack / Discord message bodies) to the URLs of `TELEMETRY_WEBHOOK_URLS`, signed with `TELEMETRY_WEBHOOK_SECRET`.

- `config`: the targets and their checks; `payloads`: the bodies; `signing`: the signature and idempotency key;
  `outbox`: the table's store access; `sender`: enqueue (recorder thread) and the delivery thread; `routes`:
  `POST /telemetry/webhooks/test`.
- `attach_webhooks` is what the plugin and the watcher call: it makes the sender, registers it as an after-store
  listener of the recorder and gives the service its health section. Nothing runs on ComfyUI's worker.
"""

from __future__ import annotations

from typing import Any

from ..recorder import Recorder
from ..store.store import Store
from .sender import WebhookSender, WebhookSettings


def attach_webhooks(config: Any, store: Store, recorder: Recorder, service: Any, *,
                    instance: str | None) -> WebhookSender:
    """A sender for `config`'s targets, told of every stored run and served in `/telemetry/health`. Start it
    with `.start()` (a no-op when no target is configured)."""
    sender = WebhookSender(store, WebhookSettings.from_config(config), instance=instance)
    recorder.add_listener(sender.enqueue_run)
    service.webhooks = sender
    return sender


__all__ = ["WebhookSender", "WebhookSettings", "attach_webhooks"]
