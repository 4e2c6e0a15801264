"""A SQLite database that follows its file: deleted (or replaced) while ComfyUI runs, the database is opened
again at its path, created anew with its schema when it is gone, and no run is written into the unlinked file.

An open SQLite connection keeps writing into a file that was deleted: the runs would land where nobody can read
them. So before a connection is used its file is compared (device and inode: one `stat`, about a microsecond)
with the file at the database's path:

- pooled connections opened on an earlier file are closed instead of being handed out or taken back
  (`_is_closed`, `_can_reuse`, the pool's own checks); the writer's long-held connection is checked before each
  write (`ensure_current_file`);
- a file that is gone is created again (owner-only, like the first); its `-wal` and `-shm`, if they were left
  behind, belong to the deleted file and are removed first (SQLite would otherwise read the old journal into the
  new file: "disk I/O error");
- `file_generation` counts the files; the store migrates the schema of each new one (`follow_database_file`).

A file replaced by another one (a restored backup) is followed the same way, but its `-wal` and `-shm` are left
alone: whoever replaced the file owns them (replace a SQLite file only with its journal checkpointed away).

Each new file is logged as a warning and shows in `/telemetry/health` (`database.recreated`, with the reason).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from playhouse.pool import PooledSqliteDatabase

from ..fileperms import create_private_file

log = logging.getLogger("run_telemetry.store")

FileIdentity = tuple[int, int]


def file_identity(path: str) -> FileIdentity | None:
    """The (device, inode) of `path`; None when there is no file there."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):  # no file, or a path no file can have
        return None
    return st.st_dev, st.st_ino


class FileCheckedSqliteDatabase(PooledSqliteDatabase):
    """Pooled SQLite whose connections always belong to the file now at its path (see the module docstring)."""

    def __init__(self, database: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        self._file_lock = threading.RLock()
        self._conn_files: dict[int, tuple[Any, FileIdentity | None]] = {}  # id(conn) -> (conn, its file)
        self.current_file = file_identity(database)
        self.file_generation = 0
        self.recreated = 0
        self.recreated_reason: str | None = None

    # -- the file --------------------------------------------------------------------------------------------

    def check_file(self) -> None:
        """Follow the file at the database's path: create it again when it is gone. Any thread."""
        path = self.database
        if self.current_file is not None and file_identity(path) == self.current_file:
            return
        with self._file_lock:
            found = file_identity(path)
            if found is not None and found == self.current_file:
                return
            if found is None:
                if self.current_file is not None:  # a fresh file needs no cleaning, only a deleted one
                    for suffix in ("-wal", "-shm"):
                        try:
                            os.unlink(path + suffix)
                        except FileNotFoundError:
                            pass
                create_private_file(path)
                found = file_identity(path)
                reason = "the file was deleted"
            else:
                reason = "another file replaced it"
            first, self.current_file = self.current_file is None, found
            if first:
                return
            self.file_generation += 1
            self.recreated += 1
            self.recreated_reason = f"{reason}; opened again at {path}"
            log.warning("telemetry database file %s: %s; opened again%s, runs from now on are written there",
                        path, reason, " and created with its schema" if reason.endswith("deleted") else "")

    def _on_current_file(self, conn: Any) -> bool:
        entry = self._conn_files.get(id(conn))
        return entry is not None and entry[0] is conn and entry[1] == self.current_file

    def ensure_current_file(self) -> None:
        """For a connection held across calls (the recorder's): reopen it if its file is no longer the
        database's. Call outside a transaction."""
        self.check_file()
        if not self.is_closed() and not self.in_transaction() and not self._on_current_file(self._state.conn):
            self.manual_close()
            self.connect()

    def file_health(self) -> dict[str, Any]:
        return {"recreated": self.recreated, "recreated_reason": self.recreated_reason}

    # -- the pool's hooks ------------------------------------------------------------------------------------

    def _connect(self) -> Any:
        self.check_file()
        conn = super()._connect()
        with self._file_lock:
            entry = self._conn_files.get(id(conn))
            if entry is None or entry[0] is not conn:  # a new connection: opened on the current file
                self._conn_files[id(conn)] = (conn, self.current_file)
        return conn

    def _is_closed(self, conn: Any) -> bool:
        if self._on_current_file(conn):
            return super()._is_closed(conn)
        self._close_raw(conn)
        return True

    def _can_reuse(self, conn: Any) -> bool:
        return self._on_current_file(conn) and super()._can_reuse(conn)

    def _close_raw(self, conn: Any) -> None:
        with self._file_lock:
            self._conn_files.pop(id(conn), None)
        super()._close_raw(conn)


def follow_database_file(store: Any, *, held_connection: bool = False) -> None:
    """Before the store uses its database: follow its file (and reopen this thread's `held_connection`), and
    migrate a new file's schema on the next `ensure_schema`. A no-op for other databases."""
    db = store.db
    if not isinstance(db, FileCheckedSqliteDatabase):
        return
    if held_connection:
        db.ensure_current_file()
    else:
        db.check_file()
    if getattr(store, "_file_generation", 0) != db.file_generation:
        store._file_generation = db.file_generation
        store.schema_version = None


def file_health(db: Any) -> dict[str, Any]:
    """What `/telemetry/health` says about the database file (empty for other databases)."""
    return db.file_health() if isinstance(db, FileCheckedSqliteDatabase) else {}
