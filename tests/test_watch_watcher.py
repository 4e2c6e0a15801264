"""The watcher's logic on the recorded real ComfyUI 0.3.75 responses (`tests/fixtures`), with the network edge
(`ComfyClient`) replaced by a fake that serves those responses, and the real Recorder and Store on SQLite."""

from __future__ import annotations

import asyncio
import copy
import logging
import uuid
from collections import OrderedDict

import pytest

from telemetry.collector import BuildContext, build_run
from telemetry.model import RunStatus
from telemetry.recorder import Recorder
from telemetry.store.database import sqlite_url
from telemetry.store.store import Store
from telemetry.watch.client import ComfyUnavailable
from telemetry.watch.watcher import MISSING_REASON, STALE_REASON, SeenSet, Watcher

INSTANCE = "watch-test:8188"
CONTEXT = BuildContext(instance=INSTANCE, source="watcher")


class FakeComfy:
    """Stands in for `ComfyClient`: answers from in-memory queue/history, like ComfyUI's routes do."""

    base_url = "http://comfy.test:8188"

    def __init__(self) -> None:
        self.client_id = "run-telemetry-watch-" + uuid.uuid4().hex
        self.running: list[list] = []
        self.pending: list[list] = []
        self.history_data: OrderedDict[str, dict] = OrderedDict()
        self.down = False
        self.calls: list[tuple] = []

    def _check(self) -> None:
        if self.down:
            raise ComfyUnavailable("GET /queue: ClientConnectorError: Connect call failed")

    async def queue(self) -> dict:
        self._check()
        self.calls.append(("queue",))
        return {"queue_running": copy.deepcopy(self.running), "queue_pending": copy.deepcopy(self.pending)}

    async def history(self, max_items: int) -> dict:
        self._check()
        self.calls.append(("history", max_items))
        return copy.deepcopy(OrderedDict(list(self.history_data.items())[-max_items:]))

    async def history_item(self, prompt_id: str) -> dict | None:
        self._check()
        self.calls.append(("history_item", prompt_id))
        return copy.deepcopy(self.history_data.get(prompt_id))

    async def system_stats(self) -> dict:
        self._check()
        return {"system": {"comfyui_version": "0.3.75"}}

    async def frames(self):
        self._check()
        await asyncio.sleep(3600)
        yield "status", {}

    async def close(self) -> None:
        return None

    # helpers for the tests
    def start(self, prompt_id: str, item: dict) -> None:
        self.running = [list(item["prompt"][:5])]

    def finish(self, prompt_id: str, item: dict) -> None:
        self.running = []
        self.history_data[prompt_id] = item


def _case(recorded_runs, name: str) -> tuple[str, dict]:
    case = next(c for c in recorded_runs["cases"] if c["case"] == name)
    ((prompt_id, item),) = case["history"].items()
    return prompt_id, copy.deepcopy(item)


@pytest.fixture
def store(tmp_path):
    s = Store(sqlite_url(str(tmp_path / "watch.db")))
    yield s
    s.close()


@pytest.fixture
def make_watcher(store):
    recorders: list[Recorder] = []

    def make(fake: FakeComfy | None = None, **kwargs) -> tuple[Watcher, FakeComfy]:
        recorder = Recorder(store, instance=INSTANCE, retry_initial_s=0.05, source="watcher",
                            stale_reason=STALE_REASON)
        recorder.start()
        recorders.append(recorder)
        fake = fake or FakeComfy()
        return Watcher(fake, recorder, CONTEXT, **kwargs), fake

    yield make
    for recorder in recorders:
        recorder.stop()


def poll(watcher: Watcher, times: int = 1) -> None:
    async def go() -> None:
        for _ in range(times):
            await watcher.poll_once()
    asyncio.run(go())
    assert watcher.recorder.flush(10)


def test_backfill_records_what_history_holds_through_the_shared_collector(recorded_runs, make_watcher, store):
    watcher, fake = make_watcher()
    fake.history_data.update(copy.deepcopy(recorded_runs["history_max3"]))
    poll(watcher)
    for prompt_id, item in recorded_runs["history_max3"].items():
        stored = store.get_run(prompt_id)
        expected = build_run(prompt_id, item, None, CONTEXT)
        assert stored.source == "watcher" and stored.instance == INSTANCE
        for key in ("status", "queued_at_ms", "started_at_ms", "finished_at_ms", "duration_ms", "queue_wait_ms",
                    "fingerprint", "workflow_id", "workflow_name", "node_count", "executed_node_count",
                    "cached_node_count", "output_counts", "frame_count", "interrupted_reason"):
            assert getattr(stored, key) == getattr(expected, key), key
        assert [(n.node_id, n.status) for n in stored.nodes] == [(n.node_id, n.status) for n in expected.nodes]
    assert {store.get_run(p).status for p in recorded_runs["history_max3"]} == {"failed", "interrupted", "success"}
    assert ("history", watcher.backfill_items) in fake.calls


