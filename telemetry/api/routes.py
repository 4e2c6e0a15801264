"""The core REST routes under /telemetry (ComfyUI also serves each under /api/telemetry).

Every response is JSON; errors are `{"error": "..."}` with 400 (what is wrong), 401/403 (refused: see
`security`), 404 (what is missing), 409 (a config file that cannot be rewritten) or 503 (database unavailable).
Database work runs on the store's own thread pool (`db_executor.run_db`) so ComfyUI's event loop never waits on
I/O. Every route is described in `openapi.py` (served at `/telemetry/openapi.json`; a test keeps the two in step).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from peewee import DatabaseError, InterfaceError

from ..errors import NotFoundError
from ..filters import FilterError, check_text
from ..jsonsafe import json_safe
from ..service import TelemetryService
from ..validation import ConfigFileError
from .db_executor import run_db
from .security import Protection, Refused

log = logging.getLogger("run_telemetry.api")

PREFIX = "/telemetry"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(json_safe(data), status=status,
                             dumps=lambda d: json.dumps(d, ensure_ascii=False, allow_nan=False))


async def read_json(request: web.Request) -> Any:
    if not request.can_read_body:
        raise FilterError("the request has no body; send JSON")
    try:
        return await request.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise FilterError(f"the body is not valid JSON ({exc})") from None


def _check_text(request: web.Request) -> None:
    """NUL (PostgreSQL cannot store or compare it) and lone surrogates (UTF-8 cannot encode them): refused in any
    parameter up front."""
    for name, value in [*request.query.items(), *request.match_info.items()]:
        check_text(name, "a parameter name")
        check_text(value, name)


def guarded(handler: Handler) -> Handler:
    """Turn our errors into 400/404 JSON, and any other failure into a logged 500 that never escapes."""
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            _check_text(request)
            return await handler(request)
        except FilterError as exc:
            return error_response(400, str(exc))
        except NotFoundError as exc:
            return error_response(404, str(exc))
        except Refused as exc:
            response = error_response(exc.status, str(exc))
            response.headers.update(exc.headers)
            return response
        except ConfigFileError as exc:
            return error_response(409, str(exc))
        except web.HTTPException:
            raise
        except (DatabaseError, InterfaceError) as exc:
            log.warning("telemetry route %s: database unavailable: %s", request.path, exc)
            return error_response(503, f"the telemetry database is unavailable: {exc}"[:500])
        except Exception as exc:
            log.exception("telemetry route %s failed", request.path)
            return error_response(500, f"internal error: {type(exc).__name__}: {exc}"[:500])
    wrapper.__name__ = handler.__name__
    return wrapper


def protect(protection: Protection | None, admin: bool = False) -> Callable[[Handler], Handler]:
    """Same-origin for state-changing methods; with `admin`, also the admin token beyond loopback. Put it
    inside `guarded`, which answers a refusal with its 401/403."""
    checks = protection or Protection()

    def decorate(handler: Handler) -> Handler:
        async def wrapper(request: web.Request) -> web.StreamResponse:
            checks.check_origin(request)
            if admin:
                checks.check_admin(request)
            return await handler(request)
        wrapper.__name__ = handler.__name__
        return wrapper
    return decorate


def add_core_routes(routes: web.RouteTableDef, get_service: Callable[[], TelemetryService | None],
                    protection: Protection | None = None) -> None:
    """Register the core routes and `/telemetry/openapi.json` on `routes`."""
    same_origin, admin_only = protect(protection), protect(protection, admin=True)

    def service() -> TelemetryService:
        svc = get_service()
        if svc is None:
            raise web.HTTPServiceUnavailable(text=json.dumps({"error": "telemetry is not running"}),
                                             content_type="application/json")
        return svc

    async def call(method: str, *args: Any) -> Any:
        svc = service()
        return await run_db(svc.store, getattr(svc, method), *args)

    @routes.get(PREFIX + "/runs")
    @guarded
    async def list_runs(request: web.Request) -> web.Response:
        return json_response(await call("list_runs", dict(request.query)))

    @routes.get(PREFIX + "/runs/{run_id}")
    @guarded
    async def get_run(request: web.Request) -> web.Response:
        return json_response(await call("get_run", request.match_info["run_id"]))

    @routes.get(PREFIX + "/runs/{run_id}/workflow")
    @guarded
    async def get_run_workflow(request: web.Request) -> web.Response:
        return json_response(await call("get_run_workflow", request.match_info["run_id"]))

    @routes.get(PREFIX + "/live")
    @guarded
    async def live_state(request: web.Request) -> web.Response:
        return json_response(await call("live_state"))

    @routes.post(PREFIX + "/live/listen")
    @guarded
    @same_origin
    async def live_listen(request: web.Request) -> web.Response:
        body = await read_json(request) if request.can_read_body else None
        return json_response(await call("live_listen", body))

    @routes.get(PREFIX + "/stats")
    @guarded
    async def stats(request: web.Request) -> web.Response:
        return json_response(await call("stats", dict(request.query)))

    @routes.get(PREFIX + "/stats/node_types")
    @guarded
    async def node_type_stats(request: web.Request) -> web.Response:
        return json_response(await call("node_type_stats", dict(request.query)))

    @routes.get(PREFIX + "/health")
    @guarded
    async def health(request: web.Request) -> web.Response:
        return json_response(await call("health"))

    @routes.get(PREFIX + "/instances")
    @guarded
    async def instances(request: web.Request) -> web.Response:
        return json_response(await call("instances"))

    @routes.get(PREFIX + "/metrics")
    @guarded
    async def metrics(request: web.Request) -> web.Response:
        body, content_type = service().prometheus(request.headers.get("Accept"))
        return web.Response(body=body, headers={"Content-Type": content_type})

    @routes.get(PREFIX + "/presets")
    @guarded
    async def list_presets(request: web.Request) -> web.Response:
        return json_response(await call("list_presets"))

    @routes.delete(PREFIX + "/runs")
    @guarded
    @admin_only
    async def prune_runs(request: web.Request) -> web.Response:
        return json_response(await call("prune_runs", dict(request.query)))

    @routes.get(PREFIX + "/openapi.json")
    @guarded
    async def openapi(request: web.Request) -> web.Response:
        from .openapi import openapi_spec

        return json_response(openapi_spec())

    @routes.post(PREFIX + "/presets")
    @guarded
    @same_origin
    async def save_preset(request: web.Request) -> web.Response:
        body = await read_json(request)
        return json_response(await call("save_preset", body), status=201)

    @routes.delete(PREFIX + "/presets/{preset_id}")
    @guarded
    @same_origin
    async def delete_preset(request: web.Request) -> web.Response:
        return json_response(await call("delete_preset", request.match_info["preset_id"]))

    @routes.post(PREFIX + "/workflows")
    @guarded
    @same_origin
    async def set_workflow_name(request: web.Request) -> web.Response:
        body = await read_json(request)
        return json_response(await call("set_workflow_name", body))

    @routes.get(PREFIX + "/export")
    @guarded
    async def export(request: web.Request) -> web.StreamResponse:
        fmt = request.query.get("format", "jsonl")
        svc = service()
        chunks = await run_db(svc.store, svc.export_chunks, dict(request.query), fmt)
        sentinel = object()
        chunk = await run_db(svc.store, next, chunks, sentinel)  # database errors are still a 503 here
        response = web.StreamResponse(headers={
            "Content-Type": "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson; charset=utf-8",
            "Content-Disposition": f'attachment; filename="telemetry-runs.{fmt}"',
        })
        await response.prepare(request)
        try:
            while chunk is not sentinel:
                await response.write(chunk.encode("utf-8"))
                chunk = await run_db(svc.store, next, chunks, sentinel)
        except asyncio.CancelledError:
            raise
        except ConnectionError:  # the client went away mid-stream (a download cancelled): nothing failed here
            log.debug("telemetry export: the client closed the connection before the end")
            return response
        except Exception:
            # The status is sent: the only honest signal left is a cut connection (no final chunk).
            log.exception("telemetry export failed while streaming; the connection is closed unfinished")
            if request.transport is not None:
                request.transport.abort()
            return response
        await response.write_eof()
        return response
