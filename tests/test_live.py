"""The expectation and ETA logic of the live run (telemetry.live), without ComfyUI: medians of a graph's
history, scaled by the workload ratio where both are known; the time left; and a LiveMonitor reading a RunTrace
the way the hooks leave it, over a real SQLite store, with progress only while a lease is held and one slow
event per node past the factor."""

from __future__ import annotations

import threading
import time

from telemetry.collector import RunTrace
from telemetry.live import (
    PROGRESS_EVENT,
    SLOW_EVENT,
    Expectation,
    LiveMonitor,
    NodeSample,
    build_expectation,
    eta_ms,
    expected_ms,
    slow_message,
)
from telemetry.model import NodeRun, Run
from telemetry.prompt_info import extract_parameters, fingerprint


def test_expected_time_is_the_median_scaled_by_workload_where_known():
    samples = [NodeSample(100.0), NodeSample(300.0), NodeSample(200.0), NodeSample(10_000.0)]
    assert expected_ms("VAEDecode", samples) == 250.0
    # samplers scale with work (latent x steps): twice the steps, twice the time
    sampled = [NodeSample(1000.0, work=20.0, latent=1.0), NodeSample(1100.0, work=20.0, latent=1.0)]
    assert expected_ms("KSampler", sampled, work=40.0, latent=1.0) == 2100.0
    # other nodes scale with the latent only
    assert expected_ms("VAEDecode", [NodeSample(100.0, work=20.0, latent=2.0)], work=80.0, latent=4.0) == 200.0
    # unknown workloads: unscaled
    assert expected_ms("KSampler", sampled, work=None) == 1050.0
    assert expected_ms("KSampler", []) is None


def test_eta_is_what_is_left_of_the_current_node_plus_the_nodes_not_started():
    expectation = build_expectation({"1": ("Load", [NodeSample(100.0)]), "2": ("KSampler", [NodeSample(4000.0)]),
                                     "3": ("VAEDecode", [NodeSample(500.0)])}, runs=1)
    assert eta_ms(expectation, started=["1", "2"], current="2", elapsed_ms=1000.0) == 3500.0
    assert eta_ms(expectation, started=["1", "2"], current="2", elapsed_ms=9000.0) == 500.0
    assert eta_ms(expectation, started=[], current=None, elapsed_ms=None) == 4600.0
    assert eta_ms(Expectation(), started=[], current="1", elapsed_ms=5.0) is None
    assert slow_message("KSampler", 4000.0, 1000.0) == ("KSampler is taking 4x longer than usual: model reloads or "
                                                        "low VRAM offloading?")


PROMPT = {"1": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
          "2": {"class_type": "KSampler", "inputs": {"latent_image": ["1", 0], "steps": 20, "seed": 1}},
          "3": {"class_type": "VAEDecode", "inputs": {"samples": ["2", 0]}}}


class _Capture:
    """What the hooks leave for telemetry.live: the running trace and the node executing now."""

    def __init__(self, trace: RunTrace | None, live_node: tuple[str, str, float] | None) -> None:
        self.current = trace
        self.live_node = live_node


def _history_run(run_id: str, started: int, sampler_ms: float, steps: int = 20) -> Run:
    prompt = {**PROMPT, "2": {**PROMPT["2"], "inputs": {**PROMPT["2"]["inputs"], "steps": steps}}}
    return Run(run_id=run_id, status="success", started_at_ms=started, fingerprint=fingerprint(prompt),
               parameters=extract_parameters(prompt), node_count=3, executed_node_count=3,
               nodes=[NodeRun("1", "EmptyLatentImage", "executed", started, 5.0),
                      NodeRun("2", "KSampler", "executed", started, sampler_ms),
                      NodeRun("3", "VAEDecode", "executed", started, 200.0)])


def test_monitor_reads_the_running_trace_and_sends_progress_and_one_slow_event(store):
    store.save_runs([_history_run("h1", 1000, 1000.0), _history_run("h2", 2000, 1200.0, steps=20),
                     _history_run("h3", 3000, 1100.0)])
    now = [100.0]
    pushed: list[tuple[str, dict]] = []
    prompt = {**PROMPT, "2": {**PROMPT["2"], "inputs": {**PROMPT["2"]["inputs"], "steps": 40, "seed": 7}}}
    trace = RunTrace(prompt_id="live-1", started_at_ms=10_000, started_perf=99.0, prompt=prompt,
                     extra_data={"create_time": 9_000})
    trace.node_started("1", 99.0, 10_000)
    trace.node_finished("1", 99.005)
    trace.node_started("2", 99.5, 10_500)
    monitor = LiveMonitor(_Capture(trace, ("live-1", "2", 99.5)), store, lambda e, p: pushed.append((e, p)),
                          slow_factor=3.0, clock=lambda: now[0])

    snap = monitor.snapshot("live-1")
    assert monitor.snapshot("another-run") is None
    node = snap["current_node"]
    # twice the steps of the history: twice the median sampler time (1100 ms)
    assert node == {"node_id": "2", "class_type": "KSampler", "elapsed_ms": 500.0, "expected_ms": 2200.0}
    assert snap["eta_ms"] == 1700.0 + 200.0  # the rest of the sampler, and VAEDecode not started yet
    assert snap["queue_wait_ms"] == 1000.0 and snap["run_ms"] == 1000.0 and snap["history_runs"] == 3
    assert [n["node_id"] for n in snap["nodes_done"]] == ["1"]

    monitor.tick()
    assert [e for e, _ in pushed] == [PROGRESS_EVENT]
    now[0] = 99.5 + 7.0  # 7 s in a node that usually takes 2.2 s: past 3x
    monitor.tick()
    monitor.tick()
    slow = [p for e, p in pushed if e == SLOW_EVENT]
    assert len(slow) == 1, "one slow event per node"
    assert slow[0]["node_id"] == "2" and slow[0]["ratio"] == round(7000 / 2200, 2)
    assert slow[0]["message"].startswith("KSampler is taking 3x longer than usual")


def test_progress_only_while_a_lease_is_held(store):
    pushed: list[tuple[str, dict]] = []
    first = threading.Event()

    def push(event: str, payload: dict) -> None:
        pushed.append((event, payload))
        first.set()

    trace = RunTrace(prompt_id="live-2", started_at_ms=1, started_perf=time.perf_counter(), prompt=PROMPT)
    before = set(threading.enumerate())
    monitor = LiveMonitor(_Capture(trace, None), store, push)
    assert not _new_tickers(before), "no panel listens: no ticker runs"
    assert pushed == [] and not monitor.listening, "no panel listens: nothing runs, nothing is sent"
    assert monitor.listen(1.0)["lease_s"] == 1.0
    (ticker,) = _new_tickers(before)
    assert first.wait(5)
    assert pushed and pushed[0][0] == PROGRESS_EVENT and pushed[0][1]["eta_ms"] is None
    ticker.join(3.0)  # the lease ran out: the ticker stops, and with it the events
    assert not ticker.is_alive() and not monitor.listening and not _new_tickers(before)


def _new_tickers(before: set[threading.Thread]) -> list[threading.Thread]:
    return [t for t in set(threading.enumerate()) - before if t.name == "run-telemetry-live"]
