"""Writing runs, buffering them while the database is away and retrying: the recorder thread's only path into
the database for runs (`Store.save_runs`, one transaction per batch).

On first contact it opens the store (migrating the schema) and closes the runs a previous process left running
(a crash or kill; `store.instance_liveness`: never a live process sharing the SQLite file), once per process.
When a write fails because the database is away, the runs stay buffered (bounded; the oldest are dropped,
counted, when it overflows) and are retried with exponential backoff. When the database answers but refuses a
batch, the runs are written one by one, so one unstorable run never holds back the others.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Sequence

from peewee import InterfaceError, OperationalError

from ..model import Run
from ..store.instance_liveness import close_runs_of_dead_processes
from ..store.store import Store
from ..store.write_health import root_cause
from .stats import RecorderStats

log = logging.getLogger("run_telemetry.recorder")


class RunWriter:
    def __init__(self, store: Store, stats: RecorderStats, *, instance: str | None, source: str, stale_reason: str,
                 buffer_max: int, batch_max: int, retry_initial_s: float, retry_max_s: float,
                 also_instances: Sequence[str] = ()) -> None:
        self.store = store
        self.stats = stats
        self.instance = instance
        self.instances = [instance, *[i for i in dict.fromkeys(also_instances) if i != instance]]
        self.source = source
        self.stale_reason = stale_reason
        self.buffer_max = buffer_max
        self.batch_max = batch_max
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.buffer: deque[Run] = deque()
        self.db_ready = False
        self._stale_closed = False
        self._retry_delay_s = retry_initial_s
        self._next_retry = 0.0

    def add(self, run: Run) -> None:
        if len(self.buffer) >= self.buffer_max:
            self.buffer.popleft()
            self.stats.count_drop("buffer full while the database was unavailable")
        self.buffer.append(run)

    def seconds_to_retry(self) -> float:
        return max(0.0, self._next_retry - time.monotonic())

    def write(self, force: bool = False) -> list[Run]:
        """Write what is buffered (unless a retry is not due yet). Returns the runs stored, in order."""
        if not self.buffer:
            if not self.db_ready and time.monotonic() >= self._next_retry:
                self.ensure_db()
            return []
        if not force and time.monotonic() < self._next_retry:
            return []
        if not self.ensure_db():
            return []
        stored: list[Run] = []
        while self.buffer:
            batch = [self.buffer[i] for i in range(min(self.batch_max, len(self.buffer)))]
            try:
                self.store.save_runs(batch)
            except Exception as exc:
                self.stats.write_failures += 1
                self.stats.note_error(exc)
                if not isinstance(exc, (OperationalError, InterfaceError)) and self._database_answers():
                    stored.extend(self._write_one_by_one(batch))
                    continue
                self._lost_connection()
                log.warning("telemetry write failed (%s); %d run(s) buffered for retry", root_cause(exc),
                            len(self.buffer))
                return stored
            for _ in batch:
                self.buffer.popleft()
            self.stats.note_stored(len(batch))
            self._retry_delay_s = self.retry_initial_s
            stored.extend(batch)
        return stored

    def ensure_db(self) -> bool:
        if self.db_ready:
            return True
        try:
            self.store.open()
            # Only once per process, before anything of ours is written: later reconnects must not close the
            # run this process is executing. In a SQLite file, the runs of every process that is gone (another
            # live ComfyUI on the same file keeps its own); a shared PostgreSQL only closes this instance's runs.
            if not self._stale_closed:
                closed = [run_id for instance in self.instances
                          for run_id in close_runs_of_dead_processes(self.store, instance, self.stale_reason,
                                                                     self.source)]
                self._stale_closed = True
                if closed:
                    self.stats.closed_stale_runs += len(closed)
                    log.warning("telemetry closed %d run(s) left running by a previous ComfyUI process as "
                                "interrupted", len(closed))
            self.db_ready = True
            self._retry_delay_s = self.retry_initial_s
            return True
        except Exception as exc:
            self.stats.note_error(exc)
            self._schedule_retry()
            log.warning("telemetry database unavailable (%s); runs are buffered and retried", exc)
            return False

    def _lost_connection(self) -> None:
        self.db_ready = False
        try:
            if self.store.db.in_transaction():
                self.store.db.rollback()
        except Exception:
            pass
        try:
            self.store.close()
        except Exception:
            pass
        self._schedule_retry()

    def _schedule_retry(self) -> None:
        self._next_retry = time.monotonic() + self._retry_delay_s
        self._retry_delay_s = min(self.retry_max_s, self._retry_delay_s * 2)

    def _database_answers(self) -> bool:
        try:
            if self.store.db.in_transaction():
                self.store.db.rollback()
            self.store.ping()
            return True
        except Exception:
            return False

    def _write_one_by_one(self, batch: list[Run]) -> list[Run]:
        stored = []
        for run in batch:
            self.buffer.popleft()
            try:
                self.store.save_runs([run])
            except Exception as exc:
                self.stats.note_error(exc)
                self.stats.count_drop(f"the database refused the run: {type(exc).__name__}")
                log.error("telemetry could not store run %s: %s", run.run_id, exc)
                continue
            self.stats.note_stored(1)
            stored.append(run)
        return stored
