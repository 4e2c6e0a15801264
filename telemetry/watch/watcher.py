"""The standalone watcher: records the runs of a ComfyUI that the pack cannot be installed into.

It sees ComfyUI only through its API (docs/comfyui-integration.md §5 and §7.10):

- `/ws?clientId=<own id>` `status` frames say when the queue changed (cheap, pushed). A drop of
  `queue_remaining` means a prompt finished, so `/history` is read then.
- `/queue` is polled every `interval` as the fallback (and is all there is while the socket is down). A prompt
  that appears in `queue_running` gets a `running` record at once, so the panel sees it live; when it leaves,
  `/history/{id}` is fetched and the final record replaces the running one.
- The finished runs catch what started and finished between two looks: `/api/jobs?status=completed,failed`
  (ids and times only) where ComfyUI has it (feature-detected after every (re)connect), each new id then read
  from `/history/{id}`; else `/history?max_items=N`. It is read when a status frame says a prompt finished, on
  every poll while the socket is down, and every `history_every_s` anyway. The window widens until it reaches a
  run already recorded (or the end of ComfyUI's history).

A history entry becomes a Run through `collector.build_run` (the same code the plugin uses, with no in-process
trace), handed to the same `Recorder`. Prompt ids are deduplicated with a bounded set; at start, the ids already
stored with a final status for this instance count as seen (`cursor.py`: the stored runs are the cursor), so a
restart neither records a run twice nor misses one that finished while nobody watched (within ComfyUI's history).
ComfyUI being down is never fatal: polls back off exponentially with jitter (`backoff.py`), and each state change
is logged once, not each attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..collector import BuildContext, RunTrace, build_run, build_started_run, now_ms
from ..model import Run, RunStatus
from ..recorder import Recorder
from ..store.store import Store
from .backoff import Backoff
from .client import ComfyClient, ComfyUnavailable
from .cursor import Cursor, load_cursor

log = logging.getLogger("run_telemetry.watch")

COMFY_HISTORY_MAX = 10_000  # ComfyUI's MAXIMUM_HISTORY_SIZE (execution.py): the most a catch-up can find
MISSING_REASON = "ComfyUI has no history entry for this run (history cleared or deleted, or ComfyUI restarted)"
STALE_REASON = "the watcher stopped while this run was executing, and its result is no longer in ComfyUI's history"


class SeenSet:
    """Insertion-ordered set of prompt ids that forgets the oldest beyond `max_size`."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max(1, max_size)
        self._items: OrderedDict[str, None] = OrderedDict()

    def add(self, key: str) -> None:
        self._items[key] = None
        self._items.move_to_end(key)
        while len(self._items) > self.max_size:
            self._items.popitem(last=False)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class WatcherState:
    comfyui_url: str
    client_id: str
    instance: str | None = None
    connected: bool | None = None  # None: not tried yet
    reconnecting_since_ms: int | None = None
    next_try_at_ms: int | None = None
    retries: int = 0  # failed attempts since the last success
    history_api: str | None = None  # "jobs" (/api/jobs) or "history" (/history), once detected
    cursor: dict[str, Any] | None = None
    caught_up: int = 0  # runs the start-up catch-up found in ComfyUI's history and the store lacked
    websocket: bool = False
    last_error: str | None = None
    last_poll_at_ms: int | None = None
    polls: int = 0
    history_polls: int = 0
    runs_recorded: int = 0
    running_recorded: int = 0
    missing_closed: int = 0
    comfyui_version: str | None = None
    running: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": "watcher",
            "comfyui_url": self.comfyui_url,
            "instance": self.instance,
            "client_id": self.client_id,
            "connected": self.connected,
            "state": ("starting" if self.connected is None else "connected" if self.connected else "reconnecting"),
            "reconnecting_since_ms": self.reconnecting_since_ms,
            "next_try_at_ms": self.next_try_at_ms,
            "retries": self.retries,
            "history_api": self.history_api,
            "cursor": dict(self.cursor) if self.cursor else None,
            "caught_up": self.caught_up,
            "websocket": self.websocket,
            "last_error": self.last_error,
            "last_poll_at_ms": self.last_poll_at_ms,
            "polls": self.polls,
            "history_polls": self.history_polls,
            "runs_recorded": self.runs_recorded,
            "running_recorded": self.running_recorded,
            "missing_closed": self.missing_closed,
            "comfyui_version": self.comfyui_version,
            "running": list(self.running),
        }


