"""ComfyUI's own history as the pack keeps it across restarts (the `comfy_history` table): waiting for its records
before a test stops ComfyUI. Shared by the restore tests (tests/integration/test_history_restore_real_comfyui.py,
tests/browser/test_history_live_browser.py)."""

from __future__ import annotations

import sqlite3
import time

from comfy_harness import ComfyServer


def wait_history_records(server: ComfyServer, count: int, timeout: float = 30.0) -> None:
    """The records are written once ComfyUI is idle (bounded): wait until `count` are stored in the server's SQLite
    database before stopping it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(server.database_path) as conn:
                if conn.execute("SELECT count(*) FROM comfy_history").fetchone()[0] >= count:
                    return
        except sqlite3.Error:
            pass
        time.sleep(0.2)
    raise AssertionError(f"fewer than {count} ComfyUI history records stored")
