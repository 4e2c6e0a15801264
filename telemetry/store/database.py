"""Opening the database named by a URL: SQLite (default, WAL) or anything peewee's db_url knows (PostgreSQL)."""

from __future__ import annotations

import os
from urllib.parse import urlparse

from peewee import Database, PostgresqlDatabase, SqliteDatabase
from playhouse.db_url import connect

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "normal",
    "foreign_keys": 1,
    "busy_timeout": 10000,
    "cache_size": -32000,
}


class DatabaseUrlError(ValueError):
    pass


def sqlite_url(path: str) -> str:
    return "sqlite:///" + os.path.abspath(path)


def open_database(url: str) -> Database:
    """A peewee Database for `url`. SQLite files get WAL mode and their folder is created."""
    scheme = urlparse(url).scheme.lower()
    if scheme in ("sqlite", "sqliteext", "sqlite3"):
        # sqlite:///relative.db and sqlite:////absolute/path.db, as SQLAlchemy and peewee spell them.
        path = url.split("://", 1)[1]
        path = path[1:] if path.startswith("/") else path
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
        return SqliteDatabase(path or ":memory:", pragmas=SQLITE_PRAGMAS, timeout=10)
    if scheme in ("postgres", "postgresql", "postgresext", "postgresqlext", "mysql", "mysql+pool", "postgres+pool"):
        return connect(url)
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
