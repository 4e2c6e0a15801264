"""A realistic store of N runs, written through the store's own schema, for benchmarks and scale tests.

    python bench/generate_store.py --runs 1000000 --db /tmp/telemetry.db [--seed 1]
    python bench/generate_store.py --runs 100000 --database-url postgresql://postgres@127.0.0.1:5432/test

The Store creates (or migrates) the schema; rows go in with bulk inserts, one transaction per chunk, into the
columns of the store's models (`telemetry.store.schema`; a column the generator does not know gets the model's
default). What it makes:
- a few hundred workflows (`--workflows`, default 300) with long-tailed popularity (Zipf), each with its own
  graph of 3..40 nodes, a lognormal median duration and GPU peak, parameters, outputs (images; some videos with
  frames, some audio), and a UI name (`workflow_names`); a share of them belong to a story (labels: story
  title, scene, tags);
- runs over the last year with a daily rhythm (quiet nights, busy afternoons and evenings, calmer weekends) and
  some growth: ~85% success, 10% failed (a third out of memory, at the node that failed), 5% interrupted;
  duration lognormal around the workflow's median; some nodes cached on repeated runs;
- 5 instances (each with its GPU, a share of the runs, and a heartbeat row);
- the rollups of those runs and of their nodes (`telemetry.store.rollups`, `node_type_rollups`), built once at
  the end as migrations 11 and 14 build them, and the label filter's rows (`telemetry.store.run_labels`) as
  migration 15 fills them.
Deterministic for a given --seed, --runs and --end-ms (default: now, which only shifts the times). It prints
the rate (runs and rows per second).
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import operator
import os
import random
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from peewee import AutoField, PostgresqlDatabase  # noqa: E402

from telemetry.store import node_type_rollups, rollups, run_labels  # noqa: E402
from telemetry.store.database import sqlite_path, sqlite_url  # noqa: E402
from telemetry.store.run_search import SQLITE_TABLE  # noqa: E402
from telemetry.store.schema import InstanceRow, NodeRunRow, RunOutputRow, RunRow, WorkflowNameRow  # noqa: E402
from telemetry.store.store import Store  # noqa: E402

DAY_MS = 86_400_000
GIB = 1024**3
CHUNK = 20_000  # runs per transaction
# Share of a day's runs in each hour (local time = UTC here): quiet nights, busy afternoons and evenings.
HOURLY = (1, 0.6, 0.4, 0.3, 0.3, 0.4, 0.8, 1.5, 3, 4.5, 5.5, 6, 5.5, 6, 6.5, 7, 7, 6.5, 6, 6.5, 7, 6, 4, 2)
WEEKDAY = (1.0, 1.0, 1.0, 1.0, 0.95, 0.7, 0.6)  # Monday..Sunday
INSTANCES = (  # name, GPU, total memory, share of the runs
    ("studio-a:8188", "NVIDIA H100 80GB HBM3", 80 * GIB, 0.35),
    ("studio-b:8188", "NVIDIA H100 80GB HBM3", 80 * GIB, 0.25),
    ("render-1:8188", "NVIDIA L40S", 48 * GIB, 0.2),
    ("render-2:8188", "NVIDIA L40S", 48 * GIB, 0.12),
    ("laptop:8188", "NVIDIA GeForce RTX 4090 Laptop GPU", 16 * GIB, 0.08),
)
THEMES = ("portrait", "landscape", "product shot", "anime", "upscale", "inpaint", "video", "logo", "sketch",
          "texture", "character sheet", "storyboard", "interior", "fashion", "audio")
CHECKPOINTS = ("sdxl_base_1.0.safetensors", "juggernautXL_v9.safetensors", "flux1-dev.safetensors",
               "sd_v1-5.safetensors", "wan2.1_t2v_14B.safetensors", "ltx-video-2b.safetensors")
SAMPLERS = ("euler", "euler_ancestral", "dpmpp_2m", "dpmpp_2m_sde", "uni_pc")
SCHEDULERS = ("normal", "karras", "sgm_uniform", "simple")
SIZES = ((512, 512), (768, 768), (1024, 1024), (832, 1216), (1216, 832), (1344, 768), (1536, 1536))
# Node types of a graph: always a loader, encoders, a sampler, a decoder and a saver; the rest from the pool.
CORE_NODES = ("CheckpointLoaderSimple", "CLIPTextEncode", "CLIPTextEncode", "EmptyLatentImage", "KSampler",
              "VAEDecode")
POOL_NODES = ("LoraLoader", "ControlNetLoader", "ControlNetApplyAdvanced", "LoadImage", "ImageScale",
              "UpscaleModelLoader", "ImageUpscaleWithModel", "KSamplerAdvanced", "VAEEncode", "SetLatentNoiseMask",
              "IPAdapterApply", "CLIPSetLastLayer", "ConditioningCombine", "LatentUpscale", "FaceDetailer",
              "PreviewImage", "ImageBlend", "Note", "Reroute", "PrimitiveNode")
ERRORS = (("RuntimeError", "mat1 and mat2 shapes cannot be multiplied (77x768 and 1024x320)"),
          ("ValueError", "Unexpected input: image is None"),
          ("FileNotFoundError", "[Errno 2] No such file or directory: 'models/loras/missing.safetensors'"),
          ("KeyError", "'model.diffusion_model.input_blocks.0.0.weight'"))
INTERRUPT_REASONS = (None, None, "ComfyUI stopped while the run was active")


@dataclass
class Workflow:
    key: int
    workflow_id: str
    name: str
    fingerprint: str
    nodes: list[tuple[str, str, float]]  # node id, class type, share of the run's time
    sampler_position: int
    median_ms: float
    sigma: float
    peak_fraction: float
    params: dict[str, Any]
    params_json: str
    images: int
    video_frames: int
    audio: bool
    story: str | None
    scenes: int
    tags: list[str]
    checkpoint: str


def make_workflows(count: int, rng: random.Random) -> list[Workflow]:
    workflows = []
    for k in range(count):
        theme = THEMES[k % len(THEMES)] if k < len(THEMES) else rng.choice(THEMES)
        extra = min(34, int(rng.lognormvariate(math.log(5), 0.8)))  # 6 core + extra, then cut to 3..40
        types = list(CORE_NODES) + [rng.choice(POOL_NODES) for _ in range(extra)]
        video = theme in ("video", "storyboard") or rng.random() < 0.05
        audio = theme == "audio"
        types.append("VHS_VideoCombine" if video else "SaveAudio" if audio else "SaveImage")
        types = types[: max(3, min(40, len(types)))]
        if len(types) < 3 or rng.random() < 0.05:
            types = ["LoadImage", "ImageScale", "SaveImage"]  # a tiny utility graph
        weights = [rng.lognormvariate(0, 1) * (25 if t.startswith("KSampler") else 1) for t in types]
        total = sum(weights)
        node_ids = rng.sample(range(1, 400), len(types))
        nodes = [(str(n), t, w / total) for n, t, w in zip(node_ids, types, weights, strict=True)]
        sampler = max(range(len(types)), key=lambda i: weights[i])
        width, height = rng.choice(SIZES)
        steps = rng.choice((8, 20, 20, 25, 30, 30, 40, 50))
        batch = rng.choice((1, 1, 1, 2, 4))
        checkpoint = rng.choice(CHECKPOINTS)
        median = 1500 * (width * height / 1048576) * (steps / 20) * batch ** 0.8 * rng.lognormvariate(1, 0.7)
        if video:
            median *= 12
        story = f"Story {k % 17}" if rng.random() < 0.2 else None
        params = {"width": width, "height": height, "pixels": width * height, "batch": batch, "steps": steps,
                  "cfg": rng.choice((1.0, 3.5, 5.0, 6.5, 7.0, 8.0)), "sampler": rng.choice(SAMPLERS),
                  "scheduler": rng.choice(SCHEDULERS), "checkpoint": checkpoint}
        if rng.random() < 0.4:
            params["loras"] = [f"lora_{rng.randrange(60)}.safetensors" for _ in range(rng.randint(1, 3))]
        if video:
            params["frames"] = rng.choice((16, 24, 49, 81, 121))
        workflows.append(Workflow(
            key=k, workflow_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            name=f"{theme} {k:03d}", fingerprint=f"{rng.getrandbits(256):064x}", nodes=nodes,
            sampler_position=sampler, median_ms=max(200.0, median), sigma=rng.uniform(0.1, 0.45),
            peak_fraction=min(0.97, rng.lognormvariate(math.log(0.3), 0.5)), params=params,
            params_json=json.dumps(params, separators=(",", ":")),
            images=0 if (video or audio) else batch, video_frames=params.get("frames", 0) if video else 0,
            audio=audio, story=story, scenes=rng.randint(3, 30) if story else 0,
            tags=rng.sample(("hero", "night", "draft", "final", "client", "wip", "test"), rng.randint(0, 2)),
            checkpoint=checkpoint))
    return workflows


def start_times(count: int, end_ms: int, rng: random.Random) -> list[int]:
    """`count` start times over the year before end_ms: more recently (linear growth), by weekday and hour."""
    hour_cum = _cumulative(HOURLY)
    times = []
    start_ms = end_ms - 365 * DAY_MS
    while len(times) < count:
        day = int(365 * math.sqrt(rng.random()))  # density grows linearly over the year
        day_start = start_ms + day * DAY_MS
        if rng.random() > WEEKDAY[(day_start // DAY_MS + 3) % 7]:  # 1970-01-01 was a Thursday
            continue
        hour = bisect.bisect(hour_cum, rng.random() * hour_cum[-1])
        t = day_start + hour * 3_600_000 + rng.randrange(3_600_000)
        if t < end_ms:
            times.append(t)
    times.sort()
    return times


def _cumulative(weights) -> list[float]:
    out, total = [], 0.0
    for w in weights:
        total += w
        out.append(total)
    return out


class Writer:
    """Bulk inserts into one model's table on the store's own connection, in the model's column order."""

    def __init__(self, store: Store, model, known: tuple[str, ...]) -> None:
        fields = [f for f in model._meta.sorted_fields if not isinstance(f, AutoField)]
        self.names = [f.name for f in fields]
        self.defaults = {f.name: (f.default() if callable(f.default) else f.default) for f in fields
                         if f.name not in known}
        q = store.db.quote[0]
        columns = ", ".join(f"{q}{f.column_name}{q}" for f in fields)
        self.table = model._meta.table_name
        self.is_pg = store.kind == "postgresql"
        marks = "%s" if self.is_pg else ", ".join([store.db.param] * len(fields))
        self.sql = f"INSERT INTO {q}{self.table}{q} ({columns}) VALUES " + ("%s" if self.is_pg else f"({marks})")
        self.store = store
        self.rows: list[tuple] = []
        self._pick = operator.itemgetter(*self.names)

    def add(self, row: dict[str, Any]) -> None:
        if self.defaults:
            row = {**self.defaults, **row}
        self.rows.append(self._pick(row))

    def flush(self) -> int:
        count, rows, self.rows = len(self.rows), self.rows, []
        if not rows:
            return 0
        cursor = self.store.db.cursor()
        if self.is_pg:
            from psycopg2.extras import execute_values

            execute_values(cursor, self.sql, rows, page_size=2000)
        else:
            cursor.executemany(self.sql, rows)
        return count


