"""The analysis REST routes under /telemetry: recommendations, trends, the timeline, predictions, the queue ETA,
prediction accuracy and the analysis config. Mountable on any `RouteTableDef` (the plugin's PromptServer routes
or the standalone server's app).

Every response is JSON made safe (NaN/inf become null); errors are `{"error": "..."}` with 400 (what is wrong),
401/403 (refused: see `security`), 404 (what is missing), 409 (a config file that cannot be rewritten) or 503
(analysis not running). Database work runs on the store's own thread pool (`db_executor.run_db`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from ..analysis.service import AnalysisService
from ..filters import parse_id
from .db_executor import run_db
from .routes import guarded as _guarded
from .routes import json_response as _json
from .routes import protect
from .routes import read_json as _body
from .security import Protection

log = logging.getLogger("run_telemetry.api")

PREFIX = "/telemetry"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_analysis_routes(routes: web.RouteTableDef, get_service: Callable[[], AnalysisService | None],
                        get_queue: Callable[[], list | Mapping[str, list]],
                        protection: Protection | None = None) -> None:
    """Register the analysis routes on `routes`. `get_queue` returns ComfyUI's queue items, running first, or
    (a watcher of several ComfyUIs) those items per instance."""
    same_origin, admin_only = protect(protection), protect(protection, admin=True)

    def service() -> AnalysisService:
        svc = get_service()
        if svc is None:
            raise web.HTTPServiceUnavailable(text=json.dumps({"error": "telemetry analysis is not running"}),
                                             content_type="application/json")
        return svc

    async def call(method: str, *args: object) -> object:
        svc = service()
        return await run_db(svc.store, getattr(svc, method), *args)

    @routes.get(PREFIX + "/recommendations")
    @_guarded
    async def list_recommendations(request: web.Request) -> web.Response:
        q = request.query
        return _json(await call("recommendations", q.get("state"), q.get("severity"),
                                             q.get("workflow")))

    @routes.post(PREFIX + "/recommendations/evaluate")
    @_guarded
    @same_origin
    async def evaluate_recommendations(request: web.Request) -> web.Response:
        return _json(await call("evaluate", request.query.get("workflow")))

    @routes.post(PREFIX + "/recommendations/{rec_id}/dismiss")
    @_guarded
    @same_origin
    async def dismiss_recommendation(request: web.Request) -> web.Response:
        rec_id = parse_id(request.match_info["rec_id"], "recommendation id")
        return _json(await call("dismiss", rec_id))

    @routes.get(PREFIX + "/trends")
    @_guarded
    async def get_trends(request: web.Request) -> web.Response:
        q = request.query
        return _json(await call("trends", q.get("workflow"), q.get("metric"),
                                             q.get("node_type")))

    @routes.get(PREFIX + "/stats/timeline")
    @_guarded
    async def get_timeline(request: web.Request) -> web.Response:
        return _json(await call("timeline", dict(request.query)))

    @routes.post(PREFIX + "/predict")
    @_guarded
    @same_origin
    async def post_predict(request: web.Request) -> web.Response:
        body = await _body(request)
        return _json(await call("predict", body))

    @routes.get(PREFIX + "/predict/accuracy")
    @_guarded
    async def get_accuracy(request: web.Request) -> web.Response:
        return _json(await call("accuracy"))

    @routes.get(PREFIX + "/queue/eta")
    @_guarded
    async def get_queue_eta(request: web.Request) -> web.Response:
        svc = service()
        queues = get_queue() or []
        if isinstance(queues, Mapping):  # a watcher: one queue per ComfyUI it watches
            instance = request.query.get("instance") or None
            return _json(await run_db(svc.store, svc.fleet_queue_eta, queues, instance))
        return _json(await run_db(svc.store, svc.queue_eta, queues))

    @routes.get(PREFIX + "/config")
    @_guarded
    async def get_config(request: web.Request) -> web.Response:
        return _json(service().get_config())

    @routes.put(PREFIX + "/config")
    @_guarded
    @admin_only
    async def put_config(request: web.Request) -> web.Response:
        body = await _body(request)
        return _json(await call("set_config", body))
