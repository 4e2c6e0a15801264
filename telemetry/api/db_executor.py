"""How REST handlers run database work: `await run_db(store, fn, *args)` runs `fn(*args)` on the store's own
thread pool (`store.executor`), so ComfyUI's event loop never waits on I/O, every request gets a pooled
connection that reconnects after a database restart, and the first requests on a fresh database wait (bounded)
for the schema."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from ..store.store import Store

_T = TypeVar("_T")


async def run_db(store: Store, fn: Callable[..., _T], *args: Any) -> _T:
    """`fn(*args)` on `store`'s REST thread pool; its exceptions propagate (the routes map them to 4xx/503)."""
    return await asyncio.wrap_future(store.executor.submit(fn, *args))
