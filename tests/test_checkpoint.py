"""A prune batch commits without SQLite's automatic WAL checkpoint and checkpoints passively once its write lock
is released: the WAL is copied back all the same, and the connection keeps its automatic checkpoint setting."""

from __future__ import annotations

from telemetry.model import NodeRun, Run
from telemetry.store.database import sqlite_url
from telemetry.store.store import Store


def test_a_prune_batch_checkpoints_after_its_commit_and_restores_the_setting(tmp_path):
    store = Store(sqlite_url(str(tmp_path / "telemetry.db")))
    store.open()
    try:
        store.save_runs([Run(f"r{i:05d}", "success", started_at_ms=1_000 + i,
                             nodes=[NodeRun(str(n), "ImageBlur", "executed") for n in range(5)])
                         for i in range(3000)])
        with store.bound():
            before = store.db.execute_sql("PRAGMA wal_autocheckpoint").fetchone()[0]
            plan = store.prune_plan(before_ms=1_000 + 2500)
            deleted = store.prune_batch(plan)
            assert deleted > 0
            assert store.last_prune_checkpoint_s is not None and store.last_prune_transaction_s is not None
            assert store.db.execute_sql("PRAGMA wal_autocheckpoint").fetchone()[0] == before
            busy, wal_frames, checkpointed = store.db.execute_sql("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            assert (busy, wal_frames) == (0, checkpointed)  # nothing left behind in the WAL
        assert store.count_runs() == 3000 - deleted
    finally:
        store.shutdown()


def test_an_in_memory_store_prunes_without_checkpoints():
    store = Store("sqlite:///:memory:")
    store.open()
    try:
        store.save_runs([Run(f"m{i}", "success", started_at_ms=i) for i in range(10)])
        assert store.prune_runs(before_ms=5) == 5
        assert store.last_prune_checkpoint_s is None
    finally:
        store.shutdown()
