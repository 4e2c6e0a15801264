"""The database commands of `python -m telemetry` (`report`, `export`, `prune`, `doctor`), one module each.
`cli.py` registers them with `register_commands`; each sets `handler` on its parser (`common.command`)."""

from __future__ import annotations

import argparse


def register_commands(commands: argparse._SubParsersAction) -> None:
    from . import doctor, export, prune, report

    for module in (report, export, prune, doctor):
        module.register(commands)
