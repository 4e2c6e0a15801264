"""Instances of a fleet: each recording process (plugin or watcher) writes a heartbeat row every 30 s, and
`GET /telemetry/instances` lists them with an `online` flag (seen within the last 2 minutes).

The heartbeat is written from the recorder thread (its idle hook, about once a second, writes when 30 s have
passed), never from ComfyUI's worker; what it reports is gathered by a callable of the assembly (pack, ComfyUI
and frontend versions, GPU, queue depth, health). A failed write is logged once per failure streak and retried
at the next beat: a heartbeat is never worth a run.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from . import __version__

log = logging.getLogger("run_telemetry.instances")

HEARTBEAT_EVERY_S = 30.0
OFFLINE_AFTER_MS = 120_000
_COLUMNS = ("comfyui_version", "frontend_version", "gpu_name", "queue_depth", "health")


def now_ms() -> int:
    return int(time.time() * 1000)


class Heartbeat:
    """Writes this process's heartbeat row. `info()` returns the changing part (see `_COLUMNS`; anything else
    goes to `details`). Call `maybe_beat()` often (the recorder's idle hook); it writes every `every_s`."""

    def __init__(self, store: Any, instance: str, source: str, info: Callable[[], Mapping[str, Any]],
                 every_s: float = HEARTBEAT_EVERY_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.instance = instance
        self.source = source
        self.info = info
        self.every_s = every_s
        self._clock = clock
        self._last: float | None = None
        self.started_at_ms = now_ms()
        self.beats = 0
        self.failures = 0

    def maybe_beat(self) -> bool:
        if self._last is not None and self._clock() - self._last < self.every_s:
            return False
        self._last = self._clock()
        return self.beat()

    def row(self) -> dict[str, Any]:
        try:
            info = dict(self.info())
        except Exception as exc:  # a broken probe still leaves a heartbeat
            info = {"health": "degraded", "info_error": f"{type(exc).__name__}: {exc}"[:200]}
        row: dict[str, Any] = {"instance": self.instance, "source": self.source, "pack_version": __version__,
                               "started_at_ms": self.started_at_ms, "last_seen_ms": now_ms()}
        for key in _COLUMNS:
            value = info.pop(key, None)
            row[key] = value if key == "queue_depth" or value is None else str(value)[:250]
        row["details"] = json.dumps(info, default=str, allow_nan=False) if info else None
        return row

    def beat(self) -> bool:
        """Write the heartbeat now (recorder thread). False when the database refused it."""
        try:
            self.store.ensure_schema()
            self.store.save_heartbeat(self.row())
        except Exception as exc:
            if not self.failures:
                log.warning("telemetry heartbeat of %s not written: %s", self.instance, exc)
            self.failures += 1
            return False
        if self.failures:
            log.info("telemetry heartbeat of %s written again", self.instance)
        self.failures = 0
        self.beats += 1
        return True


def list_instances(store: Any, now: int | None = None) -> list[dict[str, Any]]:
    """Every instance that sent a heartbeat or recorded a run, with `online` (seen within 2 minutes) and its
    run count. Instances known only from their runs (recorded before heartbeats existed) are offline."""
    now = now_ms() if now is None else now
    counts = {row["instance"]: row for row in store.instances()}
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for row in store.heartbeats():
        details = row.pop("details", None)
        try:
            row["details"] = json.loads(details) if details else {}
        except ValueError:
            row["details"] = {}
        run_info = counts.get(row["instance"]) or {}
        row["runs"] = run_info.get("runs", 0)
        row["last_started_at_ms"] = run_info.get("last_started_at_ms")
        row["online"] = now - int(row["last_seen_ms"] or 0) < OFFLINE_AFTER_MS
        row["offline_after_ms"] = OFFLINE_AFTER_MS
        seen.add(row["instance"])
        out.append(row)
    for name, info in counts.items():
        if name is None or name in seen:
            continue
        out.append({"instance": name, "source": None, "pack_version": None, "comfyui_version": None,
                    "frontend_version": None, "gpu_name": None, "queue_depth": None, "health": None,
                    "details": {}, "started_at_ms": None, "last_seen_ms": None, "runs": info["runs"],
                    "last_started_at_ms": info["last_started_at_ms"], "online": False,
                    "offline_after_ms": OFFLINE_AFTER_MS})
    out.sort(key=lambda r: (r["instance"], r["source"] or ""))
    return out
