"""`python -m telemetry export`: every matching run as CSV or JSON Lines, to stdout or a file.

The rows and their formatting are the REST export's (`TelemetryService.export_chunks`, `/telemetry/export`):
the same columns, the same JSON per run. A file is written beside its target and moved into place once complete,
so a failed export never leaves a truncated file under the name asked for. A progress bar goes to stderr when
stderr is a terminal and the data does not go to that terminal itself.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from ..filters import SORTS
from .common import EXIT_OK, CommandError, Context, add_database_options, command
from .filters import add_filter_options, filter_query
from .progress import ProgressBar, watched


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "export", help="export runs as CSV or JSON Lines",
        description="Write every matching run, newest first, in the format of /telemetry/export: CSV (one row "
                    "per run, its parameters and GPUs as JSON cells) or JSON Lines (one run object per line).",
        epilog="example: python -m telemetry export --format csv --since 30d --out runs.csv")
    parser.add_argument("--format", choices=("csv", "jsonl"), default="jsonl",
                        help="csv or jsonl (default: %(default)s)")
    parser.add_argument("--out", default=None, metavar="FILE", help="write here instead of stdout (replaced when "
                                                                    "the export is complete)")
    parser.add_argument("--sort", choices=SORTS, default=None, help="order of the runs (default: -started_at_ms)")
    add_filter_options(parser)
    add_database_options(parser)
    parser.set_defaults(handler=command(run_export))


def run_export(ctx: Context) -> int:
    args = ctx.args
    query = filter_query(args)
    if args.sort:
        query["sort"] = args.sort
    bar = None
    if watched(sys.stderr) and (args.out or not watched(sys.stdout)):
        bar = ProgressBar(ctx.service.list_runs({**query, "limit": "1", "count": "exact"})["total"], "export")
    exported = [0]

    def on_run() -> None:
        exported[0] += 1
        if bar is not None:
            bar.advance()

    chunks = ctx.service.export_chunks(query, args.format, on_run=on_run)
    try:
        first = next(chunks, None)  # a database failure ends here, before any file is touched
        if args.out:
            _to_file(args.out, first, chunks)
        else:
            _to_stdout(first, chunks)
    finally:
        if bar is not None:
            bar.finish()  # also before an error line, so that it starts a line of its own
    if args.out:
        sys.stderr.write(f"exported {exported[0]} runs to {args.out}\n")
    return EXIT_OK


def _to_stdout(first, chunks) -> None:
    out = sys.stdout.buffer
    for chunk in _all(first, chunks):
        out.write(chunk.encode("utf-8"))
    out.flush()


def _to_file(path: str, first, chunks) -> None:
    target = os.path.abspath(path)
    folder = os.path.dirname(target)
    if os.path.isdir(target):
        raise CommandError(f"--out {path}: is a folder; name a file", 2)
    try:
        handle, temp = tempfile.mkstemp(prefix=".telemetry-export-", suffix=".part", dir=folder)
    except OSError as exc:
        raise CommandError(f"--out {path}: cannot write there: {exc.strerror or exc}") from None
    try:
        try:
            with os.fdopen(handle, "wb") as out:
                for chunk in _all(first, chunks):  # database errors are not OSError: they pass as they are
                    out.write(chunk.encode("utf-8"))
            os.chmod(temp, 0o666 & ~_umask())
            os.replace(temp, target)
        except OSError as exc:
            raise CommandError(f"--out {path}: writing failed: {exc.strerror or exc}") from None
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


def _all(first, chunks):
    if first is not None:
        yield first
        yield from chunks


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
