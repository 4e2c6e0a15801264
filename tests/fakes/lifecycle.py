"""A stand-in for ComfyUI's proposed ExecutionLifecycle API (RFC Comfy-Org/ComfyUI #15341 / PR #15342, open).

Shaped on comfyanonymous/ComfyUI `comfy_api/latest/_execution_lifecycle.py` @6d4e9b3 (the frozen event
dataclasses and `LifecycleHandler`) and `comfy_execution/lifecycle.py` @3525f5e (registration refuses
non-handlers and async methods, freezes once loading ends, dispatches on its own thread): `ExecutionLifecycle` is
the `comfy_api.latest` ProxiedSingleton with `async def register(handler)` and its `Handler` base.
"""

from __future__ import annotations

import inspect
import queue
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class CancelledEvent:
    prompt_id: str
    metadata: Mapping[str, Any]
    queued_at_ms: int
    cancelled_at_ms: int


@dataclass(frozen=True, slots=True)
class SucceededEvent:
    prompt_id: str
    metadata: Mapping[str, Any]
    history_result: Mapping[str, Any] | None
    queued_at_ms: int
    started_at_ms: int
    finished_at_ms: int
    execution_duration_ms: int


@dataclass(frozen=True, slots=True)
class FailedEvent:
    prompt_id: str
    metadata: Mapping[str, Any]
    source: str
    node_id: str | None
    node_type: str | None
    exception_type: str
    exception_message: str
    traceback: tuple[str, ...]
    executed_nodes: tuple[str, ...]
    history_result: Mapping[str, Any] | None
    history_task_done_succeeded: bool
    queued_at_ms: int
    started_at_ms: int
    error_reported_at_ms: int
    finished_at_ms: int
    execution_duration_ms: int


_METHODS = {CancelledEvent: "on_cancelled", SucceededEvent: "on_succeeded", FailedEvent: "on_failed"}


class LifecycleHandler:
    def accepts(self, event: Any) -> bool:
        return True

    def on_queued(self, event: Any) -> None:
        pass

    def on_started(self, event: Any) -> None:
        pass

    def on_succeeded(self, event: Any) -> None:
        pass

    def on_failed(self, event: Any) -> None:
        pass

    def on_interrupted(self, event: Any) -> None:
        pass

    def on_cancelled(self, event: Any) -> None:
        pass


@dataclass
class ExecutionLifecycleApi:
    """One lifecycle: register during load, `freeze()`, then `publish()` dispatches on its own thread."""

    handlers: list[LifecycleHandler] = field(default_factory=list)
    frozen: bool = False
    dispatched: queue.Queue = field(default_factory=queue.Queue)

    def make_class(self) -> type:
        api = self

        class ExecutionLifecycle:
            Handler = LifecycleHandler

            async def register(self, handler: LifecycleHandler) -> None:
                if api.frozen:
                    raise RuntimeError("Execution lifecycle handlers are already frozen")
                if not isinstance(handler, LifecycleHandler):
                    raise TypeError("handler must be an ExecutionLifecycle.Handler instance")
                for name in _METHODS.values():
                    if inspect.iscoroutinefunction(getattr(handler, name)):
                        raise TypeError(f"LifecycleHandler.{name} must be synchronous")
                api.handlers.append(handler)

        return ExecutionLifecycle

    def freeze(self) -> None:
        self.frozen = True

    def publish(self, event: Any) -> None:
        """Deliver on a dispatcher thread, as ComfyUI's "execution-lifecycle" thread does; waits for it."""
        def dispatch() -> None:
            for handler in self.handlers:
                if handler.accepts(event):
                    getattr(handler, _METHODS[type(event)])(event)
        thread = threading.Thread(target=dispatch, name="execution-lifecycle")
        thread.start()
        thread.join(5)
