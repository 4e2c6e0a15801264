"""Pruning at scale: `Store.prune_runs` on a SQLite store of 1,000,000 runs never holds the write lock for long.

Generates the store with the store's own API (`Store.save_runs`, runs with 3 nodes and an output each; cached
under --db between invocations), then prunes the oldest runs (`before_ms`) and then down to `keep`, timing
every batch (`Store.prune_batch`: one transaction each). While it prunes, a writer thread commits one run every
50 ms as the recorder would, and its commit latency is printed side by side with the same writer on the idle
store. Target: the longest batch transaction (what holds the write lock, so what the recorder can wait for) under
100 ms; the select of a batch's run ids is a read that a WAL database runs beside the writer.

    python bench/bench_prune.py                      # 1,000,000 runs (generating takes a few minutes)
    python bench/bench_prune.py --runs 100000 --db /tmp/prune-100k.db
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from telemetry.model import NodeRun, Run, RunOutput  # noqa: E402
from telemetry.store.database import sqlite_url  # noqa: E402
from telemetry.store.store import Store  # noqa: E402

TARGET_BATCH_MS = 100.0


def make_run(i: int) -> Run:
    return Run(f"gen-{i:08d}", "success" if i % 10 else "failed", started_at_ms=1_700_000_000_000 + i * 1000,
               finished_at_ms=1_700_000_000_000 + i * 1000 + 900, duration_ms=900.0, workflow_id=f"wf{i % 50}",
               workflow_name=f"workflow {i % 50}", node_count=3, executed_node_count=3,
               nodes=[NodeRun(str(n), "ImageBlur", "executed", duration_ms=300.0) for n in range(3)],
               outputs=[RunOutput("3", "image", filename=f"img_{i}.png")])


def generate(store: Store, runs: int) -> None:
    have = store.count_runs()
    t0 = time.perf_counter()
    for start in range(have, runs, 1000):
        store.save_runs([make_run(i) for i in range(start, min(runs, start + 1000))])
        if (start // 1000) % 50 == 0:
            print(f"  generated {start + 1000:>9,} runs ({time.perf_counter() - t0:.0f} s)", flush=True)


class Writer(threading.Thread):
    """Commits a small run every 50 ms on its own connection, as the recorder does; keeps each commit latency."""

    def __init__(self, store: Store, tag: str) -> None:
        super().__init__(daemon=True)
        self.store, self.tag = store, tag
        self.latencies_ms: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        self.store.bind_thread()
        i = 0
        while not self.stop.is_set():
            t0 = time.perf_counter()
            self.store.save_runs([Run(f"{self.tag}-{i}", "success", started_at_ms=int(time.time() * 1000))])
            self.latencies_ms.append((time.perf_counter() - t0) * 1000)
            i += 1
            time.sleep(0.05)


def describe(values: list[float]) -> str:
    ordered = sorted(values)
    return (f"n={len(values):<5} median {statistics.median(ordered):7.2f} ms   p99 "
            f"{ordered[int(0.99 * (len(ordered) - 1))]:7.2f} ms   max {ordered[-1]:7.2f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, default=Path("/tmp/run-telemetry-prune-bench.db"))
    parser.add_argument("--prune", type=int, default=100_000, help="runs to prune by age, then as many by keep")
    parser.add_argument("--generate-only", action="store_true", help="only build (or complete) the store")
    args = parser.parse_args(argv)
    store = Store(sqlite_url(str(args.db)))
    store.open()
    print(f"Prune benchmark: {args.runs:,} runs in {args.db}, load average "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    generate(store, args.runs)
    total = store.count_runs()
    print(f"  store holds {total:,} runs ({args.db.stat().st_size / 1e6:.0f} MB)")
    if args.generate_only:
        return 0

    idle = Writer(store, "idle")
    idle.start()
    time.sleep(5)
    idle.stop.set()
    idle.join()

    oldest = 1_700_000_000_000
    before_ms = oldest + args.prune * 1000
    writer = Writer(store, "during")
    writer.start()
    batches_ms: list[float] = []
    transactions_ms: list[float] = []
    checkpoints_ms: list[float] = []
    sizes: list[int] = []
    deleted = 0
    for before, keep in ((before_ms, None), (None, max(0, total - 2 * args.prune))):
        plan = store.prune_plan(before, keep)
        while True:
            t0 = time.perf_counter()
            n = store.prune_batch(plan)
            elapsed = (time.perf_counter() - t0) * 1000
            if not n:
                break
            batches_ms.append(elapsed)
            transactions_ms.append(store.last_prune_transaction_s * 1000)
            sizes.append(n)
            if store.last_prune_checkpoint_s is not None:
                checkpoints_ms.append(store.last_prune_checkpoint_s * 1000)
            deleted += n
    writer.stop.set()
    writer.join()
    longest = max(transactions_ms)
    print(f"  pruned {deleted:,} runs in {len(batches_ms)} batches (last size {store._prune_batch})")
    print(f"  batch, select + delete transaction         {describe(batches_ms)}")
    print(f"  batch, delete transaction (write lock)     {describe(transactions_ms)}")
    if checkpoints_ms:
        print(f"  passive WAL checkpoint after each batch    {describe(checkpoints_ms)}  (no lock held)")
    print(f"  recorder-like commits, idle store          {describe(idle.latencies_ms)}")
    print(f"  recorder-like commits, while pruning       {describe(writer.latencies_ms)}")
    print(f"  ratio of max commit latency while pruning / idle: "
          f"{max(writer.latencies_ms) / max(idle.latencies_ms):.2f}")
    slowest = sorted(range(len(transactions_ms)), key=lambda i: -transactions_ms[i])[:3]
    print("  slowest batch transactions: " + ", ".join(
        f"#{i + 1} of {len(transactions_ms)} ({sizes[i]} runs) {transactions_ms[i]:.1f} ms" for i in slowest))
    over = sum(1 for t in transactions_ms if t >= TARGET_BATCH_MS)
    print(f"  batch transactions at or over {TARGET_BATCH_MS:.0f} ms: {over} of {len(transactions_ms)} (a batch "
          "commits without SQLite's automatic checkpoint; a passive one follows it, see telemetry/store/checkpoint.py)")
    print(f"  longest batch transaction {longest:.1f} ms, target < {TARGET_BATCH_MS:.0f} ms: "
          f"{'PASS' if longest < TARGET_BATCH_MS else 'FAIL'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
