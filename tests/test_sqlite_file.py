"""A SQLite database file deleted under a running store: the store notices before its next
read or write, creates the file again with its schema, and writes there, never into the unlinked file."""

from __future__ import annotations

import os
import sqlite3

import pytest

from telemetry.model import Run
from telemetry.store.database import sqlite_url
from telemetry.store.store import Store


def _ids_in_file(path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {row[0] for row in conn.execute("SELECT run_id FROM runs")}
    finally:
        conn.close()


@pytest.fixture
def sqlite_store(tmp_path):
    store = Store(sqlite_url(str(tmp_path / "telemetry.db")))
    store.open()
    yield store, tmp_path / "telemetry.db"
    store.shutdown()


@pytest.mark.parametrize("deleted", [("",), ("", "-wal", "-shm")], ids=["main file only", "with wal and shm"])
def test_runs_after_the_file_is_deleted_go_into_a_new_file_with_the_schema(sqlite_store, deleted):
    store, path = sqlite_store
    store.save_runs([Run("before", "success")])
    assert store.db.file_health()["recreated"] == 0  # the first file is not a recreation
    assert store.executor.submit(store.get_run, "before").result().status == "success"  # a pooled reader
    for suffix in deleted:
        os.unlink(f"{path}{suffix}")

    store.save_runs([Run("after", "success")])
    assert path.exists() and (path.stat().st_mode & 0o777) == 0o600
    assert _ids_in_file(path) == {"after"}
    reader = store.executor.submit(store.get_run, "after").result()  # readers follow the file too
    assert reader is not None and reader.status == "success"
    assert store.executor.submit(store.get_run, "before").result() is None
    assert store.db.file_health() == {"recreated": 1,
                                      "recreated_reason": f"the file was deleted; opened again at {path}"}


def test_a_reader_that_notices_the_deletion_migrates_the_new_file_not_the_one_it_held(sqlite_store):
    """A REST call takes its pooled connection, the file is deleted, and only then does its schema check see it:
    the schema must go into the new file (migrating on the held connection would find the old file's schema
    current, and every later write would fail with "no such table")."""
    store, path = sqlite_store
    store.save_runs([Run("before", "success")])
    store.close()  # the writer's connection is back in the pool, like a writer between writes

    def read_after_the_file_went(run_id):
        store.db.connect(reuse_if_open=True)  # the connection a REST call holds (StoreExecutor._call)
        try:
            os.unlink(path)
            store.ensure_schema()  # this thread notices first
            return store.get_run(run_id)
        finally:
            store.db.close()

    with store.bound():
        assert read_after_the_file_went("before") is None
    store.save_runs([Run("after", "success")])
    assert _ids_in_file(path) == {"after"}
    assert store.executor.submit(store.get_run, "after").result().status == "success"



def test_processes_starting_together_on_a_fresh_shared_file_all_get_the_schema(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from telemetry.store.migrations import LATEST_VERSION

    repo = Path(__file__).resolve().parents[1]
    for round_no in range(3):  # the race is a matter of timing: a few rounds of three processes
        url = sqlite_url(str(tmp_path / f"shared{round_no}.db"))
        code = f"from telemetry.store.store import Store; s = Store({url!r}); s.open(); print(s.schema_version)"
        procs = [subprocess.Popen([sys.executable, "-c", code], cwd=repo, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(3)]
        results = [proc.communicate(timeout=60) for proc in procs]
        assert [out.strip() for out, _ in results] == [str(LATEST_VERSION)] * 3, [err[-300:] for _, err in results]
