"""The standalone server's REST app (`telemetry.watch.app.make_web_app`: the same route tables the plugin
mounts in ComfyUI) on a loopback port in a thread of its own, over a real SQLite file, for tests that need a
real HTTP server without ComfyUI."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from aiohttp import web
from comfy_harness import free_port

from telemetry.model import Run
from telemetry.watch.app import WatchOptions, build, make_web_app


class ApiServer:
    def __init__(self, data_dir: Path, runs: list[Run] | None = None, database_url: str | None = None) -> None:
        self.app = build(WatchOptions(data_dir=str(data_dir), comfyui_url="http://127.0.0.1:9",
                                      database_url=database_url))
        self.port = free_port()
        self.runs = runs or []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._serve, name="api-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ApiServer:
        self.app.store.open()
        self.app.store.save_runs(self.runs)
        self._thread.start()
        assert self._ready.wait(30), "the API server did not start"
        return self

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def setup() -> None:
            self._runner = web.AppRunner(make_web_app(self.app), access_log=None)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

        self._loop.run_until_complete(setup())
        self._ready.set()
        self._loop.run_forever()

    def stop(self) -> None:
        async def cleanup() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(cleanup(), self._loop).result(30)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
        self.app.store.close()
