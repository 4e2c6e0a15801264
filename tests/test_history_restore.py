"""ComfyUI's own history across restarts, the parts that need no ComfyUI: records stored beside runs without
secrets (real SQLite file and real PostgreSQL), read back newest N oldest first, only for runs still stored;
outputs whose files are gone left out; the put-back never replaces an entry and keeps the maximum size."""

from __future__ import annotations

import copy
import json
import threading

from telemetry.capture.history_restore import existing_outputs, output_file_checker, prepare, put_back
from telemetry.collector import build_run
from telemetry.store.comfy_history import clean_record, drop_orphans, latest_records, save_record

SECRET = "sk-live-abcdef0123456789"


def _items(recorded_runs) -> list[tuple[str, dict]]:
    return [next(iter(case["history"].items())) for case in recorded_runs["cases"]]


def test_records_are_kept_without_secrets_and_read_back_newest_oldest_first(store, recorded_runs):
    items = _items(recorded_runs)
    store.save_runs([build_run(pid, item) for pid, item in items])
    for pid, item in items:
        item = copy.deepcopy(item)
        item["prompt"][3]["api_key_comfy_org"] = SECRET
        item["prompt"].append({"auth_token_comfy_org": SECRET})  # 0.8.0's sensitive element, if ever passed
        assert save_record(store, pid, item)
    assert not save_record(store, "not-a-record", {"outputs": {}})

    records = latest_records(store, 3)
    assert [pid for pid, _ in records] == [pid for pid, _ in items][-3:]
    pid, record = records[-1]
    original = dict(items)[pid]
    assert record["outputs"] == original["outputs"] and record["status"] == original["status"]
    assert record["prompt"][:3] == original["prompt"][:3] and len(record["prompt"]) == 5
    assert SECRET not in json.dumps(latest_records(store, 100))

    # a pruned run is never restored, and its record goes at the next start
    store.prune_runs(keep=2)
    kept = {pid for pid, _ in latest_records(store, 100)}
    assert len(kept) == 2
    assert drop_orphans(store) == len(items) - 2
    assert {pid for pid, _ in latest_records(store, 100)} == kept


def test_outputs_whose_files_are_gone_are_left_out(tmp_path):
    (tmp_path / "output" / "sub").mkdir(parents=True)
    (tmp_path / "output" / "sub" / "kept.png").write_bytes(b"png")
    exists = output_file_checker(lambda kind: str(tmp_path / kind) if kind in ("output", "temp") else None)
    outputs = {
        "9": {"images": [{"filename": "kept.png", "subfolder": "sub", "type": "output"},
                         {"filename": "gone.png", "subfolder": "sub", "type": "output"}]},
        "10": {"images": [{"filename": "preview.png", "subfolder": "", "type": "temp"}], "animated": [False]},
        "11": {"text": ["42"]},
        "12": {"images": [{"filename": "../../etc/passwd", "subfolder": "", "type": "output"}]},
    }
    assert existing_outputs(outputs, exists) == {
        "9": {"images": [{"filename": "kept.png", "subfolder": "sub", "type": "output"}]},
        "11": {"text": ["42"]}}


class _Queue:
    """ComfyUI's PromptQueue as history_restore touches it: `mutex` (an RLock) and the `history` dict."""

    def __init__(self, history: dict) -> None:
        self.mutex = threading.RLock()
        self.history = history


def test_put_back_never_replaces_keeps_order_and_the_maximum(recorded_runs, tmp_path):
    items = _items(recorded_runs)
    records = [(pid, clean_record(item)) for pid, item in items]
    restored = prepare(records, output_file_checker(lambda kind: str(tmp_path)))
    assert [item["prompt"][0] for _, item in restored] == list(range(-len(items), 0))

    own_pid, own_item = items[-1][0], {"prompt": [0, items[-1][0], {}, {}, []], "outputs": {}, "status": None}
    queue = _Queue({own_pid: own_item, "new": {"prompt": [1, "new", {}, {}, []]}})
    added = put_back(queue, restored, maximum=10000)
    assert added == len(items) - 1
    assert list(queue.history) == [pid for pid, _ in items[:-1]] + [own_pid, "new"]
    assert queue.history[own_pid] is own_item, "an entry ComfyUI already has is never replaced"

    small = _Queue({"new": {}})
    assert put_back(small, restored, maximum=3) == 2
    assert list(small.history) == [pid for pid, _ in items][-2:] + ["new"], "the newest restored ones are kept"


def test_migration_7_applies_even_after_a_later_version(store):
    """Migrations of parallel branches land in either order: a database that already has a later version still
    gets the comfy_history table of version 7."""
    from telemetry.store.comfy_history import ComfyHistoryRow
    from telemetry.store.migrations import migrate
    from telemetry.store.schema import SchemaVersionRow

    with store.bound():
        store.db.drop_tables([ComfyHistoryRow])
        SchemaVersionRow.delete().where(SchemaVersionRow.version == 7).execute()
        SchemaVersionRow.create(version=99, applied_at_ms=0)
        assert not store.db.table_exists("comfy_history")
        assert migrate(store.db) == 99
        assert store.db.table_exists("comfy_history")
        assert migrate(store.db) == 99  # applied once
