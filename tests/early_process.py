"""Processes that a test only waits for, started as soon as collection is over (conftest.py's
`pytest_collection_finish`), so that they run beside the tests before theirs, on the machine's other core, instead
of in line: a process that imports torch takes seconds, and does nothing the other tests could see.

A test module lists them in `EARLY_PROCESSES = {"test_name": make}`, where `make()` returns (argv, Popen keyword
arguments); the test calls `finished("test_name", make)`, which also starts it when it was not started early (the test
run alone, or asked by node id)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

Spec = Callable[[], "tuple[list[str], dict[str, Any]]"]
_started: dict[str, tuple[subprocess.Popen, list[str]]] = {}


def start(key: str, make: Spec) -> None:
    if key in _started:
        return
    argv, kwargs = make()
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, **kwargs)
    _started[key] = (process, argv)


def finished(key: str, make: Spec, timeout: float = 120) -> subprocess.CompletedProcess:
    """The process of `key` (started now if it was not), once it has exited."""
    start(key, make)
    process, argv = _started.pop(key)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    return subprocess.CompletedProcess(argv, process.returncode, out, err)


def stop_all() -> None:
    """Processes no test waited for (the session stopped early: -x, a keyboard interrupt)."""
    while _started:
        _, (process, _) = _started.popitem()
        process.kill()
        process.communicate()
