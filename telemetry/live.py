"""The running run, live (issue 11, item 3): the node it is in, how long that node usually takes, the ETA, and
`telemetry.progress` / `telemetry.slow` events for a listening panel.

The capture hooks leave only references and clocks on ComfyUI's worker (`Capture.current`, its `RunTrace.nodes`
and `Capture.live_node`, set in O(1)). Everything here runs elsewhere: REST's thread pool for
`GET /telemetry/runs/{id}`, and a small ticker thread that exists only while a panel holds a listening lease
(`POST /telemetry/live/listen`), so with no panel open nothing runs at all.

Expected time of a node: the median of that node's executed durations in the newest `HISTORY_RUNS` runs of the
same graph (fingerprint; the UI workflow id when the graph has no history), each scaled by the prediction
model's workload ratio (`telemetry.analysis.predict.Workload`: `work` (latent x steps) for samplers, `latent`
for other nodes) between this run and that one, where both workloads are known. ETA: what is left of the
current node's expected time plus the expected time of every node of that history not yet started in this run.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("run_telemetry.live")

HISTORY_RUNS = 20
PROGRESS_EVENT = "telemetry.progress"
SLOW_EVENT = "telemetry.slow"
PROGRESS_EVERY_S = 1.0
LEASE_S = 30.0
MAX_LEASE_S = 120.0
EXPECTATIONS_KEPT = 64


@dataclass
class NodeSample:
    """One executed duration of a node in an earlier run, with that run's workload figures."""
    duration_ms: float
    work: float | None = None
    latent: float | None = None


@dataclass
class Expectation:
    """What the history of a graph says about each of its nodes: node id -> (class type, expected ms)."""
    nodes: dict[str, tuple[str | None, float]] = field(default_factory=dict)
    runs: int = 0


def _ratio(now: float | None, then: float | None) -> float:
    if not now or not then or now <= 0 or then <= 0:
        return 1.0
    return now / then


def is_sampler(class_type: str | None) -> bool:
    return bool(class_type) and "sampler" in class_type.lower()


def expected_ms(class_type: str | None, samples: Iterable[NodeSample], work: float | None = None,
                latent: float | None = None) -> float | None:
    """Median of the samples, each scaled to this run's workload where both are known. None without samples."""
    scaled = []
    for s in samples:
        if s.duration_ms is None or s.duration_ms < 0:
            continue
        factor = _ratio(work, s.work) if is_sampler(class_type) else _ratio(latent, s.latent)
        scaled.append(s.duration_ms * factor)
    return float(statistics.median(scaled)) if scaled else None


def build_expectation(history: Mapping[str, tuple[str | None, list[NodeSample]]], work: float | None = None,
                      latent: float | None = None, runs: int = 0) -> Expectation:
    nodes = {}
    for node_id, (class_type, samples) in history.items():
        value = expected_ms(class_type, samples, work, latent)
        if value is not None:
            nodes[node_id] = (class_type, value)
    return Expectation(nodes, runs)


def eta_ms(expectation: Expectation, started: Iterable[str], current: str | None, elapsed_ms: float | None
           ) -> float | None:
    """Time left: the rest of the current node's expected time plus every expected node not started yet.
    None when the history knows nothing of this graph."""
    if not expectation.nodes:
        return None
    seen = set(started)
    left = 0.0
    if current is not None and current in expectation.nodes and elapsed_ms is not None:
        left += max(0.0, expectation.nodes[current][1] - elapsed_ms)
    for node_id, (_, ms) in expectation.nodes.items():
        if node_id not in seen and node_id != current:
            left += ms
    return round(left, 1)


def slow_message(class_type: str | None, elapsed: float, expected: float) -> str:
    ratio = elapsed / expected if expected > 0 else 0
    return (f"{class_type or 'A node'} is taking {ratio:.0f}x longer than usual: model reloads or low VRAM "
            "offloading?")


# -- reading the store ----------------------------------------------------------------------------------------