RUN_KEYS = ("run_id", "status", "queued_at_ms", "started_at_ms", "finished_at_ms", "duration_ms", "queue_wait_ms",
            "workflow_id", "workflow_name", "workflow_name_source", "workflow_key", "fingerprint", "node_count",
            "executed_node_count", "cached_node_count", "image_count", "video_count", "audio_count",
            "other_output_count", "frame_count", "error_node_id", "error_node_type", "error_exception_type",
            "error_message", "error_kind", "error_traceback", "interrupted_reason", "gpu_name", "gpu_total_bytes",
            "gpu_peak_bytes", "gpu_reserved_peak_bytes", "gpu_used_peak_bytes", "ram_peak_bytes", "gpu_peak_source",
            "dynamic_vram", "energy_j", "energy_source", "gpus", "story_title", "scene", "tags", "instance",
            "source", "parameters", "pixels", "steps", "updated_at_ms")
NODE_KEYS = ("run", "position", "node_id", "class_type", "status", "started_at_ms", "duration_ms", "gpu_peak_bytes",
             "display_node_id", "parent_node_id", "energy_j")
OUTPUT_KEYS = ("run", "node_id", "kind", "filename", "subfolder", "type", "frame_count", "format")


@dataclass
class Result:
    runs: int
    node_rows: int
    outputs: int
    seconds: float
    by_status: dict[str, int]


