"""The standalone watcher: the one assembly (`telemetry.app`: config, store, recorder, service, analysis,
heartbeat, routes) plus the watcher of a ComfyUI's API, and (optionally) the REST routes on an aiohttp app.

`python -m telemetry watch --comfyui http://127.0.0.1:8188 [--serve 127.0.0.1:8190]` ends up in `run_watch`.
A fleet: `--comfyui` repeated (or comma-separated, or `NAME=URL`): one `Watcher` per ComfyUI, each with its own
instance name, client, backoff and cursor, all on one event loop and sharing the one store and recorder. One
ComfyUI being down never stops the others (each watcher's loop only ever waits on its own ComfyUI).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from dataclasses import dataclass, field
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
    comfyui_urls: list[str] = field(default_factory=list)  # a fleet: "URL" or "NAME=URL"; empty: comfyui_url
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0


class UsageError(ValueError):
    """Options that cannot work together (exit 2 before anything starts)."""


@dataclass(frozen=True)
class Target:
    instance: str
    url: str


def split_urls(values: list[str] | str | None) -> list[str]:
    """`--comfyui` values (repeatable, each may be a comma list) or TELEMETRY_COMFYUI_URL, as single entries."""
    items = [values] if isinstance(values, str) else list(values or [])
    return [part.strip() for value in items for part in value.split(",") if part.strip()]


def _named(entry: str) -> tuple[str | None, str]:
    name, sep, url = entry.partition("=")
    if sep and name.strip() and "://" not in name and "/" not in name:
        return name.strip(), url.strip()
    return None, entry


def resolve_targets(options: WatchOptions, config_instance: str | None = None) -> list[Target]:
    """Who is watched under which name. Raises UsageError (a bad URL, --instance with several URLs, a name or
    URL twice)."""
    from .client import normalize_base_url

    entries = options.comfyui_urls or [options.comfyui_url]
    named = [_named(e) for e in entries]
    if options.instance and len(named) > 1:
        raise UsageError("--instance names one ComfyUI; with several --comfyui URLs name each as NAME=URL")
    targets: list[Target] = []
    for name, url in named:
        try:
            base = normalize_base_url(url)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
        if len(named) == 1:
            name = name or options.instance or config_instance
        targets.append(Target(name or default_instance(base), base))
    for attr in ("url", "instance"):
        values = [getattr(t, attr) for t in targets]
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            raise UsageError(f"each ComfyUI needs its own {attr}: {', '.join(twice)} given twice")
    return targets


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
    watcher: Watcher  # the first (the only one, unless a fleet)
    service: TelemetryService
    analysis: Any = None
    app: TelemetryApp | None = None  # the one assembly (telemetry.app) this watcher was built from
    watchers: list[Watcher] = field(default_factory=list)

    @property
    def webhooks(self) -> Any:
        return self.app.webhooks if self.app is not None else None


def _heartbeat_info(watcher: Watcher) -> Any:
    def info() -> dict[str, Any]:
        connected = watcher.state.connected
        return {"queue_depth": len(watcher.queue_items), "health": "ok" if connected else "degraded",
                "comfyui_url": watcher.client.base_url, "connected": connected}
    return info


def fleet_report(watchers: list[Watcher]) -> dict[str, Any]:
    """/telemetry/health `hooks`: one ComfyUI's state at the top (as before fleets), and every ComfyUI's state
    (connected / reconnecting since / next try / cursor) in `comfyuis`."""
    reports = [w.report() for w in watchers]
    if len(reports) == 1:
        out = dict(reports[0])
    else:
        out = {"mode": "watcher", "connected": all(r["connected"] is True for r in reports),
               "websocket": all(r["websocket"] for r in reports)}
    out["comfyuis"] = reports
    return out


def build(options: WatchOptions, client: ComfyClient | None = None) -> WatchApp:
    """Everything but the event-loop work. Nothing here touches the network or the database yet."""
    config = load_config(options.data_dir)
    targets = resolve_targets(options, config.instance)
    watchers: list[Watcher] = []
    first = targets[0].instance
    app = assemble(config, source="watcher", url=database_url(config, options.data_dir, options.database_url),
                   instance=first, hooks=lambda: fleet_report(watchers) if watchers else {},
                   stale_reason=STALE_REASON,
                   heartbeat_info=lambda: _heartbeat_info(watchers[0])() if watchers else {},
                   also_instances={t.instance: _later_info(watchers, i) for i, t in enumerate(targets) if i})
    assert app.recorder is not None
    for i, target in enumerate(targets):
        context = BuildContext(instance=target.instance, source="watcher")
        watchers.append(Watcher(client if client is not None and i == 0 else ComfyClient(target.url), app.recorder,
                                context, interval_s=options.interval_s, history_items=options.history_items,
                                backfill_items=options.backfill_items, backoff_initial_s=options.backoff_initial_s,
                                max_backoff_s=options.backoff_max_s))
    return WatchApp(options, config, app.store, app.recorder, watchers[0], app.service, app.analysis, app, watchers)


def _later_info(watchers: list[Watcher], index: int) -> Any:
    return lambda: _heartbeat_info(watchers[index])() if len(watchers) > index else {}


def make_web_app(app: WatchApp) -> web.Application:
    """The REST routes the plugin serves inside ComfyUI, on an aiohttp app of the watcher's own."""
    from ..api.security import Protection, listens_beyond_loopback

    host = parse_host_port(app.options.serve)[0] if app.options.serve else "127.0.0.1"
    protection = Protection(admin_token=app.config.admin_token, exposed=lambda: listens_beyond_loopback(host))
    assert app.app is not None
    watchers = app.watchers or [app.watcher]
    return make_telemetry_web_app(app.app, lambda: {w.context.instance: w.pending_queue() for w in watchers},
                                  protection)


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
    for watcher in app.watchers:
        log.info("watcher: recording %s (instance %s) to %s", watcher.client.base_url, watcher.context.instance,
                 redact_url(app.store.url))
    tasks = [asyncio.create_task(w.run(websocket=options.websocket)) for w in app.watchers]
    try:
        await stop.wait()
    finally:
        for watcher in app.watchers:
            watcher.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
        for watcher in app.watchers:
            with contextlib.suppress(Exception):
                await watcher.client.close()
        if runner is not None:
            await runner.cleanup()
        await asyncio.to_thread(stop_app, app.app, 10.0)
    return 0
