"""What `/telemetry/health` says about writes: a database that answers reads but refuses writes (a full disk,
SQLite's "database or disk is full", a read-only file) is not `ok`, and the answer names the error and how many
runs wait in memory for it to pass."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def write_problem(recorder: Mapping[str, Any]) -> str | None:
    """The recorder's failing write, while its last write attempt failed and runs wait in its buffer; None when
    writes go through."""
    buffered = recorder.get("buffered") or 0
    failed_at = recorder.get("last_error_at_ms")
    written_at = recorder.get("last_write_at_ms") or 0
    if not buffered or not recorder.get("write_failures") or failed_at is None or failed_at < written_at:
        return None
    return f"{recorder.get('last_error')}; {buffered} run(s) buffered in memory until the database takes them"


def apply_write_problem(database: dict[str, Any], recorder: Mapping[str, Any]) -> None:
    """Mark the health's `database` section `not writable` (with `write_error`) when writes fail."""
    problem = write_problem(recorder)
    if problem is not None and database.get("state") == "ok":
        database["state"] = "not writable"
        database["write_error"] = problem


def root_cause(exc: BaseException) -> BaseException:
    """The error to report for a failed write. When SQLite refuses a write as full (SQLITE_FULL) it rolls the
    transaction back itself, and peewee's own rollback then fails with "cannot rollback - no transaction is
    active", hiding the reason: report the error that caused it instead."""
    cause, seen = exc, 0
    while "no transaction is active" in str(cause) and cause.__context__ is not None and seen < 10:
        cause, seen = cause.__context__, seen + 1
    return exc if "no transaction is active" in str(cause) else cause
