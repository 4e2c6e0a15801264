"""Opening the database named by a URL: SQLite (default, WAL) or PostgreSQL, the two the schema is kept for
(`store.migrations`).

Connections come from a pool (`playhouse.pool`): the recorder thread holds one while it writes, REST reads take
one per request on the store's small thread pool and give it back. A PostgreSQL connection that a server
restart broke is discarded by the pool and reconnected (`ReconnectMixin`), so reads recover by themselves once
the server is back. A new SQLite file is created owner-only (0600; SQLite gives `-wal` and `-shm` the same mode).
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlparse

from peewee import Database, InterfaceError, OperationalError, PostgresqlDatabase, SqliteDatabase
from playhouse.db_url import parse
from playhouse.pool import PooledPostgresqlDatabase, _PooledPostgresqlDatabase
from playhouse.shortcuts import ReconnectMixin

from ..fileperms import PRIVATE_DIR_MODE, create_private_file
from .sqlite_file import FileCheckedSqliteDatabase

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "normal",
    "foreign_keys": 1,
    "busy_timeout": 10000,
    "cache_size": -32000,
}
POOL_MAX_CONNECTIONS = 16
POOL_STALE_S = 300
POOL_WAIT_S = 10
PG_CONNECT_TIMEOUT_S = 5


class DatabaseUrlError(ValueError):
    pass


class ReconnectingPostgresqlDatabase(ReconnectMixin, PooledPostgresqlDatabase):
    """Pooled PostgreSQL whose statements outside a transaction reconnect once when the server dropped the
    connection (a restart, a failover, an idle timeout). A transaction that breaks raises: the recorder retries
    it as a whole."""

    reconnect_errors = (
        (OperationalError, "server closed the connection"),
        (OperationalError, "terminating connection"),
        (OperationalError, "could not receive data"),
        (OperationalError, "could not send data"),
        (OperationalError, "connection not open"),
        (OperationalError, "the connection is closed"),
        (OperationalError, "ssl syscall"),
        (InterfaceError, "connection already closed"),
    )

    # ReconnectMixin turns the pool's check off; a connection the server closed must not be handed out.
    _is_closed = _PooledPostgresqlDatabase._is_closed


def sqlite_url(path: str) -> str:
    return "sqlite:///" + os.path.abspath(path)


def sqlite_path(url: str) -> str | None:
    """The file of a SQLite URL (None: not SQLite, or in memory)."""
    if urlparse(url).scheme.lower() not in ("sqlite", "sqliteext", "sqlite3"):
        return None
    # sqlite:///relative.db and sqlite:////absolute/path.db, as SQLAlchemy and peewee spell them.
    path = url.split("://", 1)[1]
    path = path[1:] if path.startswith("/") else path
    return path if path and path != ":memory:" else None


def open_database(url: str) -> Database:
    """A pooled peewee Database for `url` (no I/O yet, except creating a new SQLite file and its folder)."""
    scheme = urlparse(url).scheme.lower()
    if scheme in ("sqlite", "sqliteext", "sqlite3"):
        path = sqlite_path(url)
        if path is None:
            return SqliteDatabase(":memory:", pragmas=SQLITE_PRAGMAS)
        folder = os.path.dirname(os.path.abspath(path)) or "."
        if not os.path.isdir(folder):
            os.makedirs(folder, mode=PRIVATE_DIR_MODE, exist_ok=True)
            os.chmod(folder, PRIVATE_DIR_MODE)
        try:
            create_private_file(path)
        except (OSError, ValueError):
            pass  # SQLite reports why it cannot open the file, on first use (buffered and retried)
        return FileCheckedSqliteDatabase(path, pragmas=SQLITE_PRAGMAS, max_connections=POOL_MAX_CONNECTIONS,
                                    stale_timeout=POOL_STALE_S, timeout=POOL_WAIT_S, check_same_thread=False)
    if scheme in ("postgres", "postgresql", "postgres+pool", "postgresext", "postgresqlext"):
        kwargs: dict[str, Any] = parse(url)
        kwargs.setdefault("connect_timeout", PG_CONNECT_TIMEOUT_S)
        for key in ("max_connections", "stale_timeout", "timeout"):
            if key in kwargs:
                kwargs[key] = int(kwargs[key])
        kwargs.setdefault("max_connections", POOL_MAX_CONNECTIONS)
        kwargs.setdefault("stale_timeout", POOL_STALE_S)
        kwargs.setdefault("timeout", POOL_WAIT_S)
        return ReconnectingPostgresqlDatabase(**kwargs)
    raise DatabaseUrlError(f"unsupported database URL scheme {scheme!r} (use sqlite:///path or postgresql://...)")


def database_kind(db: Database) -> str:
    if isinstance(db, SqliteDatabase):
        return "sqlite"
    if isinstance(db, PostgresqlDatabase):
        return "postgresql"
    return type(db).__name__.lower()


def redact_url(url: str) -> str:
    """The URL with any password replaced, for health reports and logs."""
    parsed = urlparse(url)
    if parsed.password:
        netloc = parsed.netloc.replace(":" + parsed.password + "@", ":***@")
        return parsed._replace(netloc=netloc).geturl()
    return url
