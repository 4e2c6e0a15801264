"""The pack inside ComfyUI: only the ComfyUI wiring (hooks, GPU sampler, PromptServer routes and websocket push,
queue access) around the one assembly in `telemetry.app`.

`start_plugin()` is called once from the pack's `__init__.py` at import. It never raises: if anything fails,
ComfyUI runs as if the pack were not installed, and the failure is logged.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from ..collector import BuildContext
from ..config import TelemetryConfig, load_config
from ..fileperms import ensure_private_dir
from ..jsonsafe import json_safe
from ..model import Run
from ..recorder import Recorder
from ..service import TelemetryService
from ..store.store import Store
from . import hooks
from .frames import comfy_directory_resolver, make_frame_counter

log = logging.getLogger("run_telemetry")

PACK_DIR_NAME = "run_telemetry"
RUN_EVENT = "telemetry.run"
RECOMMENDATION_EVENT = "telemetry.recommendation"


@dataclass
class Plugin:
    config: TelemetryConfig
    data_dir: str
    store: Store
    recorder: Recorder
    capture: hooks.Capture
    service: TelemetryService
    installed_hooks: dict[str, bool]
    analysis: Any = None
    app: Any = None  # the telemetry.app.TelemetryApp the plugin was assembled from
    # optional parts that failed to import or start: part -> "ExceptionType: message" (served by /telemetry/health)
    optional: dict[str, str] = field(default_factory=dict)


_plugin: Plugin | None = None


def current() -> Plugin | None:
    return _plugin


def data_directory() -> str:
    try:
        import folder_paths

        getter = getattr(folder_paths, "get_system_user_directory", None)
        if getter is not None:
            return getter(PACK_DIR_NAME)
        return os.path.join(folder_paths.get_user_directory(), "__" + PACK_DIR_NAME)
    except Exception:
        return os.path.join(os.path.expanduser("~"), ".run_telemetry")


def instance_name(config: TelemetryConfig) -> str:
    if config.instance:
        return config.instance
    port = None
    try:
        from comfy.cli_args import args

        port = args.port
    except Exception:
        pass
    return f"{socket.gethostname()}:{port or 8188}"


def prompt_server() -> Any:
    try:
        from server import PromptServer

        return getattr(PromptServer, "instance", None)
    except Exception:
        return None


def push(event: str, payload: dict[str, Any]) -> None:
    """Send a JSON-safe event to every browser tab. Never raises."""
    server = prompt_server()
    if server is None or not hasattr(server, "send_sync"):
        return
    try:
        server.send_sync(event, json_safe(payload), None)
    except Exception:
        log.debug("telemetry push of %s failed", event, exc_info=True)


def _push_run(run: Run) -> None:
    push(RUN_EVENT, run.to_dict(detail=False))


SETTLE_S = 0.05


def comfy_busy(capture: hooks.Capture) -> bool:
    """True while ComfyUI executes a run, has prompts waiting, or has just finished one (it is still answering
    its clients): the recorder's work waits for a quiet moment, bounded by its maximum delay."""
    if capture.current is not None or time.monotonic() - capture.last_finished_monotonic < SETTLE_S:
        return True
    queue = getattr(prompt_server(), "prompt_queue", None)
    return bool(getattr(queue, "queue", None))


def pending_queue() -> list:
    """ComfyUI's running and pending queue items, running first (for ETA predictions)."""
    server = prompt_server()
    queue = getattr(server, "prompt_queue", None)
    if queue is None:
        return []
    try:
        running, pending = queue.get_current_queue_volatile()
    except Exception:
        return []
    return list(running) + sorted(pending, key=lambda item: item[0])


def start_plugin() -> Plugin | None:
    global _plugin
    if _plugin is not None:
        return _plugin
    try:
        _plugin = _start()
    except Exception:
        log.exception("Run Telemetry could not start; ComfyUI continues without it")
        _plugin = None
    return _plugin