def _stored(store: Store, prompt_id: str) -> Run | None:
    """The stored run, or None (also when the database cannot be read: then the record is written anyway)."""
    try:
        if not store.run_exists(prompt_id):
            return None
        return store.get_run(prompt_id)
    except Exception as exc:
        log.debug("watcher could not check run %s in the store: %s", prompt_id, exc)
        return None


def _is_final(run: Run | None) -> bool:
    # A run closed as interrupted because *our* previous process stopped may still have a true final record in
    # ComfyUI's history: that one wins.
    return run is not None and run.status in RunStatus.FINAL and run.interrupted_reason != STALE_REASON


def _queue_entries(queue: Mapping[str, Any], key: str) -> list[list[Any]]:
    entries = queue.get(key)
    if not isinstance(entries, list):
        return []
    return [e for e in entries if isinstance(e, (list, tuple)) and len(e) > 1 and isinstance(e[1], str)]


def trace_from_queue_item(item: list[Any], started_at_ms: int | None = None) -> RunTrace:
    """A RunTrace for a prompt seen in `queue_running`: [number, prompt_id, prompt, extra_data, outputs]."""
    prompt = item[2] if len(item) > 2 else None
    extra = item[3] if len(item) > 3 and isinstance(item[3], Mapping) else {}
    outputs = item[4] if len(item) > 4 and isinstance(item[4], (list, tuple)) else []
    return RunTrace(prompt_id=str(item[1]), started_at_ms=started_at_ms or now_ms(), started_perf=time.perf_counter(),
                    prompt=prompt, extra_data=dict(extra), execute_outputs=[str(o) for o in outputs])


async def _supports_jobs(client: Any) -> bool:
    probe = getattr(client, "supports_jobs", None)  # a client without it reads /history
    return bool(await probe()) if probe is not None else False


