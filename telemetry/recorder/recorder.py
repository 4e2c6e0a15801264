"""The recorder thread: the only writer of runs, durable at once.

ComfyUI's worker thread hands over work with `submit()` (O(1), bounded, never blocks: `handoff`). On its next
tick (within `TICK_S`) the recorder builds the Runs (`collector.build_run` inside the job) and commits them at
once (`writer`), whether or not ComfyUI is busy: a run is in the database within about 0.1-0.3 s after ComfyUI
finished it, so a kill loses nothing that finished before. What can wait, waits for an idle ComfyUI
(`schedule`): a run's start record (until the run has executed `max_delay_s`) and listeners registered
`when_idle` (analysis). Other listeners (the websocket push, metrics) are told right after the commit. While the
database is away, runs are buffered and retried; retention prunes in batches between writes (`retention`).
Everything it cannot keep is counted by reason (`stats`) and reported by `health()`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..model import Run
from ..store.store import Store
from .handoff import TICK_S, HandOff, RunJob, Work
from .retention import Retention
from .schedule import Scheduler
from .stats import RecorderStats
from .writer import RunWriter

log = logging.getLogger("run_telemetry.recorder")

CRASH_REASON = "ComfyUI stopped while the run was executing (crash, kill or restart)"
Listener = Callable[[Run], None]
IDLE_LISTENER_MAX_DELAY_S = 60.0  # analysis waits for an idle ComfyUI, at most this long
_IDLE_HOOK_EVERY_S = 1.0


class Recorder:
    def __init__(self, store: Store, *, instance: str | None, queue_max: int = 50_000, buffer_max: int = 10_000,
                 retry_initial_s: float = 1.0, retry_max_s: float = 60.0, batch_max: int = 50,
                 retention: tuple[float | None, int | None] = (None, None),
                 idle_hook: Callable[[], None] | None = None, source: str = "plugin",
                 stale_reason: str = CRASH_REASON, busy: Callable[[], bool] | None = None,
                 idle_listener_max_delay_s: float = IDLE_LISTENER_MAX_DELAY_S,
                 also_instances: Sequence[str] = ()) -> None:
        """`also_instances`: further instance names this process records for (a watcher of a fleet); their runs
        left running by a previous process are closed at start like `instance`'s."""
        self.store = store
        self.instance = instance
        self.source = source
        self.stats = RecorderStats()
        self._handoff = HandOff(queue_max)
        self._schedule = Scheduler(busy)
        self._writer = RunWriter(store, self.stats, instance=instance, source=source, stale_reason=stale_reason,
                                 also_instances=also_instances, buffer_max=buffer_max, batch_max=batch_max,
                                 retry_initial_s=retry_initial_s,
                                 retry_max_s=retry_max_s)
        self._retention = Retention(store, *retention)
        self._idle_hook = idle_hook
        self._last_idle_hook = 0.0
        self._listeners: list[Listener] = []
        self._idle_listeners: list[Listener] = []
        self._idle_listener_max_delay_s = idle_listener_max_delay_s
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._idle = threading.Condition()
        self._working = False

    # -- called from any thread ------------------------------------------------------------------------------

    def add_listener(self, listener: Listener, *, when_idle: bool = False) -> None:
        """`listener(run)` after each stored run, on the recorder thread. `when_idle`: it may wait until
        ComfyUI is idle (analysis); otherwise it runs right after the commit (keep it cheap)."""
        (self._idle_listeners if when_idle else self._listeners).append(listener)

    def submit(self, job: RunJob, reason: str = "run", *, max_delay_s: float | None = None, key: str | None = None,
               replaces: str | None = None, wake: bool = True) -> bool:
        """Hand work to the recorder without ever blocking. False (and counted) when the hand-off is full.

        The runs the job builds are committed at once; with `max_delay_s` they may wait while ComfyUI is busy,
        up to that long (a start record). Work that `replaces` a key drops the still-waiting work of that key:
        a run's start record is not written once its final record is there. `wake=False` leaves the recorder
        asleep until its next tick (within `TICK_S`): waking it would take the GIL from ComfyUI's worker."""
        if not self._handoff.put(Work(job, max_delay_s or 0.0, key, replaces), wake):
            self.stats.count_drop(f"queue full ({reason})", log_now=False)
            return False
        self.stats.submitted += 1
        return True

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="run-telemetry-recorder", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._handoff.wake()
        if self._thread is not None:
            self._thread.join(timeout)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is written and its listeners told (tests, shutdown). Never
        call on the worker."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._working or len(self._handoff) or self._writer.buffer or len(self._schedule):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._handoff.wake()
                self._idle.wait(min(remaining, 0.05))
        return True

    def health(self) -> dict[str, Any]:
        s = self.stats
        return {
            "database_ready": self._writer.db_ready,
            "queue_depth": len(self._handoff),
            "buffered": len(self._writer.buffer),
            "buffer_max": self._writer.buffer_max,
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
            "deferred": len(self._schedule),
            "retention_deleted": self._retention.deleted,
        }

    # -- the thread ------------------------------------------------------------------------------------------

    def _loop(self) -> None:
        self.store.bind_thread()
        while True:
            stopping = self._stopping.is_set()
            try:
                self._iteration(final=stopping)
            except Exception as exc:  # the recorder must outlive any bug of its own: telemetry stops otherwise
                self.stats.note_error(exc)
                log.exception("telemetry recorder iteration failed; continuing")
                time.sleep(0.1)
            if stopping and not len(self._handoff):
                break

    def _sleep_s(self) -> float:
        timeout = TICK_S
        waiting = self._schedule.seconds_to_next()
        if waiting is not None:
            timeout = min(timeout, max(0.005, waiting))
        if self._writer.buffer:
            timeout = min(timeout, max(0.05, self._writer.seconds_to_retry()))
        return timeout

    def _iteration(self, final: bool = False) -> None:
        if not final:
            self._handoff.wait(self._sleep_s())
        with self._idle:
            self._working = True
        try:
            for work in self._handoff.take_all():
                self._take(work)
            self.stats.log_worker_drops()
            for item in self._schedule.release(force=final):
                self._run_deferred(item)
            self._notify(self._writer.write(force=final))
            self._between_runs()
        finally:
            with self._idle:
                self._working = False
                self._idle.notify_all()

    def _take(self, work: Work) -> None:
        if work.replaces is not None:
            self._schedule.cancel(work.replaces)
        if work.max_delay_s > 0:
            self._schedule.defer(work, work.max_delay_s, work.key)
        else:
            self._build(work.job)

    def _run_deferred(self, item: Any) -> None:
        if isinstance(item, Work):
            self._build(item.job)
        else:  # a stored run for the listeners that wait for an idle ComfyUI
            self._tell(self._idle_listeners, item)

    def _build(self, job: RunJob) -> None:
        try:
            runs = job()
        except Exception as exc:
            self.stats.build_failures += 1
            self.stats.note_error(exc)
            log.exception("telemetry could not build a run record")
            self.stats.count_drop("could not build the run record")
            return
        for run in runs:
            self._writer.add(run)

    def _notify(self, stored: list[Run]) -> None:
        for run in stored:
            self._tell(self._listeners, run)
            if self._idle_listeners:
                self._schedule.defer(run, self._idle_listener_max_delay_s)

    def _tell(self, listeners: list[Listener], run: Run) -> None:
        for listener in listeners:
            try:
                listener(run)
            except Exception:
                log.exception("telemetry listener failed for run %s", run.run_id)

    def _between_runs(self) -> None:
        """Retention only while nothing waits to be written and ComfyUI is idle; the idle hook (orphaned runs,
        queued-run memory checks) about once a second."""
        if self._idle_hook is not None and time.monotonic() - self._last_idle_hook >= _IDLE_HOOK_EVERY_S:
            self._last_idle_hook = time.monotonic()
            try:
                self._idle_hook()
            except Exception as exc:  # a hook must never stop the recorder
                log.debug("recorder idle hook failed: %s", exc)
        if not self._retention.enabled or self._writer.buffer or len(self._handoff) or not self._writer.db_ready:
            return
        if self._schedule.busy():
            return
        try:
            self._retention.step()
        except Exception as exc:
            self.stats.note_error(exc)
            log.warning("telemetry retention failed: %s", exc)
