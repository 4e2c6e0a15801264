"""ComfyUI's own history kept across restarts (issue 11, item 1).

While recording: each run's history record, as ComfyUI wrote it in `PromptQueue.task_done` (the hook hands the
record over with the run), is stored minus secrets beside the run (`telemetry.store.comfy_history`), on the
recorder thread once ComfyUI is idle.

At start: a short-lived thread waits for ComfyUI's `PromptServer.instance.prompt_queue` (created after custom
nodes load), reads the newest `history_restore_runs` records and puts them back into `PromptQueue.history` under
its mutex, so `/history`, `/api/jobs` (0.8.0) and the frontend's queue history list runs from before the restart.
Rules: an entry ComfyUI already has is never replaced; ComfyUI's order is kept (oldest first; restored runs come
before anything run since the start) and so is its `MAXIMUM_HISTORY_SIZE`; outputs whose files are gone are left
out. Restored runs get negative queue numbers (-N .. -1, oldest first), below the numbers of this process's
prompts, because ComfyUI's frontends sort queue history by that number and a new process counts from 0 again.
Nothing here runs on ComfyUI's worker thread or delays its start.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("run_telemetry.history")

WAIT_FOR_QUEUE_S = 600.0
POLL_S = 0.2
RECORD_ATTRIBUTE = "comfy_history_item"
DEFAULT_MAXIMUM_HISTORY_SIZE = 10000
ORPHAN_SWEEP_EVERY = 500


def attach_record(run: Any, history_item: Any) -> None:
    """Give a run built from ComfyUI's history record that record (a reference; cleaned when stored)."""
    if isinstance(history_item, dict):
        setattr(run, RECORD_ATTRIBUTE, history_item)


def output_file_checker(resolve_dir: Callable[[str], str | None]) -> Callable[[dict[str, Any]], bool]:
    """`exists(file_entry)` for ComfyUI's `{"filename", "subfolder", "type"}` output entries."""
    def exists(entry: dict[str, Any]) -> bool:
        filename = entry.get("filename")
        kind = entry.get("type") or "output"
        subfolder = entry.get("subfolder") or ""
        if not isinstance(filename, str) or not filename or not isinstance(kind, str) or not isinstance(subfolder,
                                                                                                          str):
            return False
        base = resolve_dir(kind)
        if not base:
            return False
        base = os.path.abspath(base)
        path = os.path.abspath(os.path.join(base, subfolder, filename))
        if os.path.commonpath([base, path]) != base:
            return False
        return os.path.isfile(path)

    return exists


def _is_file_entry(value: Any) -> bool:
    return isinstance(value, dict) and "filename" in value


def _has_files(value: Any) -> bool:
    return isinstance(value, list) and any(_is_file_entry(v) for v in value)