@pytest.mark.parametrize("name, status, nodes", [
    ("success", "success", {"1": "executed", "2": "executed", "3": "executed", "4": "executed"}),
    ("cached_rerun", "success", {"1": "cached", "2": "cached", "3": "cached", "4": "cached"}),
    ("runtime_error", "failed", {"1": "failed", "2": "not_run"}),
    ("preview_multi_output", "success", {"1": "executed", "2": "executed", "3": "executed", "4": "executed"}),
])
def test_a_live_run_is_running_then_final(recorded_runs, make_watcher, store, name, status, nodes):
    prompt_id, item = _case(recorded_runs, name)
    watcher, fake = make_watcher()
    poll(watcher)  # synced with an empty history

    fake.start(prompt_id, item)
    poll(watcher)
    running = store.get_run(prompt_id)
    assert running.status == RunStatus.RUNNING and running.source == "watcher"
    assert running.queued_at_ms == item["prompt"][3]["create_time"]
    assert running.started_at_ms is not None and running.finished_at_ms is None
    assert running.fingerprint == build_run(prompt_id, item).fingerprint
    assert watcher.report()["running"] == [prompt_id]

    fake.finish(prompt_id, item)
    poll(watcher)
    final = store.get_run(prompt_id)
    assert final.status == status
    assert {n.node_id: n.status for n in final.nodes} == nodes
    assert final.started_at_ms == item["status"]["messages"][0][1]["timestamp"]
    assert ("history_item", prompt_id) in fake.calls
    assert watcher.report()["running"] == []
    assert watcher.recorder.stats.dropped == 0


def test_interrupted_case_keeps_what_history_says_ran(recorded_runs, make_watcher, store):
    prompt_id, item = _case(recorded_runs, "interrupted")
    watcher, fake = make_watcher()
    poll(watcher)
    fake.start(prompt_id, item)
    poll(watcher)
    fake.finish(prompt_id, item)
    poll(watcher)
    run = store.get_run(prompt_id)
    statuses = {n.node_id: n.status for n in run.nodes}
    assert run.status == "interrupted"
    assert statuses["1"] == statuses["2"] == "executed" and statuses["3"] == "interrupted"
    assert statuses["14"] == "not_run"
    assert all(n.duration_ms is None for n in run.nodes)  # per-node timing exists only in-process


def test_fast_runs_never_seen_running_are_found_in_history(recorded_runs, make_watcher, store):
    watcher, fake = make_watcher()
    poll(watcher)
    for name in ("success", "cached_rerun"):
        prompt_id, item = _case(recorded_runs, name)
        fake.history_data[prompt_id] = item
    poll(watcher)
    assert store.get_run(_case(recorded_runs, "success")[0]).status == "success"
    assert store.get_run(_case(recorded_runs, "cached_rerun")[0]).cached_node_count == 4


def test_history_window_widens_when_every_entry_is_new(recorded_runs, make_watcher, store):
    watcher, fake = make_watcher(history_items=2, backfill_items=50)
    poll(watcher)
    _, template = _case(recorded_runs, "success")
    ids = []
    for _ in range(7):
        prompt_id = str(uuid.uuid4())
        item = copy.deepcopy(template)
        item["prompt"][1] = prompt_id
        fake.history_data[prompt_id] = item
        ids.append(prompt_id)
    fake.calls.clear()
    poll(watcher)
    assert [c for c in fake.calls if c[0] == "history"] == [("history", 2), ("history", 8)]
    assert all(store.get_run(p).status == "success" for p in ids)


def test_each_prompt_is_recorded_once(recorded_runs, make_watcher, store):
    prompt_id, item = _case(recorded_runs, "success")
    watcher, fake = make_watcher()
    poll(watcher)
    fake.start(prompt_id, item)
    poll(watcher)
    fake.finish(prompt_id, item)
    poll(watcher, times=3)
    # one running record, one final record; later looks at the same history entry submit nothing
    assert watcher.recorder.stats.submitted == 2
    assert watcher.state.runs_recorded == 1 and watcher.state.running_recorded == 1


def test_a_restarted_watcher_treats_stored_runs_as_seen(recorded_runs, make_watcher, store):
    first, fake = make_watcher()
    fake.history_data.update(copy.deepcopy(recorded_runs["history_max3"]))
    poll(first)
    assert first.recorder.stats.stored == 3
    first.recorder.stop()

    second, _ = make_watcher(fake)
    poll(second)
    assert second.recorder.stats.stored == 0
    assert all(p in second.seen for p in recorded_runs["history_max3"])


