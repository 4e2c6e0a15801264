"""Two ComfyUI processes on one SQLite file: a start closes the runs of processes that are gone, never the
running runs of one that is alive (real processes holding real locks)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from telemetry.model import Run
from telemetry.store.database import sqlite_url
from telemetry.store.instance_liveness import close_runs_of_dead_processes
from telemetry.store.store import Store

REPO = Path(__file__).resolve().parents[1]


def _hold_lock_in_another_process(db_path: Path, instance: str) -> subprocess.Popen:
    code = ("import sys, time; from telemetry.store.instance_liveness import hold_instance_lock; "
            f"assert hold_instance_lock({str(db_path)!r}, 'plugin', {instance!r}); print('held', flush=True); "
            "time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_start_closes_the_runs_of_dead_processes_and_leaves_a_live_ones_alone(tmp_path):
    path = tmp_path / "shared.db"
    store = Store(sqlite_url(str(path)))
    store.open()
    try:
        store.save_runs([Run("alive-run", "running", instance="alive"), Run("dead-run", "running", instance="dead"),
                         Run("own-run", "running", instance="me")])
        alive = _hold_lock_in_another_process(path, "alive")
        try:
            closed = close_runs_of_dead_processes(store, "me", "crashed", "plugin")
            assert sorted(closed) == ["dead-run", "own-run"]
            assert store.get_run("alive-run").status == "running"
        finally:
            alive.kill()
            alive.wait()
        time.sleep(0.1)
        # Once the other process is gone (killed: the kernel let its lock go), a later start closes its run.
        assert close_runs_of_dead_processes(store, "me", "crashed", "plugin") == ["alive-run"]
        assert store.get_run("alive-run").status == "interrupted"
        assert oct((path.parent / "shared.db.instances").stat().st_mode & 0o777) == "0o700"
    finally:
        store.shutdown()


def test_a_second_live_process_under_the_same_name_does_not_close_the_first_ones_run(tmp_path):
    path = tmp_path / "shared.db"
    store = Store(sqlite_url(str(path)))
    store.open()
    twin = _hold_lock_in_another_process(path, "same")
    try:
        store.save_runs([Run("twin-run", "running", instance="same")])
        assert close_runs_of_dead_processes(store, "same", "crashed", "plugin") == []
        assert store.get_run("twin-run").status == "running"
    finally:
        twin.kill()
        twin.wait()
        store.shutdown()
