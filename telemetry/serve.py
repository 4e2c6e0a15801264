"""`python -m telemetry serve`: the REST routes and the panel as a standalone web page, over any store.

Read-only over the database: no recorder, no heartbeat, the same service and analysis code as the plugin (the
one assembly, `telemetry.app`). The page (`web/host/index.html`) loads the panel's own bundle
(`web/dist/telemetry.js`, the one ComfyUI loads) with a small host shim (`web/host/host.js`, built from
`web/src/host/`) standing in for ComfyUI's `app` and `api` modules: the bundle imports `../../scripts/app.js`,
so it is served at `/extensions/run-telemetry/telemetry.js` and the shim's re-exports at `/scripts/*.js`.

Beyond loopback a token is required (`--token` or TELEMETRY_TOKEN): every request under /telemetry and /api then
needs `Authorization: Bearer <token>`; the page asks for it once and keeps it for the tab (sessionStorage).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from .api.security import SERVE_TOKEN_ENV, Protection, listens_beyond_loopback, token_middleware
from .app import TelemetryApp, assemble, database_url, make_web_app
from .config import load_config
from .store.database import redact_url

log = logging.getLogger("run_telemetry.serve")

DEFAULT_LISTEN = "127.0.0.1:8190"
DEFAULT_DATA_DIR = os.path.join(os.path.expanduser("~"), ".run_telemetry")
MIN_TOKEN_CHARS = 8
WEB_DIR = Path(__file__).resolve().parent.parent / "web"
BUNDLE_PATH = "/extensions/run-telemetry/telemetry.js"
_NO_CACHE = {"Cache-Control": "no-cache"}


class UsageError(ValueError):
    """Bad serve options (exit 2): the message says what to change."""


@dataclass
class ServeOptions:
    listen: str = DEFAULT_LISTEN
    database_url: str | None = None
    token: str | None = None
    data_dir: str = DEFAULT_DATA_DIR


def parse_listen(value: str) -> tuple[str, int]:
    from .watch.app import parse_host_port

    try:
        host, port = parse_host_port(value, default_port=8190)
    except ValueError:
        raise UsageError(f"--listen must be HOST:PORT, got {value!r}") from None
    if not 0 < port < 65536:
        raise UsageError(f"--listen port must be 1..65535, got {port}")
    return host, port


def check_options(options: ServeOptions, environ: Mapping[str, str] | None = None) -> tuple[str, int, str | None]:
    """(host, port, token) or a UsageError: beyond loopback a token is required, and tokens have 8+ chars."""
    environ = os.environ if environ is None else environ
    host, port = parse_listen(options.listen)
    token = options.token or environ.get(SERVE_TOKEN_ENV) or None
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise UsageError(f"the token must have at least {MIN_TOKEN_CHARS} characters")
    if token is None and listens_beyond_loopback(host):
        raise UsageError(f"refusing to serve telemetry on {host}:{port} (beyond loopback) without a token: pass "
                         f"--token TOKEN or set {SERVE_TOKEN_ENV}; every request then needs "
                         "'Authorization: Bearer TOKEN'")
    return host, port, token


def build(options: ServeOptions) -> TelemetryApp:
    """The read-only app over the store (nothing touches the database yet)."""
    config = load_config(options.data_dir)
    url = database_url(config, options.data_dir, options.database_url)
    return assemble(config, source="serve", url=url, instance=None, record=False)


def _host_routes(routes: web.RouteTableDef) -> None:
    async def page(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(WEB_DIR / "host" / "index.html", headers=_NO_CACHE)

    async def shim(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(WEB_DIR / "host" / "host.js", headers=_NO_CACHE)

    async def bundle(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(WEB_DIR / "dist" / "telemetry.js", headers=_NO_CACHE)

    def reexport(name: str):
        async def handler(request: web.Request) -> web.Response:
            return web.Response(text=f'export {{ {name} }} from "/host/host.js";\n',
                                content_type="text/javascript", headers=_NO_CACHE)
        return handler

    routes.get("/")(page)
    routes.get("/host/host.js")(shim)
    routes.get(BUNDLE_PATH)(bundle)
    routes.get("/scripts/app.js")(reexport("app"))
    routes.get("/scripts/api.js")(reexport("api"))


def make_serve_app(app: TelemetryApp, host: str, token: str | None) -> web.Application:
    protection = Protection(admin_token=token or app.config.admin_token,
                            exposed=lambda: token is not None or listens_beyond_loopback(host))
    middlewares = [token_middleware(token)] if token else []
    return make_web_app(app, lambda: [], protection, middlewares=middlewares, extra=_host_routes)


async def run_serve(options: ServeOptions, stop: asyncio.Event | None = None,
                    ready: asyncio.Event | None = None) -> int:
    host, port, token = check_options(options)
    app = build(options)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(make_serve_app(app, host, token), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        log.info("serve: the telemetry of %s on http://%s:%d/%s", redact_url(app.store.url), host, port,
                 " (token required)" if token else "")
        if ready is not None:
            ready.set()
        await stop.wait()
    finally:
        await runner.cleanup()
        await asyncio.to_thread(app.store.shutdown)
    return 0
