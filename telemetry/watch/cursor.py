"""A watcher's cursor: how far it has recorded one ComfyUI, derived from the runs already stored for that instance.

No table of its own. The runs are the cursor: a run and "recorded up to here" are written in the same
transaction (they are the same row), so the cursor can be neither ahead of what is stored (a run lost after its
cursor moved) nor behind it (a run recorded twice after a restart), and it needs no migration. At start the
watcher loads the prompt ids of the newest final runs of its instance (bounded, on the instance/started index)
into its seen set; it then walks ComfyUI's history back from the newest entry until it meets one of those ids
(or the end of ComfyUI's history), and records what it has not seen. Every record is checked against the store
once more on the recorder thread, so an id the bounded load left out is still never written twice.

A run closed as interrupted because our previous process stopped (`STALE_REASON`) does not count: ComfyUI's
history may still hold its true final record, which then replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..model import RunStatus
from ..store.schema import RunRow
from ..store.store import Store


@dataclass
class Cursor:
    instance: str
    known_ids: list[str] = field(default_factory=list)  # newest first
    run_id: str | None = None  # the newest final run stored for the instance
    finished_at_ms: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "finished_at_ms": self.finished_at_ms, "known_runs": len(self.known_ids)}


def load_cursor(store: Store, instance: str, stale_reason: str, limit: int = 20_000) -> Cursor:
    """The stored final runs of `instance`, newest first (blocking: call it off the event loop)."""
    store.ensure_schema()
    with store.bound():
        query = (RunRow.select(RunRow.run_id, RunRow.finished_at_ms, RunRow.interrupted_reason)
                 .where((RunRow.instance == instance) & RunRow.status.in_(sorted(RunStatus.FINAL)))
                 .order_by(RunRow.started_at_ms.desc()).limit(max(1, limit)))
        rows = [(r.run_id, r.finished_at_ms) for r in query if r.interrupted_reason != stale_reason]
    cursor = Cursor(instance, [run_id for run_id, _ in rows])
    if rows:
        newest = max(rows, key=lambda r: r[1] or 0)
        cursor.run_id, cursor.finished_at_ms = newest
    return cursor
