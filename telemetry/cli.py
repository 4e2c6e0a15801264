"""`python -m telemetry ...`: command-line entry points.

    python -m telemetry watch --comfyui http://127.0.0.1:8188 [--database-url URL] [--serve 127.0.0.1:8190]
                              [--interval 1.0] [--instance NAME]
    python -m telemetry serve [--listen HOST:PORT] [--database-url URL] [--token T]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from . import __version__


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m telemetry", description="Run Telemetry command line")
    parser.add_argument("--version", action="version", version=f"run-telemetry {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    watch = commands.add_parser(
        "watch", help="record the runs of a ComfyUI the pack is not installed in (polls its API)",
        description="Watch a ComfyUI through its HTTP and websocket API and record every run, like the plugin "
                    "does in-process (without per-node timing and GPU figures, which exist only in-process).")
    watch.add_argument("--comfyui", action="append", default=None, metavar="[NAME=]URL",
                       help="ComfyUI's base URL; repeat it (or give a comma list) to watch a fleet in one process, "
                            "each as instance NAME (default: its host:port) (default: TELEMETRY_COMFYUI_URL, a "
                            "comma list, else http://127.0.0.1:8188)")
    watch.add_argument("--database-url", default=None,
                       help="sqlite:///path or postgresql://... (default: TELEMETRY_DATABASE_URL, else SQLite at "
                            "~/.run_telemetry/telemetry.db)")
    watch.add_argument("--serve", default=None, metavar="HOST:PORT",
                       help="also serve the /telemetry REST routes here, e.g. 127.0.0.1:8190")
    watch.add_argument("--interval", type=_positive_float, default=1.0,
                       help="seconds between /queue polls (default: %(default)s)")
    watch.add_argument("--instance", default=None,
                       help="instance name stored with each run (default: <hostname>:<port>, as the plugin does); "
                            "only with one --comfyui (name the ComfyUIs of a fleet NAME=URL)")
    watch.add_argument("--history-items", type=_positive_int, default=32,
                       help="history entries read per look (default: %(default)s)")
    watch.add_argument("--backfill", type=_positive_int, default=200,
                       help="history entries read at start to record runs missed while not watching "
                            "(default: %(default)s)")
    watch.add_argument("--no-websocket", action="store_true", help="poll only; do not open /ws")
    watch.add_argument("--backoff-max", type=_positive_float, default=30.0, metavar="SECONDS",
                       help="longest wait between attempts to reach a ComfyUI that is down (from 1 s, doubling, "
                            "with jitter; default: %(default)s)")
    watch.add_argument("--data-dir", default=None,
                       help="where the default SQLite file and config.json live (default: ~/.run_telemetry)")
    watch.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    serve = commands.add_parser(
        "serve", help="serve the REST routes and the panel as a web page over any telemetry database",
        description="Serve /telemetry/* and the Telemetry panel as a standalone page (http://HOST:PORT/) over a "
                    "telemetry database, read-only (nothing is recorded). Beyond loopback a token is required; "
                    "every request then needs 'Authorization: Bearer TOKEN' and the page asks for it once.")
    serve.add_argument("--listen", default="127.0.0.1:8190", metavar="HOST:PORT",
                       help="address to serve on (default: %(default)s)")
    serve.add_argument("--database-url", default=None,
                       help="sqlite:///path or postgresql://... (default: TELEMETRY_DATABASE_URL, else SQLite at "
                            "~/.run_telemetry/telemetry.db)")
    serve.add_argument("--token", default=None,
                       help="bearer token every request must carry (default: TELEMETRY_TOKEN); required beyond "
                            "loopback, at least 8 characters")
    serve.add_argument("--data-dir", default=None,
                       help="where the default SQLite file and config.json live (default: ~/.run_telemetry)")
    serve.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    from .commands import register_commands

    register_commands(commands)  # report, export, prune, doctor: telemetry/commands/
    return parser


def watch_options(args: argparse.Namespace):
    from .watch.app import DEFAULT_DATA_DIR, WatchOptions, split_urls

    urls = split_urls(args.comfyui) or split_urls(os.environ.get("TELEMETRY_COMFYUI_URL")) or [
        "http://127.0.0.1:8188"]
    return WatchOptions(comfyui_url=urls[0], comfyui_urls=urls, database_url=args.database_url, serve=args.serve,
                        interval_s=args.interval, instance=args.instance, history_items=args.history_items,
                        backfill_items=args.backfill, websocket=not args.no_websocket,
                        backoff_max_s=args.backoff_max,
                        data_dir=os.path.expanduser(args.data_dir) if args.data_dir else DEFAULT_DATA_DIR)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "watch":
        from .watch.app import UsageError, resolve_targets, run_watch

        try:
            resolve_targets(watch_options(args))
        except UsageError as exc:
            sys.stderr.write(f"error: {exc}\n")  # a usage error, before logging is of any use
            return 2
        try:
            return asyncio.run(run_watch(watch_options(args)))
        except KeyboardInterrupt:
            return 0
    if args.command == "serve":
        return _serve(args)
    if getattr(args, "handler", None) is not None:
        return args.handler(args)
    return 2


def _serve(args: argparse.Namespace) -> int:
    from .serve import DEFAULT_DATA_DIR, ServeOptions, UsageError, check_options, run_serve

    options = ServeOptions(listen=args.listen, database_url=args.database_url, token=args.token,
                           data_dir=os.path.expanduser(args.data_dir) if args.data_dir else DEFAULT_DATA_DIR)
    try:
        check_options(options)
    except UsageError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    try:
        return asyncio.run(run_serve(options))
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        sys.stderr.write(f"error: cannot serve on {args.listen}: {exc}\n")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
