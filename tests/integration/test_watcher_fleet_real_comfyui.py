"""The watcher for fleets against real ComfyUIs (each matrix leg: 0.3.75 reads /history, 0.8.0 /api/jobs).

- The watcher is killed (SIGKILL), prompts run with nobody watching, the watcher is restarted: every run of
  ComfyUI's /history is stored exactly once, and the restarted watcher writes only the runs it had not stored.
- Two ComfyUIs in one watcher process: each run is filed under its own ComfyUI's instance; one ComfyUI is stopped
  (the other keeps being recorded), /telemetry/health shows it reconnecting with the next try, and when it is
  started again the watcher reconnects and records its new runs.
"""

from __future__ import annotations

import time

import pytest
from comfy_harness import image_workflow
from watcher_process import WatcherProcess

from telemetry.store.database import sqlite_url
from telemetry.store.store import Store
from telemetry.watch.app import default_instance
from telemetry.watch.watcher import STALE_REASON

pytestmark = pytest.mark.comfyui


def _expected_api(tree) -> str:
    """/api/jobs came with 0.8.0 (docs/comfyui-integration.md); 0.3.75 answers 404."""
    version = tuple(int(p) for p in tree.version.split(".")[:3] if p.isdigit())
    return "jobs" if version >= (0, 8, 0) else "history"


def _stored_final(db_path) -> set[str]:
    store = Store(sqlite_url(str(db_path)))
    try:
        store.open()
        with store.bound():
            from telemetry.store.schema import RunRow

            return {r.run_id for r in RunRow.select(RunRow.run_id, RunRow.status, RunRow.interrupted_reason)
                    if r.status != "running" and r.interrupted_reason != STALE_REASON}
    finally:
        store.close()


def _wait(check, what: str, proc: WatcherProcess, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"never: {what}\n{proc.log()}")


def _comfyui(health: dict, url: str) -> dict:
    return next(c for c in health["hooks"]["comfyuis"] if c["comfyui_url"] == url)


def test_a_killed_watcher_restarted_records_every_run_once(comfy_factory, comfy_tree, tmp_path):
    comfy = comfy_factory().start()
    first = WatcherProcess(comfy.url, tmp_path)
    try:
        watched = [comfy.submit(image_workflow(prefix=f"f-before-{i}", color=50 + i)) for i in range(2)]
        for pid in watched:
            first.run(pid)
        assert first.health()["hooks"]["history_api"] == _expected_api(comfy_tree)
    finally:
        first.process.kill()  # no flush, no goodbye
        first.process.wait(10)

    missed = [comfy.submit(image_workflow(prefix=f"f-missed-{i}", color=60 + i)) for i in range(5)]
    for pid in missed:
        comfy.wait_history(pid)
    stored_before = _stored_final(first.db)
    history = comfy.get("/history")
    assert set(watched) <= stored_before and set(missed) <= set(history)

    second = WatcherProcess(comfy.url, tmp_path)
    try:
        for pid in missed:
            assert second.run(pid)["status"] == "success"
        listed = second.server.get("/telemetry/runs?limit=500")
        ids = [r["run_id"] for r in listed["runs"]]
        assert sorted(ids) == sorted(history), "every run of ComfyUI's history, once"
        assert listed["total"] == len(history)
        health = second.health()
        assert health["recorder"]["stored"] == len(set(history) - stored_before), "no stored run written again"
        assert health["hooks"]["caught_up"] == len(set(history) - stored_before)
        assert health["hooks"]["cursor"]["known_runs"] == len(history)
        assert health["hooks"]["history_api"] == _expected_api(comfy_tree)
        assert {r["status"] for r in listed["runs"]} == {"success"}
    finally:
        assert second.stop() == 0
    assert "Traceback" not in second.log()


def test_two_comfyuis_in_one_watcher_one_stopped_and_started_again(comfy_factory, tmp_path):
    a = comfy_factory().start()
    b = comfy_factory().start()
    watcher = WatcherProcess(a.url, tmp_path, "--comfyui", b.url, "--backoff-max", "2")
    name_a, name_b = default_instance(a.url), default_instance(b.url)
    try:
        on_a = a.submit(image_workflow(prefix="fleet-a", color=71))
        on_b = b.submit(image_workflow(prefix="fleet-b", color=72))
        assert watcher.run(on_a)["instance"] == name_a
        assert watcher.run(on_b)["instance"] == name_b
        health = watcher.health()
        assert [c["instance"] for c in health["hooks"]["comfyuis"]] == [name_a, name_b]
        assert all(c["state"] == "connected" for c in health["hooks"]["comfyuis"])

        a.stop()
        down = _wait(lambda: (c := _comfyui(watcher.health(), a.url))["state"] == "reconnecting"
                     and c["retries"] >= 2 and c, "ComfyUI a reported reconnecting", watcher)
        assert down["connected"] is False and down["reconnecting_since_ms"] <= down["next_try_at_ms"]
        assert watcher.health()["hooks"]["connected"] is False  # not the whole fleet

        while_down = b.submit(image_workflow(prefix="fleet-b-alone", color=73))  # b is still recorded
        assert watcher.run(while_down)["instance"] == name_b
        assert _comfyui(watcher.health(), b.url)["state"] == "connected"

        again = comfy_factory(base_dir=a.base_dir, port=a.port).start()
        try:
            _wait(lambda: _comfyui(watcher.health(), a.url)["state"] == "connected", "a reconnected", watcher)
            after = again.submit(image_workflow(prefix="fleet-a-back", color=74))
            run = watcher.run(after, timeout=60)
            assert run["status"] == "success" and run["instance"] == name_a
            back = _comfyui(watcher.health(), a.url)
            assert back["retries"] == 0 and back["reconnecting_since_ms"] is None and back["next_try_at_ms"] is None
            log = watcher.log()
            assert log.count(f"ComfyUI at {a.url} is unreachable") == 1, "one line per state change, not per try"
            assert log.count(f"ComfyUI at {a.url} is reachable") == 2
            assert f"ComfyUI at {b.url} is unreachable" not in log
            runs = watcher.server.get("/telemetry/runs?limit=50")["runs"]
            assert sorted((r["instance"], r["run_id"]) for r in runs) == sorted(
                [(name_a, on_a), (name_b, on_b), (name_b, while_down), (name_a, after)])
        finally:
            again.stop(kill=True)
    finally:
        assert watcher.stop() == 0
    assert "Traceback" not in watcher.log()
