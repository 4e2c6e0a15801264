"""What the live view (telemetry.live) costs ComfyUI's worker: the capture hooks' time per node with no panel
listening (no ticker at all) and with a panel listening (the LiveMonitor ticker reading the running trace and
pushing progress), side by side in one run, interleaved in ABBA blocks, printing the ratio.

Each run also spends 5 ms outside the hooks (a run's own work), during which the ticker reads the running trace.
The ticker runs at its real 1 s period, and again at 20 ms (50x more often than it ever does) to make any GIL
contention with the worker visible. The hooks run as in bench_capture's micro-benchmark (its harness).

    python bench/bench_live.py               # about a minute
    python bench/bench_live.py --runs 200
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_capture import (  # noqa: E402
    DrainingRecorder,
    FakeDynPrompt,
    _Executor,
    _ProgressHandlerBase,
    _Registry,
    chain_workflow,
    percentile,
)


def hook_block(capture, handler_cls, runs: int, nodes: int, seed: int) -> list[float]:
    """µs per node (start + update + finish) for `runs` runs of a `nodes`-node chain."""
    node_ids = [str(i) for i in range(1, nodes + 1)]
    per_node = []
    for r in range(runs):
        prompt = chain_workflow(nodes, seed + r)
        prompt_id = str(uuid.uuid4())
        extra = {"create_time": int(time.time() * 1000)}
        executor = _Executor(prompt_id, nodes)
        handler = handler_cls()
        handler.registry = _Registry(FakeDynPrompt(prompt))
        trace = capture.run_started(prompt, prompt_id, extra, [str(nodes)])
        t0 = time.perf_counter_ns()
        for node_id in node_ids:
            handler.start_handler(node_id, None, prompt_id)
            handler.update_handler(node_id, 1.0, 1.0, None, prompt_id)
            handler.finish_handler(node_id, None, prompt_id)
        per_node.append((time.perf_counter_ns() - t0) / 1000.0 / nodes)
        time.sleep(0.005)  # the run's own work outside the hooks (the ticker reads the trace meanwhile)
        capture.run_finished(executor, trace, None)
    return per_node


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=120, help="runs per block")
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--blocks", type=int, default=4, help="ABBA blocks")
    args = parser.parse_args()

    import telemetry.live as live
    from telemetry.capture import hooks
    from telemetry.collector import BuildContext
    from telemetry.store.database import sqlite_url
    from telemetry.store.store import Store

    workdir = Path(tempfile.mkdtemp(prefix="bench-live-"))
    store = Store(sqlite_url(str(workdir / "live.db")))
    store.open()
    recorder = DrainingRecorder()
    capture = hooks.Capture(recorder, BuildContext(instance="bench:0", source="plugin"))
    handler_cls = hooks.make_progress_handler_class(_ProgressHandlerBase, capture)
    pushed = [0]

    def push(event: str, payload: dict) -> None:
        pushed[0] += 1

    print(f"Live view cost on the worker: {args.blocks} ABBA blocks x {args.runs} runs x {args.nodes} nodes")
    hook_block(capture, handler_cls, 20, args.nodes, 0)  # warm-up
    for period in (1.0, 0.02):
        live.PROGRESS_EVERY_S = period
        without: list[float] = []
        listening: list[float] = []
        ticks_before = pushed[0]
        for block in range(args.blocks):
            for side in ("AB" if block % 2 == 0 else "BA"):
                if side == "A":
                    without += hook_block(capture, handler_cls, args.runs, args.nodes, block * 1000)
                else:
                    monitor = live.LiveMonitor(capture, store, push)
                    monitor.listen(120)
                    listening += hook_block(capture, handler_cls, args.runs, args.nodes, block * 1000 + 500)
                    monitor._lease_until = 0.0  # the panel closes: the ticker ends on its next tick
        a, b = statistics.median(without), statistics.median(listening)
        print(f"ticker every {period * 1000:g} ms: progress events sent {pushed[0] - ticks_before}")
        print(f"  no panel listening   per node median {a:6.2f} µs   p95 {percentile(without, 0.95):6.2f} µs")
        print(f"  a panel listening    per node median {b:6.2f} µs   p95 {percentile(listening, 0.95):6.2f} µs")
        print(f"  ratio listening / not listening: {b / a:.3f}")
    recorder.stop()
    store.close()


if __name__ == "__main__":
    main()
