"""What the recorder counts: runs handed over, stored and dropped (by reason), failures and the last error.

Nothing is dropped silently: every drop is counted here with its reason and shows in `/telemetry/health`.
A drop counted on ComfyUI's worker thread is not logged there (no I/O on the worker); the recorder thread logs it
on its next iteration (`log_worker_drops`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from ..store.write_health import root_cause

log = logging.getLogger("run_telemetry.recorder")


@dataclass
class RecorderStats:
    submitted: int = 0
    stored: int = 0
    dropped: int = 0
    dropped_reasons: dict[str, int] = field(default_factory=dict)
    write_failures: int = 0
    build_failures: int = 0
    last_error: str | None = None
    last_error_at_ms: int | None = None
    last_write_at_ms: int | None = None
    closed_stale_runs: int = 0
    unlogged_drops: int = 0

    def count_drop(self, reason: str, n: int = 1, log_now: bool = True) -> None:
        self.dropped += n
        self.dropped_reasons[reason] = self.dropped_reasons.get(reason, 0) + n
        if log_now:
            log.warning("telemetry dropped %d run record(s): %s", n, reason)
        else:  # on ComfyUI's worker thread: no I/O there, the recorder thread logs it
            self.unlogged_drops += n

    def log_worker_drops(self) -> None:
        if self.unlogged_drops:
            n, self.unlogged_drops = self.unlogged_drops, 0
            log.warning("telemetry dropped %d run record(s): the recorder's queue was full", n)

    def note_error(self, exc: BaseException) -> None:
        exc = root_cause(exc)
        self.last_error = f"{type(exc).__name__}: {exc}"[:500]
        self.last_error_at_ms = int(time.time() * 1000)

    def note_stored(self, n: int) -> None:
        self.stored += n
        self.last_write_at_ms = int(time.time() * 1000)