def _start() -> Plugin:
    from ..app import assemble, database_url
    from ..app import start as start_app

    data_dir = ensure_private_dir(data_directory())
    config = load_config(data_dir)
    instance = instance_name(config)
    context = BuildContext(instance=instance, source="plugin",
                           frame_counter=make_frame_counter(comfy_directory_resolver()))

    capture_ref: list[hooks.Capture] = []
    plugin_ref: list[Plugin] = []

    def idle_hook() -> None:
        if capture_ref:
            capture_ref[0].flush_orphans()
        if plugin_ref:
            _check_queue_memory(plugin_ref[0])

    def hook_report() -> dict[str, Any]:
        if not capture_ref:
            return {}
        capture = capture_ref[0]
        per_run = capture.worker_ns / 1e6 / capture.runs_seen if capture.runs_seen else None
        return {**installed, "hook_errors": capture.hook_errors, "runs_seen": capture.runs_seen,
                "worker_ms_total": round(capture.worker_ns / 1e6, 3), "worker_ms_per_run": per_run,
                "gpu_backend": getattr(device, "backend", None), "gpu_name": getattr(device, "name", None),
                "dynamic_vram": dynamic_vram() if dynamic_vram is not None else None}

    def heartbeat_info() -> dict[str, Any]:
        hook_state = hook_report()
        return {"comfyui_version": comfyui_version(), "frontend_version": frontend_version(),
                "gpu_name": getattr(device, "name", None), "queue_depth": queue_depth(),
                "hooks_installed": sorted(k for k, v in installed.items() if v is True),
                "hook_errors": hook_state.get("hook_errors", 0)}

    installed: dict[str, bool] = {}
    device: Any = None
    dynamic_vram: Any = None
    app = assemble(config, source="plugin", url=database_url(config, data_dir), instance=instance,
                   hooks=hook_report, idle_hook=idle_hook,
                   busy=lambda: bool(capture_ref) and comfy_busy(capture_ref[0]),
                   heartbeat_info=heartbeat_info, on_recommendations=_push_recommendations)
    recorder = app.recorder
    assert recorder is not None

    sampler = probe = device = downsample = mem_probe = dynamic_vram = None
    try:
        from . import gpu

        device = gpu.detect_device()
        probe = gpu.TorchMemoryProbe(device)
        sampler = gpu.ResourceSampler(device, interval_s=max(0.01, config.gpu_sample_interval_ms / 1000.0))
        sampler.start()
        downsample = gpu.downsample_samples
        dynamic_vram = gpu.dynamic_vram_enabled
        if device.backend in ("cuda", "rocm") and device.nvml_index is None:
            # No NVML sampling of this device: device-level memory from the driver at node and run ends.
            mem_probe = gpu.DeviceMemoryProbe(device)
    except Exception:
        log.exception("Run Telemetry: GPU sampling is off")

    capture = hooks.Capture(recorder, context, sampler=sampler, probe=probe, device=device,
                            samples_per_run=config.gpu_samples_per_run, downsample=downsample,
                            mem_probe=mem_probe, dynamic_vram=dynamic_vram)
    capture_ref.append(capture)
    installed.update(hooks.install(capture) if config.enabled else {})
    if config.enabled:
        from .lifecycle import register_lifecycle

        installed["execution_lifecycle"] = register_lifecycle(capture, context)

    plugin = Plugin(config, data_dir, app.store, recorder, capture, app.service, installed,
                    analysis=app.analysis, optional=app.optional, app=app)
    plugin_ref.append(plugin)
    recorder.add_listener(_push_run)
    _add_routes(plugin)
    _keep_comfy_history(plugin)
    _attach_live(plugin)
    start_app(app)
    log.info("Run Telemetry recording to %s (hooks: %s)", app.store.kind,
             ", ".join(k for k, v in installed.items() if v))
    return plugin


def comfyui_version() -> str | None:
    try:
        import comfyui_version as version_module

        return str(version_module.__version__)
    except Exception:
        return None


