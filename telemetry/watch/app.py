"""The standalone watcher: the one assembly (`telemetry.app`: config, store, recorder, service, analysis,
heartbeat, routes) plus the watcher of a ComfyUI's API, and (optionally) the REST routes on an aiohttp app.

`python -m telemetry watch --comfyui http://127.0.0.1:8188 [--serve 127.0.0.1:8190]` ends up in `run_watch`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from ..app import TelemetryApp, assemble, database_url
from ..app import make_web_app as make_telemetry_web_app
from ..app import start as start_app
from ..app import stop as stop_app
from ..collector import BuildContext
from ..config import TelemetryConfig, load_config
from ..recorder import Recorder
from ..service import TelemetryService
from ..store.database import redact_url
from ..store.store import Store
from .client import ComfyClient
from .watcher import STALE_REASON, Watcher

log = logging.getLogger("run_telemetry.watch")

DEFAULT_DATA_DIR = os.path.join(os.path.expanduser("~"), ".run_telemetry")
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "0.0.0.0", ""}


@dataclass
class WatchOptions:
    comfyui_url: str = "http://127.0.0.1:8188"
    database_url: str | None = None
    serve: str | None = None  # "host:port"
    interval_s: float = 1.0
    instance: str | None = None
    history_items: int = 32
    backfill_items: int = 200
    websocket: bool = True
    data_dir: str = DEFAULT_DATA_DIR


def default_instance(comfyui_url: str) -> str:
    """The name the plugin would give the same ComfyUI (`<hostname>:<port>`), so both paths file runs alike."""
    parts = urlsplit(comfyui_url if "://" in comfyui_url else "http://" + comfyui_url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if host in _LOOPBACK:
        host = socket.gethostname()
    return f"{host}:{port}"


def parse_host_port(value: str, default_port: int = 8190) -> tuple[str, int]:
    value = value.strip()
    if value.startswith("["):  # [::1]:8190
        host, _, rest = value[1:].partition("]")
        port = rest.lstrip(":")
        return host, int(port) if port else default_port
    if value.count(":") == 1:
        host, port = value.split(":")
        return host or "127.0.0.1", int(port)
    if value.isdigit():
        return "127.0.0.1", int(value)
    return value, default_port


@dataclass
class WatchApp:
    options: WatchOptions
    config: TelemetryConfig
    store: Store
    recorder: Recorder
    watcher: Watcher
    service: TelemetryService
    analysis: Any = None
    app: TelemetryApp | None = None  # the one assembly (telemetry.app) this watcher was built from

    @property
    def webhooks(self) -> Any:
        return self.app.webhooks if self.app is not None else None


def build(options: WatchOptions, client: ComfyClient | None = None) -> WatchApp:
    """Everything but the event-loop work. Nothing here touches the network or the database yet."""
    config = load_config(options.data_dir)
    instance = options.instance or config.instance or default_instance(options.comfyui_url)
    context = BuildContext(instance=instance, source="watcher")
    client = client or ComfyClient(options.comfyui_url)
    watcher_ref: list[Watcher] = []

    def report() -> dict[str, Any]:
        return watcher_ref[0].report() if watcher_ref else {}

    def heartbeat_info() -> dict[str, Any]:
        watcher = watcher_ref[0]
        state = watcher.report()
        connected = state.get("connected")
        return {"queue_depth": len(watcher.queue_items), "health": "ok" if connected else "degraded",
                "comfyui_url": watcher.client.base_url, "connected": connected}

    app = assemble(config, source="watcher", url=database_url(config, options.data_dir, options.database_url),
                   instance=instance, hooks=report, stale_reason=STALE_REASON, heartbeat_info=heartbeat_info)
    assert app.recorder is not None
    watcher = Watcher(client, app.recorder, context, interval_s=options.interval_s,
                      history_items=options.history_items, backfill_items=options.backfill_items)
    watcher_ref.append(watcher)
    return WatchApp(options, config, app.store, app.recorder, watcher, app.service, app.analysis, app)


def make_web_app(app: WatchApp) -> web.Application:
    """The REST routes the plugin serves inside ComfyUI, on an aiohttp app of the watcher's own."""
    from ..api.security import Protection, listens_beyond_loopback

    host = parse_host_port(app.options.serve)[0] if app.options.serve else "127.0.0.1"
    protection = Protection(admin_token=app.config.admin_token, exposed=lambda: listens_beyond_loopback(host))
    assert app.app is not None
    return make_telemetry_web_app(app.app, app.watcher.pending_queue, protection)


async def run_watch(options: WatchOptions, stop: asyncio.Event | None = None) -> int:
    app = build(options)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    assert app.app is not None
    start_app(app.app)
    runner = None
    if options.serve:
        host, port = parse_host_port(options.serve)
        runner = web.AppRunner(make_web_app(app), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        log.info("watcher: REST on http://%s:%d/telemetry", host, port)
    log.info("watcher: recording %s (instance %s) to %s", app.watcher.client.base_url, app.recorder.instance,
             redact_url(app.store.url))
    task = asyncio.create_task(app.watcher.run(websocket=options.websocket))
    try:
        await stop.wait()
    finally:
        app.watcher.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        await app.watcher.client.close()
        if runner is not None:
            await runner.cleanup()
        await asyncio.to_thread(stop_app, app.app, 10.0)
    return 0
