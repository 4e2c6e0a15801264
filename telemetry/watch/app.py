"""Assembles the standalone watcher, mirroring `telemetry.capture.plugin`: config, store, recorder, watcher,
service, analysis and (optionally) the same REST routes on an aiohttp app of its own.

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

from ..collector import BuildContext
from ..config import TelemetryConfig, load_config
from ..model import Run
from ..recorder import Recorder
from ..service import TelemetryService
from ..store.database import redact_url, sqlite_url
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
    webhooks: Any = None  # telemetry.webhooks.WebhookSender


def build(options: WatchOptions, client: ComfyClient | None = None) -> WatchApp:
    """Everything but the event-loop work. Nothing here touches the network or the database yet."""
    config = load_config(options.data_dir)
    url = options.database_url or config.database_url or sqlite_url(os.path.join(options.data_dir, "telemetry.db"))
    store = Store(url)
    instance = options.instance or config.instance or default_instance(options.comfyui_url)
    context = BuildContext(instance=instance, source="watcher")
    recorder = Recorder(store, instance=instance, queue_max=config.queue_max_events,
                        buffer_max=config.buffer_max_runs, retry_initial_s=config.retry_initial_s,
                        retry_max_s=config.retry_max_s,
                        retention=(config.retention_days, config.retention_max_runs),
                        source="watcher", stale_reason=STALE_REASON)
    client = client or ComfyClient(options.comfyui_url)
    watcher = Watcher(client, recorder, context, interval_s=options.interval_s,
                      history_items=options.history_items, backfill_items=options.backfill_items)
    service = TelemetryService(store, recorder, hooks=watcher.report, source="watcher", instance=instance,
                               config_warnings=config.warning_dicts(),
                               energy_price_per_kwh=config.energy_price_per_kwh, currency=config.currency)
    app = WatchApp(options, config, store, recorder, watcher, service)
    from ..webhooks import attach_webhooks

    app.webhooks = attach_webhooks(config, store, recorder, service, instance=instance)
    _attach_analysis(app)
    return app


def _attach_analysis(app: WatchApp) -> None:
    try:
        from ..analysis.service import AnalysisService
    except Exception:
        return
    try:
        app.analysis = AnalysisService(app.store, config_path=app.config.path, config=app.config.analysis)
    except Exception:
        log.exception("watcher: analysis is off")
        return

    def on_stored(run: Run) -> None:
        if run.status != "running":
            opened = app.analysis.on_run_stored(run)
            if opened:
                app.webhooks.enqueue_recommendations(opened)

    app.recorder.add_listener(on_stored, when_idle=True)


def make_web_app(app: WatchApp) -> web.Application:
    """The REST routes the plugin serves inside ComfyUI, on an aiohttp app of the watcher's own."""
    from ..api.routes import add_core_routes
    from ..api.security import Protection, listens_beyond_loopback

    host = parse_host_port(app.options.serve)[0] if app.options.serve else "127.0.0.1"
    protection = Protection(admin_token=app.config.admin_token, exposed=lambda: listens_beyond_loopback(host))
    routes = web.RouteTableDef()
    add_core_routes(routes, lambda: app.service, protection)
    from ..webhooks.routes import add_webhook_routes

    add_webhook_routes(routes, lambda: app.webhooks, protection)
    try:
        from ..api.analysis_routes import add_analysis_routes
    except Exception:
        add_analysis_routes = None
    if add_analysis_routes is not None:
        add_analysis_routes(routes, lambda: app.analysis, app.watcher.pending_queue, protection)
    web_app = web.Application()
    web_app.add_routes(routes)
    # ComfyUI serves every route under /api too; scripts written against the plugin keep working.
    api = web.Application()
    api.add_routes(routes)
    web_app.add_subapp("/api", api)
    return web_app


async def run_watch(options: WatchOptions, stop: asyncio.Event | None = None) -> int:
    app = build(options)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    app.recorder.start()
    app.webhooks.start()
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
        await asyncio.to_thread(app.recorder.flush, 10.0)
        await asyncio.to_thread(app.recorder.stop, 10.0)
        await asyncio.to_thread(app.webhooks.stop, 10.0)
        await asyncio.to_thread(app.store.shutdown)
    return 0