def existing_outputs(outputs: Any, exists: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """ComfyUI's `outputs` with file entries whose file is gone left out (a list left without files goes with
    them, and so does a node left without any of its files). Entries that are not files (text) stay."""
    kept: dict[str, Any] = {}
    if not isinstance(outputs, dict):
        return kept
    for node_id, ui in outputs.items():
        if not isinstance(ui, dict):
            continue
        node: dict[str, Any] = {}
        for key, value in ui.items():
            if _has_files(value):
                files = [v for v in value if not _is_file_entry(v) or exists(v)]
                if _has_files(files):
                    node[key] = files
            else:
                node[key] = value
        had_files = any(_has_files(v) for v in ui.values())
        if node and (not had_files or any(_has_files(v) for v in node.values())):
            kept[str(node_id)] = node
    return kept


def prepare(records: list[tuple[str, dict[str, Any]]], exists: Callable[[dict[str, Any]], bool]
            ) -> list[tuple[str, dict[str, Any]]]:
    """History items to restore, oldest first, each in ComfyUI's shape with numbers -N .. -1."""
    prepared = []
    for run_id, record in records:
        prompt = record.get("prompt")
        if not isinstance(prompt, list) or len(prompt) < 5 or not isinstance(record.get("status"), (dict, type(None))):
            continue
        item = dict(record)
        item["prompt"] = list(prompt[:5])
        item["outputs"] = existing_outputs(record.get("outputs"), exists)
        prepared.append((run_id, item))
    count = len(prepared)
    for index, (_, item) in enumerate(prepared):
        item["prompt"][0] = index - count
    return prepared


def put_back(queue: Any, items: list[tuple[str, dict[str, Any]]], maximum: int) -> int:
    """Insert the items before ComfyUI's own entries, under its mutex; never replaces one; keeps the total at or
    below `maximum` by leaving out the oldest restored ones. Returns how many were added. Dict operations only."""
    with queue.mutex:
        history = queue.history
        fresh = [(pid, item) for pid, item in items if pid not in history]
        room = max(0, maximum - len(history))
        fresh = fresh[len(fresh) - room:] if room < len(fresh) else fresh
        if not fresh:
            return 0
        own = list(history.items())
        history.clear()
        history.update(fresh)
        history.update(own)
        return len(fresh)


def restore(store: Any, queue: Any, limit: int, exists: Callable[[dict[str, Any]], bool],
            maximum: int = DEFAULT_MAXIMUM_HISTORY_SIZE) -> int:
    """Read the newest `limit` records and put them into `queue.history`. Returns how many were added."""
    from ..store.comfy_history import drop_orphans, latest_records

    try:
        drop_orphans(store)
    except Exception:
        log.debug("could not drop history records of pruned runs", exc_info=True)
    items = prepare(latest_records(store, limit), exists)
    return put_back(queue, items, maximum)


def save_listener(store: Any) -> Callable[[Any], None]:
    """A recorder listener storing the record a run carries (recorder thread, ComfyUI idle)."""
    from ..store.comfy_history import drop_orphans, save_record

    saved = [0]

    def listener(run: Any) -> None:
        item = getattr(run, RECORD_ATTRIBUTE, None)
        if item is None or getattr(run, "status", None) == "running":
            return
        save_record(store, run.run_id, item)
        saved[0] += 1
        if saved[0] % ORPHAN_SWEEP_EVERY == 0:  # records of runs retention pruned meanwhile
            drop_orphans(store)

    return listener


def _comfy_resolver() -> Callable[[str], str | None]:
    import folder_paths

    def resolve(kind: str) -> str | None:
        return folder_paths.get_directory_by_type(kind)

    return resolve


def _maximum_history_size() -> int:
    try:
        import execution

        return int(getattr(execution, "MAXIMUM_HISTORY_SIZE", DEFAULT_MAXIMUM_HISTORY_SIZE))
    except Exception:
        return DEFAULT_MAXIMUM_HISTORY_SIZE


def start_restore(store: Any, limit: int, server_getter: Callable[[], Any],
                  wait_s: float = WAIT_FOR_QUEUE_S) -> threading.Thread | None:
    """Restore on a daemon thread once ComfyUI's prompt queue exists. None when switched off (limit 0)."""
    if limit <= 0:
        return None

    def run() -> None:
        deadline = time.monotonic() + wait_s
        queue = None
        while time.monotonic() < deadline:
            queue = getattr(server_getter(), "prompt_queue", None)
            if queue is not None and hasattr(queue, "mutex") and isinstance(getattr(queue, "history", None), dict):
                break
            queue = None
            time.sleep(POLL_S)
        if queue is None:
            log.info("Run Telemetry: ComfyUI's prompt queue never appeared; its history is not restored")
            return
        try:
            added = restore(store, queue, limit, output_file_checker(_comfy_resolver()), _maximum_history_size())
            log.info("Run Telemetry: %d runs from before the restart are back in ComfyUI's history", added)
        except Exception:
            log.exception("Run Telemetry: could not restore ComfyUI's history (ComfyUI is not affected)")

    thread = threading.Thread(target=run, name="run-telemetry-history-restore", daemon=True)
    thread.start()
    return thread
