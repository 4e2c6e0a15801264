"""`python -m telemetry report`: the recent runs and their statistics, as a table or as JSON (`--json`).

The numbers are the REST routes' own: `TelemetryService.stats` (`/telemetry/stats`) and
`TelemetryService.list_runs` (`/telemetry/runs`) over the same filters.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..filters import MAX_LIMIT
from ..jsonsafe import json_safe
from .common import EXIT_OK, Context, add_database_options, command
from .dates import format_ms as format_time
from .filters import add_filter_options, filter_query
from .table import render_table

WORKFLOWS_SHOWN = 10


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "report", help="recent runs and their statistics, as a table or JSON",
        description="Print the statistics of the matching runs (counts by status, success rate, durations, GPU "
                    "peak, energy, the busiest workflows) and the newest runs, from the same code as "
                    "/telemetry/stats and /telemetry/runs.",
        epilog="example: python -m telemetry report --since 7d --status failed")
    add_filter_options(parser)
    parser.add_argument("--limit", type=_limit, default=20, help=f"recent runs listed, 1..{MAX_LIMIT} "
                                                                 "(default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object {filters, stats, runs, total}")
    add_database_options(parser)
    parser.set_defaults(handler=command(run_report))


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"must be an integer from 1 to {MAX_LIMIT}, got {text!r}")
    return value


def run_report(ctx: Context) -> int:
    query = filter_query(ctx.args)
    stats = ctx.service.stats(query)
    listing = ctx.service.list_runs({**query, "limit": str(ctx.args.limit), "count": "exact"})
    if ctx.args.json:
        out = {"database": ctx.shown_url, "filters": query, "stats": stats, "runs": listing["runs"],
               "total": listing["total"]}
        sys.stdout.write(json.dumps(json_safe(out), ensure_ascii=False, allow_nan=False, indent=2) + "\n")
    else:
        sys.stdout.write(render_report(ctx, stats, listing) + "\n")
    sys.stdout.flush()
    return EXIT_OK


def render_report(ctx: Context, stats: dict[str, Any], listing: dict[str, Any]) -> str:
    args = ctx.args
    scope = []
    if args.since is not None:
        scope.append(f"since {format_time(args.since)}")
    if args.until is not None:
        scope.append(f"until {format_time(args.until)}")
    lines = [f"Run Telemetry report, {ctx.shown_url}" + (f" ({', '.join(scope)})" if scope else "")]
    by_status = stats["by_status"]
    counts = ", ".join(f"{status} {n}" for status, n in by_status.items() if n)
    lines.append(f"runs: {stats['total_runs']}" + (f" ({counts})" if counts else "")
                 + f"; success rate {_percent(stats['success_rate'])}")
    lines.append(f"duration: avg {_duration(stats['avg_duration_ms'])}, p50 {_duration(stats['p50_duration_ms'])}, "
                 f"p95 {_duration(stats['p95_duration_ms'])}; max GPU peak {_bytes(stats['max_gpu_peak_bytes'])}; "
                 f"frames {stats['total_frames']}")
    if stats.get("total_energy_wh") is not None:
        cost = stats.get("total_cost")
        lines.append(f"energy: {stats['total_energy_wh']:.2f} Wh"
                     + (f", cost {cost:.4f} {stats.get('currency') or ''}".rstrip() if cost is not None else ""))
    if not stats["total_runs"]:
        lines.append("")
        lines.append("no runs match")
        return "\n".join(lines)
    workflows = stats["by_workflow"][:WORKFLOWS_SHOWN]
    lines += ["", f"workflows (busiest {len(workflows)} of {len(stats['by_workflow'])})",
              render_table(["workflow", "runs", "success", "avg duration", "frames"],
                           [[w["workflow_name"] or w["workflow"], w["runs"], _percent(w["success_rate"]),
                             _duration(w["avg_duration_ms"]), w["total_frames"]] for w in workflows],
                           right=frozenset({1, 2, 3, 4}))]
    runs = listing["runs"]
    lines += ["", f"recent runs (newest {len(runs)} of {listing['total']})",
              render_table(["started", "run", "status", "workflow", "duration", "queue wait", "GPU peak", "outputs",
                            "error"],
                           [_run_row(run) for run in runs], right=frozenset({4, 5, 6, 7}))]
    return "\n".join(lines)


def _run_row(run: dict[str, Any]) -> list[Any]:
    outputs = sum((run.get("output_counts") or {}).values())
    error = run.get("error") or {}
    problem = (f"{error.get('node_type') or ''} {error.get('exception_type') or ''}".strip()
               if error else run.get("interrupted_reason"))
    return [format_time(run.get("started_at_ms")), run["run_id"][:8], run["status"],
            run.get("workflow_name") or run.get("workflow_id"), _duration(run.get("duration_ms")),
            _duration(run.get("queue_wait_ms")), _bytes(run.get("gpu_peak_bytes")), outputs, problem]


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


def _duration(ms: float | None) -> str:
    if ms is None:
        return "-"
    from ..analysis.stats import format_ms  # numpy: imported when a report is printed, not for --help

    return f"{ms:.0f} ms" if ms < 1000 else format_ms(ms)


def _bytes(value: int | None) -> str:
    from ..analysis.stats import format_bytes

    return "-" if value is None else format_bytes(value)
