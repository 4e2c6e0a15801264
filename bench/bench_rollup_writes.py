"""What the rollups cost a recorder batch: `Store.save_runs` of runs as the recorder writes them (each run once
as `running` at its start, then replaced by its final record with 12 node rows of 12 class types, outputs and
samples), one run per batch, on an existing store (e.g. a generated million runs), and `close_stale_running` and
a prune batch.

    python bench/bench_rollup_writes.py --db /tmp/telemetry.db [--runs 200]

Run it from a tree without the rollups (an earlier commit) for the baseline. It writes runs into the store
(instance `bench-writes`, started now) and deletes them again at the end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from telemetry.model import GpuSample, NodeRun, Run, RunOutput  # noqa: E402
from telemetry.store.database import sqlite_url  # noqa: E402
from telemetry.store.schema import RunRow  # noqa: E402
from telemetry.store.store import Store  # noqa: E402

# A realistic graph: each node row of its own class type (a row in each node-type rollup it is counted in).
CLASS_TYPES = ("CheckpointLoaderSimple", "CLIPTextEncode", "CLIPSetLastLayer", "KSampler", "VAEDecode", "SaveImage",
               "LoraLoader", "EmptyLatentImage", "ControlNetLoader", "ControlNetApplyAdvanced", "ImageScale",
               "PreviewImage")


def _run(i: int, status: str, now: int) -> Run:
    run = Run(f"bench-writes-{i:06d}", status, started_at_ms=now + i * 100, workflow_id=f"wf-bench-{i % 7}",
              fingerprint=f"fp-bench-{i % 7}", workflow_name=f"Bench {i % 7}", instance="bench-writes")
    if status != "running":
        run.finished_at_ms = now + i * 100 + 1500
        run.duration_ms = 1500.0 + i
        run.gpu_peak_bytes = 2**30 + i
        run.energy_j = 12.5
        run.nodes = [NodeRun(str(n), CLASS_TYPES[n], "executed", started_at_ms=now + i * 100 + n,
                             duration_ms=100.0 + n, gpu_peak_bytes=2**30 + i * 12 + n) for n in range(12)]
        run.outputs = [RunOutput("9", "images", f"img_{i}.png", "", "output", 1, "png")]
        run.gpu_samples = [GpuSample(t_ms=now + i * 100 + k * 100, used_bytes=2**30) for k in range(15)]
    return run


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return f"p50 {statistics.median(ordered) * 1000:7.2f} ms   p95 {p95 * 1000:7.2f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    store = Store(sqlite_url(args.db))
    store.open()
    now = int(time.time() * 1000)
    start_batches, final_batches = [], []
    for i in range(args.runs):
        t0 = time.perf_counter()
        store.save_runs([_run(i, "running", now)])
        t1 = time.perf_counter()
        store.save_runs([_run(i, "success", now)])
        t2 = time.perf_counter()
        start_batches.append(t1 - t0)
        final_batches.append(t2 - t1)
    store.save_runs([_run(args.runs + i, "running", now) for i in range(20)])
    t0 = time.perf_counter()
    store.close_stale_running("bench-writes", "bench")
    closing = time.perf_counter() - t0
    with store.bound():
        ids = [r for (r,) in RunRow.select(RunRow.run_id).where(RunRow.instance == "bench-writes").tuples()]
    prunes = []
    for start in range(0, len(ids), 20):
        t0 = time.perf_counter()
        with store.bound():
            store._delete_runs(ids[start:start + 20])
        prunes.append(time.perf_counter() - t0)
    print(f"recorder batches on {args.db} ({args.runs} runs, one run per batch)")
    print(f"  a run's start (insert, running)      {_ms(start_batches)}")
    print(f"  its final record (replaces it)       {_ms(final_batches)}")
    print(f"  close_stale_running of 20 runs       {closing * 1000:7.2f} ms")
    print(f"  delete batches of 20 runs            {_ms(prunes)}")
    store.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