def frontend_version() -> str | None:
    """The frontend ComfyUI serves: the version in a `--front-end-root` path (e.g. .../frontend-1.35.9/dist),
    a `--front-end-version` pin, else the installed comfyui-frontend-package."""
    try:
        from comfy.cli_args import args

        root = getattr(args, "front_end_root", None)
        if root:
            found = re.findall(r"(\d+\.\d+\.\d+)", str(root))
            return found[-1] if found else "custom"
        pinned = getattr(args, "front_end_version", None) or ""
        if "@" in pinned and not pinned.endswith("@latest"):
            return pinned.rsplit("@", 1)[1].lstrip("v")
    except Exception:
        pass
    try:
        from importlib.metadata import version

        return version("comfyui-frontend-package")
    except Exception:
        return None


def queue_depth() -> int | None:
    queue = getattr(prompt_server(), "prompt_queue", None)
    if queue is None:
        return None
    try:
        return int(queue.get_tasks_remaining())
    except Exception:
        return None


def _keep_comfy_history(plugin: Plugin) -> None:
    """ComfyUI's own history across restarts (history_restore): records stored as runs are, restored at start."""
    try:
        from . import history_restore

        plugin.recorder.add_listener(history_restore.save_listener(plugin.store), when_idle=True)
        if plugin.config.enabled:
            history_restore.start_restore(plugin.store, plugin.config.history_restore_runs, prompt_server)
    except Exception as exc:
        _part_failed(plugin, "history_restore", exc)


def _attach_live(plugin: Plugin) -> None:
    """The running run, live (telemetry.live): read by GET /telemetry/runs/{id} and /telemetry/live; its ticker
    pushes telemetry.progress / telemetry.slow only while a panel holds a listening lease."""
    try:
        from ..live import LiveMonitor

        plugin.service.live = LiveMonitor(plugin.capture, plugin.store, push, plugin.config.slow_node_factor)
    except Exception as exc:
        _part_failed(plugin, "live", exc)


_QUEUE_MEMORY_EVERY_S = 5.0
_last_queue_memory_check = [0.0]


def free_gpu_bytes(device: Any) -> int | None:
    """Free memory on ComfyUI's device as ComfyUI counts it (driver free + free inside torch's cache)."""
    if getattr(device, "backend", "cpu") not in ("cuda", "rocm", "xpu"):
        return None
    try:
        import comfy.model_management as mm

        return int(mm.get_free_memory(mm.get_torch_device()))
    except Exception:
        return None


def _check_queue_memory(plugin: Plugin) -> None:
    """Recorder thread, every few seconds: warn about queued runs predicted to need more GPU memory than is free."""
    if plugin.analysis is None or time.monotonic() - _last_queue_memory_check[0] < _QUEUE_MEMORY_EVERY_S:
        return
    _last_queue_memory_check[0] = time.monotonic()
    items = pending_queue()
    free = free_gpu_bytes(plugin.capture.device) if items else None
    if free is None:
        return
    opened = plugin.analysis.check_queue_memory(items, free) or []
    if opened and plugin.app is not None:
        from ..app import recommendations_opened

        recommendations_opened(plugin.app, _push_recommendations)(opened)


def _push_recommendations(opened: list[dict[str, Any]]) -> None:
    for recommendation in opened:
        push(RECOMMENDATION_EVENT, recommendation)


def _add_routes(plugin: Plugin) -> None:
    server = prompt_server()
    routes = getattr(server, "routes", None)
    if routes is None:
        log.info("Run Telemetry: no PromptServer routes; REST is off")
        return
    from ..api.security import Protection
    from ..app import add_routes

    protection = Protection(admin_token=plugin.config.admin_token, exposed=comfy_listens_beyond_loopback)
    add_routes(routes, lambda: plugin.app, pending_queue, protection)


def comfy_listens_beyond_loopback() -> bool:
    """ComfyUI's `--listen` (a comma list of addresses) names anything but loopback."""
    from comfy.cli_args import args

    from ..api.security import listens_beyond_loopback

    return listens_beyond_loopback(getattr(args, "listen", None) or "127.0.0.1")


def current_service() -> TelemetryService | None:
    return _plugin.service if _plugin is not None else None


def _part_failed(plugin: Plugin, part: str, exc: BaseException) -> None:
    """An optional part of the plugin could not start: logged and listed in /telemetry/health."""
    from ..app import optional_failed

    if plugin.app is not None:
        optional_failed(plugin.app, part, exc)
