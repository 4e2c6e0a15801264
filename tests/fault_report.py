"""The fault report: every fault scenario (and the fuzzing run) records its counts here, and the pytest session
prints them as one table at the end (`pytest_terminal_summary` in conftest.py), also written to
`$RUN_TELEMETRY_TEST_OUTPUT/faults.md` when that is set. The README carries the latest table.

When scripts/test.sh runs the matrix as parallel pytest sessions (RUN_TELEMETRY_PARALLEL=1), each session also
leaves its results as `faults-<leg>.json` there, and `python tests/fault_report.py DIR` prints the merged table."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class FaultResult:
    scenario: str
    faults_injected: int
    runs_executed: int
    runs_recorded: int
    lost: int
    mislabelled: int


@dataclass
class FuzzResult:
    scenario: str
    requests: int
    responses_5xx: int


FAULTS: list[FaultResult] = []
FUZZ: list[FuzzResult] = []


def record_fault_result(scenario: str, *, faults_injected: int, runs_executed: int, runs_recorded: int,
                        lost: int, mislabelled: int) -> None:
    FAULTS.append(FaultResult(scenario, faults_injected, runs_executed, runs_recorded, lost, mislabelled))


def record_fuzz_result(scenario: str, *, requests: int, responses_5xx: int) -> None:
    FUZZ.append(FuzzResult(scenario, requests, responses_5xx))


def render_table() -> str:
    """The report as a Markdown table; empty when no fault test ran."""
    if not FAULTS and not FUZZ:
        return ""
    lines = ["| scenario | faults injected | runs executed | runs recorded | lost | mislabelled |"
             " fuzzed requests | responses >= 500 |",
             "|---|---|---|---|---|---|---|---|"]
    for f in FAULTS:
        lines.append(f"| {f.scenario} | {f.faults_injected} | {f.runs_executed} | {f.runs_recorded} | {f.lost} |"
                     f" {f.mislabelled} | | |")
    for z in FUZZ:
        lines.append(f"| {z.scenario} | | | | | | {z.requests} | {z.responses_5xx} |")
    totals = (sum(f.faults_injected for f in FAULTS), sum(f.runs_executed for f in FAULTS),
              sum(f.runs_recorded for f in FAULTS), sum(f.lost for f in FAULTS), sum(f.mislabelled for f in FAULTS),
              sum(z.requests for z in FUZZ), sum(z.responses_5xx for z in FUZZ))
    lines.append("| **total** | " + " | ".join(str(t) for t in totals) + " |")
    return "\n".join(lines)


def write_report() -> str:
    table = render_table()
    out = os.environ.get("RUN_TELEMETRY_TEST_OUTPUT")
    if table and out:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        leg = os.environ.get("RUN_TELEMETRY_LEG")
        (folder / (f"faults-{leg}.md" if leg else "faults.md")).write_text(table + "\n", encoding="utf-8")
        if leg:
            results = {"faults": [asdict(f) for f in FAULTS], "fuzz": [asdict(z) for z in FUZZ]}
            (folder / f"faults-{leg}.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    return table


def merge_reports(folder: Path) -> str:
    """The one table over every parallel session's `faults-<leg>.json` in `folder` (also written as faults.md)."""
    FAULTS.clear()
    FUZZ.clear()
    for path in sorted(folder.glob("faults-*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        leg = path.stem.removeprefix("faults-")
        FAULTS.extend(FaultResult(**{**f, "scenario": f"{f['scenario']} (leg {leg})"}) for f in data.get("faults", []))
        FUZZ.extend(FuzzResult(**{**z, "scenario": f"{z['scenario']} (leg {leg})"}) for z in data.get("fuzz", []))
    table = render_table()
    if table:
        (folder / "faults.md").write_text(table + "\n", encoding="utf-8")
    return table


if __name__ == "__main__":
    print(merge_reports(Path(sys.argv[1])) or "no fault test ran")  # noqa: T201
