"""Issue 9's CI proof: every route of the list answers correctly on a 100,000-run store (generated once per module
by bench/generate_store.py, on a SQLite file and in a fresh PostgreSQL schema), through HTTP on a loopback port
served by the pack's one app assembly (bench/rest_target.py, read-only here so the counts stay exact).

Nothing about time is asserted (bench/bench_rest.py measures); the generation time is printed. Marked `scale`:
`-m "not scale"` leaves it out of a quick run; the whole suite (CI) runs it, in the 0.3.75 leg only."""

from __future__ import annotations

import http.client
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from generate_store import generate  # noqa: E402

from telemetry.store.database import sqlite_url  # noqa: E402

pytestmark = [pytest.mark.scale, pytest.mark.bench, pytest.mark.timeout(900)]

RUNS = 100_000
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
STATUSES = ("success", "failed", "interrupted")
TERM = "upscale"


class Target:
    """bench/rest_target.py over the store, without a writer: a real process on a loopback port."""

    def __init__(self, url: str, log_path: Path) -> None:
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen([sys.executable, str(ROOT / "bench" / "rest_target.py"), "--url", url,
                                             "--write-rate", "0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=log, text=True, cwd=ROOT)
        line = self.process.stdout.readline()
        assert line.startswith("READY "), f"rest_target did not start: {line!r} (log: {log_path})"
        self.port = int(line.split()[1])

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def get(self, path: str, **query: Any) -> Any:
        full = "/telemetry" + path + ("?" + urlencode(query) if query else "")
        status, data = self.request("GET", full)
        assert status == 200, f"GET {full}: {status} {data[:300]!r}"
        return json.loads(data)

    def first_bytes(self, path: str) -> tuple[int, bytes]:
        """Status and the first line of a streamed answer; the connection is closed before the stream ends."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        try:
            conn.request("GET", "/telemetry" + path)
            resp = conn.getresponse()
            return resp.status, resp.readline()
        finally:
            conn.close()

    def stop(self) -> None:
        try:
            self.process.communicate("stop\n", timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(30)


class Raw:
    """Plain SQL on the same store (sqlite3 / psycopg2), for the expected answers."""

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite"):
            self.conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        else:
            import psycopg2

            self.conn = psycopg2.connect(url)
            self.conn.autocommit = True

    def one(self, sql: str, *params: Any) -> Any:
        cur = self.conn.cursor()
        mark = "?" if isinstance(self.conn, sqlite3.Connection) else "%s"
        cur.execute(sql.replace("?", mark), params)
        return cur.fetchall()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def scale(request, tmp_path_factory) -> Any:
    """(target, raw, picks) over a freshly generated 100,000-run store."""
    workdir = tmp_path_factory.mktemp(f"scale-{request.param}")
    if request.param == "sqlite":
        url = sqlite_url(str(workdir / "telemetry.db"))
    else:
        url = request.getfixturevalue("pg_module_schema_url")
    t0 = time.perf_counter()
    result = generate(url, RUNS, progress=False)
    seconds = time.perf_counter() - t0
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"\n[scale] {request.param}: generated {result.runs:,} runs, {result.node_rows:,} node "
                            f"rows in {seconds:.1f} s")
    assert result.runs == RUNS
    raw = Raw(url)
    picks = {
        "workflow": raw.one("SELECT workflow_name, COUNT(*) FROM runs GROUP BY workflow_name ORDER BY 2 DESC, 1 "
                            "LIMIT 1")[0][0],
        "workflow_key": raw.one("SELECT workflow_key, COUNT(*) FROM runs GROUP BY workflow_key ORDER BY 2 DESC, 1 "
                                "LIMIT 1")[0][0],
        "story": raw.one("SELECT story_title, COUNT(*) FROM runs WHERE story_title IS NOT NULL GROUP BY story_title "
                         "ORDER BY 2 DESC, 1 LIMIT 1")[0][0],
        "instances": [r[0] for r in raw.one("SELECT DISTINCT instance FROM runs ORDER BY 1")],
        "by_status": dict(raw.one("SELECT status, COUNT(*) FROM runs GROUP BY status")),
        "newest": raw.one("SELECT MAX(started_at_ms) FROM runs")[0][0],
    }
    target = Target(url, workdir / "target.log")
    yield target, raw, picks
    target.stop()
    raw.conn.close()


@pytest.fixture(scope="module")
def pg_module_schema_url(request):
    """A fresh PostgreSQL schema for the module (the conftest's pg_schema_url is per test)."""
    import uuid

    import psycopg2

    pg_url = request.getfixturevalue("pg_url")
    schema = "rt_scale_" + uuid.uuid4().hex[:8]
    conn = psycopg2.connect(pg_url)
    conn.autocommit = True
    conn.cursor().execute(f"CREATE SCHEMA {schema}")
    yield f"{pg_url}{'&' if '?' in pg_url else '?'}options=-csearch_path%3D{schema}"
    conn.cursor().execute(f"DROP SCHEMA {schema} CASCADE")
    conn.close()


def _follows(runs: list[dict], sort: str) -> bool:
    values = [r[sort.lstrip("-")] for r in runs]
    present = [v for v in values if v is not None]
    nulls_last = values == present + [None] * (len(values) - len(present))
    ordered = present == sorted(present, reverse=sort.startswith("-"))
    return nulls_last and ordered


def test_stats_count_every_run(scale):
    target, raw, picks = scale
    stats = target.get("/stats")
    assert stats["total_runs"] == RUNS
    assert sum(stats["by_status"].values()) == RUNS
    assert {k: v for k, v in stats["by_status"].items() if v} == picks["by_status"]
    assert sum(w["runs"] for w in stats["by_workflow"]) <= RUNS and stats["by_workflow"]
    week = target.get("/stats", since_ms=picks["newest"] - 7 * DAY_MS)
    expected_week = raw.one("SELECT COUNT(*) FROM runs WHERE started_at_ms >= ?", picks["newest"] - 7 * DAY_MS)[0][0]
    assert week["total_runs"] == expected_week > 0
    one = target.get("/stats", workflow=picks["workflow"])
    assert one["total_runs"] == raw.one("SELECT COUNT(*) FROM runs WHERE workflow_name = ?", picks["workflow"])[0][0]
    assert [w["runs"] for w in one["by_workflow"]] == [one["total_runs"]]
    per_instance = [target.get("/stats", instance=name)["total_runs"] for name in picks["instances"]]
    assert sum(per_instance) == RUNS and all(per_instance)
    listed = {i["instance"]: i["runs"] for i in target.get("/instances")["instances"]}  # the panel's selector
    assert listed == dict(zip(picks["instances"], per_instance, strict=True))


def test_runs_every_filter_answers_matching_runs(scale):
    target, raw, picks = scale
    newest = picks["newest"]
    failed = target.get("/runs", status="failed", count="exact")
    assert failed["total"] == picks["by_status"]["failed"] and all(r["status"] == "failed" for r in failed["runs"])
    week = target.get("/runs", status="failed,interrupted", since_ms=newest - 7 * DAY_MS)
    assert week["runs"] and all(r["status"] in ("failed", "interrupted") and r["started_at_ms"] >= newest - 7 * DAY_MS
                                for r in week["runs"])
    window = target.get("/runs", since_ms=newest - 90 * DAY_MS, until_ms=newest - 30 * DAY_MS, count="exact")
    assert window["total"] == raw.one("SELECT COUNT(*) FROM runs WHERE started_at_ms >= ? AND started_at_ms <= ?",
                                      newest - 90 * DAY_MS, newest - 30 * DAY_MS)[0][0]
    assert all(newest - 90 * DAY_MS <= r["started_at_ms"] <= newest - 30 * DAY_MS for r in window["runs"])
    flow = target.get("/runs", workflow=picks["workflow"], count="exact")
    assert flow["total"] == raw.one("SELECT COUNT(*) FROM runs WHERE workflow_name = ?", picks["workflow"])[0][0]
    assert flow["runs"] and all(r["workflow_name"] == picks["workflow"] for r in flow["runs"])
    label = target.get("/runs", label=picks["story"], limit=200)
    assert label["runs"] and all(picks["story"] in json.dumps(r, ensure_ascii=False) for r in label["runs"])
    instance = picks["instances"][-1]
    one = target.get("/runs", instance=instance, count="exact")
    assert one["total"] == raw.one("SELECT COUNT(*) FROM runs WHERE instance = ?", instance)[0][0]
    assert all(r["instance"] == instance for r in one["runs"])
    found = target.get("/runs", q=TERM, limit=200)
    assert found["runs"] and found["total"] >= len(found["runs"])
    assert all(TERM in json.dumps(r, ensure_ascii=False).lower() for r in found["runs"]), "a q match without the term"
    assert _follows(found["runs"], "-started_at_ms")


@pytest.mark.parametrize("sort", ["-started_at_ms", "started_at_ms", "-duration_ms", "duration_ms"])
def test_cursor_walk_follows_the_sort_without_duplicates(scale, sort):
    target, _, _ = scale
    pages, cursor = [], None
    for _ in range(3):
        page = target.get("/runs", sort=sort, limit=50, **({"cursor": cursor} if cursor else {}))
        assert len(page["runs"]) == 50 and page["next_cursor"]
        pages.append(page["runs"])
        cursor = page["next_cursor"]
    walked = [r for page in pages for r in page]
    ids = [r["run_id"] for r in walked]
    assert len(set(ids)) == 150, "a run appeared on two pages"
    assert _follows(walked, sort)
    by_offset = target.get("/runs", sort=sort, limit=150)
    assert [r["run_id"] for r in by_offset["runs"]] == ids


def test_page_10000_by_offset_is_the_page_by_cursor(scale):
    target, raw, _ = scale
    limit = 5  # page 10,000 of 5 runs a page lies within 100,000 runs (the panel's 50 needs 500,000)
    deep = target.get("/runs", limit=limit, offset=9_999 * limit)
    before = target.get("/runs", limit=limit, offset=9_998 * limit)
    by_cursor = target.get("/runs", limit=limit, cursor=before["next_cursor"])
    assert [r["run_id"] for r in deep["runs"]] == [r["run_id"] for r in by_cursor["runs"]]
    expected = raw.one("SELECT run_id FROM runs ORDER BY started_at_ms DESC, run_id DESC LIMIT ? OFFSET ?", limit,
                       9_999 * limit)
    assert [r["run_id"] for r in deep["runs"]] == [r[0] for r in expected]
    assert deep["next_cursor"] == by_cursor["next_cursor"]


def test_run_detail_has_its_nodes(scale):
    target, raw, _ = scale
    run_id, nodes = raw.one("SELECT r.run_id, COUNT(n.id) FROM runs r JOIN node_runs n ON n.run_id = r.run_id "
                            "GROUP BY r.run_id ORDER BY r.run_id LIMIT 1")[0]
    run = target.get(f"/runs/{run_id}")
    assert run["run_id"] == run_id and len(run["nodes"]) == nodes > 0


@pytest.mark.parametrize(("bucket", "days"), [("hour", 30), ("day", 30), ("day", 90)])
def test_timeline_buckets_sum_to_the_counts(scale, bucket, days):
    target, raw, picks = scale
    size = HOUR_MS if bucket == "hour" else DAY_MS
    since = (picks["newest"] - days * DAY_MS) // size * size
    timeline = target.get("/stats/timeline", bucket=bucket, since_ms=since)
    points = timeline["points"]
    assert points and all(p["success"] + p["failed"] + p["interrupted"] == p["runs"] for p in points)
    assert all(since <= p["t_ms"] and p["t_ms"] % size == 0 for p in points)
    assert sum(p["runs"] for p in points) == target.get("/stats", since_ms=since)["total_runs"]
    assert sum(p["runs"] for p in points) == raw.one("SELECT COUNT(*) FROM runs WHERE started_at_ms >= ?",
                                                     since)[0][0]


def test_node_types_count_the_node_rows(scale):
    target, raw, _ = scale
    types = target.get("/stats/node_types")["node_types"]
    assert types and all(t["class_type"] for t in types)
    expected = dict(raw.one("SELECT class_type, COUNT(*) FROM node_runs GROUP BY class_type"))
    assert {t["class_type"] for t in types} <= set(expected)
    assert "KSampler" in {t["class_type"] for t in types}


def test_analysis_routes_answer(scale):
    target, _, picks = scale
    assert isinstance(target.get("/recommendations")["recommendations"], list)
    trends = target.get("/trends", workflow=picks["workflow_key"], metric="duration_ms")
    assert trends["points"] and len(trends["points"]) <= 500
    from bench_fleet_load import history_items

    prompt = history_items()[0]["prompt"][2]
    status, data = target.request("POST", "/telemetry/predict", {"prompt": prompt})
    assert status == 200 and "duration_ms" in json.loads(data), data[:300]
    accuracy = target.get("/predict/accuracy")
    assert accuracy["workflows"] and all(w["duration_ms"]["runs_tested"] >= 0 for w in accuracy["workflows"])
    assert len(target.get("/queue/eta")["items"]) == 3  # rest_target's queue of three prompts


def test_metrics_and_export_answer(scale):
    target, _, _ = scale
    status, data = target.request("GET", "/telemetry/metrics")
    assert status == 200 and data
    status, line = target.first_bytes("/export?format=jsonl")
    assert status == 200
    first = json.loads(line)
    assert first["run_id"] and first["status"] in STATUSES
