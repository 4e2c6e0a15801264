"""`python -m telemetry report|export|prune|doctor` on a real SQLite file filled through the store (and once on the
real PostgreSQL): help, exit codes and one-line errors, the report as a table and as JSON, exports read back by the
csv and json parsers, prune's dry run against --yes, doctor.

Most tests run the command in this process through its entry point (`telemetry.cli.main`, what `python -m
telemetry` calls), with the environment, the home folder and stdout/stderr a process would have, and logging
configured as in a fresh process; the tests under "as a user runs it" start `python -m telemetry` itself for what
only a real process shows (its exit status, no traceback at exit, the default data folder under $HOME, the progress
bar on a terminal)."""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import pty
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import early_process
import pytest
from cli_harness import Result
from comfy_harness import free_port
from test_analysis_support import make_run

from telemetry.model import Run
from telemetry.service import EXPORT_COLUMNS
from telemetry.store.database import sqlite_url
from telemetry.store.store import Store

ROOT = Path(__file__).resolve().parent.parent
DAY = 86_400_000
NOW = int(time.time() * 1000)


def run_module(*args: str, env: dict[str, str] | None = None, home: Path | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m telemetry ARGS` as a user runs it: a process of its own, no TELEMETRY_* from this one."""
    argv, kwargs = _module_process(*args, env=env, home=home)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)


def _module_process(*args: str, env: dict[str, str] | None = None, home: Path | None = None) -> tuple[list, dict]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
    if home is not None:
        clean["HOME"] = str(home)  # the default data dir (~/.run_telemetry) stays inside the test
    clean.update(env or {})
    return [sys.executable, "-m", "telemetry", *args], {"cwd": ROOT, "env": clean}


# `python -m telemetry` imports the whole pack (seconds): the processes below start as soon as the tests are
# collected (early_process.py) and run beside the tests before them, each with a home folder of its own.
def _exit_status_process(args: list[str], status: int, message: str) -> tuple[list, dict]:
    home = Path(tempfile.mkdtemp(prefix="cli-home-"))
    return _module_process(*[arg.format(port=free_port()) for arg in args], home=home)


def _default_data_dir_process() -> tuple[list, dict]:
    return _module_process("report", home=Path(tempfile.mkdtemp(prefix="cli-home-")))


def _home_of(done: subprocess.CompletedProcess) -> Path:
    return Path(done.kwargs["env"]["HOME"])


def _runs() -> list[Run]:
    """Seven runs in the last three days (two workflows, one failed), four from 20-40 days ago and one old run
    still running."""
    recent = [make_run(f"recent-{i}", "wf-a" if i < 4 else "wf-b", NOW - (i + 1) * 6 * 3_600_000,
                       duration_ms=1000.0 * (i + 1), name="Portrait" if i < 4 else "Landscape",
                       status="failed" if i == 5 else "success") for i in range(7)]
    old = [make_run(f"old-{i}", "wf-a", NOW - (20 + 5 * i) * DAY, name="Portrait") for i in range(4)]
    running = make_run("old-running", "wf-a", NOW - 30 * DAY, name="Portrait")
    running.status, running.finished_at_ms, running.duration_ms = "running", None, None
    return recent + old + [running]


def _fill(url: str) -> Store:
    store = Store(url)
    store.open()
    store.save_runs(_runs())
    return store


@pytest.fixture
def db(tmp_path) -> str:
    url = sqlite_url(str(tmp_path / "telemetry.db"))
    _fill(url).shutdown()
    return url


def _no_traceback(out: Result | subprocess.CompletedProcess) -> None:
    assert "Traceback" not in out.stderr and "Traceback" not in out.stdout


# -- help and exit codes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["report", "export", "prune", "doctor", "serve", "watch"])
def test_every_command_has_help(command, cli):
    out = cli(command, "--help")
    assert out.returncode == 0 and out.stdout.startswith("usage: python -m telemetry " + command)
    if command != "watch":  # watch's options are the fleetwatch branch's
        assert "--database-url" in out.stdout


def test_the_top_level_help_lists_every_command(cli):
    out = cli("--help")
    assert out.returncode == 0
    for command in ("report", "export", "prune", "doctor", "serve", "watch"):
        assert command in out.stdout


@pytest.mark.parametrize("args, message", [
    (["report", "--since", "yesterday"], "is not a time"),
    (["report", "--since", "7x"], "is not a time"),
    (["prune", "--before", "2026-13-45"], "is not a time"),
    (["report", "--limit", "0"], "from 1 to 500"),
    (["report", "--status", "fine"], "'status' has unknown value"),
    (["report", "--since", "1d", "--until", "3d"], "'until_ms' is before 'since_ms'"),
    (["export", "--format", "xml"], "invalid choice"),
    (["prune"], "--before WHEN and/or --keep N"),
    (["prune", "--keep", "-1"], "whole number"),
    (["doctor", "--comfyui", "ftp://x"], "not an http"),
    (["report", "--database-url", "mongodb://x/y"], "unsupported database URL scheme"),
    (["nonsense"], "invalid choice"),
])
def test_usage_errors_exit_2_with_a_message(args, message, db, cli):
    out = cli(*args, env={"TELEMETRY_DATABASE_URL": db})
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    _no_traceback(out)


def test_an_unusable_database_url_in_the_environment_is_a_usage_error(cli):
    out = cli("report", env={"TELEMETRY_DATABASE_URL": "redis://cache:6379"})
    assert out.returncode == 2 and "database_url" in out.stderr
    _no_traceback(out)


@pytest.mark.parametrize("command", [["report"], ["export"], ["prune", "--keep", "1"]])
def test_an_unreachable_database_is_one_line_and_exit_1(command, tmp_path, cli):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    for url in (f"postgresql://nobody@127.0.0.1:{free_port()}/none", sqlite_url(str(not_a_folder / "t.db"))):
        out = cli(*command, "--database-url", url)
        assert out.returncode == 1, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: the telemetry database at ")
        assert "is unavailable" in lines[0] and out.stdout == ""
        _no_traceback(out)


# -- report ---------------------------------------------------------------------------------------------------


def test_report_prints_the_statistics_and_the_recent_runs_as_a_table(db, cli):
    out = cli("report", "--since", "7d", env={"TELEMETRY_DATABASE_URL": db})
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "runs: 7 (failed 1, success 6); success rate 85.7%" in text
    assert "duration: avg 4.0 s, p50 4.0 s, p95 7.0 s" in text
    table = text[text.index("recent runs (newest 7 of 7)"):].splitlines()
    assert table[1].split() == ["started", "run", "status", "workflow", "duration", "queue", "wait", "GPU", "peak",
                                "outputs", "error"]
    rows = table[3:]
    assert [row.split()[2] for row in rows] == ["recent-0", "recent-1", "recent-2", "recent-3", "recent-4",
                                               "recent-5", "recent-6"]  # newest first, ids cut to 8
    assert "failed" in rows[5] and "KSampler RuntimeError" in rows[5]
    workflows = text[text.index("workflows (busiest 2 of 2)"):text.index("recent runs")]
    assert "Portrait" in workflows and "Landscape" in workflows
    everything = cli("report", "--database-url", db)
    assert "runs: 12 (failed 1, running 1, success 10)" in everything.stdout


def test_report_json_is_the_rest_stats_and_runs(db, cli):
    out = cli("report", "--json", "--since", "7d", "--workflow", "wf-a", "--limit", "3", "--database-url", db)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["stats"]["total_runs"] == 4 and data["stats"]["by_status"]["success"] == 4
    assert data["total"] == 4 and [r["run_id"] for r in data["runs"]] == ["recent-0", "recent-1", "recent-2"]
    assert data["filters"]["workflow"] == "wf-a" and int(data["filters"]["since_ms"]) < NOW - 6 * DAY
    assert data["stats"]["by_workflow"][0]["workflow_name"] == "Portrait"


def test_a_sqlite_file_that_does_not_exist_is_an_error_not_a_new_database(tmp_path, cli):
    missing = tmp_path / "typo.db"
    for command in (["report"], ["export"], ["prune", "--keep", "1"]):
        out = cli(*command, "--database-url", sqlite_url(str(missing)))
        assert out.returncode == 1 and f"{missing} does not exist" in out.stderr and "--database-url" in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
    assert not missing.exists()
    default = cli("report")  # the default ~/.run_telemetry/telemetry.db, not there either
    assert default.returncode == 1 and str(tmp_path / ".run_telemetry" / "telemetry.db") in default.stderr


def test_report_on_a_database_without_matching_runs(db, cli):
    out = cli("report", "--database-url", db, "--since", "2099-01-01")
    assert out.returncode == 0 and "runs: 0" in out.stdout and "no runs match" in out.stdout


# -- export ---------------------------------------------------------------------------------------------------


def _stored_runs(url: str) -> dict[str, dict]:
    store = Store(url)
    store.open()
    try:
        from telemetry.jsonsafe import json_safe
        from telemetry.store import mapping
        from telemetry.store.schema import RunRow

        with store.bound():
            return {row.run_id: json_safe(mapping.row_to_run(row).to_dict(detail=False)) for row in RunRow.select()}
    finally:
        store.shutdown()


def test_export_jsonl_round_trips_every_run(db, cli):
    out = cli("export", "--format", "jsonl", "--database-url", db)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    stored = _stored_runs(db)
    assert len(lines) == len(stored) == 12
    assert {line["run_id"]: line for line in lines} == stored
    assert lines[0]["run_id"] == "recent-0"  # newest first


def test_export_csv_to_a_file_round_trips_through_the_csv_parser(db, tmp_path, cli):
    target = tmp_path / "runs.csv"
    out = cli("export", "--format", "csv", "--since", "7d", "--out", str(target), "--database-url", db)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "" and "exported 7 runs to" in out.stderr
    with target.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert tuple(reader.fieldnames) == EXPORT_COLUMNS
    stored = _stored_runs(db)
    assert [r["run_id"] for r in rows] == [f"recent-{i}" for i in range(7)]
    for row in rows:
        run = stored[row["run_id"]]
        assert row["status"] == run["status"] and row["workflow_name"] == run["workflow_name"]
        assert float(row["duration_ms"]) == run["duration_ms"] and int(row["started_at_ms"]) == run["started_at_ms"]
        assert json.loads(row["parameters"]) == run["parameters"]
    assert rows[5]["error_node_type"] == "KSampler" and rows[5]["error_message"] == "boom"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    again = cli("export", "--format", "csv", "--since", "7d", "--database-url", db)
    assert list(csv.DictReader(io.StringIO(again.stdout, newline=""))) == rows  # stdout carries the same rows


def test_a_failed_export_leaves_no_file(db, tmp_path, cli):
    folder = tmp_path / "out"
    folder.mkdir()
    target = folder / "runs.jsonl"
    out = cli("export", "--out", str(target), "--database-url", f"postgresql://nobody@127.0.0.1:{free_port()}/x")
    assert out.returncode == 1 and list(folder.iterdir()) == []
    out = cli("export", "--out", str(tmp_path / "missing" / "runs.jsonl"), "--database-url", db)
    assert out.returncode == 1 and "--out" in out.stderr and "cannot write there" in out.stderr
    _no_traceback(out)


def test_export_to_a_file_shows_a_progress_bar_on_a_terminal(db, tmp_path, cli, monkeypatch):
    """stderr a terminal (a pty), the data to a file: the bar is drawn there; without a terminal it is not. Run in
    this process with stderr on the pty (a process of its own imports the whole pack again: seconds)."""
    target = tmp_path / "runs.jsonl"
    master, slave = pty.openpty()
    try:
        with open(slave, "w", encoding="utf-8") as terminal, monkeypatch.context() as scoped:
            scoped.setattr(sys, "stderr", terminal)
            status = cli("export", "--out", str(target), "--database-url", db).returncode
        os.set_blocking(master, False)
        seen = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except (BlockingIOError, OSError):  # nothing more (EAGAIN), or EIO once the writer is gone
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(master)
    assert status == 0
    text = seen.decode("utf-8", errors="replace")
    assert "export [" in text and "100% 12/12 runs" in text and "exported 12 runs to" in text
    assert len(target.read_text().splitlines()) == 12
    piped = cli("export", "--out", str(target), "--database-url", db)
    assert "export [" not in piped.stderr and "%" not in piped.stderr


# -- prune ----------------------------------------------------------------------------------------------------


def test_prune_is_a_dry_run_until_yes(db, cli):
    dry = cli("prune", "--before", "10d", "--database-url", db)
    assert dry.returncode == 0, dry.stderr
    assert "12 runs stored" in dry.stdout
    assert "would delete: 4 finished runs started before" in dry.stdout and "running runs are kept" in dry.stdout
    assert "dry run: nothing was deleted" in dry.stdout
    assert len(_stored_runs(db)) == 12
    done = cli("prune", "--before", "10d", "--yes", "--database-url", db)
    assert done.returncode == 0, done.stderr
    assert "deleted 4 runs; 8 remain" in done.stdout
    left = _stored_runs(db)
    assert "old-running" in left and not [r for r in left if r.startswith("old-") and r != "old-running"]
    assert "nothing to delete" in cli("prune", "--before", "10d", "--database-url", db).stdout


def test_prune_keep_names_the_oldest_and_newest_it_would_delete(db, cli):
    dry = cli("prune", "--keep", "5", "--database-url", db)
    assert dry.returncode == 0, dry.stderr
    # 12 stored, the newest 5 kept; of the other 7 the running one stays
    assert "would delete: 6 finished runs beyond the newest 5" in dry.stdout
    done = cli("prune", "--keep", "5", "--yes", "--database-url", db)
    assert "deleted 6 runs; 6 remain" in done.stdout
    assert sorted(_stored_runs(db)) == sorted([f"recent-{i}" for i in range(5)] + ["old-running"])


@pytest.mark.postgres
def test_report_and_prune_on_the_real_postgresql(pg_schema_url, cli):
    _fill(pg_schema_url).shutdown()
    report = cli("report", "--json", "--database-url", pg_schema_url)
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["stats"]["total_runs"] == 12
    done = cli("prune", "--before", "10d", "--yes", "--database-url", pg_schema_url)
    assert done.returncode == 0, done.stderr
    assert "deleted 4 runs; 8 remain" in done.stdout
    assert len(_stored_runs(pg_schema_url)) == 8


# -- doctor ---------------------------------------------------------------------------------------------------


def _check_lines(stdout: str) -> dict[str, str]:
    return {line.split(":", 1)[0].split(" ", 1)[1]: line.split(" ", 1)[0] for line in stdout.splitlines()
            if line.startswith(("PASS ", "FAIL "))}


def test_doctor_passes_on_a_good_database_and_notes_the_skipped_comfyui_checks(db, cli):
    out = cli("doctor", "--database-url", db)
    assert out.returncode == 0, out.stdout + out.stderr
    assert _check_lines(out.stdout) == {"database": "PASS", "schema version": "PASS", "database writable": "PASS"}
    assert "note: ComfyUI checks skipped" in out.stdout and "3 passed, 0 failed" in out.stdout
    assert len(_stored_runs(db)) == 12  # the write probe left nothing behind


def test_doctor_fails_with_fixes_on_an_unreachable_database_and_comfyui(cli):
    nothing = f"http://127.0.0.1:{free_port()}"
    out = cli("doctor", "--database-url", f"postgresql://nobody@127.0.0.1:{free_port()}/none", "--comfyui", nothing)
    assert out.returncode == 1
    assert _check_lines(out.stdout) == {"database": "FAIL", "schema version": "FAIL", "database writable": "FAIL",
                                        "comfyui": "FAIL", "hooks": "FAIL", "comfyui database": "FAIL",
                                        "end-to-end": "FAIL"}
    lines = out.stdout.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("FAIL "):
            assert lines[i + 1].startswith("  fix: ")
    assert f"no answer from {nothing}" in out.stdout and "--comfyui http://HOST:PORT" in out.stdout
    _no_traceback(out)


@pytest.mark.parametrize("name", ["missing.db", "file/t.db"])
def test_doctor_fails_with_a_fix_when_the_sqlite_file_does_not_exist(name, tmp_path, cli):
    (tmp_path / "file").write_text("x")
    out = cli("doctor", "--database-url", sqlite_url(str(tmp_path / name)))
    assert out.returncode == 1
    assert set(_check_lines(out.stdout).values()) == {"FAIL"} and "does not exist" in out.stdout
    assert "fix: pass the database ComfyUI records into with --database-url" in out.stdout
    assert not (tmp_path / "missing.db").exists()
    _no_traceback(out)


def test_doctor_fails_on_a_database_without_the_schema(tmp_path, cli):
    (tmp_path / "empty.db").touch()  # an empty file is an empty SQLite database
    url = sqlite_url(str(tmp_path / "empty.db"))
    out = cli("doctor", "--database-url", url)
    assert out.returncode == 1
    assert _check_lines(out.stdout) == {"database": "PASS", "schema version": "FAIL", "database writable": "PASS"}
    assert "python -m telemetry report" in out.stdout


# -- as a user runs it: `python -m telemetry` in a process of its own -------------------------------------------


@pytest.mark.parametrize("args, status, message", [
    (["report", "--since", "yesterday"], 2, "is not a time"),
    (["report", "--database-url", "mongodb://x/y"], 2, "unsupported database URL scheme"),
    (["report", "--database-url", "postgresql://nobody@127.0.0.1:{port}/none"], 1,
     "error: the telemetry database at "),
])
def test_python_m_telemetry_exits_with_the_status_and_one_line_no_traceback(args, status, message, request):
    out = early_process.finished(request.node.name, functools.partial(_exit_status_process, args, status, message))
    shutil.rmtree(_home_of(out), ignore_errors=True)
    assert out.returncode == status, out.stderr
    assert message in out.stderr and out.stdout == ""
    if status == 1:
        assert len(out.stderr.strip().splitlines()) == 1 and "is unavailable" in out.stderr
    _no_traceback(out)


def test_the_default_data_dir_is_under_home():
    """A process reads $HOME when it starts: the default database is ~/.run_telemetry/telemetry.db there."""
    out = early_process.finished("test_the_default_data_dir_is_under_home", _default_data_dir_process)
    home = _home_of(out)
    try:
        assert out.returncode == 1 and str(home / ".run_telemetry" / "telemetry.db") in out.stderr
        assert "does not exist" in out.stderr and not (home / ".run_telemetry" / "telemetry.db").exists()
        _no_traceback(out)
    finally:
        shutil.rmtree(home, ignore_errors=True)


EARLY_PROCESSES = {
    "test_python_m_telemetry_exits_with_the_status_and_one_line_no_traceback": _exit_status_process,
    "test_the_default_data_dir_is_under_home": _default_data_dir_process,
}


# -- the time forms -------------------------------------------------------------------------------------------


def test_times_are_relative_ages_or_iso_dates():
    import argparse
    from datetime import datetime, timezone

    from telemetry.commands.dates import parse_when

    now = 1_800_000_000_000
    assert parse_when("90s", now) == now - 90_000 and parse_when("30m", now) == now - 1_800_000
    assert parse_when("24h", now) == parse_when("1d", now) == now - DAY and parse_when("2W", now) == now - 14 * DAY
    assert parse_when("2026-11-01T08:00:00Z") == int(datetime(2026, 11, 1, 8, tzinfo=timezone.utc).timestamp() * 1000)
    assert parse_when("2026-11-01T09:00:00+01:00") == parse_when("2026-11-01T08:00Z")
    assert parse_when("2026-11-01") == int(datetime(2026, 11, 1).timestamp() * 1000)  # local midnight
    for bad in ("yesterday", "7", "-3d", "2026-02-30", "1e3d", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_when(bad, now)


def test_the_commands_use_the_one_assembly():
    """Like the plugin, the watcher and serve, the commands get store and service from telemetry.app.assemble."""
    for module in sorted((ROOT / "telemetry" / "commands").glob("*.py")):
        source = module.read_text()
        for constructor in ("Store(", "Recorder(", "TelemetryService(", "AnalysisService("):
            assert constructor not in source, f"{module.name} builds {constructor[:-1]} itself"
    assert "assemble(" in (ROOT / "telemetry" / "commands" / "common.py").read_text()
