"""A real HTTP receiver for webhook tests: an aiohttp server on a loopback port, in a thread of its own, that
records every request (headers and raw body) and answers the status codes it is told to (200 by default). It can
be stopped and started again on the same port, to play a receiver that is down for a while."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from comfy_harness import free_port

from telemetry.webhooks.signing import EVENT_HEADER, SIGNATURE_HEADER, verify_signature


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def event_id(self) -> str | None:
        return self.headers.get(EVENT_HEADER)

    def signed_with(self, secret: str) -> bool:
        return verify_signature(self.body, self.headers.get(SIGNATURE_HEADER), secret)


class Receiver:
    def __init__(self, port: int | None = None, statuses: list[int] | None = None,
                 delays_s: list[float] | None = None) -> None:
        self.port = port or free_port()
        self.statuses = list(statuses or [])  # answered in order, then 200
        self.delays_s = list(delays_s or [])  # how long each answer waits, in order, then none
        self.received: list[Received] = []
        self.answered: list[int] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self._lock:
            self.received.append(Received(request.path_qs, dict(request.headers), body))
            status = self.statuses.pop(0) if self.statuses else 200
            self.answered.append(status)
            delay = self.delays_s.pop(0) if self.delays_s else 0.0
        if delay:
            await asyncio.sleep(delay)
        return web.Response(status=status, text="ok" if status < 300 else "nope")

    def start(self) -> Receiver:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def serve() -> None:
            asyncio.set_event_loop(self._loop)

            async def setup() -> None:
                app = web.Application()
                app.router.add_route("POST", "/{tail:.*}", self._handle)
                self._runner = web.AppRunner(app, access_log=None)
                await self._runner.setup()
                await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

            self._loop.run_until_complete(setup())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name=f"webhook-receiver-{self.port}", daemon=True)
        self._thread.start()
        assert ready.wait(15), "the webhook receiver did not start"
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return

        async def cleanup() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(cleanup(), self._loop).result(15)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(15)
        self._loop.close()
        self._loop = self._thread = self._runner = None

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                got = list(self.received)
            if predicate(got):
                return got
            time.sleep(0.02)
        raise AssertionError(f"the receiver did not get what was expected within {timeout} s; got {len(got)}: "
                             f"{[r.body[:200] for r in got]}")
