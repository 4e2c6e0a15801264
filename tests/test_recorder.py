"""The recorder never blocks the worker, buffers through database outages, and counts what it cannot keep."""

from __future__ import annotations

import sqlite3
import time

from telemetry.model import Run
from telemetry.recorder import Recorder
from telemetry.store.database import sqlite_url
from telemetry.store.store import Store


def _wait(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_runs_are_written_and_listeners_told(tmp_path):
    store = Store(sqlite_url(str(tmp_path / "r.db")))
    recorder = Recorder(store, instance="t:1")
    seen = []
    recorder.add_listener(lambda run: seen.append(run.run_id))
    recorder.start()
    for i in range(20):
        assert recorder.submit(lambda i=i: [Run(f"run{i}", "success", started_at_ms=i)])
    assert recorder.flush()
    assert len(seen) == 20 and recorder.health()["stored"] == 20
    recorder.stop()


def test_a_locked_database_buffers_and_catches_up(tmp_path, monkeypatch):
    from telemetry.store import database

    monkeypatch.setitem(database.SQLITE_PRAGMAS, "busy_timeout", 100)  # every pooled connection, the writer's too
    path = tmp_path / "locked.db"
    store = Store(sqlite_url(str(path)))
    store.open()
    recorder = Recorder(store, instance="t:1", retry_initial_s=0.1, retry_max_s=0.2)
    recorder.start()
    recorder.submit(lambda: [Run("first", "success")])
    assert recorder.flush()
    lock = sqlite3.connect(path, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    recorder.submit(lambda: [Run("during", "success")])
    assert _wait(lambda: recorder.health()["write_failures"] >= 1, timeout=30)
    assert recorder.health()["buffered"] == 1
    lock.execute("ROLLBACK")
    lock.close()
    assert _wait(lambda: recorder.health()["stored"] == 2, timeout=30)
    assert recorder.health()["dropped"] == 0
    recorder.stop()


def test_overflow_is_counted_never_silent(tmp_path):
    store = Store("sqlite:////nonexistent-dir/\0bad.db")  # cannot be opened
    recorder = Recorder(store, instance="t:1", queue_max=2, buffer_max=3, retry_initial_s=60)
    accepted = [recorder.submit(lambda i=i: [Run(f"r{i}", "success")]) for i in range(4)]
    assert accepted == [True, True, False, False]  # the worker is never blocked
    recorder.start()
    for i in range(4, 8):  # one at a time, each taken before the next: the queue's own bound is tested above
        assert _wait(lambda: recorder.health()["queue_depth"] == 0)
        recorder.submit(lambda i=i: [Run(f"r{i}", "success")])
    assert _wait(lambda: recorder.health()["queue_depth"] == 0)
    health = recorder.health()
    assert health["buffered"] == 3
    assert health["dropped"] == 2 + (6 - 3)
    assert set(health["dropped_reasons"]) == {"queue full (run)", "buffer full while the database was unavailable"}
    assert health["database_ready"] is False and health["last_error"]


def test_a_job_that_raises_is_counted(tmp_path):
    recorder = Recorder(Store(sqlite_url(str(tmp_path / "x.db"))), instance=None)
    recorder.start()
    recorder.submit(lambda: 1 / 0)
    assert recorder.flush()
    assert recorder.health()["build_failures"] == 1 and recorder.health()["dropped"] == 1
    recorder.stop()


def test_one_unstorable_run_does_not_hold_back_the_others(tmp_path):
    class PickyStore(Store):
        def save_runs(self, runs):
            if any(r.run_id == "poison" for r in runs):
                raise ValueError("value out of range")
            super().save_runs(runs)

    store = PickyStore(sqlite_url(str(tmp_path / "p.db")))
    recorder = Recorder(store, instance=None, retry_initial_s=60)
    recorder.submit(lambda: [Run("good1", "success"), Run("poison", "success"), Run("good2", "success")])
    recorder.start()
    assert recorder.flush()
    health = recorder.health()
    assert health["stored"] == 2 and health["buffered"] == 0 and health["dropped"] == 1
    assert "the database refused the run: ValueError" in health["dropped_reasons"]
    assert store.run_exists("good2")
    recorder.stop()


def test_odd_values_are_stored_not_rejected(tmp_path):
    from telemetry.model import NodeRun

    store = Store(sqlite_url(str(tmp_path / "odd.db")))
    store.open()
    run = Run("x" * 300, "success", gpu_peak_bytes=1 << 70, parameters={"pixels": 10**40, "steps": 1 << 40},
              nodes=[NodeRun("1", "N" * 1000, "executed")])
    store.save_runs([run])
    stored = store.get_run("x" * 128)
    assert stored.gpu_peak_bytes is None and len(stored.nodes[0].class_type) == 256
    assert stored.parameters["pixels"] == 10**40  # the JSON keeps the original value


def test_a_finished_run_is_committed_at_once_while_comfyui_stays_busy(tmp_path):
    """Durable at once: a busy queue never holds a finished run back; only its start record and analysis wait."""
    busy = {"on": True}
    store = Store(sqlite_url(str(tmp_path / "d.db")))
    recorder = Recorder(store, instance=None, busy=lambda: busy["on"])
    written, analysed = [], []
    recorder.add_listener(lambda run: written.append((run.run_id, run.status)))
    recorder.add_listener(lambda run: analysed.append(run.run_id), when_idle=True)
    recorder.start()
    # Start records may wait for an idle ComfyUI (here: far longer than the test), the final record may not.
    recorder.submit(lambda: [Run("long", "running")], max_delay_s=600, key="start:long", wake=False)
    recorder.submit(lambda: [Run("short", "running")], max_delay_s=600, key="start:short", wake=False)
    recorder.submit(lambda: [Run("short", "success")], replaces="start:short", wake=False)
    assert _wait(lambda: ("short", "success") in written, timeout=5)
    other = Store(sqlite_url(str(tmp_path / "d.db")))  # what a process opening the file after a kill sees
    assert other.get_run("short").status == "success" and not other.run_exists("long")
    assert written == [("short", "success")]  # its start record superseded; the other start still held
    assert analysed == [] and recorder.health()["deferred"] == 2  # the start record and the analysis wait
    busy["on"] = False
    assert recorder.flush()
    assert ("long", "running") in written and other.get_run("long").status == "running"
    assert analysed == ["short", "long"]
    other.close()
    recorder.stop()


def test_two_stores_in_one_process_stay_apart(tmp_path):
    a, b = Store(sqlite_url(str(tmp_path / "a.db"))), Store(sqlite_url(str(tmp_path / "b.db")))
    ra, rb = Recorder(a, instance="a"), Recorder(b, instance="b")
    ra.start()
    rb.start()
    for i in range(10):
        ra.submit(lambda i=i: [Run(f"a{i}", "success", started_at_ms=i)])
        rb.submit(lambda i=i: [Run(f"b{i}", "success", started_at_ms=i)])
    assert ra.flush() and rb.flush()
    a.save_preset("only in a", {})
    from telemetry.filters import Page, parse_run_filters

    ids_a = {r.run_id for r in a.query_runs(parse_run_filters({}), Page(limit=100))[0]}
    ids_b = {r.run_id for r in b.query_runs(parse_run_filters({}), Page(limit=100))[0]}
    assert ids_a == {f"a{i}" for i in range(10)} and ids_b == {f"b{i}" for i in range(10)}
    assert [p.name for p in a.list_presets()] == ["only in a"] and b.list_presets() == []
    assert b.executor.submit(b.run_exists, "a1").result() is False  # b's REST pool reads b
    assert a.executor.submit(a.run_exists, "a1").result() is True
    ra.stop()
    rb.stop()
    a.shutdown()
    b.shutdown()


def test_retention_prunes_in_batches_between_writes(tmp_path):
    store = Store(sqlite_url(str(tmp_path / "ret.db")))
    store.open()
    store.save_runs([Run(f"old{i}", "success", started_at_ms=i) for i in range(300)])
    recorder = Recorder(store, instance=None, retention=(None, 50))
    recorder.start()
    recorder.submit(lambda: [Run("new", "success", started_at_ms=10**13)])
    assert _wait(lambda: recorder.health()["retention_deleted"] == 251, timeout=10)
    assert store.run_exists("new") and not store.run_exists("old0") and store.run_exists("old299")
    recorder.stop()


def test_work_handed_over_quietly_is_taken_on_the_next_tick(tmp_path):
    store = Store(sqlite_url(str(tmp_path / "q.db")))
    recorder = Recorder(store, instance=None)
    recorder.start()
    assert recorder.submit(lambda: [Run("quiet", "success")], wake=False)
    assert _wait(lambda: recorder.health()["stored"] == 1, timeout=5)
    assert recorder.submit(lambda: [Run("quiet2", "success")], wake=False)
    assert recorder.flush() and store.run_exists("quiet2")
    assert recorder._thread.is_alive() and recorder.health()["last_error"] is None
    recorder.stop()


def test_the_hand_off_is_bounded_and_only_wakes_when_asked():
    from telemetry.recorder.handoff import HandOff, Work

    class Wake:  # the recorder thread's event, recording what the hand-off asks of it
        def __init__(self) -> None:
            self.calls: list[tuple] = []

        def set(self) -> None:
            self.calls.append(("set",))

        def clear(self) -> None:
            self.calls.append(("clear",))

        def wait(self, timeout: float) -> bool:
            self.calls.append(("wait", timeout))
            return False

    handoff = HandOff(max_items=2)
    wake = handoff._wake = Wake()
    work = Work(lambda: [], 0.0, None, None)
    assert handoff.put(work) and handoff.put(work, wake=True) and not handoff.put(work, wake=True)
    assert wake.calls == [("set",)]  # only the put that asked, and not the refused one
    wake.calls.clear()
    handoff.wait(0.2)  # items waiting: no sleep
    assert wake.calls == [("clear",)] and len(handoff.take_all()) == 2 and len(handoff) == 0
    wake.calls.clear()
    handoff.wait(0.2)  # nothing handed over: sleeps the tick (or until woken)
    assert wake.calls == [("wait", 0.2), ("clear",)]


def test_the_schedule_holds_work_while_busy_until_its_deadline_and_drops_superseded_work():
    from telemetry.recorder.schedule import Scheduler

    busy = {"on": True}
    schedule = Scheduler(lambda: busy["on"])
    schedule.defer("start a", 0.1, key="start:a")
    schedule.defer("start b", 0.1, key="start:b")
    schedule.defer("analysis", 30)
    assert schedule.release() == []
    assert schedule.cancel("start:b") == 1
    time.sleep(0.12)
    assert schedule.release() == ["start a"]  # due while busy
    assert schedule.release() == []
    busy["on"] = False
    assert schedule.release() == ["analysis"] and len(schedule) == 0
    broken = Scheduler(lambda: 1 / 0)
    broken.defer("x", 30)
    assert broken.release() == ["x"]  # a probe that fails counts as idle
