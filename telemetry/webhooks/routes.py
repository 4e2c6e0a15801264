"""`POST /telemetry/webhooks/test`: queue a `test` event to every configured webhook (admin-protected like
config writes). Answers `{"queued": [{"event_id", "target"}]}` at once; the delivery shows in
`/telemetry/health` under `webhooks`."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from ..api.db_executor import run_db
from ..api.routes import PREFIX, guarded, json_response, protect
from ..api.security import Protection
from ..filters import FilterError
from .sender import WebhookSender


def add_webhook_routes(routes: web.RouteTableDef, get_sender: Callable[[], WebhookSender | None],
                       protection: Protection | None = None) -> None:
    admin_only = protect(protection, admin=True)

    @routes.post(PREFIX + "/webhooks/test")
    @guarded
    @admin_only
    async def send_test_webhook(request: web.Request) -> web.Response:
        sender = get_sender()
        if sender is None or not sender.enabled:
            raise FilterError("no webhook is configured: set TELEMETRY_WEBHOOK_URLS (or webhook_urls in the config "
                              "file) and restart")
        queued = await run_db(sender.store, sender.enqueue_test)
        return json_response({"queued": queued}, status=202)
