"""The run filters every command takes, turned into the query the REST routes parse (`filters.parse_run_filters`),
so a command and `/telemetry/runs?...` select the same runs."""

from __future__ import annotations

import argparse
from typing import Any

from .dates import FORMS, when_argument


def add_filter_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", type=when_argument, default=None, metavar="WHEN",
                        help=f"runs that started at or after WHEN: {FORMS}")
    parser.add_argument("--until", type=when_argument, default=None, metavar="WHEN",
                        help="runs that started at or before WHEN (same forms)")
    parser.add_argument("--status", default=None,
                        help="a comma list of success,failed,interrupted,running")
    parser.add_argument("--workflow", default=None, help="a workflow id, name or fingerprint")
    parser.add_argument("--instance", default=None, help="only the runs of this instance (fleets)")
    parser.add_argument("--label", default=None, help="a story title, scene or tag")
    parser.add_argument("-q", "--query", dest="q", default=None, help="text in the name, run id, error or labels")


def filter_query(args: argparse.Namespace) -> dict[str, Any]:
    """The options as a REST query (`since_ms`, `until_ms`, `status`, ...), the unset ones left out."""
    query: dict[str, Any] = {"since_ms": args.since, "until_ms": args.until, "status": args.status,
                             "workflow": args.workflow, "instance": args.instance, "label": args.label, "q": args.q}
    return {key: str(value) for key, value in query.items() if value is not None}
