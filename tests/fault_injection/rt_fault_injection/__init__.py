"""A ComfyUI custom node pack used only by the fault tests (tests/integration/test_faults_real_comfyui.py).

It injects faults into the Run Telemetry pack running in the same ComfyUI process, through ComfyUI's own
extension points, whatever order ComfyUI loads the two packs in:

- `RT_FAULT_RAISE` (environment): `module:Class.method` entries separated by `;` (module relative to the pack's
  `telemetry` package, e.g. `capture.hooks:Capture.node_finished`). Before the first prompt is queued (an
  on-prompt handler, so every pack is loaded by then) each of them is replaced by a function that raises.
- `POST /rt_fault/sqlite_max_page_count` `{"pages": N}`: every connection of the pack's store runs
  `PRAGMA max_page_count = N` before its next statement, so SQLite answers "database or disk is full" exactly as
  a full disk does; `{"pages": null}` lifts the limit again.
- `GET /rt_fault/state`: what is patched and how many injected exceptions were raised.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any

log = logging.getLogger("rt_fault_injection")

NODE_CLASS_MAPPINGS: dict[str, Any] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}

_NO_LIMIT = 1073741823
_state: dict[str, Any] = {"patched": [], "raised": 0, "max_page_count": None, "limited_connections": 0}
_lock = threading.Lock()


def _telemetry_module(relative: str) -> Any:
    """The Run Telemetry pack's module `telemetry.<relative>`, as ComfyUI loaded it (its name includes the
    custom node folder's path)."""
    suffix = ".telemetry." + relative
    for name, module in list(sys.modules.items()):
        if name.endswith(suffix) and module is not None:
            return module
    raise LookupError(f"Run Telemetry's telemetry.{relative} is not loaded")


class InjectedFault(RuntimeError):
    pass


def _raiser(target: str):
    def raising(*args: Any, **kwargs: Any) -> Any:
        with _lock:
            _state["raised"] += 1
        raise InjectedFault(f"fault injected into {target}")
    return raising


def _patch_raisers() -> None:
    spec = os.environ.get("RT_FAULT_RAISE", "")
    for entry in filter(None, (e.strip() for e in spec.split(";"))):
        if entry in _state["patched"]:
            continue
        module_name, _, attribute = entry.partition(":")
        class_name, _, method = attribute.partition(".")
        cls = getattr(_telemetry_module(module_name), class_name)
        setattr(cls, method, _raiser(entry))
        _state["patched"].append(entry)
        log.warning("rt_fault_injection: %s now raises", entry)


def _store_database() -> Any:
    plugin = _telemetry_module("capture.plugin").current()
    if plugin is None:
        raise LookupError("Run Telemetry did not start")
    return plugin.store.db


_limited: dict[int, tuple[Any, Any]] = {}  # id(connection) -> (connection, limit applied); keeps ids unique


def _limit_connections(db: Any) -> None:
    """Wrap this database's cursor(): each connection applies the current page limit before its next
    statement (peewee keeps one connection per thread; the recorder's is the one that writes)."""
    if getattr(db, "_rt_fault_wrapped", False):
        return
    original = db.cursor

    def cursor(*args: Any, **kwargs: Any) -> Any:
        if db.is_closed():
            db.connect()
        conn = db._state.conn
        wanted = _state["max_page_count"]
        with _lock:
            applied = _limited.get(id(conn), (conn, None))[1]
            if applied != wanted and not (applied is None and wanted is None):
                conn.execute(f"PRAGMA max_page_count = {int(wanted) if wanted is not None else _NO_LIMIT}")
                _limited[id(conn)] = (conn, wanted)
                _state["limited_connections"] = sum(1 for _, v in _limited.values() if v is not None)
        return original(*args, **kwargs)

    db.cursor = cursor
    db._rt_fault_wrapped = True


def _on_prompt(json_data: Any) -> Any:
    try:
        _patch_raisers()
    except Exception:
        log.exception("rt_fault_injection could not patch")
    return json_data


def _add_routes() -> None:
    from aiohttp import web
    from server import PromptServer

    server = PromptServer.instance
    server.add_on_prompt_handler(_on_prompt)

    @server.routes.get("/rt_fault/state")
    async def state(request: web.Request) -> web.Response:
        return web.json_response(dict(_state))

    @server.routes.post("/rt_fault/sqlite_max_page_count")
    async def max_page_count(request: web.Request) -> web.Response:
        body = await request.json()
        db = _store_database()
        _limit_connections(db)
        _state["max_page_count"] = body.get("pages")
        return web.json_response(dict(_state))


try:
    _add_routes()
except Exception:
    log.exception("rt_fault_injection could not register its routes")


class RTFaultWaitForFile:
    """An output node that keeps its run executing until `path` exists (or `timeout_s` passes): a run that is
    `running` for as long as a test needs."""

    CATEGORY = "testing/faults"
    OUTPUT_NODE = True
    RETURN_TYPES = ()
    FUNCTION = "wait"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"path": ("STRING", {"default": ""}),
                             "timeout_s": ("FLOAT", {"default": 60.0, "min": 0.0, "max": 600.0})}}

    @classmethod
    def IS_CHANGED(cls, path: str, timeout_s: float) -> float:
        return float("nan")  # never cached

    def wait(self, path: str, timeout_s: float) -> dict[str, Any]:
        import time

        deadline = time.monotonic() + timeout_s
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.05)
        return {"ui": {}}


NODE_CLASS_MAPPINGS["RTFaultWaitForFile"] = RTFaultWaitForFile
