"""Retention: runs older than `max_age_days` and beyond the newest `max_runs` are deleted, hourly, on the
recorder thread, one batch per recorder iteration (`Store.prune_batch`, each a short transaction), only while
ComfyUI is idle and nothing waits to be written, so it never holds back a run."""

from __future__ import annotations

import logging
import time

from ..store.store import Store, now_ms

log = logging.getLogger("run_telemetry.recorder")

RETENTION_EVERY_S = 3600.0


class Retention:
    def __init__(self, store: Store, max_age_days: float | None, max_runs: int | None,
                 every_s: float = RETENTION_EVERY_S) -> None:
        self.store = store
        self.max_age_days = max_age_days
        self.max_runs = max_runs
        self.every_s = every_s
        self.deleted = 0
        self._last: float | None = None  # the first pass is due at once
        self._pass: list | None = None  # the prune plan of the pass under way
        self._pass_deleted = 0

    @property
    def enabled(self) -> bool:
        return bool(self.max_age_days or self.max_runs)

    def step(self) -> int:
        """Delete one batch if a pass is due or under way. Returns runs deleted (may raise: the caller logs)."""
        if not self.enabled:
            return 0
        if self._pass is None:
            if self._last is not None and time.monotonic() - self._last < self.every_s:
                return 0
            self._last = time.monotonic()
            before = now_ms() - int(self.max_age_days * 86_400_000) if self.max_age_days else None
            self._pass = self.store.prune_plan(before, self.max_runs or None)
            self._pass_deleted = 0
            return 0
        try:
            n = self.store.prune_batch(self._pass)
        except Exception:
            self._pass = None
            raise
        self._pass_deleted += n
        self.deleted += n
        if not n:
            if self._pass_deleted:
                log.info("telemetry retention removed %d old run(s)", self._pass_deleted)
            self._pass = None
        return n