def generate(url: str, runs: int, seed: int = 1, workflows: int = 300, end_ms: int | None = None,
             progress: bool = True) -> Result:
    """Write `runs` runs into the store at `url` (schema created or migrated by the Store). Returns counts."""
    started = time.perf_counter()
    rng = random.Random(seed)
    end_ms = end_ms if end_ms is not None else int(time.time() * 1000) - 60_000
    flows = make_workflows(workflows, rng)
    popularity = _cumulative(1 / (rank + 1) ** 1.1 for rank in range(len(flows)))  # Zipf: a long tail
    instance_cum = _cumulative(share for *_, share in INSTANCES)
    times = start_times(runs, end_ms, rng)
    store = Store(url)
    store.open()
    sqlite_file = sqlite_path(url)
    if sqlite_file:
        # This connection only, for a bulk load of rows that are consistent by construction: rerun if it breaks.
        for pragma in ("synchronous=OFF", "foreign_keys=OFF", "cache_size=-400000"):
            store.db.execute_sql(f"PRAGMA {pragma}")
    run_writer = Writer(store, RunRow, RUN_KEYS)
    node_writer = Writer(store, NodeRunRow, NODE_KEYS)
    output_writer = Writer(store, RunOutputRow, OUTPUT_KEYS)
    counts = {"runs": 0, "nodes": 0, "outputs": 0}
    by_status: dict[str, int] = {}
    seen: set[int] = set()
    try:
        with store.bound(), _indexes_built_after(store, (RunRow, NodeRunRow, RunOutputRow), progress):
            with store.db.atomic():
                _write_names_and_instances(store, flows, end_ms)
            for first in range(0, runs, CHUNK):
                for t in times[first:first + CHUNK]:
                    flow = flows[bisect.bisect(popularity, rng.random() * popularity[-1])]
                    instance = INSTANCES[bisect.bisect(instance_cum, rng.random() * instance_cum[-1])]
                    status = _one_run(rng, flow, instance, t, flow.key in seen, run_writer, node_writer,
                                      output_writer)
                    seen.add(flow.key)
                    by_status[status] = by_status.get(status, 0) + 1
                with store.db.atomic():
                    counts["runs"] += run_writer.flush()
                    counts["nodes"] += node_writer.flush()
                    counts["outputs"] += output_writer.flush()
                if progress:
                    rate = counts["runs"] / max(time.perf_counter() - started, 1e-9)
                    print(f"\r  {counts['runs']:>10,} / {runs:,} runs  ({rate:,.0f} runs/s)", end="", flush=True)
        # The rows went in beside Store.save_runs: their rollups are built as migrations 11 and 14 build them, once
        # the indexes are back (SQLite read every run once per day of the year without the one on started_at_ms).
        began = time.perf_counter()
        with store.bound(), store.db.atomic():
            store.db.execute_sql('DELETE FROM "run_rollups"')
            rollups.backfill(store.db)
            store.db.execute_sql('DELETE FROM "node_type_rollups"')
            node_type_rollups.backfill(store.db)
        if progress:
            print(f"\n  rollups built in {time.perf_counter() - began:.1f} s", end="")
        # And the label filter's rows, as migration 15 fills them.
        began = time.perf_counter()
        with store.bound(), store.db.atomic():
            store.db.execute_sql('DELETE FROM "run_labels"')
            run_labels.backfill(store.db)
        if progress:
            print(f"\n  label rows built in {time.perf_counter() - began:.1f} s", end="")
        # PostgreSQL: VACUUM too, as autovacuum would have long since done on a store that grew over a year; its
        # visibility map is what lets index-only scans (deep offset pages, counts) skip the table.
        store.db.execute_sql("VACUUM (ANALYZE)" if isinstance(store.db, PostgresqlDatabase) else "ANALYZE")
    finally:
        store.close()
    if progress:
        print()
    return Result(counts["runs"], counts["nodes"], counts["outputs"], time.perf_counter() - started, by_status)


