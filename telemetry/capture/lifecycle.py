"""Run records from ComfyUI's proposed ExecutionLifecycle API, where a ComfyUI has it.

RFC Comfy-Org/ComfyUI #15341 / PR #15342 (open, not in any released core seen): `comfy_api.latest.ExecutionLifecycle`
(a ProxiedSingleton with `async def register(handler)`), handlers subclassing its `Handler`
(`comfy_api/latest/_execution_lifecycle.py` @6d4e9b3: `LifecycleHandler` with `on_queued`, `on_started`,
`on_succeeded`, `on_failed`, `on_interrupted`, `on_cancelled`, frozen event dataclasses), dispatched by
`comfy_execution/lifecycle.py` @3525f5e on one "execution-lifecycle" thread. Rules from that code: register only
while custom nodes load (later registration raises "already frozen"), callbacks are synchronous, success means
`task_done()` returned, and there are no node events.

So the hooks stay the primary way in (node timing, GPU peaks and the full history record need `execute` and the
ProgressHandler); a lifecycle event only records a prompt the hooks never saw (`Capture.seen`): a cancellation
where `PromptQueue.delete_queue_item` could not be wrapped, or a run on a ComfyUI whose executor is not hookable.
Nothing is recorded twice.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from ..collector import BuildContext, build_cancelled_run, build_run
from ..model import Run
from .hooks import Capture

log = logging.getLogger("run_telemetry.lifecycle")

REASON_LIFECYCLE_CANCEL = "cancelled before it started (ComfyUI execution lifecycle)"


def lifecycle_api() -> Any | None:
    """`comfy_api.latest.ExecutionLifecycle`, or None on a ComfyUI without it (every released core so far)."""
    try:
        from comfy_api.latest import ExecutionLifecycle  # type: ignore[attr-defined]
    except Exception:
        return None
    return ExecutionLifecycle


def handler_base(api: Any) -> type | None:
    """The class a handler must subclass: `ExecutionLifecycle.Handler`, else the module's `LifecycleHandler`."""
    base = getattr(api, "Handler", None)
    if isinstance(base, type):
        return base
    try:
        from comfy_api.latest._execution_lifecycle import LifecycleHandler  # type: ignore[import-not-found]
    except Exception:
        return None
    return LifecycleHandler


def _history_item(event: Any, end_message: str, end_data: dict[str, Any]) -> dict[str, Any]:
    """A `/history`-shaped record from a terminal event (no prompt: the lifecycle API does not carry it)."""
    history = dict(getattr(event, "history_result", None) or {})
    messages = [["execution_start", {"prompt_id": event.prompt_id, "timestamp": event.started_at_ms}],
                [end_message, {"prompt_id": event.prompt_id, "timestamp": event.finished_at_ms, **end_data}]]
    item = {"prompt": [None, event.prompt_id, None, {"create_time": event.queued_at_ms}, []],
            "outputs": _plain(history.get("outputs") or {}), "meta": _plain(history.get("meta") or {}),
            "status": {"status_str": "success" if end_message == "execution_success" else "error",
                       "completed": end_message == "execution_success", "messages": messages}}
    return item


def _plain(value: Any) -> Any:
    """Frozen snapshots (MappingProxyType, tuples) back to dicts and lists."""
    if hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def make_handler_class(base: type, capture: Capture, context: BuildContext) -> type:
    """A lifecycle handler that hands unseen prompts to the recorder. Runs on ComfyUI's lifecycle dispatcher
    thread: builds nothing there, only submits a job (non-blocking). Never raises."""

    class TelemetryLifecycleHandler(base):  # type: ignore[misc, valid-type]
        def _submit(self, prompt_id: Any, make_run: Any, reason: str) -> None:
            try:
                if capture.seen(prompt_id):
                    return
                capture.recorder.submit(lambda: [run for run in [make_run()] if run is not None], reason)
            except Exception:
                capture._hook_failed("lifecycle " + reason)

        def on_cancelled(self, event: Any) -> None:
            def make() -> Run | None:
                item = (None, event.prompt_id, None, {"create_time": event.queued_at_ms}, [])
                run = build_cancelled_run(item, event.cancelled_at_ms, context, REASON_LIFECYCLE_CANCEL)
                return run if run is not None and capture._mark_seen(run.run_id) else None
            self._submit(event.prompt_id, make, "lifecycle cancel")

        def on_succeeded(self, event: Any) -> None:
            self._terminal(event, "execution_success", {})

        def on_interrupted(self, event: Any) -> None:
            self._terminal(event, "execution_interrupted", {
                "node_id": event.node_id, "node_type": event.node_type, "executed": list(event.executed_nodes)})

        def on_failed(self, event: Any) -> None:
            self._terminal(event, "execution_error", {
                "node_id": event.node_id, "node_type": event.node_type, "exception_type": event.exception_type,
                "exception_message": event.exception_message, "traceback": list(event.traceback),
                "executed": list(event.executed_nodes)})

        def _terminal(self, event: Any, end_message: str, end_data: dict[str, Any]) -> None:
            def make() -> Run | None:
                if not capture._mark_seen(str(event.prompt_id)):
                    return None
                return build_run(str(event.prompt_id), _history_item(event, end_message, end_data), None, context)
            self._submit(event.prompt_id, make, "lifecycle run end")

    return TelemetryLifecycleHandler


def register_lifecycle(capture: Capture, context: BuildContext, api: Any = None) -> bool:
    """Register the handler with ComfyUI's ExecutionLifecycle when it exists, at load time (the pack's import,
    while ComfyUI loads custom nodes). `register` is async on that API but suspends nowhere: it is driven to
    completion here without an event loop, and one that would suspend is closed and reported. Idempotent per
    capture; never raises. True when registered."""
    if getattr(capture, "lifecycle_registered", False):
        return True
    try:
        api = api if api is not None else lifecycle_api()
        base = handler_base(api) if api is not None else None
        if base is None:
            return False
        handler = make_handler_class(base, capture, context)()
        registrar = api() if isinstance(api, type) else api
        result = registrar.register(handler)
        if inspect.isawaitable(result):
            _drive(result)
        capture.lifecycle_registered = True
        log.info("Run Telemetry: ExecutionLifecycle handler registered")
        return True
    except Exception as exc:
        log.warning("Run Telemetry: ExecutionLifecycle registration failed (%s); the hooks record runs", exc)
        return False


def _drive(awaitable: Any) -> Any:
    coroutine = awaitable.__await__() if not inspect.iscoroutine(awaitable) else awaitable
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    close = getattr(coroutine, "close", None)
    if close is not None:
        close()
    raise RuntimeError("ExecutionLifecycle.register suspended; it must be awaited from comfy_entrypoint")