def test_a_run_left_running_by_a_stopped_watcher_gets_its_final_record(recorded_runs, make_watcher, store):
    prompt_id, item = _case(recorded_runs, "success")
    first, fake = make_watcher()
    poll(first)
    fake.start(prompt_id, item)
    poll(first)
    first.recorder.stop()
    fake.finish(prompt_id, item)  # finished while nobody watched

    second, _ = make_watcher(fake)  # its recorder closes the stale running record as interrupted, first
    poll(second)
    run = store.get_run(prompt_id)
    assert run.status == "success" and run.interrupted_reason is None
    assert second.recorder.stats.closed_stale_runs == 1  # then history's record replaced it
    assert run.interrupted_reason != STALE_REASON


def test_a_history_entry_that_vanished_closes_the_run_as_interrupted(recorded_runs, make_watcher, store):
    prompt_id, item = _case(recorded_runs, "success")
    watcher, fake = make_watcher(missing_retries=2)
    poll(watcher)
    fake.start(prompt_id, item)
    poll(watcher)
    fake.running = []  # ComfyUI restarted, or someone cleared the history in between
    poll(watcher)
    assert store.get_run(prompt_id).status == "running"  # one more try first
    poll(watcher)
    run = store.get_run(prompt_id)
    assert run.status == "interrupted" and run.interrupted_reason == MISSING_REASON
    assert run.queued_at_ms == item["prompt"][3]["create_time"] and run.finished_at_ms >= run.started_at_ms
    assert watcher.state.missing_closed == 1 and prompt_id in watcher.seen

    fake.history_data[prompt_id] = item  # a late entry for a closed id is not recorded twice
    poll(watcher)
    assert store.get_run(prompt_id).status == "interrupted"


def test_secrets_in_a_queue_item_never_reach_the_store(recorded_runs, make_watcher, store):
    prompt_id, item = _case(recorded_runs, "success")
    item["prompt"][3]["api_key_comfy_org"] = "sk-secret-watch"
    watcher, fake = make_watcher()
    poll(watcher)
    fake.start(prompt_id, item)
    poll(watcher)
    assert "sk-secret-watch" not in repr(store.get_run(prompt_id))


def test_status_frames_ask_for_history_only_when_a_prompt_finished(make_watcher):
    watcher, fake = make_watcher(history_every_s=1e9)  # no safety look during the test
    watcher.state.websocket = True
    poll(watcher)  # the first look syncs
    fake.calls.clear()
    status = {"status": {"exec_info": {"queue_remaining": 0}}}
    watcher.on_frame("status", {**status, "sid": fake.client_id})  # on connect: due
    poll(watcher)
    assert ("history", watcher.history_items) in fake.calls
    fake.calls.clear()
    watcher.on_frame("status", {"status": {"exec_info": {"queue_remaining": 1}}})  # a prompt queued
    watcher.on_frame("progress", {"value": 1, "max": 2})
    poll(watcher)
    assert [c for c in fake.calls if c[0] == "history"] == []
    watcher.on_frame("status", {"status": {"exec_info": {"queue_remaining": 0}}})  # it finished
    poll(watcher)
    assert ("history", watcher.history_items) in fake.calls


def test_seen_set_is_bounded():
    seen = SeenSet(3)
    for key in "abcde":
        seen.add(key)
    assert len(seen) == 3 and "a" not in seen and "b" not in seen and "e" in seen
    seen.add("c")  # re-adding refreshes
    seen.add("f")
    assert "c" in seen and "d" not in seen


def test_comfyui_down_is_retried_with_backoff_and_logged_once_per_change(recorded_runs, make_watcher, store,
                                                                        caplog):
    prompt_id, item = _case(recorded_runs, "success")
    watcher, fake = make_watcher(interval_s=0.01, max_backoff_s=0.05, coalesce_s=0)
    fake.down = True

    async def scenario() -> None:
        task = asyncio.create_task(watcher.run(websocket=False))
        await asyncio.sleep(0.4)
        assert watcher.state.connected is False and not task.done()
        fake.down = False
        fake.history_data[prompt_id] = item
        for _ in range(200):
            if watcher.state.runs_recorded:
                break
            await asyncio.sleep(0.01)
        fake.down = True
        await asyncio.sleep(0.2)
        fake.down = False
        await asyncio.sleep(0.2)
        watcher.stop()
        await asyncio.wait_for(task, 5)

    with caplog.at_level(logging.INFO, logger="run_telemetry.watch"):
        asyncio.run(scenario())
    assert watcher.recorder.flush(10)
    assert store.get_run(prompt_id).status == "success"
    messages = [r.getMessage() for r in caplog.records]
    assert sum("is unreachable" in m for m in messages) == 2
    assert sum("is reachable" in m for m in messages) == 2
    assert watcher.state.comfyui_version == "0.3.75"
