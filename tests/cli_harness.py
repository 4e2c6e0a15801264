"""`python -m telemetry ARGS` run in the test's own process, through the entry point `python -m telemetry` calls
(`telemetry.cli.main`): its exit status, and stdout/stderr as a process would have written them, with logging set
up as in a fresh process. The `cli` fixture (conftest.py) adds the environment and home folder of a process started
for the test; what only a real process shows is tested by starting one (test_cli_commands.py, test_fleet.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from telemetry.cli import main


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@contextmanager
def _fresh_process_logging() -> Iterator[None]:
    """Logging as `python -m telemetry` starts with (no root handler, so `main`'s basicConfig writes to this
    stderr, where a stray log line shows as it would), and this process's logging as it was afterwards."""
    root, pack = logging.getLogger(), logging.getLogger("run_telemetry")
    handlers, level, pack_level = root.handlers[:], root.level, pack.level
    for handler in handlers:
        root.removeHandler(handler)
    try:
        yield
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
            handler.close()
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        pack.setLevel(pack_level)


def _exit_status(code: object) -> int:
    """The status a process exits with for `raise SystemExit(code)`."""
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def run_main(argv: Sequence[str]) -> int:
    """`main(argv)` as `python -m telemetry` runs it: the status a process would exit with."""
    with _fresh_process_logging():
        try:
            code: object = main(list(argv))
        except SystemExit as exc:  # argparse: --help, usage errors
            code = exc.code
    return _exit_status(code)
