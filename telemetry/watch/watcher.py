"""The standalone watcher: records the runs of a ComfyUI that the pack cannot be installed into.

It sees ComfyUI only through its API (docs/comfyui-integration.md §5 and §7.10):

- `/ws?clientId=<own id>` `status` frames say when the queue changed (cheap, pushed). A drop of
  `queue_remaining` means a prompt finished, so `/history` is read then.
- `/queue` is polled every `interval` as the fallback (and is all there is while the socket is down). A prompt
  that appears in `queue_running` gets a `running` record at once, so the panel sees it live; when it leaves,
  `/history/{id}` is fetched and the final record replaces the running one.
- `/history?max_items=N` catches runs that started and finished between two looks; it is read when a status
  frame says a prompt finished, on every poll while the socket is down, and every `history_every_s` anyway.

A history entry becomes a Run through `collector.build_run` (the same code the plugin uses, with no in-process
trace), handed to the same `Recorder`. Prompt ids are deduplicated with a bounded set; at start, ids already
stored with a final status count as seen. ComfyUI being down is never fatal: polls back off and the state change
is logged once.
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
from .client import ComfyClient, ComfyUnavailable

log = logging.getLogger("run_telemetry.watch")

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
    connected: bool | None = None  # None: not tried yet
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
            "client_id": self.client_id,
            "connected": self.connected,
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


class Watcher:
    def __init__(self, client: ComfyClient, recorder: Recorder, context: BuildContext, *, interval_s: float = 1.0,
                 history_items: int = 32, backfill_items: int = 200, seen_max: int = 20_000,
                 history_every_s: float = 15.0, max_backoff_s: float = 10.0, missing_retries: int = 3,
                 coalesce_s: float = 0.02) -> None:
        self.client = client
        self.recorder = recorder
        self.store = recorder.store
        self.context = context
        self.interval_s = max(0.01, interval_s)
        self.history_items = max(1, history_items)
        self.backfill_items = max(self.history_items, backfill_items)
        self.history_every_s = history_every_s
        self.max_backoff_s = max(self.interval_s, max_backoff_s)
        self.missing_retries = max(1, missing_retries)
        self.coalesce_s = coalesce_s
        self.seen = SeenSet(seen_max)
        self.state = WatcherState(client.base_url, client.client_id)
        self.queue_items: list[list[Any]] = []  # running first, then pending by number (for ETA predictions)
        self._running: dict[str, RunTrace] = {}  # prompts we wrote a running record for, still unfinished
        self._missing: dict[str, int] = {}  # left the queue, no history entry yet: attempts so far
        self._synced = False
        self._history_due = True
        self._last_history = 0.0
        self._queue_remaining: int | None = None
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()

    # -- what REST and the CLI read --------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        self.state.running = sorted(self._running)
        return self.state.to_dict()

    def pending_queue(self) -> list[list[Any]]:
        return list(self.queue_items)

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

        if not self._synced:
            await self._backfill()
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

    async def _backfill(self) -> None:
        """At start: what ComfyUI's history already holds and the store lacks."""
        history = await self.client.history(self.backfill_items)
        self.state.history_polls += 1
        self._last_history = time.monotonic()
        for pid, item in history.items():
            if isinstance(item, Mapping) and pid not in self.seen:
                self._record_final(pid, item)  # the job skips ids already stored with a final status
        self._synced = True
        log.info("watcher: %d run(s) in ComfyUI's history at start", len(history))

    async def _poll_history(self, running_ids: set[str]) -> None:
        limit = self.history_items
        while True:
            history = await self.client.history(limit)
            self.state.history_polls += 1
            fresh = [pid for pid in history if pid not in self.seen]
            # All of them new: more may have finished since the last look than we asked for.
            if len(fresh) < len(history) or len(history) < limit or limit >= self.backfill_items:
                break
            limit = min(self.backfill_items, limit * 4)
        self._last_history = time.monotonic()
        for pid in fresh:
            item = history[pid]
            if isinstance(item, Mapping) and pid not in running_ids:
                self._record_final(pid, item)

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
        delay = self.interval_s
        while not self._stop.is_set():
            try:
                async for kind, data in self.client.frames():
                    if not self.state.websocket:
                        self.state.websocket = True
                        delay = self.interval_s
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
                log.info("watcher: websocket lost (%s); polling /queue every %.2fs until it is back", error,
                         self.interval_s)
            self.state.websocket = False
            self._queue_remaining = None
            self._history_due = True
            self._wake.set()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            delay = min(self.max_backoff_s, delay * 2)

    # -- the loop --------------------------------------------------------------------------------------------

    def _set_connected(self, connected: bool, error: str | None = None) -> None:
        if connected and self.state.connected is not True:
            log.info("watcher: ComfyUI at %s is reachable; recording its runs", self.client.base_url)
        elif not connected and self.state.connected is not False:
            log.warning("watcher: ComfyUI at %s is unreachable (%s); retrying with backoff", self.client.base_url,
                        error)
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

    async def run(self, websocket: bool = True) -> None:
        """Watch until `stop()`. Never raises because ComfyUI is down."""
        ws_task = asyncio.create_task(self._websocket_loop()) if websocket else None
        delay = self.interval_s
        try:
            while not self._stop.is_set():
                try:
                    if self.state.connected is not True:
                        await self._identify()
                    await self.poll_once()
                    self._set_connected(True)
                    delay = self.interval_s
                except ComfyUnavailable as exc:
                    self._set_connected(False, str(exc))
                    delay = min(self.max_backoff_s, max(self.interval_s, delay * 2))
                except Exception as exc:  # a bug of ours: log it, keep watching
                    log.exception("watcher poll failed")
                    self.state.last_error = f"{type(exc).__name__}: {exc}"[:500]
                    delay = min(self.max_backoff_s, max(self.interval_s, delay * 2))
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

