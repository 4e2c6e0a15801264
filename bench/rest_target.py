"""The process bench_rest.py measures: the pack's one app assembly (telemetry.app, as the plugin and serve build it)
over a store, served by aiohttp on a loopback port, while a writer thread records runs through the recorder path.

    python bench/rest_target.py --url URL [--write-rate 10] [--instance bench-writer:8188]

Prints `READY <port>` once it listens; stops when stdin closes (or a line `stop` arrives), flushes the recorder and
prints `DONE {"submitted", "stored", "dropped"}` (JSON). The writer hands runs over as the plugin and the fleet
watcher do (bench_fleet_load.make_run: `collector.build_run` from a real ComfyUI 0.3.75 history entry, submitted
to the Recorder, stored by its writer in a batched transaction), on a fixed schedule of `--write-rate` runs/s.
`/telemetry/queue/eta` is given a queue of three prompts from the same fixture (serve's queue is always empty).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from aiohttp import web  # noqa: E402
from bench_fleet_load import history_items, make_run  # noqa: E402

from telemetry.app import assemble, make_web_app, start, stop  # noqa: E402
from telemetry.config import load_config  # noqa: E402
from telemetry.model import Run  # noqa: E402


def queue_items() -> list[list[Any]]:
    """Three pending items as ComfyUI's queue lists them: [number, prompt_id, prompt, extra_data, outputs]."""
    return [[i, str(uuid.uuid4()), item["prompt"][2], {"client_id": "bench"}, []]
            for i, item in enumerate(history_items()[:3])]


class Writer:
    """Submits `rate` runs a second to the app's recorder until stopped; counts what was submitted and stored."""

    def __init__(self, recorder: Any, instance: str, rate: float) -> None:
        self.recorder, self.instance, self.rate = recorder, instance, rate
        self.templates = history_items()
        self.submitted = self.stored = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-writer", daemon=True)
        recorder.add_listener(self._committed)

    def _committed(self, run: Run) -> None:  # recorder thread, after the commit
        if run.instance == self.instance and run.status != "running":
            self.stored += 1

    def start(self) -> None:
        if self.rate > 0:
            self._thread.start()

    def _loop(self) -> None:
        began = time.perf_counter()
        k = 0
        while not self._stop.is_set():
            pause = began + k / self.rate - time.perf_counter()
            if pause > 0 and self._stop.wait(pause):
                return
            template = self.templates[k % len(self.templates)]
            self.recorder.submit(lambda t=template: [make_run(t, self.instance)], "bench run")
            self.submitted += 1
            k += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)


async def serve(url: str, rate: float, instance: str) -> dict[str, int]:
    config = load_config(tempfile.mkdtemp(prefix="rt-bench-target-"), environ={})
    app = assemble(config, source="watcher", url=url, instance=instance, record=rate > 0)
    queue = queue_items()
    runner = web.AppRunner(make_web_app(app, lambda: queue), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    start(app)
    writer = Writer(app.recorder, instance, rate) if app.recorder is not None else None
    if writer is not None:
        writer.start()
    print(f"READY {port}", flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line or line.strip() == "stop":
            break
    if writer is not None:
        writer.stop()
    await runner.cleanup()
    dropped = app.recorder.health().get("dropped", 0) if app.recorder is not None else 0
    await asyncio.to_thread(stop, app, 60.0)
    return {"submitted": writer.submitted if writer else 0, "stored": writer.stored if writer else 0,
            "dropped": dropped}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the store's URL (sqlite:///FILE or postgresql://...)")
    parser.add_argument("--write-rate", type=float, default=10.0, help="runs recorded per second (0: read-only)")
    parser.add_argument("--instance", default="bench-writer:8188")
    args = parser.parse_args()
    result = asyncio.run(serve(args.url, args.write_rate, args.instance))
    print("DONE " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
