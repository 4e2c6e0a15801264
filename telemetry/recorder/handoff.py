"""The hand-off from any thread (above all ComfyUI's worker) to the recorder thread: bounded, O(1), never blocks,
never raises, never does I/O.

`put(work, wake=False)` only appends to a deque: the recorder thread finds it on its next tick (`TICK_S`), so a
hand-off in the middle of a run does not take the GIL from ComfyUI's worker; `wake=True` also wakes the recorder
at once (the watcher, tests). A full hand-off refuses the work; the caller counts it as dropped.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..model import Run

# How often the recorder looks for work handed over quietly. A finished run is committed within about this plus
# its build and write time: the durability promise is 0.5 s.
TICK_S = 0.1

# A job turns into Runs on the recorder thread: a closure over what the worker captured.
RunJob = Callable[[], "list[Run]"]


@dataclass
class Work:
    job: RunJob
    max_delay_s: float  # 0: written at once; > 0: may wait (while ComfyUI is busy) up to this long
    key: str | None
    replaces: str | None


class HandOff:
    def __init__(self, max_items: int) -> None:
        self.max_items = max_items
        self._items: deque[Work] = deque()
        self._wake = threading.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, work: Work, wake: bool = False) -> bool:
        """False when full (the caller counts the drop). Safe on ComfyUI's worker thread."""
        if len(self._items) >= self.max_items:
            return False
        self._items.append(work)
        if wake:
            self._wake.set()
        return True

    def wake(self) -> None:
        self._wake.set()

    def wait(self, timeout_s: float) -> None:
        """Recorder thread: sleep until woken or `timeout_s` passed."""
        if not self._items:
            self._wake.wait(timeout_s)
        self._wake.clear()

    def take_all(self) -> list[Work]:
        """Recorder thread: everything handed over so far, in order."""
        taken = []
        while self._items:
            taken.append(self._items.popleft())
        return taken
