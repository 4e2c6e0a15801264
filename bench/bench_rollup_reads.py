"""How a recorder write reads its rollup rows on PostgreSQL, side by side in one run: an OR of the keys (before)
against a join to the keys as VALUES (now).

Every run a recorder writes rewrites the same rollup rows, above all the all-time totals of its status, as a
DELETE and an INSERT: a dead version each time, until a vacuum. The next write reads those rows first. Read as an
OR of the keys, PostgreSQL takes a bitmap scan, which never marks a dead version it passes as dead in the index,
so every write passed all the versions the writes before it left. Read by one index scan per key, each dead
version is marked as it is passed and skipped from then on.

    python bench/bench_rollup_reads.py --database-url postgresql://postgres@127.0.0.1:5432/test \\
        --schema bench_1m [--runs 1000] [--no-starts]

From a vacuumed table, `--runs` runs through `Store.save_runs`, one run per batch, the way before; VACUUM; the
same number the way now. Each run is written once as `running` and then final with 12 node rows
(bench_rollup_writes.py), or with `--no-starts` final only, as a recorder writes a run shorter than its start
record's delay (one workflow, one in ten failed). It prints
the final records' write latency per side, its median per window (before, it grows with the versions), the dead
versions of the total rows the index still listed unmarked at the end of each side, and the ratio. Its runs are
deleted afterwards.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_rollup_writes import _run  # noqa: E402

from telemetry.model import NodeRun, Run, RunError  # noqa: E402
from telemetry.store import rollups  # noqa: E402
from telemetry.store.schema import RunRow  # noqa: E402
from telemetry.store.store import Store  # noqa: E402


def _unmarked_dead_versions(store: Store) -> int:
    """Dead versions of the total rows (workflow '' and instance '' of `success` and of every status) that the
    index of their keys still lists unmarked: what a bitmap scan of that index finds, less the rows it reads live.
    (The primary key's index is kept clean by the INSERTs' own uniqueness checks; the expressions keep the planner
    off it.)"""
    with store.bound(), store.db.atomic():
        for setting in ("enable_seqscan", "enable_indexscan", "enable_indexonlyscan"):
            store.db.execute_sql(f"SET LOCAL {setting} = off")
        (plan,) = store.db.execute_sql(
            "EXPLAIN (ANALYZE, FORMAT JSON) SELECT runs FROM run_rollups WHERE workflow_key = '' AND instance = '' "
            "AND status IN ('success', '*') AND grain + 0 = %s AND bucket_ms + 0 = 0",
            (rollups.TOTAL_ALL,)).fetchone()
    return dead_versions_found(plan[0]["Plan"])


def dead_versions_found(node: dict) -> int:
    """In an EXPLAIN (ANALYZE, FORMAT JSON) plan: the index entries its bitmap scans found that led to no live
    row (found, less the rows read and those the filter removed)."""
    if node["Node Type"] == "Bitmap Heap Scan":
        found = sum(child["Actual Rows"] for child in _walk(node) if child["Node Type"] == "Bitmap Index Scan")
        return found - node["Actual Rows"] - node.get("Rows Removed by Filter", 0)
    return sum(dead_versions_found(child) for child in node.get("Plans", []))


def _walk(node: dict):
    yield node
    for child in node.get("Plans", []):
        yield from _walk(child)


def _short_run(i: int, now: int) -> Run:
    """A run shorter than its start record's delay, written once, final: one workflow on one machine, one in ten
    failed, 12 node rows."""
    run = Run(f"bench-writes-{i:06d}", "failed" if i % 10 == 0 else "success", started_at_ms=now + i * 1000,
              finished_at_ms=now + i * 1000 + 900, duration_ms=900.0 + i % 50, workflow_id="wf-bench-short",
              workflow_name="Bench short", instance="bench-writes",
              nodes=[NodeRun(str(n), f"Node{n}", "executed", duration_ms=50.0) for n in range(12)])
    if run.status == "failed":
        run.error = RunError("11", "Node11", "RuntimeError", f"failure {i}")
    return run


def _side(store: Store, label: str, first: int, count: int, now: int, windows: int, starts: bool) -> dict:
    with store.bound():
        store.db.execute_sql("VACUUM (INDEX_CLEANUP ON) run_rollups")
        store.db.execute_sql("VACUUM (INDEX_CLEANUP ON) node_type_rollups")
    finals = []
    for i in range(first, first + count):
        if starts:
            store.save_runs([_run(i, "running", now)])
        began = time.perf_counter()
        store.save_runs([_run(i, "success", now) if starts else _short_run(i, now)])
        finals.append((time.perf_counter() - began) * 1000)
    size = max(1, count // windows)
    return {"label": label, "finals": finals, "dead": _unmarked_dead_versions(store),
            "windows": [statistics.median(finals[k:k + size]) for k in range(0, count, size)]}


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--schema", default=None)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--no-starts", action="store_true",
                        help="write only the final records (runs shorter than the start record's delay)")
    parser.add_argument("--now-first", action="store_true", help="measure the current way first")
    args = parser.parse_args()
    url = args.database_url
    if args.schema:
        url += ("&" if "?" in url else "?") + "options=" + quote(f"-csearch_path={args.schema}")
    store = Store(url)
    store.open()
    if store.kind != "postgresql":
        raise SystemExit("PostgreSQL only: SQLite has no dead versions, and reads both forms by index")
    with store.bound():
        stored = RunRow.select().count()
    now = int(time.time() * 1000)
    starts = not args.no_starts
    current = rollups.read_rows

    def measure_before(first: int) -> dict:
        rollups.read_rows = functools.partial(current, select=rollups.select_by_or)  # the read before
        try:
            return _side(store, "OR of the keys (before)", first, args.runs, now, args.windows, starts)
        finally:
            rollups.read_rows = current

    if args.now_first:
        after = _side(store, "join to VALUES (now)", 0, args.runs, now, args.windows, starts)
        before = measure_before(args.runs)
    else:
        before = measure_before(0)
        after = _side(store, "join to VALUES (now)", args.runs, args.runs, now, args.windows, starts)
    with store.bound():
        ids = [r for (r,) in RunRow.select(RunRow.run_id).where(RunRow.instance == "bench-writes").tuples()]
        for start in range(0, len(ids), 200):
            store._delete_runs(ids[start:start + 200])
    print(f"recorder writes on {url.split('@')[-1]} ({stored:,} runs stored; {args.runs} runs per side, one run per "
          "batch, the final record timed; " + ("each after its start)" if starts else "final records only)"))
    print(f"{'':26} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} {'dead':>8}   median per window of "
          f"{args.runs // args.windows} runs")
    for side in (before, after):
        f = side["finals"]
        print(f"{side['label']:26} {statistics.median(f):7.1f} {_p(f, 0.95):7.1f} {max(f):7.1f} "
              f"{side['dead']:8,}   " + " ".join(f"{w:6.1f}" for w in side["windows"]))
    print(f"ratio (now / before): p50 {statistics.median(after['finals']) / statistics.median(before['finals']):.2f}x"
          f", p95 {_p(after['finals'], 0.95) / _p(before['finals'], 0.95):.2f}x; 'dead': dead versions of the "
          "total rows that their keys' index still listed unmarked at the end (each one read by every write)")
    store.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
