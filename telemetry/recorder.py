"""The recorder thread: the only writer to the database.

ComfyUI's worker thread hands over work with `submit()` (non-blocking, bounded; `wake=False` leaves the thread
asleep until its next tick). While ComfyUI is busy (`busy()`), work waits, up to each job's maximum delay, so
the recorder's Python never competes with ComfyUI's worker for the GIL mid-run. The recorder builds Runs from
traces (`collector.build_run`), writes them in batches, and then tells listeners (websocket push, analysis).
When the database is unavailable it keeps runs in a bounded buffer and retries with backoff; what cannot be kept
is counted as dropped and reported by `health()`. Nothing is dropped silently.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from peewee import InterfaceError, OperationalError

from .model import Run
from .store.store import Store
from .store.write_health import root_cause

log = logging.getLogger("run_telemetry.recorder")

CRASH_REASON = "ComfyUI stopped while the run was executing (crash, kill or restart)"
_RETENTION_EVERY_S = 3600.0
_IDLE_CHECK_S = 0.2  # while work waits, how often to look whether ComfyUI became idle


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


# A job turns into Runs on the recorder thread: a closure over what the worker captured.
RunJob = Callable[[], "list[Run]"]
Listener = Callable[[Run], None]


@dataclass
class _Work:
    job: RunJob
    max_delay_s: float | None  # None: the recorder's default; 0: never held back
    key: str | None
    replaces: str | None


class Recorder:
    def __init__(self, store: Store, *, instance: str | None, queue_max: int = 50_000, buffer_max: int = 10_000,
                 retry_initial_s: float = 1.0, retry_max_s: float = 60.0, batch_max: int = 50,
                 retention: tuple[float | None, int | None] = (None, None),
                 idle_hook: Callable[[], None] | None = None, source: str = "plugin",
                 stale_reason: str = CRASH_REASON, busy: Callable[[], bool] | None = None,
                 defer_max_s: float = 10.0) -> None:
        self.store = store
        self.instance = instance
        self.source = source
        self.stale_reason = stale_reason
        # While `busy()` (the plugin: a run executes, prompts are queued, or one just ended), work that can wait
        # is held back, up to its maximum delay (default `defer_max_s`).
        self._busy_probe = busy
        self._defer_max_s = defer_max_s
        self._deferred: list[tuple[float, _Work]] = []
        self._quiet: deque[_Work] = deque()  # handed over without waking the thread (see submit)
        self._queue_max = queue_max
        self._queue: queue.Queue[_Work | None] = queue.Queue(maxsize=queue_max)
        self._buffer: deque[Run] = deque()
        self._buffer_max = buffer_max
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._batch_max = batch_max
        self._retention = retention
        self._idle_hook = idle_hook
        self._listeners: list[Listener] = []
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._db_ready = False
        self._stale_closed = False
        self._retry_delay_s = retry_initial_s
        self._next_retry = 0.0
        self._last_retention = 0.0
        self._idle = threading.Condition()
        self._busy = 0
        self._unlogged_drops = 0
        self.stats = RecorderStats()

    # -- called from any thread ------------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def submit(self, job: RunJob, reason: str = "run", *, max_delay_s: float | None = None, key: str | None = None,
               replaces: str | None = None, wake: bool = True) -> bool:
        """Hand work to the recorder without ever blocking. False (and counted) when the queue is full.

        While a run executes, work waits up to `max_delay_s` (default: the recorder's `defer_max_s`). Work that
        `replaces` a key drops the still-waiting work of that key: a run's start record is not written once
        its final record is already there. `wake=False` does not wake the recorder thread, which then takes the
        work on its next tick (within a second): waking it would take the GIL from ComfyUI's worker mid-run."""
        work = _Work(job, max_delay_s, key, replaces)
        if not wake:
            if len(self._quiet) + self._queue.qsize() >= self._queue_max:
                self._count_drop(f"queue full ({reason})", log_now=False)
                return False
            self._quiet.append(work)
            self.stats.submitted += 1
            return True
        try:
            self._queue.put_nowait(work)
            self.stats.submitted += 1
            return True
        except queue.Full:
            self._count_drop(f"queue full ({reason})", log_now=False)
            return False

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="run-telemetry-recorder", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        if self._thread is not None:
            self._thread.join(timeout)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is written (tests, shutdown). Never call on the worker."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._queue.unfinished_tasks or self._buffer or self._busy or self._deferred or self._quiet:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(min(remaining, 0.05))
        return True

    def health(self) -> dict[str, Any]:
        s = self.stats
        return {
            "database_ready": self._db_ready,
            "queue_depth": self._queue.qsize() + len(self._quiet),
            "buffered": len(self._buffer),
            "buffer_max": self._buffer_max,
            "submitted": s.submitted,
            "stored": s.stored,
            "dropped": s.dropped,
            "dropped_reasons": dict(s.dropped_reasons),
            "write_failures": s.write_failures,
            "build_failures": s.build_failures,
            "last_error": s.last_error,
            "last_error_at_ms": s.last_error_at_ms,
            "last_write_at_ms": s.last_write_at_ms,
            "closed_stale_runs": s.closed_stale_runs,
            "deferred": len(self._deferred),
        }

    # -- the thread ------------------------------------------------------------------------------------------

    def _count_drop(self, reason: str, n: int = 1, log_now: bool = True) -> None:
        self.stats.dropped += n
        self.stats.dropped_reasons[reason] = self.stats.dropped_reasons.get(reason, 0) + n
        if log_now:
            log.warning("telemetry dropped %d run record(s): %s", n, reason)
        else:  # on ComfyUI's worker thread: no I/O there, the recorder thread logs it
            self._unlogged_drops += n

    def _log_worker_drops(self) -> None:
        if self._unlogged_drops:
            n, self._unlogged_drops = self._unlogged_drops, 0
            log.warning("telemetry dropped %d run record(s): the recorder's queue was full", n)

    def _note_error(self, exc: BaseException) -> None:
        exc = root_cause(exc)
        self.stats.last_error = f"{type(exc).__name__}: {exc}"[:500]
        self.stats.last_error_at_ms = int(time.time() * 1000)

    def _comfy_busy(self) -> bool:
        if self._busy_probe is None or self._stopping.is_set():
            return False
        try:
            return bool(self._busy_probe())
        except Exception:
            return False

    def _take(self, work: _Work | None) -> None:
        if work is None:
            return
        if work.replaces is not None and self._deferred:
            self._deferred = [(t, w) for t, w in self._deferred if w.key != work.replaces]
        delay = self._defer_max_s if work.max_delay_s is None else work.max_delay_s
        if delay <= 0 or not self._comfy_busy():
            self._run_job(work.job)
        else:
            self._deferred.append((time.monotonic() + delay, work))

    def _release_deferred(self) -> None:
        if not self._deferred:
            return
        busy = self._comfy_busy()
        now = time.monotonic()
        due = [w for t, w in self._deferred if not busy or t <= now]
        if due:
            self._deferred = [(t, w) for t, w in self._deferred if busy and t > now]
            for work in due:
                self._run_job(work.job)

    def _next_timeout(self) -> float:
        if self._quiet:
            return 0.005
        if self._deferred:
            # Look every _IDLE_CHECK_S whether ComfyUI became idle, or sleep until the earliest deadline.
            earliest = min(t for t, _ in self._deferred)
            return max(0.005, min(_IDLE_CHECK_S, earliest - time.monotonic()))
        if self._buffer:
            return max(0.05, min(1.0, self._next_retry - time.monotonic()))
        return 1.0

    def _loop(self) -> None:
        while not self._stopping.is_set() or not self._queue.empty() or self._deferred or self._quiet:
            try:
                self._iteration()
            except Exception as exc:  # the recorder must outlive any bug of its own: telemetry stops otherwise
                self._note_error(exc)
                log.exception("telemetry recorder iteration failed; continuing")
                time.sleep(0.1)
        self._write_buffer(force=True)

    def _iteration(self) -> None:
        timeout = self._next_timeout()
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            item = None
            got = False
        else:
            got = True
        with self._idle:
            self._busy += 1
        try:
            while self._quiet:
                self._take(self._quiet.popleft())
            if item is not None:
                self._take(item)
                # Take whatever else is waiting, so one transaction writes a burst of runs.
                while len(self._buffer) < self._batch_max:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    self._take(more)
                    self._queue.task_done()
            self._log_worker_drops()
            self._release_deferred()
            self._write_buffer()
            self._maybe_housekeep()
            if self._idle_hook is not None:
                try:
                    self._idle_hook()
                except Exception as exc:  # a hook must never stop the recorder
                    log.debug("recorder idle hook failed: %s", exc)
        finally:
            if got:
                self._queue.task_done()
            with self._idle:
                self._busy -= 1
                self._idle.notify_all()

    def _run_job(self, job: RunJob) -> None:
        try:
            runs = job()
        except Exception as exc:
            self.stats.build_failures += 1
            self._note_error(exc)
            log.exception("telemetry could not build a run record")
            self._count_drop("could not build the run record")
            return
        for run in runs:
            if len(self._buffer) >= self._buffer_max:
                self._buffer.popleft()
                self._count_drop("buffer full while the database was unavailable")
            self._buffer.append(run)

    def _ensure_db(self) -> bool:
        if self._db_ready:
            return True
        try:
            self.store.open()
            # Only once per process, before anything of ours is written: later reconnects must not close the
            # run this process is executing.
            # A local SQLite file is one machine's: any run left running there belongs to a dead process, even
            # if ComfyUI came back on another port. A shared PostgreSQL only closes this instance's runs.
            scope = None if self.store.kind == "sqlite" else self.instance
            closed = [] if self._stale_closed else self.store.close_stale_running(scope, self.stale_reason,
                                                                                  source=self.source)
            self._stale_closed = True
            if closed:
                self.stats.closed_stale_runs += len(closed)
                log.warning("telemetry closed %d run(s) left running by a previous ComfyUI process as interrupted",
                            len(closed))
            self._db_ready = True
            self._retry_delay_s = self._retry_initial_s
            return True
        except Exception as exc:
            self._note_error(exc)
            self._schedule_retry()
            log.warning("telemetry database unavailable (%s); runs are buffered and retried", exc)
            return False

    def _schedule_retry(self) -> None:
        self._next_retry = time.monotonic() + self._retry_delay_s
        self._retry_delay_s = min(self._retry_max_s, self._retry_delay_s * 2)

    def _write_buffer(self, force: bool = False) -> None:
        if not self._buffer:
            if not self._db_ready and time.monotonic() >= self._next_retry:
                self._ensure_db()
            return
        if not force and time.monotonic() < self._next_retry:
            return
        if not self._ensure_db():
            return
        while self._buffer:
            batch = [self._buffer[i] for i in range(min(self._batch_max, len(self._buffer)))]
            try:
                self.store.save_runs(batch)
            except Exception as exc:
                self.stats.write_failures += 1
                self._note_error(exc)
                if not isinstance(exc, (OperationalError, InterfaceError)) and self._database_answers():
                    # The database is fine, so something in the batch is not storable: write the runs one by
                    # one so a single bad run cannot hold back every run behind it.
                    self._write_one_by_one(batch)
                    continue
                self._db_ready = False
                try:
                    self.store.close()
                except Exception:
                    pass
                self._schedule_retry()
                log.warning("telemetry write failed (%s); %d run(s) buffered for retry", root_cause(exc),
                            len(self._buffer))
                return
            for _ in batch:
                self._buffer.popleft()
            self.stats.stored += len(batch)
            self.stats.last_write_at_ms = int(time.time() * 1000)
            self._retry_delay_s = self._retry_initial_s
            for run in batch:
                self._notify(run)

    def _database_answers(self) -> bool:
        try:
            self.store.db.rollback() if self.store.db.in_transaction() else None
            self.store.ping()
            return True
        except Exception:
            return False

    def _write_one_by_one(self, batch: list[Run]) -> None:
        for run in batch:
            self._buffer.popleft()
            try:
                self.store.save_runs([run])
            except Exception as exc:
                self._note_error(exc)
                self._count_drop(f"the database refused the run: {type(exc).__name__}")
                log.error("telemetry could not store run %s: %s", run.run_id, exc)
                continue
            self.stats.stored += 1
            self.stats.last_write_at_ms = int(time.time() * 1000)
            self._notify(run)

    def _notify(self, run: Run) -> None:
        for listener in self._listeners:
            try:
                listener(run)
            except Exception:
                log.exception("telemetry listener failed for run %s", run.run_id)

    def _maybe_housekeep(self) -> None:
        max_age, max_runs = self._retention
        if not (max_age or max_runs) or not self._db_ready:
            return
        if time.monotonic() - self._last_retention < _RETENTION_EVERY_S:
            return
        self._last_retention = time.monotonic()
        try:
            deleted = self.store.apply_retention(max_age, max_runs)
            if deleted:
                log.info("telemetry retention removed %d old run(s)", deleted)
        except Exception as exc:
            self._note_error(exc)
            log.warning("telemetry retention failed: %s", exc)
