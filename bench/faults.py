"""The fault report (issue 7): runs every fault test against a real ComfyUI in one pytest session and prints one
table: faults injected, runs executed, runs recorded, lost (must be 0), mislabelled (0), fuzzed requests,
responses >= 500 (0), with the share of executed runs that were recorded (recorded / executed).

    python bench/faults.py                    # every fault file present, about 5-10 minutes on 2 cores
    python bench/faults.py -k deleted         # pytest's -k, passed through
    python bench/faults.py --output DIR       # keep faults.md and the ComfyUI logs in DIR

The fault files: tests/integration/test_faults_real_comfyui.py (full database, deleted file, two processes on
one file, raising hooks), tests/integration/test_durability_real_comfyui.py (SIGKILL, PostgreSQL restart) and
the REST fuzzing tests (tests/**/test_*fuzz*.py, tests/**/test_*schemathesis*.py), each when present. Every
scenario compares its runs with ComfyUI's own /history and adds its row through tests/fault_report.py; the
README keeps the latest table.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAULT_FILES = ("tests/integration/test_faults_real_comfyui.py", "tests/integration/test_durability_real_comfyui.py")
FUZZ_GLOBS = ("tests/**/test_*fuzz*.py", "tests/**/test_*schemathesis*.py")
COLUMNS = ("faults injected", "runs executed", "runs recorded", "lost", "mislabelled", "fuzzed requests",
           "responses >= 500")


def fault_files() -> list[str]:
    files = [f for f in FAULT_FILES if (REPO / f).is_file()]
    for pattern in FUZZ_GLOBS:
        files += sorted(str(p.relative_to(REPO)) for p in REPO.glob(pattern) if str(p.relative_to(REPO)) not in files)
    return files


def totals(table: str) -> dict[str, int]:
    """The totals row of the report table, by column."""
    for line in table.splitlines():
        if line.startswith("| **total** |"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")][1:]
            return {name: int(value or 0) for name, value in zip(COLUMNS, cells, strict=False)}
    return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", default=None, help="pytest -k expression")
    parser.add_argument("--output", default=None, help="folder for faults.md and the ComfyUI logs")
    args = parser.parse_args(argv)

    files = fault_files()
    output = Path(args.output or tempfile.mkdtemp(prefix="rt-faults-"))
    output.mkdir(parents=True, exist_ok=True)
    report = output / "faults.md"
    report.unlink(missing_ok=True)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files]
    if args.k:
        command += ["-k", args.k]
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print("running:", " ".join(command[3:]), flush=True)
    env = {**os.environ, "RUN_TELEMETRY_TEST_OUTPUT": str(output)}
    code = subprocess.call(command, cwd=REPO, env=env)

    table = report.read_text(encoding="utf-8") if report.is_file() else ""
    print("\n## Fault report\n")
    print(table or "(no fault test ran)")
    sums = totals(table)
    if sums:
        executed = sums["runs executed"]
        ratio = sums["runs recorded"] / executed if executed else float("nan")
        verdict = ("PASS" if code == 0 and sums["lost"] == 0 and sums["mislabelled"] == 0
                   and sums["responses >= 500"] == 0 else "FAIL")
        print(f"\nrecorded / executed = {sums['runs recorded']}/{executed} = {ratio:.3f}; lost {sums['lost']}, "
              f"mislabelled {sums['mislabelled']}, responses >= 500 {sums['responses >= 500']}; pytest exit {code}:"
              f" {verdict}")
    print(f"report: {report}")
    return code


if __name__ == "__main__":
    sys.exit(main())