class Watcher:
    def __init__(self, client: ComfyClient, recorder: Recorder, context: BuildContext, *, interval_s: float = 1.0,
                 history_items: int = 32, backfill_items: int = 200, seen_max: int = 20_000,
                 history_every_s: float = 15.0, backoff_initial_s: float = 1.0, max_backoff_s: float = 30.0,
                 missing_retries: int = 3, coalesce_s: float = 0.02, history_max: int = COMFY_HISTORY_MAX) -> None:
        self.client = client
        self.recorder = recorder
        self.store = recorder.store
        self.context = context
        self.interval_s = max(0.01, interval_s)
        self.history_items = max(1, history_items)
        self.backfill_items = max(self.history_items, backfill_items)
        self.history_every_s = history_every_s
        self.max_backoff_s = max(0.001, max_backoff_s)
        self.backoff_initial_s = min(backoff_initial_s, self.max_backoff_s)
        self.history_max = max(self.backfill_items, history_max)
        self.missing_retries = max(1, missing_retries)
        self.coalesce_s = coalesce_s
        self.seen = SeenSet(seen_max)
        self.state = WatcherState(client.base_url, client.client_id, instance=context.instance)
        self.queue_items: list[list[Any]] = []  # running first, then pending by number (for ETA predictions)
        self._running: dict[str, RunTrace] = {}  # prompts we wrote a running record for, still unfinished
        self._missing: dict[str, int] = {}  # left the queue, no history entry yet: attempts so far
        self._synced = False
        self._history_due = True
        self._last_history = 0.0
        self._queue_remaining: int | None = None
        self._jobs_api: bool | None = None  # /api/jobs served? None: detect on the next look
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._ws_retry = asyncio.Event()  # set on stop and when ComfyUI is reachable again: retry /ws at once
        recorder.add_listener(self._on_stored)

    # -- what REST and the CLI read --------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        self.state.running = sorted(self._running)
        return self.state.to_dict()

    def pending_queue(self) -> list[list[Any]]:
        return list(self.queue_items)

    def _on_stored(self, run: Run) -> None:
        """Recorder thread, after the commit: the cursor moves with what is really stored."""
        if run.instance != self.context.instance or run.source != self.context.source:
            return
        if run.status not in RunStatus.FINAL or run.interrupted_reason == STALE_REASON:
            return
        cursor = self.state.cursor or {}
        if run.finished_at_ms is not None and run.finished_at_ms >= (cursor.get("finished_at_ms") or 0):
            self.state.cursor = {"run_id": run.run_id, "finished_at_ms": run.finished_at_ms,
                                 "known_runs": cursor.get("known_runs", 0) + 1}
        else:
            self.state.cursor = {**cursor, "known_runs": cursor.get("known_runs", 0) + 1}

    # -- recording (hands work to the recorder thread) -------------------------------------------------------

    def _record_final(self, prompt_id: str, item: Mapping[str, Any]) -> None:
        self.seen.add(prompt_id)
        self._running.pop(prompt_id, None)
        self._missing.pop(prompt_id, None)
        store, context = self.store, self.context

        def job() -> list[Run]:
            if _is_final(_stored(store, prompt_id)):
                return []
            return [build_run(prompt_id, item, None, context)]

        if self.recorder.submit(job, "watcher run"):
            self.state.runs_recorded += 1

    def _record_running(self, queue_item: list[Any]) -> None:
        trace = trace_from_queue_item(queue_item)
        self._running[trace.prompt_id] = trace
        store, context = self.store, self.context

        def job() -> list[Run]:
            if _stored(store, trace.prompt_id) is not None:
                return []
            return [build_started_run(trace, context)]

        if self.recorder.submit(job, "watcher run start"):
            self.state.running_recorded += 1

    def _close_missing(self, prompt_id: str) -> None:
        """A prompt left the queue and ComfyUI kept no history of it: close our running record as interrupted."""
        self.seen.add(prompt_id)
        self._missing.pop(prompt_id, None)
        trace = self._running.pop(prompt_id, None)
        if trace is None:
            return
        trace.finished_at_ms = now_ms()
        store, context = self.store, self.context
        item = {"prompt": [None, prompt_id, trace.prompt, trace.extra_data, trace.execute_outputs]}

        def job() -> list[Run]:
            if _is_final(_stored(store, prompt_id)):
                return []
            run = build_run(prompt_id, item, trace, context)
            run.status, run.interrupted_reason = RunStatus.INTERRUPTED, MISSING_REASON
            return [run]

        log.warning("watcher: prompt %s left the queue with no history entry; recorded as interrupted", prompt_id)
        if self.recorder.submit(job, "watcher missing run"):
            self.state.missing_closed += 1

    # -- one look at ComfyUI ---------------------------------------------------------------------------------

    async def poll_once(self) -> None:
        """Read /queue (and /history when due) and record what changed. Raises ComfyUnavailable."""
        queue = await self.client.queue()
        running = _queue_entries(queue, "queue_running")
        pending = sorted(_queue_entries(queue, "queue_pending"), key=lambda e: e[0] if isinstance(e[0], int) else 0)
        self.queue_items = running + pending
        running_ids = {e[1] for e in running}

        if self._jobs_api is None:
            self._jobs_api = await _supports_jobs(self.client)
            self.state.history_api = "jobs" if self._jobs_api else "history"
        if not self._synced:
            await self._backfill(running_ids)
        for entry in running:
            pid = entry[1]
            if pid not in self.seen and pid not in self._running:
                self._record_running(entry)

        # Prompts we saw running that are not running any more: their history entry is written by now.
        for pid in [p for p in self._running if p not in running_ids and p not in self._missing]:
            self._missing[pid] = 0
        for pid in list(self._missing):
            item = await self.client.history_item(pid)
            if item is not None:
                self._record_final(pid, item)
                continue
            self._missing[pid] += 1
            if self._missing[pid] >= self.missing_retries:
                self._close_missing(pid)

        due = (self._history_due or not self.state.websocket
               or time.monotonic() - self._last_history >= self.history_every_s)
        if due:
            self._history_due = False
            await self._poll_history(running_ids)
        self.state.polls += 1
        self.state.last_poll_at_ms = now_ms()

    async def _backfill(self, running_ids: set[str]) -> None:
        """At start: the cursor from the store, then what ComfyUI's history holds beyond it."""
        if self.store is not None and self.context.instance:
            try:
                cursor = await asyncio.to_thread(load_cursor, self.store, self.context.instance, STALE_REASON,
                                                 self.seen.max_size)
            except Exception as exc:  # the database is away: every record is still checked on the recorder thread
                log.warning("watcher: cannot read what %s already recorded (%s); checking each run as it comes",
                            self.context.instance, exc)
                cursor = Cursor(self.context.instance)
            for run_id in reversed(cursor.known_ids):
                self.seen.add(run_id)
            self.state.cursor = cursor.to_dict()
        found = await self._collect_finished(self.backfill_items, running_ids)
        self.state.caught_up += found
        self._synced = True
        log.info("watcher: %s: %d run(s) in ComfyUI's history not recorded yet", self.client.base_url, found)

    async def _poll_history(self, running_ids: set[str]) -> None:
        await self._collect_finished(self.history_items, running_ids)

    async def _collect_finished(self, first: int, running_ids: set[str]) -> int:
        """Read finished runs newest first, widening the window until it meets one already seen (or the end of
        ComfyUI's history); record the new ones, oldest first. Returns how many."""
        if self._jobs_api:
            fresh_ids = await self._fresh_from_jobs(first)
            self._last_history = time.monotonic()
            count = 0
            for pid in reversed(fresh_ids):
                if pid in running_ids or pid in self.seen:
                    continue
                item = await self.client.history_item(pid)
                if item is not None:  # deleted in between: nothing to record
                    self._record_final(pid, item)
                    count += 1
            return count
        limit = first
        while True:
            history = await self.client.history(limit)
            self.state.history_polls += 1
            fresh = [pid for pid in history if pid not in self.seen]
            # All of them new: more may have finished since the last look than we asked for.
            if len(fresh) < len(history) or len(history) < limit or limit >= self.history_max:
                break
            limit = min(self.history_max, limit * 4)
        self._last_history = time.monotonic()
        count = 0
        for pid in fresh:
            item = history[pid]
            if isinstance(item, Mapping) and pid not in running_ids:
                self._record_final(pid, item)
                count += 1
        return count

    async def _fresh_from_jobs(self, first: int) -> list[str]:
        """The ids of finished jobs not seen yet, newest first, from `/api/jobs` pages."""
        fresh: list[str] = []
        offset, limit = 0, first
        while True:
            jobs, has_more = await self.client.finished_jobs(limit, offset)
            self.state.history_polls += 1
            ids = [job["id"] for job in jobs]
            fresh.extend(pid for pid in ids if pid not in self.seen)
            offset += len(ids)
            if len(fresh) < offset or not has_more or not ids or offset >= self.history_max:
                return fresh
            limit = min(self.history_max - offset, limit * 4)

    # -- websocket -------------------------------------------------------------------------------------------

    def on_frame(self, kind: str, data: Any) -> None:
        """A text frame from /ws. Only `status` matters: the queue changed."""
        if kind != "status" or not isinstance(data, Mapping):
            return
        status = data.get("status")
        info = status.get("exec_info") if isinstance(status, Mapping) else None
        remaining = info.get("queue_remaining") if isinstance(info, Mapping) else None
        if not isinstance(remaining, int):
            self._history_due = True
        elif self._queue_remaining is None or remaining < self._queue_remaining:
            self._history_due = True  # a prompt finished (or we just connected)
        self._queue_remaining = remaining if isinstance(remaining, int) else None
        self._wake.set()

    async def _websocket_loop(self) -> None:
        backoff = Backoff(self.backoff_initial_s, self.max_backoff_s)
        while not self._stop.is_set():
            try:
                async for kind, data in self.client.frames():
                    if not self.state.websocket:
                        self.state.websocket = True
                        backoff.reset()
                        log.info("watcher: websocket to %s open (client id %s)", self.client.base_url,
                                 self.client.client_id)
                    self.on_frame(kind, data)
                error = "closed by ComfyUI"
            except ComfyUnavailable as exc:
                error = str(exc)
            except Exception as exc:  # never let the socket task die
                error = f"{type(exc).__name__}: {exc}"
                log.debug("watcher websocket failed", exc_info=True)
            if self.state.websocket:
                log.info("watcher: websocket to %s lost (%s); polling /queue every %.2fs until it is back",
                         self.client.base_url, error, self.interval_s)
                self._wake.set()  # look now; a failed reconnect attempt wakes nobody (the poll has its backoff)
            self.state.websocket = False
            self._queue_remaining = None
            self._history_due = True
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._ws_retry.wait(), backoff.next_delay())
            if self._ws_retry.is_set() and not self._stop.is_set():
                self._ws_retry.clear()
                backoff.reset()

    # -- the loop --------------------------------------------------------------------------------------------

    def _set_connected(self, connected: bool, error: str | None = None, retry_in_s: float | None = None) -> None:
        """Logged once per change of state, never per attempt."""
        if connected:
            if self.state.connected is not True:
                log.info("watcher: ComfyUI at %s is reachable; recording its runs", self.client.base_url)
                if self.state.connected is False:
                    self._ws_retry.set()
            self.state.reconnecting_since_ms = self.state.next_try_at_ms = None
            self.state.retries = 0
        else:
            if self.state.connected is not False:
                log.warning("watcher: ComfyUI at %s is unreachable (%s); retrying with backoff (%.0f s .. %.0f s)",
                            self.client.base_url, error, self.backoff_initial_s, self.max_backoff_s)
                self.state.reconnecting_since_ms = now_ms()
                self._jobs_api = None  # it may come back as another version
            self.state.retries += 1
            self.state.next_try_at_ms = now_ms() + int((retry_in_s or 0) * 1000)
        self.state.connected = connected
        self.state.last_error = error

    async def _identify(self) -> None:
        try:
            stats = await self.client.system_stats()
            system = stats.get("system") if isinstance(stats.get("system"), Mapping) else {}
            version = system.get("comfyui_version")
            self.state.comfyui_version = str(version) if version else None
        except ComfyUnavailable:
            pass

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._ws_retry.set()

    async def run(self, websocket: bool = True) -> None:
        """Watch until `stop()`. Never raises because ComfyUI is down."""
        ws_task = asyncio.create_task(self._websocket_loop()) if websocket else None
        backoff = Backoff(self.backoff_initial_s, self.max_backoff_s)
        try:
            while not self._stop.is_set():
                try:
                    if self.state.connected is not True:
                        await self._identify()
                    await self.poll_once()
                    self._set_connected(True)
                    backoff.reset()
                    delay = self.interval_s
                except ComfyUnavailable as exc:
                    delay = backoff.next_delay()
                    self._set_connected(False, str(exc), delay)
                except Exception as exc:  # a bug of ours: log it, keep watching
                    log.exception("watcher poll failed")
                    self.state.last_error = f"{type(exc).__name__}: {exc}"[:500]
                    delay = backoff.next_delay()
                if self._stop.is_set():
                    break
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                if not self._stop.is_set() and self._wake.is_set() and self.coalesce_s:
                    await asyncio.sleep(self.coalesce_s)  # let a burst of frames arrive before looking
                self._wake.clear()
        finally:
            if ws_task is not None:
                ws_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await ws_task
