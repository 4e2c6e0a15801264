"""What the fault tests share: installing the fault-injection pack into a test ComfyUI, and comparing the runs
ComfyUI itself reports in `/history` with the runs telemetry stored, run id by run id."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comfy_harness import ComfyServer

FAULT_PACK = Path(__file__).resolve().parent / "fault_injection" / "rt_fault_injection"


def with_fault_pack(base_dir: Path) -> Path:
    """`base_dir` prepared so that a ComfyServer on it also loads the fault-injection pack (tests only)."""
    link = base_dir / "custom_nodes" / FAULT_PACK.name
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(FAULT_PACK, target_is_directory=True)
    return base_dir


def comfy_status(history_item: dict[str, Any]) -> str:
    """ComfyUI's outcome in telemetry's words: success, or for `error` failed / interrupted as its status
    messages say."""
    status = history_item.get("status") or {}
    if status.get("status_str") == "success":
        return "success"
    kinds = {m[0] for m in status.get("messages") or [] if isinstance(m, (list, tuple)) and m}
    return "interrupted" if "execution_interrupted" in kinds else "failed"


def histories(server: ComfyServer, prompt_ids: list[str], timeout: float = 120.0) -> dict[str, str]:
    """ComfyUI's own outcome of each run, read from `/history` (before anything is killed or restarted)."""
    return {pid: comfy_status(server.wait_history(pid, timeout=timeout)) for pid in prompt_ids}


@dataclass
class Comparison:
    expected: dict[str, str]
    stored: dict[str, str | None] = field(default_factory=dict)

    @property
    def executed(self) -> int:
        return len(self.expected)

    @property
    def recorded(self) -> int:
        return sum(1 for s in self.stored.values() if s is not None)

    @property
    def lost(self) -> list[str]:
        return [pid for pid, s in self.stored.items() if s is None]

    @property
    def mislabelled(self) -> list[str]:
        return [pid for pid, s in self.stored.items() if s is not None and s != self.expected[pid]]

    def describe(self) -> str:
        return (f"lost {self.lost}; mislabelled "
                f"{[(pid, self.expected[pid], self.stored[pid]) for pid in self.mislabelled]}")


def compare_with_history(server: ComfyServer, expected: dict[str, str], timeout: float = 60.0) -> Comparison:
    """Each run of `expected` (run id -> ComfyUI's outcome) as telemetry stored it, waiting up to `timeout` for
    the final records. A run that never arrives is lost; one stored with another status is mislabelled."""
    comparison = Comparison(dict(expected))
    deadline = time.monotonic() + timeout
    pending = set(expected)
    while pending:
        for pid in sorted(pending):
            code, run = server.request("GET", f"/telemetry/runs/{pid}")
            if code == 200 and run["status"] != "running":
                comparison.stored[pid] = run["status"]
                pending.discard(pid)
        if pending and time.monotonic() < deadline:
            time.sleep(0.25)
        elif pending:
            for pid in pending:
                comparison.stored[pid] = None
            break
    return comparison


def wait_health(server: ComfyServer, predicate, timeout: float = 60.0) -> dict[str, Any]:
    """/telemetry/health once `predicate(health)` holds (the last answer if it never does)."""
    deadline = time.monotonic() + timeout
    health = server.get("/telemetry/health")
    while not predicate(health) and time.monotonic() < deadline:
        time.sleep(0.25)
        health = server.get("/telemetry/health")
    return health
