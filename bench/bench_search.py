"""Text search (`/runs?q=`) on a large store (SQLite or PostgreSQL): rare, medium and dense terms through the
REST layer, side by side with the raw LIKE query for the same page, in bench_rest.py's format.

    python bench/bench_search.py (--db FILE | --database-url URL) [--repeat 20] [--code DIR] [--writes]

The store is one bench/generate_store.py made (e.g. `--runs 1000000 --db /tmp/search-1m.db`). `--code` runs the
pack's code of another checkout against the same file (e.g. the code before the search index, for a before/after
pair; that code ignores the index, which the triggers keep in step). Each term's match count is printed beside
it, so "rare" and "dense" are measured, not named.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import sys
import time
import urllib.parse

TARGET_P95_MS = 100.0
COLUMNS = ("workflow_name", "run_id", "error_message", "error_node_type", "story_title", "scene", "tags")


def quantiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def terms(conn) -> list[tuple[str, str]]:
    some_run = execute(conn, "SELECT run_id FROM runs ORDER BY run_id LIMIT 1 OFFSET 1000")[0][0]
    return [
        ("run id fragment", some_run[9:23]),
        ("no match", "zzqx"),
        ("unicode, no match", "Ünïcødé"),
        ("rare: Story 16 scene 29", "Scene 29"),
        ("medium: missing lora", "missing.safetensors"),
        ("medium: mat1", "mat1 and mat2"),
        ("dense: upscale", "upscale"),
        ("dense: portrait", "portrait"),
        ("2 chars: sc", "sc"),
        ("2 chars, no match: qz", "qz"),
        ("wildcard: 50%", "50%"),
    ]


def raw_sql(q: str, pg: bool) -> tuple[str, list[str]]:
    pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    where = " OR ".join(f"{c} {'ILIKE %s' if pg else 'LIKE ?'} ESCAPE '\\'" for c in COLUMNS)
    return f"SELECT * FROM runs WHERE {where} ORDER BY started_at_ms DESC LIMIT 50", [pattern] * len(COLUMNS)


def connect(target: str):
    """A plain driver connection for the raw queries: sqlite3 for a file, psycopg2 for a URL."""
    if "://" not in target:
        return sqlite3.connect(target)
    import psycopg2

    return psycopg2.connect(target)


def execute(conn, sql: str, params=()) -> list:
    cursor = conn.cursor()
    cursor.execute(sql, params)
    return cursor.fetchall()


async def time_terms(service, path: str, repeat: int) -> list[tuple]:
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from telemetry.api.routes import add_core_routes

    routes = web.RouteTableDef()
    add_core_routes(routes, lambda: service)
    app = web.Application()
    app.add_routes(routes)
    conn = connect(path)
    pg = "://" in path
    results = []
    async with TestClient(TestServer(app)) as client:
        for name, q in terms(conn):
            url = "/telemetry/runs?q=" + urllib.parse.quote(q)
            timings, raw = [], []
            total = None
            sql, params = raw_sql(q, pg)
            for _ in range(repeat):
                t0 = time.perf_counter()
                resp = await client.get(url)
                body = await resp.json()
                timings.append((time.perf_counter() - t0) * 1000)
                if resp.status != 200:
                    raise RuntimeError(f"{url} answered {resp.status}: {body}")
                total = f"{body['total']:,}{'+' if body.get('total_capped') else ''}"
                t0 = time.perf_counter()
                execute(conn, sql, params)
                raw.append((time.perf_counter() - t0) * 1000)
            results.append((name, q, total, timings, raw))
    conn.close()
    return results


def write_cost(runs: int = 1500) -> None:
    """The triggers' cost on the one write path: save_runs of one run at a time (the recorder commits each finished
    run at once), into a fresh store with the search index and into one whose index was dropped."""
    import tempfile
    import uuid

    from telemetry.model import Run, RunError, RunLabels
    from telemetry.store.database import sqlite_url
    from telemetry.store.store import Store

    def one(i: int) -> Run:
        run = Run(str(uuid.uuid4()), "failed" if i % 10 == 0 else "success", started_at_ms=1_000_000 + i,
                  duration_ms=1234.5, workflow_name=f"upscale portrait {i % 300:03d}")
        if i % 10 == 0:
            run.error = RunError("3", "KSampler", "RuntimeError", "mat1 and mat2 shapes cannot be multiplied "
                                 "(77x768 and 1024x320)")
        run.labels = RunLabels(f"Story {i % 17}", f"Scene {i % 30}", ["hero", "night"])
        return run

    result = {}
    for label, drop in (("with index", False), ("without", True)):
        store = Store(sqlite_url(tempfile.mkdtemp(prefix="rt-search-w-") + "/t.db"))
        store.open()
        if drop:
            for trigger in ("insert", "delete", "update"):
                store.db.execute_sql(f"DROP TRIGGER runs_search_{trigger}")
        batch = [one(i) for i in range(runs)]
        t0 = time.perf_counter()
        for run in batch:
            store.save_runs([run])
        result[label] = (time.perf_counter() - t0) / runs * 1e6
        store.shutdown()
    print(f"\nsave_runs, one run per transaction ({runs:,} runs): with the search index "
          f"{result['with index']:.0f} us/run, without {result['without']:.0f} us/run "
          f"(+{result['with index'] - result['without']:.0f} us)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--db", help="a SQLite file")
    where.add_argument("--database-url", help="a PostgreSQL URL (e.g. with options=-csearch_path%%3DSCHEMA)")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--writes", action="store_true", help="also time save_runs with and without the index")
    parser.add_argument("--code", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    args = parser.parse_args()
    sys.path.insert(0, os.path.abspath(args.code))
    from telemetry.service import TelemetryService
    from telemetry.store.database import sqlite_url
    from telemetry.store.store import Store

    target = args.db or args.database_url
    store = Store(sqlite_url(args.db) if args.db else args.database_url)
    store.open()
    runs = store.count_runs()
    service = TelemetryService(store, None, source="bench", instance="bench:0")
    search = getattr(store, "search", None)
    index = search.state.kind if search is not None else "none (code without run_search)"
    print(f"\n/runs?q= on {runs:,} runs ({store.kind}), index {index} ({args.repeat} calls each, after one warm-up), "
          f"code {os.path.abspath(args.code)}, CPython {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print(f"{'term':<26}{'matches':>10}{'p50 ms':>9}{'p95 ms':>9}{'raw p50':>9}{'ratio':>8}   "
          f"target p95 < {TARGET_P95_MS:.0f} ms")
    failures = 0
    for name, _q, total, timings, raw in asyncio.run(time_terms(service, target, args.repeat + 1)):
        p50, p95 = quantiles(timings[1:])
        raw50, _ = quantiles(raw[1:])
        verdict = "PASS" if p95 < TARGET_P95_MS else "FAIL"
        failures += verdict == "FAIL"
        print(f"{name:<26}{total:>10}{p50:>9.1f}{p95:>9.1f}{raw50:>9.1f}{p50 / max(raw50, 1e-3):>7.1f}x   {verdict}")
    print("\nmatches = the response's total (capped at 10,000); raw = the plain LIKE (ILIKE) query over the seven "
          "columns for the same first page (no index can serve it)")
    store.shutdown()
    if args.writes:
        write_cost()
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
