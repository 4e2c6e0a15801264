"""Processes that a test only waits for, started as soon as collection is over (conftest.py's
`pytest_collection_finish`), so that they run beside the tests before theirs, on the machine's other core, instead
of in line: a process that imports torch takes seconds, and does nothing the other tests could see.

A test module lists them in `EARLY_PROCESSES = {"test_name": make}`, where `make()` returns (argv, Popen keyword
arguments), or a list of them (processes that run at once); a parametrized test's `make` takes its parameters
(`make(**callspec.params)`), one start per case, keyed by the case's name (`request.node.name`). The test calls
`finished(name, make)` (its parameters bound: functools.partial), which
also starts them when they were not started early (the test run alone, or asked by node id), and returns one
CompletedProcess, or a list in the same order."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

Spec = Callable[[], Any]  # () -> (argv, kwargs) or [(argv, kwargs), ...]
_started: dict[str, tuple[list[tuple[subprocess.Popen, list[str], dict[str, Any]]], bool]] = {}


def start(key: str, make: Spec) -> None:
    if key in _started:
        return
    specs = make()
    many = isinstance(specs, list)
    processes = []
    for argv, kwargs in specs if many else [specs]:
        processes.append((subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, text=True, **kwargs), argv, kwargs))
    _started[key] = (processes, many)


def finished(key: str, make: Spec, timeout: float = 120) -> Any:
    """The processes of `key` (started now if they were not), once they have exited; each CompletedProcess has
    the Popen keyword arguments it was started with as `.kwargs` (its env, its cwd)."""
    start(key, make)
    processes, many = _started.pop(key)
    done = []
    try:
        for process, argv, kwargs in processes:
            out, err = process.communicate(timeout=timeout)
            done.append(subprocess.CompletedProcess(argv, process.returncode, out, err))
            done[-1].kwargs = kwargs
    finally:
        _kill(processes)
    return done if many else done[0]


def _kill(processes: list[tuple[subprocess.Popen, list[str], dict[str, Any]]]) -> None:
    for process, _, _ in processes:
        if process.poll() is None:
            process.kill()
            process.communicate()


def stop_all() -> None:
    """Processes no test waited for (the session stopped early: -x, a keyboard interrupt)."""
    while _started:
        _, (processes, _) = _started.popitem()
        _kill(processes)