def query_history(store: Any, fingerprint: str | None, workflow_id: str | None, exclude_run_id: str,
                  runs: int = HISTORY_RUNS) -> tuple[dict[str, tuple[str | None, list[NodeSample]]], int]:
    """Per node id, its class type and executed durations in the newest `runs` finished runs of the graph."""
    import json

    from .analysis.predict import Workload
    from .model import NodeStatus, RunStatus
    from .store.schema import NodeRunRow, RunRow

    with store.bound():
        store.ensure_schema()
        for column, value in ((RunRow.fingerprint, fingerprint), (RunRow.workflow_id, workflow_id)):
            if not value:
                continue
            recent = list(RunRow.select(RunRow.run_id, RunRow.parameters)
                          .where((column == value) & (RunRow.run_id != exclude_run_id)
                                 & RunRow.status.in_([RunStatus.SUCCESS, RunStatus.PARTIAL_SUCCESS]))
                          .order_by(RunRow.started_at_ms.desc()).limit(runs))
            if recent:
                break
        else:
            return {}, 0
        workloads = {}
        for row in recent:
            try:
                params = json.loads(row.parameters) if row.parameters else {}
            except ValueError:
                params = {}
            workloads[row.run_id] = Workload.from_parameters(params if isinstance(params, dict) else {})
        history: dict[str, tuple[str | None, list[NodeSample]]] = {}
        for node in (NodeRunRow.select(NodeRunRow.run, NodeRunRow.node_id, NodeRunRow.class_type,
                                       NodeRunRow.duration_ms)
                     .where(NodeRunRow.run.in_(list(workloads)) & (NodeRunRow.status == NodeStatus.EXECUTED))
                     .order_by(NodeRunRow.run, NodeRunRow.position)):
            if node.duration_ms is None:
                continue
            load = workloads.get(node.run_id)
            entry = history.setdefault(node.node_id, (node.class_type, []))
            entry[1].append(NodeSample(node.duration_ms, load.work if load else None, load.latent if load else None))
    return history, len(recent)


# -- the live state of the running run ----------------------------------------------------------------------