@contextmanager
def _indexes_built_after(store: Store, models: tuple, progress: bool) -> Iterator[None]:
    """The secondary indexes of an empty table are dropped for the load and made again, with the very statements
    the schema made them with, afterwards (one sort per index instead of a B-tree update per row)."""
    tables = [m._meta.table_name for m in models]
    if any(store.db.execute_sql(f'SELECT 1 FROM "{t}" LIMIT 1').fetchone() for t in tables):
        yield
        return
    marks = ", ".join([store.db.param] * len(tables))
    if store.kind == "postgresql":
        found = store.db.execute_sql(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = current_schema() AND "
            f"i.tablename IN ({marks}) AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
            tables).fetchall()
    else:
        found = store.db.execute_sql(
            f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name IN ({marks}) AND sql IS NOT NULL",
            tables).fetchall()
    # SQLite's search index (triggers into runs_search) is filled once afterwards too, by its 'rebuild'.
    triggers = [] if store.kind == "postgresql" else store.db.execute_sql(
        f"SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN ({marks})", tables).fetchall()
    with store.db.atomic():
        for name, _ in found:
            store.db.execute_sql(f'DROP INDEX "{name}"')
        for name, _ in triggers:
            store.db.execute_sql(f'DROP TRIGGER "{name}"')
    try:
        yield
    finally:
        started = time.perf_counter()
        with store.db.atomic():
            for _, sql in found:
                store.db.execute_sql(sql)
            for _, sql in triggers:
                store.db.execute_sql(sql)
            if triggers:
                store.db.execute_sql(f"INSERT INTO {SQLITE_TABLE}({SQLITE_TABLE}) VALUES ('rebuild')")
        if progress:
            print(f"\n  {len(found)} indexes made again in {time.perf_counter() - started:.1f} s", end="")


