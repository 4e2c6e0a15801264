"""Which runs left `running` in a shared SQLite file belong to a dead process, and may be closed as interrupted.

Several ComfyUI processes on one machine may record into one SQLite file (each under its own instance name).
On start a process must close the runs a crashed or killed process left `running`, but never the runs another
live process is executing. Each recording process holds an exclusive `flock` on a small lock file per
(source, instance) next to the database (`<db>.instances/`, owner-only) for its whole life; the kernel releases
it when the process dies, however it dies. A run's owner is alive exactly while its lock is held, so on start:

- this process's own runs are closed when it got its own lock (a live process under the same name keeps it);
- another instance's runs are closed when its lock can be taken (nobody holds it: that process is gone, even if
  ComfyUI came back under another port), and the lock is let go again at once.

PostgreSQL is shared across machines, where no lock file reaches: there only this instance's runs are closed.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
from typing import Any

from ..fileperms import PRIVATE_FILE_MODE, ensure_private_dir
from ..model import RunStatus
from .database import sqlite_path
from .schema import RunRow

log = logging.getLogger("run_telemetry.store")

_held: dict[str, int] = {}  # lock file -> descriptor, held until the process ends


def _lock_path(db_path: str, source: str | None, instance: str | None) -> str:
    key = hashlib.sha256(f"{source or ''}\0{instance or ''}".encode()).hexdigest()[:24]
    return os.path.join(os.path.abspath(db_path) + ".instances", key + ".lock")


def _try_lock(path: str) -> int | None:
    """The descriptor of `path`, exclusively locked; None when another process holds the lock."""
    ensure_private_dir(os.path.dirname(path))
    fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def hold_instance_lock(db_path: str, source: str | None, instance: str | None) -> bool:
    """Take this process's lock for (source, instance) and keep it for life. False: a live process has it."""
    path = _lock_path(db_path, source, instance)
    if path in _held:
        return True
    fd = _try_lock(path)
    if fd is None:
        return False
    _held[path] = fd
    return True


def owner_is_gone(db_path: str, source: str | None, instance: str | None) -> bool:
    """True when no live process holds the lock of (source, instance)."""
    path = _lock_path(db_path, source, instance)
    if path in _held:
        return False  # this process
    fd = _try_lock(path)
    if fd is None:
        return False
    os.close(fd)  # closing the descriptor lets the lock go
    return True


def close_runs_of_dead_processes(store: Any, instance: str | None, reason: str, source: str | None) -> list[str]:
    """On start, once: close as interrupted the runs left `running` by processes that are gone (the module
    docstring says how that is known). Returns the closed run ids."""
    db_path = sqlite_path(store.url) if store.kind == "sqlite" else None
    if db_path is None:
        return store.close_stale_running(instance, reason, source=source)
    own = hold_instance_lock(db_path, source, instance)
    if not own:
        log.warning("telemetry: another live process records as instance %r into %s; its running runs are left "
                    "alone (give each ComfyUI its own TELEMETRY_INSTANCE)", instance, db_path)
    with store.bound():
        query = RunRow.select(RunRow.instance).where(RunRow.status == RunStatus.RUNNING)
        if source is not None:
            query = query.where(RunRow.source == source)
        owners = {row.instance for row in query.distinct()}
    closed: list[str] = []
    for owner in sorted(owners, key=lambda o: o or ""):
        if (own if owner == instance else owner_is_gone(db_path, source, owner)):
            closed.extend(_close_instance(store, owner, reason, source))
    return closed


def _close_instance(store: Any, owner: str | None, reason: str, source: str | None) -> list[str]:
    if owner is not None:
        return store.close_stale_running(owner, reason, source=source)
    with store.bound():  # runs recorded without an instance name
        query = RunRow.select(RunRow.run_id).where((RunRow.status == RunStatus.RUNNING) & RunRow.instance.is_null())
        if source is not None:
            query = query.where(RunRow.source == source)
        ids = [row.run_id for row in query]
    return store.close_running(ids, reason)
