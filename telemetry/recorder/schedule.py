"""Scheduling the recorder's work around ComfyUI's: what can wait, waits while ComfyUI executes.

A finished run is never held here: it is written at once. What waits: a run's start record (written once the
run has executed a moment, superseded by the final record of a short run) and the analysis of stored runs
(listeners registered `when_idle`). Each item is released when ComfyUI is idle, or at its deadline at the latest.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class Scheduler:
    def __init__(self, busy: Callable[[], bool] | None = None) -> None:
        self._busy_probe = busy
        self._items: list[tuple[float, str | None, Any]] = []  # (deadline, key, item)

    def __len__(self) -> int:
        return len(self._items)

    def busy(self) -> bool:
        """Is ComfyUI executing (or about to)? A probe that fails counts as idle."""
        if self._busy_probe is None:
            return False
        try:
            return bool(self._busy_probe())
        except Exception:
            return False

    def defer(self, item: Any, max_delay_s: float, key: str | None = None) -> None:
        self._items.append((time.monotonic() + max_delay_s, key, item))

    def cancel(self, key: str) -> int:
        """Drop the waiting items of `key` (a final record supersedes its run's start record)."""
        before = len(self._items)
        self._items = [entry for entry in self._items if entry[1] != key]
        return before - len(self._items)

    def release(self, force: bool = False) -> list[Any]:
        """The items due now, in the order they were deferred: all of them when ComfyUI is idle (or `force`),
        else those past their deadline."""
        if not self._items:
            return []
        if force or not self.busy():
            due, self._items = [item for _, _, item in self._items], []
            return due
        now = time.monotonic()
        due = [item for deadline, _, item in self._items if deadline <= now]
        if due:
            self._items = [entry for entry in self._items if entry[0] > now]
        return due

    def seconds_to_next(self) -> float | None:
        """Until the earliest deadline (None: nothing waits)."""
        if not self._items:
            return None
        return max(0.0, min(deadline for deadline, _, _ in self._items) - time.monotonic())
