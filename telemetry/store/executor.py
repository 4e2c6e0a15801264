"""A store's own small thread pool for the work REST handlers ask of it (reads, and small user writes).

Not asyncio's default executor and not per-thread connections that live forever: each call takes a pooled
connection and gives it back, so a database that restarted is reconnected on the next request; the threads are
bound to their store (`Store.bind_thread`), so analysis code reading through the models reads this store's
database; and a call waits (bounded) for the schema, so the first request on a fresh database gets its real
answer instead of "no such table". Used through `telemetry.api.db_executor.run_db`.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .store import Store

REST_WORKERS = 4
_T = TypeVar("_T")


class StoreExecutor:
    def __init__(self, store: Store, workers: int = REST_WORKERS) -> None:
        self.store = store
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="run-telemetry-db",
                                                           initializer=store.bind_thread)
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., _T], *args: Any) -> concurrent.futures.Future[_T]:
        return self._pool.submit(self._call, fn, args)

    def _call(self, fn: Callable[..., _T], args: tuple[Any, ...]) -> _T:
        with self.store.db.connection_context():
            self.store.ensure_schema()
            return fn(*args)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
