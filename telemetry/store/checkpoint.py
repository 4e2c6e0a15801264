"""SQLite's WAL checkpoint kept out of a bulk delete's transaction.

SQLite checkpoints the write-ahead log inside the commit that makes it pass `wal_autocheckpoint` pages: the
committing call then also copies every page to the database file and syncs it. After a prune batch that is a
long commit (measured at a million runs: 154 ms for a batch whose delete took 25 ms). So a batch commits with the
automatic checkpoint off on its connection, and a PASSIVE checkpoint follows once the write lock is released: it
waits for no reader or writer, and the recorder's commits go on beside it. The WAL stays as small as before, so
no later commit (the recorder's included) meets a large automatic checkpoint either.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from peewee import Database, OperationalError, SqliteDatabase


@contextlib.contextmanager
def checkpoint_after(db: Database, timings: dict[str, float] | None = None) -> Iterator[None]:
    """Run the block (one transaction) without an automatic checkpoint in its commit, then checkpoint passively.
    `timings["checkpoint_s"]` gets the checkpoint's duration. A no-op for other databases and :memory:."""
    if not isinstance(db, SqliteDatabase) or db.database == ":memory:":
        yield
        return
    (previous,) = db.execute_sql("PRAGMA wal_autocheckpoint").fetchone()
    db.execute_sql("PRAGMA wal_autocheckpoint=0")
    try:
        yield
    finally:
        db.execute_sql(f"PRAGMA wal_autocheckpoint={int(previous)}")
        began = time.perf_counter()
        try:
            db.execute_sql("PRAGMA wal_checkpoint(PASSIVE)")
        except OperationalError:  # another connection is checkpointing: the WAL gets copied all the same
            pass
        if timings is not None:
            timings["checkpoint_s"] = time.perf_counter() - began
