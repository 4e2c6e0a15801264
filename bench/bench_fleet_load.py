"""A fleet's load on one PostgreSQL through the recorder path, side by side with raw psycopg2 INSERTs.

5 simulated ComfyUI instances (one producer thread each) finish 10 runs/s each for 60 s (3,000 runs). Each run
is handed to ONE `Recorder` (as a fleet watcher process has it: one recorder, one store, an instance name per
ComfyUI) as the plugin and the watcher hand theirs: `submit(job)`, the job building the Run on the recorder
thread with `collector.build_run` from a real ComfyUI 0.3.75 history entry (tests/fixtures: success, cached,
failed, interrupted and multi-output cases; 2 to 14 node rows each, with per-node timings as the plugin has them),
then the hand-off queue, the writer's batched transaction (`Store.save_runs`) and the after-store listeners.
Latency is finish (submit) -> committed (the after-store listener, called after the commit).

Then the same rows (`mapping.run_to_row` / `node_rows` / `output_rows` of the same Runs) on the same schedule
through raw psycopg2: one writer thread, one connection, an INSERT per row and a commit per run. Each side writes
into its own fresh schema (created by the store's migrations, so the same tables and indexes), dropped at the end.
Printed: runs expected and stored per instance (none may be lost), write latency p50/p95/max, and the ratios.

    python bench/bench_fleet_load.py                           # 5 x 10 runs/s x 60 s, both sides
    python bench/bench_fleet_load.py --seconds 10              # a quick look
    TELEMETRY_TEST_PG_URL=postgresql://u@host/db python bench/bench_fleet_load.py
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import queue
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import psycopg2  # noqa: E402

from telemetry.collector import BuildContext, build_run  # noqa: E402
from telemetry.model import Run  # noqa: E402
from telemetry.recorder import Recorder  # noqa: E402
from telemetry.store import mapping  # noqa: E402
from telemetry.store.schema import NodeRunRow, RunOutputRow, RunRow  # noqa: E402
from telemetry.store.store import Store  # noqa: E402

PG_URL = os.environ.get("TELEMETRY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
FIXTURE = REPO / "tests" / "fixtures" / "comfyui-0.3.75-runs.json"


def history_items() -> list[dict[str, Any]]:
    cases = json.loads(FIXTURE.read_text())["cases"]
    return [next(iter(c["history"].values())) for c in cases]


def fresh_item(template: dict[str, Any], prompt_id: str, end_ms: int) -> dict[str, Any]:
    """The template history entry as if it had just finished now, under a new prompt id."""
    item = copy.deepcopy(template)
    messages = item["status"]["messages"]
    shift = end_ms - max(m[1].get("timestamp", 0) for m in messages)
    for _, data in messages:
        if "timestamp" in data:
            data["timestamp"] += shift
        if "prompt_id" in data:
            data["prompt_id"] = prompt_id
    item["prompt"][1] = prompt_id
    item["prompt"][3]["create_time"] = item["prompt"][3].get("create_time", end_ms) + shift
    return item


def make_run(template: dict[str, Any], instance: str) -> Run:
    prompt_id = str(uuid.uuid4())
    run = build_run(prompt_id, fresh_item(template, prompt_id, int(time.time() * 1000)), None,
                    BuildContext(instance=instance, source="watcher"))
    t = run.started_at_ms or int(time.time() * 1000)
    for node in run.nodes:  # per-node timings, as the plugin records them
        if node.status == "executed":
            node.started_at_ms, node.duration_ms = t, 37.5
            t += 38
    return run


def schema_url(schema: str) -> str:
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options=-csearch_path%3D{schema}"


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def produce(instances: list[str], rate: float, seconds: float, hand: Any) -> None:
    """One thread per instance, each finishing `rate` runs a second on a fixed schedule, calling hand(instance,
    template, t_finish)."""
    templates = history_items()
    start = time.perf_counter() + 0.2

    def one(index: int, instance: str) -> None:
        for k in range(int(rate * seconds)):
            due = start + k / rate + index / (rate * len(instances))
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            hand(instance, templates[(k + index) % len(templates)], time.perf_counter())

    threads = [threading.Thread(target=one, args=(i, name), daemon=True) for i, name in enumerate(instances)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def counts_by_instance(url: str) -> tuple[dict[str, int], int]:
    store = Store(url)
    try:
        store.open()
        with store.bound():
            from peewee import fn

            by = {r.instance: r.n for r in RunRow.select(RunRow.instance, fn.COUNT(RunRow.run_id).alias("n"))
                  .group_by(RunRow.instance)}
            nodes = NodeRunRow.select().count()
        return by, nodes
    finally:
        store.close()


def recorder_side(url: str, instances: list[str], rate: float, seconds: float) -> dict[str, Any]:
    store = Store(url)
    recorder = Recorder(store, instance=instances[0], also_instances=tuple(instances[1:]), source="watcher")
    finished: dict[str, float] = {}
    latencies: list[float] = []
    nodes_expected = [0]
    lock = threading.Lock()

    def committed(run: Run) -> None:  # recorder thread, after the commit
        latencies.append(time.perf_counter() - finished.pop(run.run_id))

    recorder.add_listener(committed)
    recorder.start()
    recorder.submit(lambda: [], "warm-up")  # one iteration: schema migrated, database opened, stale runs closed
    assert recorder.flush(30)

    def hand(instance: str, template: dict[str, Any], t_finish: float) -> None:
        def job() -> list[Run]:
            run = make_run(template, instance)
            with lock:
                finished[run.run_id] = t_finish
                nodes_expected[0] += len(run.nodes)
            return [run]
        recorder.submit(job, "bench run")

    t0 = time.perf_counter()
    produce(instances, rate, seconds, hand)
    assert recorder.flush(120), "the recorder did not drain"
    wall = time.perf_counter() - t0
    stats = recorder.health()
    recorder.stop()
    store.close()
    by, nodes = counts_by_instance(url)
    return {"latencies": latencies, "by_instance": by, "nodes": nodes, "nodes_expected": nodes_expected[0],
            "wall_s": wall, "dropped": stats.get("dropped", 0)}


def raw_side(url: str, instances: list[str], rate: float, seconds: float) -> dict[str, Any]:
    prepared = Store(url)
    prepared.open()  # the same tables and indexes, from the migrations
    prepared.close()
    conn = psycopg2.connect(PG_URL, options=f"-csearch_path={url.split('%3D')[-1]}")
    cur = conn.cursor()
    work: queue.Queue = queue.Queue()
    latencies: list[float] = []
    nodes_expected = [0]

    def insert(model: Any, row: dict[str, Any]) -> None:
        cols = list(row)
        names = ", ".join(f'"{model._meta.fields[c].column_name}"' for c in cols)
        cur.execute(f'INSERT INTO "{model._meta.table_name}" ({names}) VALUES ({", ".join(["%s"] * len(cols))})',
                    [row[c] for c in cols])

    def writer() -> None:
        while True:
            item = work.get()
            if item is None:
                return
            run, t_finish = item
            insert(RunRow, mapping.fit(RunRow, mapping.run_to_row(run, int(time.time() * 1000))))
            for row in mapping.node_rows(run, run.run_id):
                insert(NodeRunRow, row)
            for row in mapping.output_rows(run, run.run_id):
                insert(RunOutputRow, row)
            conn.commit()
            latencies.append(time.perf_counter() - t_finish)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()

    def hand(instance: str, template: dict[str, Any], t_finish: float) -> None:
        run = make_run(template, instance)  # built by the producer: the raw side gets the Run for free
        nodes_expected[0] += len(run.nodes)
        work.put((run, t_finish))

    t0 = time.perf_counter()
    produce(instances, rate, seconds, hand)
    work.put(None)
    thread.join()
    wall = time.perf_counter() - t0
    conn.close()
    by, nodes = counts_by_instance(url)
    return {"latencies": latencies, "by_instance": by, "nodes": nodes, "nodes_expected": nodes_expected[0],
            "wall_s": wall, "dropped": 0}


def report(name: str, side: dict[str, Any], instances: list[str], per_instance: int) -> bool:
    lat = [x * 1000 for x in side["latencies"]]
    lost = {i: per_instance - side["by_instance"].get(i, 0) for i in instances}
    ok = not any(lost.values()) and side["nodes"] == side["nodes_expected"] and not side["dropped"]
    print(f"{name}: stored {sum(side['by_instance'].values())} runs / {side['nodes']} node rows in "
          f"{side['wall_s']:.1f} s; per instance " + ", ".join(f"{i} {side['by_instance'].get(i, 0)}"
                                                              for i in instances))
    print(f"  lost {sum(lost.values())} runs, {side['nodes_expected'] - side['nodes']} node rows, dropped "
          f"{side['dropped']} -> {'OK' if ok else 'FAIL'}")
    print(f"  write latency finish -> committed: p50 {statistics.median(lat):.2f} ms, p95 {percentile(lat, 0.95):.2f}"
          f" ms, max {max(lat):.2f} ms (n={len(lat)})")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=5)
    parser.add_argument("--rate", type=float, default=10.0, help="runs per second per instance")
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    instances = [f"bench-gpu-{i}:8188" for i in range(args.instances)]
    per_instance = int(args.rate * args.seconds)
    tag = uuid.uuid4().hex[:8]
    schemas = {"recorder": f"bench_fleet_rec_{tag}", "raw": f"bench_fleet_raw_{tag}"}
    admin = psycopg2.connect(PG_URL)
    admin.autocommit = True
    for schema in schemas.values():
        admin.cursor().execute(f"CREATE SCHEMA {schema}")
    try:
        cur = admin.cursor()
        cur.execute("SHOW server_version")
        print(f"machine: {platform.machine()} {os.cpu_count()} cores, {platform.platform()}; Python "
              f"{platform.python_version()}; PostgreSQL {cur.fetchone()[0]} at {PG_URL.split('@')[-1]} (same "
              f"machine); load average {os.getloadavg()[0]:.2f} at start")
        print(f"load: {args.instances} instances x {args.rate:g} runs/s x {args.seconds:g} s = "
              f"{per_instance * args.instances} runs\n")
        rec = recorder_side(schema_url(schemas["recorder"]), instances, args.rate, args.seconds)
        ok = report("recorder path (Recorder -> hand-off -> writer -> Store.save_runs)", rec, instances, per_instance)
        raw = raw_side(schema_url(schemas["raw"]), instances, args.rate, args.seconds)
        ok = report("raw psycopg2 (an INSERT per row, a commit per run)", raw, instances, per_instance) and ok
        print(f"load average {os.getloadavg()[0]:.2f} at the end")
        a = [x * 1000 for x in rec["latencies"]]
        b = [x * 1000 for x in raw["latencies"]]
        p50, p95 = statistics.median(a) / statistics.median(b), percentile(a, 0.95) / percentile(b, 0.95)
        print(f"\nratio recorder / raw: p50 {p50:.2f}x, p95 {p95:.2f}x, max {max(a) / max(b):.2f}x")
        return 0 if ok else 1
    finally:
        for schema in schemas.values():
            admin.cursor().execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.close()


if __name__ == "__main__":
    raise SystemExit(main())
