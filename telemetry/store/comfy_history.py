"""ComfyUI's own history record of each run, as ComfyUI made it minus secrets, kept beside the run (schema v7).

`telemetry.capture.history_restore` puts the newest of them back into ComfyUI's in-memory history at start, so
that ComfyUI's `/history`, `/api/jobs` and its frontend's queue history survive a restart. Only records whose run
is still stored are read back (retention prunes runs; their records are dropped at the next start).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from peewee import BigIntegerField, CharField, TextField

from ..jsonsafe import json_safe
from ..privacy import redact, without_sensitive
from .schema import BaseModel, RunRow


class ComfyHistoryRow(BaseModel):
    run_id = CharField(primary_key=True, max_length=128)
    recorded_at_ms = BigIntegerField(index=True)
    record = TextField()  # JSON: {"prompt": [...], "outputs": {...}, "status": {...}, "meta": {...}}

    class Meta:
        table_name = "comfy_history"


_last_stamp = 0
_stamp_lock = threading.Lock()


def _record_stamp() -> int:
    """Now in ms, but after the previous record of this process: records saved within one millisecond keep the
    order they were saved in (the history is read back newest first by this stamp)."""
    global _last_stamp
    with _stamp_lock:
        _last_stamp = max(int(time.time() * 1000), _last_stamp + 1)
        return _last_stamp


def clean_record(item: Any) -> dict[str, Any] | None:
    """A JSON-safe copy of ComfyUI's history item without secrets: the sensitive element of the prompt tuple
    (0.8.0's 6th) is never kept, `extra_data` loses ComfyUI's API keys, and credential-like names anywhere are
    redacted. None for anything that is not a history item."""
    if not isinstance(item, dict) or not isinstance(item.get("prompt"), (list, tuple)):
        return None
    prompt = list(item["prompt"])[:5]
    if len(prompt) < 5:
        return None
    prompt[3] = without_sensitive(prompt[3])
    record = {key: value for key, value in item.items() if key != "prompt"}
    record["prompt"] = prompt
    return json_safe(redact(record))


def save_record(store: Any, run_id: str, item: Any) -> bool:
    """Store (or replace) the record of a run; False when the item is no history record. Recorder thread."""
    record = clean_record(item)
    if record is None:
        return False
    text = json.dumps(record, separators=(",", ":"))
    stamp = _record_stamp()
    with store.bound():
        store.ensure_schema()
        (ComfyHistoryRow.insert(run_id=run_id, recorded_at_ms=stamp, record=text)
         .on_conflict(conflict_target=[ComfyHistoryRow.run_id],
                      update={ComfyHistoryRow.record: text, ComfyHistoryRow.recorded_at_ms: stamp}).execute())
    return True


def latest_records(store: Any, limit: int) -> list[tuple[str, dict[str, Any]]]:
    """The newest `limit` records of stored runs, oldest first (ComfyUI's history order)."""
    if limit <= 0:
        return []
    with store.bound():
        store.ensure_schema()
        query = (ComfyHistoryRow.select(ComfyHistoryRow.run_id, ComfyHistoryRow.record)
                 .join(RunRow, on=(RunRow.run_id == ComfyHistoryRow.run_id))
                 .order_by(ComfyHistoryRow.recorded_at_ms.desc(), ComfyHistoryRow.run_id.desc())
                 .limit(limit))
        rows = [(row.run_id, row.record) for row in query]
    found = []
    for run_id, text in reversed(rows):
        try:
            record = json.loads(text)
        except ValueError:
            continue
        if isinstance(record, dict):
            found.append((run_id, record))
    return found


def drop_orphans(store: Any) -> int:
    """Delete records whose run is no longer stored (pruned by retention or by hand)."""
    with store.bound():
        store.ensure_schema()
        return (ComfyHistoryRow.delete()
                .where(ComfyHistoryRow.run_id.not_in(RunRow.select(RunRow.run_id))).execute())


def prompt_of_record(text: str | None) -> dict[str, Any] | None:
    """The API prompt in a stored history record (`{"prompt": [number, id, prompt, extra_data, outputs]}`)."""
    record = _record(text)
    item = record.get("prompt") if record else None
    if isinstance(item, list) and len(item) > 2 and isinstance(item[2], dict):
        return item[2]
    return None


def ui_workflow_of_record(text: str | None) -> dict[str, Any] | None:
    """The UI workflow the frontend sent with the run (extra_data.extra_pnginfo.workflow), if it did."""
    record = _record(text)
    item = record.get("prompt") if record else None
    extra = item[3] if isinstance(item, list) and len(item) > 3 and isinstance(item[3], dict) else {}
    pnginfo = extra.get("extra_pnginfo")
    workflow = pnginfo.get("workflow") if isinstance(pnginfo, dict) else None
    return workflow if isinstance(workflow, dict) and isinstance(workflow.get("nodes"), list) else None


def _record(text: str | None) -> dict[str, Any] | None:
    try:
        record = json.loads(text or "null")
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def record_text(store: Any, run_id: str) -> str | None:
    """The stored history record (JSON text) of a run, or None."""
    with store.bound():
        store.ensure_schema()
        row = (ComfyHistoryRow.select(ComfyHistoryRow.record).where(ComfyHistoryRow.run_id == run_id)
               .tuples().first())
    return row[0] if row else None
