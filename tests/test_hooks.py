"""The hooks wrap ComfyUI's classes idempotently, pass everything through, and never let an error escape."""

from __future__ import annotations

import types

import pytest

from telemetry.capture import hooks
from telemetry.collector import BuildContext


class FakeRecorder:
    def __init__(self, fail=False):
        self.jobs, self.fail = [], fail

    def submit(self, job, reason="run", **kwargs):
        if self.fail:
            raise RuntimeError("recorder exploded")
        self.jobs.append(job)
        return True


class ProgressHandler:
    def __init__(self, name):
        self.name = name
        self.registry = None


def fake_comfy():
    progress = types.SimpleNamespace(ProgressHandler=ProgressHandler, handlers=[])
    progress.add_progress_handler = lambda h: progress.handlers.append(h)

    class PromptExecutor:
        def execute(self, prompt, prompt_id, extra_data={}, execute_outputs=[]):  # noqa: B006 (ComfyUI's signature)
            self.status_messages = [("execution_start", {"prompt_id": prompt_id, "timestamp": 1}),
                                    ("execution_success", {"prompt_id": prompt_id, "timestamp": 5})]
            self.success = True
            self.history_result = {"outputs": {}, "meta": {}}
            execution.reset_progress_state(prompt_id, None)
            handler = progress.handlers[-1]
            handler.start_handler("1", {}, prompt_id)
            handler.finish_handler("1", {}, prompt_id)
            if prompt.get("raise"):
                raise ValueError("node code failed")
            return "result"

    class PromptQueue:
        def __init__(self):
            import threading

            self.mutex = threading.RLock()
            self.currently_running = {7: (0, "p1", {}, {}, [])}
            self.history = {}

        def task_done(self, item_id, history_result, status=None, process_item=None):
            prompt = self.currently_running.pop(item_id)
            self.history[prompt[1]] = {"prompt": prompt, "outputs": {}, "status": status}

    execution = types.SimpleNamespace(PromptExecutor=PromptExecutor, PromptQueue=PromptQueue,
                                      reset_progress_state=lambda *a: None)
    return execution, progress


def test_install_is_idempotent_and_chains():
    execution, progress = fake_comfy()
    capture = hooks.Capture(FakeRecorder(), BuildContext())
    first = hooks.install(capture, execution, progress)
    wrapped = execution.PromptExecutor.execute
    hooks.install(capture, execution, progress)
    assert first == {"executor": True, "task_done": True, "progress_handler": True}
    assert execution.PromptExecutor.execute is wrapped
    assert execution.PromptExecutor().execute({"1": {}}, "p1", {"api_key_comfy_org": "k"}) == "result"
    execution.PromptQueue().task_done(7, {}, None)
    assert len(capture.recorder.jobs) == 2  # the start record and the final record
    final = capture.recorder.jobs[1]()[0]
    assert final.run_id == "p1" and [n.status for n in final.nodes if n.node_id == "1"] == ["executed"]


def test_an_exception_from_comfyui_propagates_unchanged_and_the_run_is_still_recorded():
    execution, progress = fake_comfy()
    capture = hooks.Capture(FakeRecorder(), BuildContext())
    hooks.install(capture, execution, progress)
    with pytest.raises(ValueError, match="node code failed"):
        execution.PromptExecutor().execute({"raise": True}, "p2", {})
    run = capture.recorder.jobs[-1]()[0]
    assert run.status == "failed" and run.error.exception_type == "ValueError"


def test_a_broken_recorder_never_breaks_comfyui():
    execution, progress = fake_comfy()
    capture = hooks.Capture(FakeRecorder(fail=True), BuildContext())
    capture.probe = types.SimpleNamespace(reset_peak=lambda: 1 / 0, read_peak=lambda: 1 / 0)
    hooks.install(capture, execution, progress)
    assert execution.PromptExecutor().execute({"1": {}}, "p3", {}) == "result"
    queue = execution.PromptQueue()
    queue.currently_running = {1: (0, "p3", {}, {}, [])}
    queue.task_done(1, {}, None)
    assert "p3" in queue.history
    assert capture.hook_errors >= 2


def test_node_events_of_another_prompt_are_ignored():
    capture = hooks.Capture(FakeRecorder(), BuildContext())
    trace = capture.run_started({}, "mine", {}, [])
    capture.node_started(None, "1", "other")
    capture.node_finished("1", "other")
    assert trace.nodes == {}
