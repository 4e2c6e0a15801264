"""/telemetry/health names a failing write: the real reason SQLite gave, and how many runs wait for it."""

from __future__ import annotations

import pytest
from peewee import OperationalError, SqliteDatabase

from telemetry.store.write_health import apply_write_problem, root_cause


def test_a_full_sqlite_database_is_reported_as_full_not_as_peewees_failed_rollback(tmp_path):
    db = SqliteDatabase(str(tmp_path / "full.db"))
    db.execute_sql("CREATE TABLE t (x)")
    db.execute_sql("PRAGMA max_page_count = 2")
    with pytest.raises(OperationalError) as raised:
        with db.atomic():
            for _ in range(50):
                db.execute_sql("INSERT INTO t VALUES (?)", ("x" * 3000,))
    assert "no transaction is active" in str(raised.value)  # what peewee raises after SQLite's own rollback
    assert str(root_cause(raised.value)) == "database or disk is full"


def test_health_says_not_writable_while_runs_wait_and_ok_once_they_are_written():
    failing = {"buffered": 3, "write_failures": 2, "last_error": "OperationalError: database or disk is full",
               "last_error_at_ms": 2000, "last_write_at_ms": 1000}
    database = {"state": "ok"}
    apply_write_problem(database, failing)
    assert database["state"] == "not writable"
    assert database["write_error"] == ("OperationalError: database or disk is full; 3 run(s) buffered in memory "
                                       "until the database takes them")
    caught_up = {**failing, "buffered": 0, "last_write_at_ms": 3000}
    database = {"state": "ok"}
    apply_write_problem(database, caught_up)
    assert database == {"state": "ok"}
