"""What webhooks cost the recorder, side by side: the same runs recorded into a real SQLite file by a recorder
without webhooks (A) and by one whose after-store listener queues each run for three webhook URLs in the outbox
(B), interleaved in rounds. Printed: the time from submit to "stored and listeners told" per run (p50, p95) for
A and B and their ratio, the enqueue's own time per run on the recorder thread, and how fast the delivery thread
empties the outbox to a real loopback receiver (an aiohttp server in this process). ComfyUI's worker does no
webhook work at all: enqueueing runs on the recorder thread, sending on the webhook thread.

    python bench/bench_webhooks.py                     # 5 rounds of 100 runs each, one every 20 ms
    python bench/bench_webhooks.py --rounds 2 --runs 50 --interval-ms 2   # a burst that saturates the recorder
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from webhook_receiver import Receiver  # noqa: E402

from telemetry.config import load_config  # noqa: E402
from telemetry.model import NodeRun, Run, RunError  # noqa: E402
from telemetry.recorder import Recorder  # noqa: E402
from telemetry.service import TelemetryService  # noqa: E402
from telemetry.store.database import sqlite_url  # noqa: E402
from telemetry.store.store import Store  # noqa: E402
from telemetry.webhooks import attach_webhooks  # noqa: E402


def make_run(i: int, tag: str) -> Run:
    failed = i % 5 == 0
    now = int(time.time() * 1000)
    return Run(f"{tag}-{i:06d}", "failed" if failed else "success", started_at_ms=now - 900, finished_at_ms=now,
               duration_ms=900.0, workflow_name="bench", node_count=3,
               nodes=[NodeRun(str(n), "ImageBlur", "executed", duration_ms=300.0) for n in range(3)],
               error=RunError("2", "ImageBlur", "RuntimeError", "boom") if failed else None)


class Side:
    def __init__(self, folder: str, name: str, env: dict[str, str] | None, interval_s: float) -> None:
        self.interval_s = interval_s
        self.store = Store(sqlite_url(os.path.join(folder, f"{name}.db")))
        self.recorder = Recorder(self.store, instance="bench:1")
        self.latencies: list[float] = []
        self.enqueue_s: list[float] = []
        self.webhooks = None
        if env is not None:
            config = load_config(folder, environ={"TELEMETRY_CONFIG": os.path.join(folder, "none.json"), **env})
            service = TelemetryService(self.store, self.recorder, instance="bench:1")
            self.webhooks = attach_webhooks(config, self.store, self.recorder, service, instance="bench:1")
            timed = self.webhooks.enqueue_run
            self.recorder._listeners.remove(timed)

            def enqueue(run: Run) -> None:
                t0 = time.perf_counter()
                timed(run)
                self.enqueue_s.append(time.perf_counter() - t0)

            self.recorder.add_listener(enqueue)
        self._submitted: dict[str, float] = {}
        self.recorder.add_listener(self._told)  # last: after the webhook listener
        self.recorder.start()

    def _told(self, run: Run) -> None:
        self.latencies.append(time.perf_counter() - self._submitted.pop(run.run_id))

    def record(self, runs: list[Run]) -> None:
        for run in runs:
            self._submitted[run.run_id] = time.perf_counter()
            self.recorder.submit(lambda run=run: [run])
            time.sleep(self.interval_s)
        self.recorder.flush(60)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--interval-ms", type=float, default=20.0,
                        help="between submitted runs (real runs take seconds; 2 ms saturates the recorder)")
    args = parser.parse_args()
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    receiver = Receiver().start()
    with tempfile.TemporaryDirectory() as folder:
        urls = ",".join(receiver.url(f"/hook{i}") for i in range(3))
        env = {"TELEMETRY_WEBHOOK_URLS": urls, "TELEMETRY_WEBHOOK_SECRET": "bench-secret"}
        interval_s = args.interval_ms / 1000
        plain, hooked = Side(folder, "plain", None, interval_s), Side(folder, "webhooks", env, interval_s)
        hooked.webhooks.start()
        t0 = time.perf_counter()
        for r in range(args.rounds):
            for side, tag in ((plain, "a"), (hooked, "b")) if r % 2 == 0 else ((hooked, "b"), (plain, "a")):
                side.record([make_run(r * args.runs + i, tag) for i in range(args.runs)])
        expected = 3 * args.rounds * args.runs
        while hooked.webhooks.health()["delivered"] < expected and time.perf_counter() - t0 < 300:
            time.sleep(0.05)
        drained_s = time.perf_counter() - t0
        health = hooked.webhooks.health()
        failures = [side.recorder.health()["write_failures"] for side in (plain, hooked)]
        for side in (plain, hooked):
            if side.webhooks is not None:
                side.webhooks.stop()
            side.recorder.stop()
            side.store.shutdown()
    receiver.stop()
    a50, a95, b50, b95 = (pct(plain.latencies, 0.5), pct(plain.latencies, 0.95), pct(hooked.latencies, 0.5),
                          pct(hooked.latencies, 0.95))
    print(f"runs per side: {len(plain.latencies)} / {len(hooked.latencies)}; recorder write failures (retried): "
          f"without {failures[0]}, with webhooks {failures[1]}")
    print(f"submit -> stored and told, p50: without {a50:.2f} ms, with webhooks {b50:.2f} ms, ratio {b50 / a50:.2f}")
    print(f"submit -> stored and told, p95: without {a95:.2f} ms, with webhooks {b95:.2f} ms, ratio {b95 / a95:.2f}")
    print(f"enqueue on the recorder thread (3 URLs): p50 {pct(hooked.enqueue_s, 0.5):.2f} ms, "
          f"p95 {pct(hooked.enqueue_s, 0.95):.2f} ms, mean {statistics.mean(hooked.enqueue_s) * 1000:.2f} ms")
    print(f"delivered {health['delivered']} of {expected} events ({len(receiver.received)} POSTs received) in "
          f"{drained_s:.1f} s since the first run: {health['delivered'] / drained_s:.0f} events/s; "
          f"pending {health['pending']}, failed {health['failed']}")


if __name__ == "__main__":
    main()