class LiveMonitor:
    """Reads what the hooks left and answers for the running run. Never touches the worker; never raises into
    ComfyUI. `capture` is the hooks' Capture; `push(event, payload)` sends to the browsers."""

    def __init__(self, capture: Any, store: Any, push: Callable[[str, dict[str, Any]], None],
                 slow_factor: float = 3.0, clock: Callable[[], float] = time.perf_counter) -> None:
        self.capture = capture
        self.store = store
        self.push = push
        self.slow_factor = slow_factor
        self.clock = clock
        self._expectations: dict[str, Expectation] = {}
        self._lock = threading.Lock()
        self._lease_until = 0.0
        self._ticker: threading.Thread | None = None
        self._slow_sent: set[tuple[str, str]] = set()
        self._last_push = 0.0
        self.progress_sent = 0
        self.slow_sent = 0

    # -- expectation per run (cached: one query per run) --

    def expectation(self, trace: Any) -> Expectation:
        run_id = trace.prompt_id
        with self._lock:
            found = self._expectations.get(run_id)
        if found is not None:
            return found
        from .analysis.predict import Workload
        from .prompt_info import extract_parameters, fingerprint

        prompt = trace.prompt
        workflow_id = None
        try:
            workflow_id = ((trace.extra_data or {}).get("extra_pnginfo") or {}).get("workflow", {}).get("id")
        except AttributeError:
            workflow_id = None
        load = Workload.from_parameters(extract_parameters(prompt))
        history, runs = query_history(self.store, fingerprint(prompt), workflow_id, run_id)
        found = build_expectation(history, load.work, load.latent, runs)
        with self._lock:
            self._expectations[run_id] = found
            while len(self._expectations) > EXPECTATIONS_KEPT:
                self._expectations.pop(next(iter(self._expectations)))
        return found

    def snapshot(self, run_id: str | None = None) -> dict[str, Any] | None:
        """The live fields of the running run (`run_id`, when given, must be it): current_node, eta_ms, the
        nodes finished so far, queue wait and run time apart. None when no such run is executing."""
        trace = self.capture.current
        if trace is None or (run_id is not None and trace.prompt_id != run_id):
            return None
        now = self.clock()
        nodes = list(trace.nodes.values())  # one C-level copy: the worker may add nodes meanwhile
        live = getattr(self.capture, "live_node", None)
        current = None
        current_id = None
        elapsed = None
        expectation = self.expectation(trace)
        if live is not None and live[0] == trace.prompt_id:
            current_id, started_perf = live[1], live[2]
            elapsed = max(0.0, (now - started_perf) * 1000.0)
            class_type = _class_type(trace, current_id) or expectation.nodes.get(current_id, (None, 0))[0]
            expected = expectation.nodes.get(current_id, (None, None))[1]
            current = {"node_id": current_id, "class_type": class_type, "elapsed_ms": round(elapsed, 1),
                       "expected_ms": round(expected, 1) if expected is not None else None}
        finished = []
        for node in nodes:
            if node.started_perf is None or node.finished_perf is None:
                continue
            finished.append({"node_id": node.node_id, "class_type": _class_type(trace, node.node_id),
                             "start_offset_ms": round((node.started_perf - trace.started_perf) * 1000.0, 1),
                             "duration_ms": round((node.finished_perf - node.started_perf) * 1000.0, 1)})
        create_time = (trace.extra_data or {}).get("create_time")
        queue_wait = (trace.started_at_ms - create_time if isinstance(create_time, (int, float))
                      and not isinstance(create_time, bool) else None)
        return {"run_id": trace.prompt_id, "current_node": current,
                "eta_ms": eta_ms(expectation, [n.node_id for n in nodes], current_id, elapsed),
                "run_ms": round((now - trace.started_perf) * 1000.0, 1),
                "queue_wait_ms": max(0.0, float(queue_wait)) if queue_wait is not None else None,
                "history_runs": expectation.runs, "nodes_done": finished}

    # -- the listening panel's lease and the ticker --

    def listen(self, seconds: float = LEASE_S) -> dict[str, Any]:
        """A panel is open: progress events for `seconds` (renewed by the panel while it stays open)."""
        seconds = max(1.0, min(MAX_LEASE_S, float(seconds)))
        with self._lock:
            self._lease_until = time.monotonic() + seconds
            start = self._ticker is None or not self._ticker.is_alive()
            if start:
                self._ticker = threading.Thread(target=self._tick_loop, name="run-telemetry-live", daemon=True)
        if start:
            self._ticker.start()
        return {"lease_s": seconds, "progress_every_s": PROGRESS_EVERY_S, "slow_node_factor": self.slow_factor}

    @property
    def listening(self) -> bool:
        return time.monotonic() < self._lease_until

    def _tick_loop(self) -> None:
        while self.listening:
            try:
                self.tick()
            except Exception:
                log.debug("live tick failed", exc_info=True)
            # The next event no sooner than a full period after the last one sent, however long a tick took.
            time.sleep(max(0.05, self._last_push + PROGRESS_EVERY_S - time.monotonic()))
        with self._lock:
            self._ticker = None

    def tick(self) -> None:
        """One progress event for the running run, and a slow event the first time its node passes the factor."""
        snapshot = self.snapshot()
        if snapshot is None:
            return
        self._last_push = time.monotonic()
        self.push(PROGRESS_EVENT, snapshot)
        self.progress_sent += 1
        node = snapshot["current_node"]
        if not node or not node.get("expected_ms") or node["expected_ms"] <= 0:
            return
        key = (snapshot["run_id"], node["node_id"])
        if node["elapsed_ms"] > self.slow_factor * node["expected_ms"] and key not in self._slow_sent:
            self._slow_sent.add(key)
            if len(self._slow_sent) > 1000:
                self._slow_sent.clear()
                self._slow_sent.add(key)
            self.push(SLOW_EVENT, {"run_id": snapshot["run_id"], "node_id": node["node_id"],
                                   "class_type": node["class_type"], "elapsed_ms": node["elapsed_ms"],
                                   "expected_ms": node["expected_ms"], "factor": self.slow_factor,
                                   "ratio": round(node["elapsed_ms"] / node["expected_ms"], 2),
                                   "message": slow_message(node["class_type"], node["elapsed_ms"],
                                                           node["expected_ms"])})
            self.slow_sent += 1


def _class_type(trace: Any, node_id: str) -> str | None:
    node = trace.nodes.get(node_id)
    if node is not None and node.class_type:
        return node.class_type
    prompt = trace.prompt
    if isinstance(prompt, dict):
        entry = prompt.get(node_id)
        if isinstance(entry, dict) and isinstance(entry.get("class_type"), str):
            return entry["class_type"]
    return None
