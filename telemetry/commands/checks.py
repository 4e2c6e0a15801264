"""The doctor's checks of the database: reachable, writable, schema version. Each returns a `Check`: PASS or
FAIL, what was found, and on failure a hint that says what to do. Nothing here changes the database: the write
probe is rolled back, and the schema is read, never migrated."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from ..store.migrations import LATEST_VERSION, MIGRATIONS
from ..store.schema import FilterPresetRow, SchemaVersionRow
from ..store.store import Store, now_ms
from .common import one_line


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str | None = None

    def lines(self) -> str:
        text = f"{'PASS' if self.ok else 'FAIL'} {self.name}: {self.detail}"
        return text + (f"\n  fix: {self.fix}" if not self.ok and self.fix else "")


def passed(name: str, detail: str) -> Check:
    return Check(name, True, detail)


def failed(name: str, detail: str, fix: str) -> Check:
    return Check(name, False, detail, fix)


def _connect_hint(store: Store) -> str:
    if store.kind == "sqlite":
        return ("check that the SQLite file's folder exists and this user may write there, or pass the database "
                "ComfyUI records into: --database-url sqlite:///path/to/telemetry.db or TELEMETRY_DATABASE_URL")
    return ("check that the database server runs and that the URL's host, port, user, password and database are "
            "right (try: psql with the same URL); set it with --database-url or TELEMETRY_DATABASE_URL")


def reachable(store: Store, shown_url: str) -> Check:
    try:
        store.ping()
    except Exception as exc:
        return failed("database", f"cannot connect to {shown_url}: {one_line(exc, 300)}", _connect_hint(store))
    return passed("database", f"{store.kind} at {shown_url} answers")


def applied_versions(store: Store) -> set[int]:
    """The schema migrations recorded in the database (empty: no telemetry schema yet)."""
    with store.bound():
        if not store.db.table_exists(SchemaVersionRow._meta.table_name):
            return set()
        return {v for (v,) in SchemaVersionRow.select(SchemaVersionRow.version).tuples()}


def schema(store: Store) -> Check:
    try:
        applied = applied_versions(store)
    except Exception as exc:
        return failed("schema version", f"cannot read it: {one_line(exc, 300)}", _connect_hint(store))
    migrate_hint = (f"start ComfyUI with this pack, or run `python -m telemetry report` once with the same "
                    f"database: either migrates the schema to version {LATEST_VERSION}")
    if not applied:
        return failed("schema version", "no telemetry schema in this database yet (no run was ever recorded here)",
                      migrate_hint)
    missing = sorted({v for v, _ in MIGRATIONS} - applied)
    if missing:
        return failed("schema version", f"{max(applied)}, without migration(s) {', '.join(map(str, missing))} "
                                        f"of this pack (latest {LATEST_VERSION})", migrate_hint)
    newer = sorted(v for v in applied if v > LATEST_VERSION)
    detail = f"{max(applied)} (this pack's latest: {LATEST_VERSION})"
    if newer:
        detail += f"; {', '.join(map(str, newer))} from a newer pack, which this one ignores"
    return passed("schema version", detail)


def writable(store: Store, has_schema: bool) -> Check:
    """A write in a transaction that is rolled back: a preset row where the schema exists, else the table the
    first start would create."""
    probe = f"__run_telemetry_doctor_{uuid.uuid4().hex[:12]}"
    try:
        with store.bound(), store.db.atomic() as transaction:
            if has_schema:
                FilterPresetRow.insert(name=probe, filters="{}", created_at_ms=now_ms()).execute()
            else:
                store.db.execute_sql(f"CREATE TABLE {probe} (id INTEGER)")
            transaction.rollback()
    except Exception as exc:
        hint = ("make the SQLite file, its folder and its -wal/-shm files writable by this user and check the disk "
                "has room" if store.kind == "sqlite" else
                "grant the database user INSERT/UPDATE/DELETE (and CREATE for migrations) on the telemetry tables, "
                "and check the server is not read-only or out of disk")
        return failed("database writable", f"a test write failed: {one_line(exc, 300)}", hint)
    return passed("database writable", "a test write succeeded (rolled back)")
