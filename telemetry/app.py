"""The one assembly of the pack, free of ComfyUI: configuration → store, recorder, service, analysis, heartbeat
and the REST routes. The plugin (`capture/plugin.py`), the standalone watcher (`watch/app.py`) and
`python -m telemetry serve` (`serve.py`) all build their app here, so they cannot drift apart; each passes only
what is its own (ComfyUI's hooks and queue, the watched ComfyUI, or nothing: serve only reads).

    app = assemble(config, source="watcher", instance="host:8188", ...)
    routes = web.RouteTableDef(); add_routes(routes, lambda: app, get_queue, protection)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .config import TelemetryConfig
from .instances import Heartbeat
from .model import Run
from .recorder import Recorder
from .recorder.recorder import CRASH_REASON
from .service import TelemetryService
from .store.database import sqlite_url
from .store.store import Store

log = logging.getLogger("run_telemetry")

Recommendations = Callable[[list[dict[str, Any]]], None]


@dataclass
class TelemetryApp:
    """What the assembly built. `recorder` and `heartbeat` are None for a read-only app (serve)."""

    config: TelemetryConfig
    store: Store
    service: TelemetryService
    instance: str | None
    source: str
    recorder: Recorder | None = None
    heartbeat: Heartbeat | None = None
    analysis: Any = None
    heartbeats: list[Heartbeat] = field(default_factory=list)  # one per instance (a watcher of a fleet has many)
    webhooks: Any = None  # telemetry.webhooks.WebhookSender (recording apps only)
    # optional parts that failed to import or start: part -> "ExceptionType: message" (served by /telemetry/health)
    optional: dict[str, str] = field(default_factory=dict)


def database_url(config: TelemetryConfig, data_dir: str, override: str | None = None) -> str:
    """`override` (a --database-url), else the configured URL, else the SQLite file in `data_dir`."""
    return override or config.database_url or sqlite_url(os.path.join(data_dir, "telemetry.db"))


def assemble(config: TelemetryConfig, *, source: str, url: str, instance: str | None, record: bool = True,
             hooks: Callable[[], Mapping[str, Any]] | None = None,
             idle_hook: Callable[[], None] | None = None, busy: Callable[[], bool] | None = None,
             stale_reason: str = CRASH_REASON,
             heartbeat_info: Callable[[], Mapping[str, Any]] | None = None,
             on_recommendations: Recommendations | None = None,
             also_instances: Mapping[str, Callable[[], Mapping[str, Any]]] | None = None) -> TelemetryApp:
    """Build the app. Nothing here touches the database or the network yet; `start()` starts the recorder.

    `record=False` (serve): no recorder and no heartbeat, the same service and analysis over the store.
    `heartbeat_info()` (recorder thread, every 30 s) returns ComfyUI/frontend versions, GPU, queue depth, health.
    `on_recommendations(recs)` is told the recommendations that open after a stored run (the plugin pushes them).
    `also_instances` (a watcher of several ComfyUIs): further instance name -> its heartbeat_info; each gets its
    own heartbeat row, and its runs left running by a previous process are closed at start like `instance`'s.
    """
    also_instances = dict(also_instances or {})
    store = Store(url)
    optional: dict[str, str] = {}
    recorder = heartbeat = None
    beat: list[Heartbeat] = []
    if record:

        def recorder_idle() -> None:
            if idle_hook is not None:
                try:
                    idle_hook()
                except Exception as exc:
                    log.debug("telemetry idle hook failed: %s", exc)
            for one in beat:
                one.maybe_beat()

        recorder = Recorder(store, instance=instance, queue_max=config.queue_max_events,
                            buffer_max=config.buffer_max_runs, retry_initial_s=config.retry_initial_s,
                            retry_max_s=config.retry_max_s,
                            retention=(config.retention_days, config.retention_max_runs), idle_hook=recorder_idle,
                            busy=busy, source=source, stale_reason=stale_reason,
                            also_instances=tuple(also_instances))
        if instance is not None:
            heartbeat = Heartbeat(store, instance, source, _with_recorder_health(heartbeat_info, recorder))
            beat.append(heartbeat)
        for name, info in also_instances.items():
            if name != instance:
                beat.append(Heartbeat(store, name, source, _with_recorder_health(info, recorder)))
    service = TelemetryService(store, recorder, hooks=hooks, source=source, instance=instance,
                               config_warnings=config.warning_dicts(), optional=lambda: optional,
                               energy_price_per_kwh=config.energy_price_per_kwh, currency=config.currency)
    app = TelemetryApp(config, store, service, instance, source, recorder, heartbeat, optional=optional,
                       heartbeats=beat)
    if service.metrics_error is not None:
        optional_failed(app, "metrics", service.metrics_error)
    attach_webhooks(app)
    attach_analysis(app, recommendations_opened(app, on_recommendations))
    return app


def attach_webhooks(app: TelemetryApp) -> None:
    """Signed webhooks (telemetry.webhooks) for a recording app: told of every stored run on the recorder
    thread, delivered by a thread of their own, reported in /telemetry/health."""
    if app.recorder is None:
        return
    try:
        from .webhooks import attach_webhooks as attach

        app.webhooks = attach(app.config, app.store, app.recorder, app.service, instance=app.instance)
    except Exception as exc:
        optional_failed(app, "webhooks", exc)


def recommendations_opened(app: TelemetryApp, tell: Recommendations | None = None) -> Recommendations:
    """What happens to newly opened recommendations (recorder thread): `tell` (the plugin pushes them to the
    panel), then their webhooks are queued."""
    def opened(recommendations: list[dict[str, Any]]) -> None:
        if tell is not None:
            tell(recommendations)
        if recommendations and app.webhooks is not None:
            app.webhooks.enqueue_recommendations(recommendations)
    return opened


def _with_recorder_health(info: Callable[[], Mapping[str, Any]] | None,
                          recorder: Recorder) -> Callable[[], Mapping[str, Any]]:
    def gather() -> dict[str, Any]:
        out: dict[str, Any] = {}
        if info is not None:
            out.update(info())
        health = recorder.health()
        out.setdefault("buffered", health.get("buffered", 0))
        out.setdefault("dropped", health.get("dropped", 0))
        if out.get("health") is None:
            out["health"] = "degraded" if health.get("buffered") else "ok"
        return out
    return gather


def attach_analysis(app: TelemetryApp, on_recommendations: Recommendations | None = None) -> None:
    """Analysis over the app's store, with the config file's `analysis` section; evaluated after each stored
    run on the recorder thread (waiting for an idle ComfyUI). A part that cannot load is listed as optional."""
    try:
        from .analysis.service import AnalysisService
    except Exception as exc:
        optional_failed(app, "analysis", exc)
        return
    try:
        app.analysis = AnalysisService(app.store, config_path=app.config.path, config=app.config.analysis)
    except Exception as exc:
        log.exception("Run Telemetry: analysis is off")
        optional_failed(app, "analysis", exc)
        return
    if app.recorder is None:
        return

    def on_stored(run: Run) -> None:
        if run.status == "running":
            return
        opened = app.analysis.on_run_stored(run) or []
        if opened and on_recommendations is not None:
            on_recommendations(opened)

    app.recorder.add_listener(on_stored, when_idle=True)


def optional_failed(app: TelemetryApp, part: str, exc: BaseException) -> None:
    """An optional part could not be imported: say so in the log and in /telemetry/health, never drop it silently."""
    app.optional[part] = f"{type(exc).__name__}: {exc}"[:300]
    log.warning("Run Telemetry: %s is off (%s: %s); /telemetry/health reports it", part, type(exc).__name__, exc)


def add_routes(routes: web.RouteTableDef, get_app: Callable[[], TelemetryApp | None],
               get_queue: Callable[[], list | Mapping[str, list]], protection: Any = None) -> None:
    """The core and analysis routes on `routes` (ComfyUI's PromptServer table, or an app of our own)."""
    from .api.routes import add_core_routes

    def service() -> TelemetryService | None:
        app = get_app()
        return app.service if app is not None else None

    add_core_routes(routes, service, protection)
    from .webhooks.routes import add_webhook_routes

    def webhooks() -> Any:
        app = get_app()
        return app.webhooks if app is not None else None

    add_webhook_routes(routes, webhooks, protection)
    try:
        from .api.analysis_routes import add_analysis_routes
    except Exception as exc:
        app = get_app()
        if app is not None:
            optional_failed(app, "analysis_routes", exc)
        return

    def analysis() -> Any:
        app = get_app()
        return app.analysis if app is not None else None

    add_analysis_routes(routes, analysis, get_queue, protection)


def make_web_app(app: TelemetryApp, get_queue: Callable[[], list | Mapping[str, list]], protection: Any = None,
                 middlewares: Iterable[Any] = (), extra: Callable[[web.RouteTableDef], None] | None = None
                 ) -> web.Application:
    """An aiohttp app of our own with the routes ComfyUI would serve: under /telemetry and, as ComfyUI does,
    under /api/telemetry too (scripts written against the plugin keep working). `extra` adds more routes."""
    routes = web.RouteTableDef()
    add_routes(routes, lambda: app, get_queue, protection)
    web_app = web.Application(middlewares=list(middlewares))
    web_app.add_routes(routes)
    api = web.Application()
    api.add_routes(routes)
    if extra is not None:
        more = web.RouteTableDef()
        extra(more)
        web_app.add_routes(more)
    web_app.add_subapp("/api", api)
    return web_app


def start(app: TelemetryApp) -> None:
    if app.recorder is not None:
        app.recorder.start()
    if app.webhooks is not None:
        app.webhooks.start()


def stop(app: TelemetryApp, timeout_s: float = 10.0) -> None:
    """Flush and stop the recorder, then close the store (blocking: call it off the event loop)."""
    if app.recorder is not None:
        app.recorder.flush(timeout_s)
        app.recorder.stop(timeout_s)
    if app.webhooks is not None:
        app.webhooks.stop(timeout_s)
    app.store.shutdown()
