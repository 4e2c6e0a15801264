"""Benchmark of the analysis layer on a large store: every analysis REST route through aiohttp's test client
against the real Store, and `on_run_stored` per run.

    python bench/bench_analysis.py [--runs 1000000] [--db PATH] [--repeat 30] [--keep]

It generates `--runs` runs (50 workflows over the last 365 days, four node rows each, 5% failures, some OOM and
labelled scenes) into a SQLite file with bulk inserts, then times each route `--repeat` times and prints p50/p95
per route with pass/fail against the 100 ms p95 target. An existing file with the same run count is reused with
`--keep`. Numbers depend on the machine; nothing here is a unit test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiohttp import web  # noqa: E402
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from telemetry import prompt_info  # noqa: E402
from telemetry.analysis.service import AnalysisService  # noqa: E402
from telemetry.api.analysis_routes import add_analysis_routes  # noqa: E402
from telemetry.model import ErrorKind, NodeRun, Run, RunLabels  # noqa: E402
from telemetry.store import node_type_rollups, rollups  # noqa: E402
from telemetry.store.database import sqlite_url  # noqa: E402
from telemetry.store.store import Store  # noqa: E402

TARGET_P95_MS = 100.0
WORKFLOWS = 50
GIB = 1024**3
DAY_MS = 86_400_000
SIDES = (512, 768, 1024, 1280)
STEPS = (10, 20, 30, 40)
NODE_TYPES = ("CheckpointLoaderSimple", "KSampler", "VAEDecode", "SaveImage")
NODE_SHARES = (0.05, 0.7, 0.2, 0.05)


def workflow_prompt(k: int, side: int = 1024, steps: int = 20, batch: int = 1) -> dict:
    """The API prompt of synthetic workflow k (k extra nodes make each structure, and fingerprint, distinct)."""
    prompt = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": f"model-{k % 5}.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": side, "height": side, "batch_size": batch}},
        "3": {"class_type": "KSampler", "inputs": {"model": ["4", 0], "latent_image": ["5", 0], "steps": steps,
                                                   "seed": 1, "cfg": 7.0}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0]}},
    }
    for j in range(k % 7):
        prompt[str(100 + j)] = {"class_type": f"Extra{k}", "inputs": {"images": ["8", 0]}}
    prompt["200"] = {"class_type": f"Variant{k}", "inputs": {}}
    return prompt


FINGERPRINTS = [prompt_info.fingerprint(workflow_prompt(k)) for k in range(WORKFLOWS)]
RUN_COLUMNS = ("run_id", "status", "queued_at_ms", "started_at_ms", "finished_at_ms", "duration_ms",
               "queue_wait_ms", "workflow_id", "workflow_name", "workflow_name_source", "workflow_key",
               "fingerprint", "node_count", "executed_node_count", "cached_node_count", "image_count", "video_count",
               "audio_count", "other_output_count", "frame_count", "error_node_id", "error_node_type",
               "error_exception_type", "error_message", "error_kind", "gpu_name", "gpu_total_bytes",
               "gpu_peak_bytes", "story_title", "scene", "instance", "source", "parameters", "pixels", "steps",
               "updated_at_ms")
NODE_COLUMNS = ("run_id", "position", "node_id", "class_type", "status", "started_at_ms", "duration_ms",
                "gpu_peak_bytes")


def synthetic(k: int, t_ms: int, rng: random.Random, seq: int) -> tuple[dict, list[tuple]]:
    """One run of workflow k as a row dict, and its node rows."""
    side, steps = rng.choice(SIDES), rng.choice(STEPS)
    batch = 1 if k % 4 else rng.choice((1, 2, 4))
    slow = 1.3 if k % 10 == 3 and t_ms > time.time() * 1000 - 30 * DAY_MS else 1.0  # a planted regression
    duration = (800 + 2.5e-5 * side * side * steps * batch * (1 + k / 25)) * rng.lognormvariate(0, 0.08) * slow
    peak = int((4 + k % 8) * GIB + side * side * batch * 3000 * rng.lognormvariate(0, 0.03))
    roll = rng.random()
    status = "success" if roll > 0.05 else ("failed" if roll > 0.01 else "interrupted")
    oom = status == "failed" and rng.random() < 0.3
    run_id = f"b{seq:08d}"
    params = {"width": side, "height": side, "pixels": side * side, "steps": steps, "batch": batch,
              "checkpoint": f"model-{k % 5}.safetensors"}
    scene = f"Scene {seq % 40}" if k % 9 == 0 else None
    row = {
        "run_id": run_id, "status": status, "queued_at_ms": t_ms - 500, "started_at_ms": t_ms,
        "finished_at_ms": int(t_ms + duration), "duration_ms": duration, "queue_wait_ms": 500.0,
        "workflow_id": f"wf-{k:02d}", "workflow_name": f"Workflow {k:02d}", "workflow_name_source": "api",
        "workflow_key": f"wf-{k:02d}", "fingerprint": FINGERPRINTS[k], "node_count": 4, "executed_node_count": 4,
        "cached_node_count": 0, "image_count": batch, "video_count": 0, "audio_count": 0, "other_output_count": 0,
        "frame_count": batch, "error_node_id": "8" if status == "failed" else None,
        "error_node_type": "VAEDecode" if status == "failed" else None,
        "error_exception_type": ("OutOfMemoryError" if oom else "RuntimeError") if status == "failed" else None,
        "error_message": ("CUDA out of memory" if oom else "boom") if status == "failed" else None,
        "error_kind": (ErrorKind.OOM if oom else ErrorKind.ERROR) if status == "failed" else None,
        "gpu_name": "NVIDIA H100", "gpu_total_bytes": 80 * GIB, "gpu_peak_bytes": peak,
        "story_title": "Saga" if scene else None, "scene": scene, "instance": "bench:8188", "source": "plugin",
        "parameters": json.dumps(params, separators=(",", ":")), "pixels": side * side, "steps": steps,
        "updated_at_ms": t_ms,
    }
    nodes = [(run_id, pos, str(pos + 1), ctype, "executed", t_ms, duration * share, peak if ctype == "KSampler" else 0)
             for pos, (ctype, share) in enumerate(zip(NODE_TYPES, NODE_SHARES, strict=True))]
    return row, nodes


def generate(path: str, total: int, seed: int = 1) -> float:
    """Create the schema through the Store, then bulk-insert `total` runs. Returns seconds taken."""
    started = time.perf_counter()
    store = Store(sqlite_url(path))
    store.open()
    store.close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-400000")
    rng = random.Random(seed)
    end_ms = int(time.time() * 1000) - 60_000
    start_ms = end_ms - 365 * DAY_MS
    step = (end_ms - start_ms) / total
    run_sql = f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join('?' * len(RUN_COLUMNS))})"
    node_sql = f"INSERT INTO node_runs ({', '.join(NODE_COLUMNS)}) VALUES ({', '.join('?' * len(NODE_COLUMNS))})"
    chunk = 50_000
    for first in range(0, total, chunk):
        runs, nodes = [], []
        for seq in range(first, min(total, first + chunk)):
            row, node_rows = synthetic(rng.randrange(WORKFLOWS), int(start_ms + seq * step), rng, seq)
            runs.append(tuple(row[c] for c in RUN_COLUMNS))
            nodes.extend(node_rows)
        with conn:
            conn.executemany(run_sql, runs)
            conn.executemany(node_sql, nodes)
        print(f"\r  generated {min(total, first + chunk):>9,} / {total:,} runs", end="", flush=True)
    conn.execute("ANALYZE")
    conn.close()
    # The rows went in beside the store: their rollups as migrations 11 and 14 build them.
    store = Store(sqlite_url(path))
    store.open()
    with store.bound(), store.db.atomic():
        store.db.execute_sql('DELETE FROM "run_rollups"')
        rollups.backfill(store.db)
        store.db.execute_sql('DELETE FROM "node_type_rollups"')
        node_type_rollups.backfill(store.db)
    store.close()
    print()
    return time.perf_counter() - started


def quantiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return statistics.median(ordered), p95


async def time_routes(service: AnalysisService, repeat: int, rng: random.Random) -> list[tuple[str, list[float]]]:
    routes = web.RouteTableDef()
    queue_items = [(i, f"queued-{i}", workflow_prompt(i % WORKFLOWS, side=rng.choice(SIDES), steps=20), {}, [])
                   for i in range(10)]
    add_analysis_routes(routes, lambda: service, lambda: queue_items)
    app = web.Application()
    app.add_routes(routes)
    results: list[tuple[str, list[float]]] = []
    async with TestClient(TestServer(app)) as client:

        async def timed(method: str, path: str, body=None) -> float:
            t0 = time.perf_counter()
            resp = await client.request(method, path, json=body)
            await resp.read()
            elapsed = (time.perf_counter() - t0) * 1000
            if resp.status >= 400:
                raise RuntimeError(f"{method} {path} answered {resp.status}: {await resp.text()}")
            return elapsed

        # Cold first calls (caches empty), reported separately.
        cold_accuracy = await timed("GET", "/telemetry/predict/accuracy")
        cold_predict = await timed("POST", "/telemetry/predict", workflow_prompt(7))
        cold_timeline = await timed("GET", "/telemetry/stats/timeline?bucket=day")
        cold_timeline_wf = await timed("GET", "/telemetry/stats/timeline?bucket=day&workflow=wf-49")
        rec_ids = [r["id"] for r in service.recommendations()["recommendations"]] or [0]
        cases = [
            ("GET /telemetry/recommendations", lambda i: ("GET", "/telemetry/recommendations", None)),
            ("GET /telemetry/recommendations?state=open&severity=warning",
             lambda i: ("GET", "/telemetry/recommendations?state=open&severity=warning", None)),
            ("POST /telemetry/recommendations/{id}/dismiss",
             lambda i: ("POST", f"/telemetry/recommendations/{rec_ids[i % len(rec_ids)]}/dismiss", None)),
            ("GET /telemetry/trends metric=duration_ms",
             lambda i: ("GET", f"/telemetry/trends?workflow=wf-{i % WORKFLOWS:02d}&metric=duration_ms", None)),
            ("GET /telemetry/trends metric=gpu_peak_bytes",
             lambda i: ("GET", f"/telemetry/trends?workflow=wf-{i % WORKFLOWS:02d}&metric=gpu_peak_bytes", None)),
            ("GET /telemetry/trends metric=success_rate",
             lambda i: ("GET", f"/telemetry/trends?workflow=wf-{i % WORKFLOWS:02d}&metric=success_rate", None)),
            ("GET /telemetry/trends metric=fps",
             lambda i: ("GET", f"/telemetry/trends?workflow=wf-{i % WORKFLOWS:02d}&metric=fps", None)),
            ("GET /telemetry/trends node_type=KSampler",
             lambda i: ("GET", f"/telemetry/trends?workflow=wf-{i % WORKFLOWS:02d}&metric=duration_ms"
                               "&node_type=KSampler", None)),
            ("GET /telemetry/trends workflow=<name>",
             lambda i: ("GET", f"/telemetry/trends?workflow=Workflow%20{i % WORKFLOWS:02d}&metric=duration_ms",
                        None)),
            ("GET /telemetry/stats/timeline?bucket=day (30 days)",
             lambda i: ("GET", "/telemetry/stats/timeline?bucket=day", None)),
            ("GET /telemetry/stats/timeline?bucket=hour (48 h)",
             lambda i: ("GET", "/telemetry/stats/timeline?bucket=hour", None)),
            ("GET /telemetry/stats/timeline?bucket=day&workflow=wf-NN",
             lambda i: ("GET", f"/telemetry/stats/timeline?bucket=day&workflow=wf-{i % WORKFLOWS:02d}", None)),
            ("GET /telemetry/stats/timeline?bucket=day&status=failed",
             lambda i: ("GET", "/telemetry/stats/timeline?bucket=day&status=failed", None)),
            ("POST /telemetry/predict",
             lambda i: ("POST", "/telemetry/predict", workflow_prompt(i % WORKFLOWS, side=SIDES[i % 4]))),
            ("GET /telemetry/queue/eta (10 items)", lambda i: ("GET", "/telemetry/queue/eta", None)),
            ("GET /telemetry/predict/accuracy", lambda i: ("GET", "/telemetry/predict/accuracy", None)),
            ("GET /telemetry/config", lambda i: ("GET", "/telemetry/config", None)),
            ("PUT /telemetry/config",
             lambda i: ("PUT", "/telemetry/config", {"trend_rolling_window": 20 + i % 2})),
        ]
        for label, make in cases:
            await timed(*make(0))  # warm-up: connections and caches, as in steady use
            results.append((label, [await timed(*make(i)) for i in range(repeat)]))
    results.append(("(cold) GET /telemetry/predict/accuracy, first call", [cold_accuracy]))
    results.append(("(cold) POST /telemetry/predict, first call", [cold_predict]))
    results.append(("(cold) GET /telemetry/stats/timeline?bucket=day, first call", [cold_timeline]))
    results.append(("(cold) GET /telemetry/stats/timeline?bucket=day&workflow=wf-49", [cold_timeline_wf]))
    return results


def time_on_run_stored(store: Store, service: AnalysisService, count: int, rng: random.Random) -> tuple[list, list]:
    """Store `count` new runs one by one as the recorder does; time on_run_stored alone and save+analysis."""
    analysis_ms, total_ms = [], []
    now = int(time.time() * 1000)
    for i in range(count):
        k = rng.randrange(WORKFLOWS)
        row, _nodes = synthetic(k, now + i * 1000, rng, 90_000_000 + i)
        params = json.loads(row["parameters"])
        run = Run(run_id=row["run_id"], status=row["status"], started_at_ms=row["started_at_ms"],
                  finished_at_ms=row["finished_at_ms"], duration_ms=row["duration_ms"], workflow_id=row["workflow_id"],
                  workflow_name=row["workflow_name"], workflow_name_source="api", fingerprint=row["fingerprint"],
                  gpu_total_bytes=row["gpu_total_bytes"], gpu_peak_bytes=row["gpu_peak_bytes"], parameters=params,
                  labels=RunLabels(story_title=row["story_title"], scene=row["scene"]),
                  nodes=[NodeRun(str(p + 1), c, "executed", row["started_at_ms"], row["duration_ms"] * s)
                         for p, (c, s) in enumerate(zip(NODE_TYPES, NODE_SHARES, strict=True))])
        t0 = time.perf_counter()
        store.save_runs([run])
        t1 = time.perf_counter()
        service.on_run_stored(run)
        t2 = time.perf_counter()
        analysis_ms.append((t2 - t1) * 1000)
        total_ms.append((t2 - t0) * 1000)
    return analysis_ms, total_ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--db", default=None, help="SQLite file (default: a temporary file)")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="reuse --db when it already holds --runs runs")
    args = parser.parse_args()
    path = args.db or os.path.join(tempfile.mkdtemp(prefix="bench-analysis-"), "telemetry.db")
    reuse = False
    if args.keep and os.path.exists(path):
        with sqlite3.connect(path) as conn:
            reuse = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] >= args.runs
    print(f"store: {path}")
    if not reuse:
        if os.path.exists(path):
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(path + suffix):
                    os.unlink(path + suffix)
        seconds = generate(path, args.runs)
        print(f"  {args.runs:,} runs and {4 * args.runs:,} node rows in {seconds:.0f} s "
              f"({os.path.getsize(path) / 1e9:.2f} GB)")
    store = Store(sqlite_url(path))
    store.open()
    service = AnalysisService(store)
    rng = random.Random(7)
    # Open some recommendations first (as the recorder would have done), so the listing has content.
    t0 = time.perf_counter()
    evaluated = service.evaluate()
    print(f"on-demand evaluation of {evaluated['workflows_evaluated']} workflows: "
          f"{(time.perf_counter() - t0) * 1000:.0f} ms, {len(evaluated['opened'])} recommendation(s) opened")
    analysis_ms, total_ms = time_on_run_stored(store, service, 200, rng)
    results = asyncio.run(time_routes(service, args.repeat, rng))

    width = max(len(label) for label, _ in results) + 2
    print()
    print(f"{'route':<{width}} {'n':>4} {'p50 ms':>9} {'p95 ms':>9}  target p95 < {TARGET_P95_MS:.0f} ms")
    print("-" * (width + 40))
    failures = 0
    for label, samples in results:
        p50, p95 = quantiles(samples)
        cold = label.startswith("(cold)")
        verdict = "info" if cold else ("PASS" if p95 < TARGET_P95_MS else "FAIL")
        failures += verdict == "FAIL"
        print(f"{label:<{width}} {len(samples):>4} {p50:>9.1f} {p95:>9.1f}  {verdict}")
    print("-" * (width + 40))
    for label, samples in (("on_run_stored (analysis only)", analysis_ms),
                           ("save_runs + on_run_stored (one run)", total_ms)):
        p50, p95 = quantiles(samples)
        print(f"{label:<{width}} {len(samples):>4} {p50:>9.1f} {p95:>9.1f}  max {max(samples):.1f} ms")
    print()
    print("all routes PASS" if not failures else f"{failures} route(s) FAIL the p95 target")
    store.close()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