def _write_names_and_instances(store: Store, flows: list[Workflow], end_ms: int) -> None:
    names = Writer(store, WorkflowNameRow, ("workflow_id", "name", "updated_at_ms"))
    for flow in flows:
        names.add({"workflow_id": flow.workflow_id, "name": flow.name, "updated_at_ms": end_ms})
    names.flush()
    beats = Writer(store, InstanceRow, ("instance", "source", "pack_version", "comfyui_version", "frontend_version",
                                        "gpu_name", "queue_depth", "health", "details", "started_at_ms",
                                        "last_seen_ms"))
    for i, (name, gpu, _, _) in enumerate(INSTANCES):
        beats.add({"instance": name, "source": "plugin", "pack_version": "0.4.0",
                   "comfyui_version": "0.8.0" if i % 2 else "0.3.75", "frontend_version": "1.35.9",
                   "gpu_name": gpu, "queue_depth": 0, "health": "ok", "details": "{}",
                   "started_at_ms": end_ms - (i + 1) * DAY_MS, "last_seen_ms": end_ms - i * 20_000})
    beats.flush()


def _one_run(rng: random.Random, flow: Workflow, instance: tuple, t: int, repeated: bool, runs: Writer,
             nodes: Writer, outputs: Writer) -> str:
    name, gpu_name, gpu_total, _ = instance
    roll = rng.random()
    status = "success" if roll < 0.85 else "failed" if roll < 0.95 else "interrupted"
    duration = flow.median_ms * rng.lognormvariate(0, flow.sigma)
    queue_wait = rng.expovariate(1 / 1500) if rng.random() < 0.3 else rng.uniform(2, 40)
    peak = int(min(0.98, flow.peak_fraction * rng.lognormvariate(0, 0.05)) * gpu_total)
    oom = status == "failed" and rng.random() < 0.33
    run_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    # Repeated runs of a workflow find their loaders and encoders in ComfyUI's cache.
    cache_upto = rng.choice((0, 1, 3)) if repeated and rng.random() < 0.6 else 0
    stop_at = len(flow.nodes)
    if status != "success":
        stop_at = min(len(flow.nodes) - 1, flow.sampler_position if oom else rng.randrange(len(flow.nodes)))
        stop_at = max(stop_at, min(cache_upto, len(flow.nodes) - 1))
        duration *= (stop_at + 1) / len(flow.nodes)
    finished = t + int(duration)
    executed = cached = 0
    clock = float(t)
    sampler_peak = peak if not oom else gpu_total
    for position, (node_id, class_type, share) in enumerate(flow.nodes):
        if position < cache_upto:
            node_status, start, spent = "cached", None, None
            cached += 1
        elif position < stop_at:
            node_status, start, spent = "executed", int(clock), duration * share
            executed += 1
        elif position == stop_at and status != "success":
            node_status, start, spent = status, int(clock), duration * share * rng.random()
        else:
            node_status, start, spent = "not_run", None, None
        if spent is not None:
            clock += spent
        node_peak = (sampler_peak if position == flow.sampler_position else int(peak * share)) if spent else None
        nodes.add({"run": run_id, "position": position, "node_id": node_id, "class_type": class_type,
                   "status": node_status, "started_at_ms": start, "duration_ms": spent, "gpu_peak_bytes": node_peak,
                   "display_node_id": node_id, "parent_node_id": None,
                   "energy_j": spent * 0.00035 * (1 + 300 * share) if spent else None})
    images = flow.images if status == "success" else 0
    frames = flow.video_frames if status == "success" else 0
    save_node = flow.nodes[-1][0]
    for i in range(images):
        outputs.add({"run": run_id, "node_id": save_node, "kind": "images",
                     "filename": f"{flow.name.replace(' ', '_')}_{t // 1000}_{i:02d}_.png", "subfolder": "",
                     "type": "output", "frame_count": 1, "format": "png"})
    if frames:
        outputs.add({"run": run_id, "node_id": save_node, "kind": "videos",
                     "filename": f"{flow.name.replace(' ', '_')}_{t // 1000}.mp4", "subfolder": "video",
                     "type": "output", "frame_count": frames, "format": "video/h264-mp4"})
    audio = 1 if flow.audio and status == "success" else 0
    if audio:
        outputs.add({"run": run_id, "node_id": save_node, "kind": "audio", "filename": f"track_{t // 1000}.flac",
                     "subfolder": "audio", "type": "output", "frame_count": 1, "format": "flac"})
    exception, message = ("torch.OutOfMemoryError", "CUDA out of memory. Tried to allocate 2.50 GiB") if oom else \
        rng.choice(ERRORS)
    failed_node = flow.nodes[stop_at] if status == "failed" else None
    energy = duration / 1000 * rng.uniform(180, 420) if duration else None
    scene = f"Scene {rng.randrange(flow.scenes) + 1}" if flow.story else None
    runs.add({
        "run_id": run_id, "status": status, "queued_at_ms": t - int(queue_wait), "started_at_ms": t,
        "finished_at_ms": finished, "duration_ms": duration, "queue_wait_ms": queue_wait,
        "workflow_id": flow.workflow_id, "workflow_name": flow.name, "workflow_name_source": "ui",
        "workflow_key": flow.workflow_id, "fingerprint": flow.fingerprint, "node_count": len(flow.nodes),
        "executed_node_count": executed, "cached_node_count": cached, "image_count": images,
        "video_count": 1 if frames else 0, "audio_count": audio, "other_output_count": 0,
        "frame_count": images + frames, "error_node_id": failed_node[0] if failed_node else None,
        "error_node_type": failed_node[1] if failed_node else None,
        "error_exception_type": exception if failed_node else None,
        "error_message": message if failed_node else None,
        "error_kind": ("oom" if oom else "error") if failed_node else None,
        "error_traceback": json.dumps(["Traceback (most recent call last):", f"{exception}: {message}"])
        if failed_node else None,
        "interrupted_reason": rng.choice(INTERRUPT_REASONS) if status == "interrupted" else None,
        "gpu_name": gpu_name, "gpu_total_bytes": gpu_total, "gpu_peak_bytes": sampler_peak,
        "gpu_reserved_peak_bytes": min(gpu_total, int(sampler_peak * 1.08)),
        "gpu_used_peak_bytes": min(gpu_total, int(sampler_peak * 1.12)),
        "ram_peak_bytes": int(rng.uniform(6, 24) * GIB), "gpu_peak_source": "torch", "dynamic_vram": False,
        "energy_j": energy, "energy_source": "nvml_counter" if energy is not None else None,
        "gpus": json.dumps([{"index": 0, "name": gpu_name, "uuid": f"GPU-{name.split(':')[0]}",
                             "peak_used_bytes": min(gpu_total, int(sampler_peak * 1.12)), "external_bytes": 0,
                             "comfyui_device": True, "energy_j": energy}], separators=(",", ":")),
        "story_title": flow.story, "scene": scene, "tags": json.dumps(flow.tags) if flow.tags else None,
        "instance": name, "source": "plugin", "parameters": flow.params_json,
        "pixels": flow.params["pixels"], "steps": flow.params["steps"], "updated_at_ms": finished,
    })
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, required=True)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--db", help="a SQLite file (created; it must not hold runs yet)")
    where.add_argument("--database-url", help="any store URL (sqlite:///..., postgresql://...)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workflows", type=int, default=300)
    parser.add_argument("--end-ms", type=int, default=None,
                        help="the newest start time (epoch ms; default: now), for byte-identical reruns")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.workflows < 1:
        parser.error("--runs and --workflows must be at least 1")
    url = sqlite_url(args.db) if args.db else args.database_url
    if args.db and os.path.exists(args.db) and os.path.getsize(args.db):
        parser.error(f"{args.db} exists: give a new file")
    print(f"generating {args.runs:,} runs ({args.workflows} workflows, seed {args.seed}) into {url}")
    result = generate(url, args.runs, seed=args.seed, workflows=args.workflows, end_ms=args.end_ms)
    rows = result.runs + result.node_rows + result.outputs
    print(f"{result.runs:,} runs, {result.node_rows:,} node rows, {result.outputs:,} outputs in "
          f"{result.seconds:.1f} s: {result.runs / result.seconds:,.0f} runs/s, {rows / result.seconds:,.0f} rows/s")
    print("by status: " + ", ".join(f"{k} {v:,} ({v / result.runs:.1%})" for k, v in sorted(result.by_status.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
