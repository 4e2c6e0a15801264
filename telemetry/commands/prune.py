"""`python -m telemetry prune`: delete old runs, by age (`--before`) and/or count (`--keep N`).

A dry run unless `--yes`: it says how many runs would go and the oldest and newest of them. With `--yes` the
runs go through the store's own prune (`TelemetryService.prune_runs`, as `DELETE /telemetry/runs`): in short
timed batches, so a recording ComfyUI keeps writing between them, and never a run still executing.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .common import EXIT_OK, EXIT_USAGE, CommandError, Context, add_database_options, command
from .dates import FORMS, format_ms, when_argument


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "prune", help="delete old runs (a dry run unless --yes)",
        description="Delete the finished runs that started before --before and/or all but the newest --keep runs, "
                    "with their nodes, outputs and samples. Without --yes nothing is deleted: it prints what "
                    "would be. Running runs are always kept.",
        epilog="example: python -m telemetry prune --before 90d, and once its list is right, again with --yes")
    parser.add_argument("--before", type=when_argument, default=None, metavar="WHEN",
                        help=f"delete the runs that started before WHEN: {FORMS}")
    parser.add_argument("--keep", type=_count, default=None, metavar="N", help="keep only the newest N runs")
    parser.add_argument("--yes", action="store_true", help="really delete (default: a dry run)")
    add_database_options(parser)
    parser.set_defaults(handler=command(run_prune))


def _count(text: str) -> int:
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"must be a whole number 0 or more, got {text!r}")
    return int(text)


def run_prune(ctx: Context) -> int:
    args = ctx.args
    if args.before is None and args.keep is None:
        raise CommandError("say which runs to delete: --before WHEN and/or --keep N", EXIT_USAGE)
    query = {key: str(value) for key, value in (("before_ms", args.before), ("keep", args.keep)) if value is not None}
    preview = ctx.service.prune_preview(query)
    out = sys.stdout
    out.write(f"{ctx.shown_url}: {preview['total_runs']} runs stored\n")
    out.write(("to delete: " if args.yes else "would delete: ") + _describe(preview) + "\n")
    if not args.yes:
        out.write("dry run: nothing was deleted; run again with --yes to delete them\n"
                  if preview["runs"] else "nothing to delete\n")
        return EXIT_OK
    result = ctx.service.prune_runs(query)
    remaining = ctx.store.count_runs()
    out.write(f"deleted {result['deleted']} runs; {remaining} remain\n")
    return EXIT_OK


def _describe(preview: dict[str, Any]) -> str:
    rules = []
    if preview["before_ms"] is not None:
        rules.append(f"started before {format_ms(preview['before_ms'])}")
    if preview["keep"] is not None:
        rules.append(f"beyond the newest {preview['keep']}")
    text = f"{preview['runs']} finished runs {' or '.join(rules)}"
    if preview["runs"]:
        oldest, newest = preview["oldest_started_at_ms"], preview["newest_started_at_ms"]
        span = f"oldest {format_ms(oldest)}, newest {format_ms(newest)}"
        if preview["without_start"]:
            span += f", {preview['without_start']} without a start time"
        text += f" ({span})"
    return text + "; running runs are kept"
