"""What every database command shares: the `--database-url` / `--data-dir` options, the one way to open the
store and the service the REST routes use, and the exit codes with one-line messages (0 ok, 1 failure, 2 usage).

    handler = command(body)        # body(ctx) -> int; ctx.service is the REST routes' TelemetryService
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from peewee import DatabaseError, InterfaceError

from ..filters import FilterError
from ..store.database import DatabaseUrlError, redact_url, sqlite_path

if TYPE_CHECKING:  # the assembly is imported when a command runs, so that --help and usage errors are quick
    from ..app import TelemetryApp
    from ..service import TelemetryService
    from ..store.store import Store

log = logging.getLogger("run_telemetry.cli")

DEFAULT_DATA_DIR = os.path.join(os.path.expanduser("~"), ".run_telemetry")
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
MISSING_HINT = ("pass the database ComfyUI records into with --database-url (or TELEMETRY_DATABASE_URL), e.g. "
                "sqlite:///ComfyUI/user/__run_telemetry/telemetry.db; the pack creates it when ComfyUI starts")


class CommandError(Exception):
    """A failure the command explains in one line; `code` is the exit status (1, or 2 for usage)."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


def add_database_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", default=None,
                        help="sqlite:///path or postgresql://... (default: TELEMETRY_DATABASE_URL, else SQLite at "
                             "~/.run_telemetry/telemetry.db)")
    parser.add_argument("--data-dir", default=None,
                        help="where the default SQLite file and config.json live (default: ~/.run_telemetry)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, tracebacks of failures")


class Context:
    """One command's view of the configuration and the database: the app assembled as `serve` assembles it
    (`telemetry.app.assemble`, read-only), on first use, and closed by `command`."""

    def __init__(self, args: argparse.Namespace) -> None:

        from ..app import database_url
        from ..config import load_config

        self.args = args
        self.data_dir = os.path.expanduser(args.data_dir) if args.data_dir else DEFAULT_DATA_DIR
        self.config = load_config(self.data_dir)
        if not args.database_url:
            bad = [w for w in self.config.warnings if w.key == "database_url"]
            if bad:
                raise CommandError(f"{bad[0].source}: the database URL {bad[0].value} cannot be used (expected "
                                   f"{bad[0].expected})", EXIT_USAGE)
        self.url = database_url(self.config, self.data_dir, args.database_url)
        self._app: TelemetryApp | None = None

    @property
    def shown_url(self) -> str:
        return redact_url(self.url)

    def missing_sqlite_file(self) -> str | None:
        """The SQLite file the URL names when it does not exist (a typo or the wrong folder, most likely)."""
        path = sqlite_path(self.url)
        return path if path is not None and not os.path.exists(path) else None

    @property
    def app(self) -> TelemetryApp:
        """The read-only app (as `serve` builds it: no recorder) over the database; no I/O until used. A SQLite
        file that does not exist is an error, not a new empty database."""
        if self._app is None:
            from ..app import assemble

            missing = self.missing_sqlite_file()
            if missing is not None:
                raise CommandError(f"the telemetry database at {self.shown_url} is unavailable: {missing} does not "
                                   f"exist; {MISSING_HINT}")

            try:
                self._app = assemble(self.config, source="cli", url=self.url, instance=None, record=False)
            except DatabaseUrlError as exc:
                raise CommandError(f"--database-url: {exc}", EXIT_USAGE) from None
        return self._app

    @property
    def store(self) -> Store:
        return self.app.store

    @property
    def service(self) -> TelemetryService:
        """The service behind the REST routes: one code path for every job."""
        return self.app.service

    def close(self) -> None:
        if self._app is not None:
            self._app.store.shutdown()


def one_line(value: object, limit: int = 400) -> str:
    """An error (or any value) as one line of at most `limit` characters."""
    text = " ".join(part.strip() for part in str(value).splitlines() if part.strip()) or type(value).__name__
    return text[:limit]


def command(body: Callable[[Context], int]) -> Callable[[argparse.Namespace], int]:
    """`body` as a subcommand handler: errors become one line on stderr and an exit status, never a traceback
    (with -v the traceback is logged too)."""
    def handler(args: argparse.Namespace) -> int:
        if not args.verbose:  # the pack's info lines (schema migrated, ...) are not the command's output
            logging.getLogger("run_telemetry").setLevel(logging.WARNING)
        ctx: Context | None = None
        try:
            ctx = Context(args)
            return body(ctx)
        except CommandError as exc:
            return _fail(str(exc), exc.code)
        except FilterError as exc:
            return _fail(str(exc), EXIT_USAGE)
        except (DatabaseError, InterfaceError, OSError) as exc:
            if isinstance(exc, BrokenPipeError):
                return _stdout_closed()
            log.debug("database failure", exc_info=True)
            where = f" at {ctx.shown_url}" if ctx is not None else ""
            return _fail(f"the telemetry database{where} is unavailable: {one_line(exc)}", EXIT_FAILURE)
        except KeyboardInterrupt:
            return _fail("interrupted", 130)
        except Exception as exc:
            log.debug("command failed", exc_info=True)
            return _fail(f"{type(exc).__name__}: {one_line(exc)} (run again with -v for details)", EXIT_FAILURE)
        finally:
            if ctx is not None:
                try:
                    ctx.close()
                except Exception:  # closing a broken connection must not turn a result into a traceback
                    log.debug("closing the store failed", exc_info=True)
    handler.__name__ = body.__name__
    return handler


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    return code


def _stdout_closed() -> int:
    """The reader went away (`... | head`): stop quietly, and keep Python from complaining at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return EXIT_OK
