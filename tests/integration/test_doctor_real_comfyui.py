"""`python -m telemetry doctor --comfyui` against a real ComfyUI with the pack: every check passes and the test
prompt is found in the pack's database; pointed at another database, or at a port where nothing listens, the
failing checks say so with a fix and the exit status is 1."""

from __future__ import annotations

import re

import pytest
from comfy_harness import free_port
from test_cli_commands import _check_lines
from test_cli_commands import run_module as cli  # a real process, as a user runs doctor

from telemetry.store.database import sqlite_url
from telemetry.store.store import Store

pytestmark = pytest.mark.comfyui

ALL_CHECKS = ("database", "schema version", "database writable", "comfyui", "hooks", "comfyui database",
              "end-to-end")


def test_doctor_passes_end_to_end_through_a_real_comfyui_with_the_pack(comfy, tmp_path):
    out = cli("doctor", "--comfyui", comfy.url, "--database-url", sqlite_url(str(comfy.database_path)),
              home=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert _check_lines(out.stdout) == {name: "PASS" for name in ALL_CHECKS}, out.stdout
    assert "7 passed, 0 failed" in out.stdout and "fix:" not in out.stdout
    prompt_id = re.search(r"PASS end-to-end: prompt (\S+) ran in ComfyUI", out.stdout).group(1)
    run = comfy.wait_run(prompt_id)  # the same run, as the pack serves it
    assert run["status"] == "success" and run["workflow_name"] == "telemetry doctor"
    assert run["node_count"] == 2 and run["labels"]["tags"] == ["doctor"]


def test_doctor_says_when_the_comfyui_records_elsewhere_or_nothing_listens(comfy, tmp_path):
    other = sqlite_url(str(tmp_path / "other.db"))
    store = Store(other)
    store.open()  # a good database, only not the one this ComfyUI records into
    store.shutdown()
    out = cli("doctor", "--comfyui", comfy.url, "--database-url", other, home=tmp_path)
    assert out.returncode == 1
    checks = _check_lines(out.stdout)
    assert checks.pop("end-to-end") == "FAIL" and set(checks.values()) == {"PASS"}, out.stdout
    assert "this doctor reads " + other in out.stdout
    fix = out.stdout[out.stdout.index("FAIL end-to-end"):].splitlines()[1]
    assert fix.startswith("  fix: point --database-url") and str(comfy.database_path) in fix

    nothing = f"http://127.0.0.1:{free_port()}"
    out = cli("doctor", "--comfyui", nothing, "--database-url", other, home=tmp_path)
    assert out.returncode == 1
    assert _check_lines(out.stdout) == {"database": "PASS", "schema version": "PASS", "database writable": "PASS",
                                        "comfyui": "FAIL", "hooks": "FAIL", "comfyui database": "FAIL",
                                        "end-to-end": "FAIL"}
    assert f"FAIL comfyui: no answer from {nothing}" in out.stdout
    assert out.stdout.count("  fix: start ComfyUI, or pass the address it listens on") == 4
    assert "Traceback" not in out.stdout + out.stderr


def test_doctor_says_the_pack_is_not_loaded_in_a_comfyui_without_it(comfy_factory, tmp_path):
    server = comfy_factory(link_pack=False).start()
    db = sqlite_url(str(tmp_path / "t.db"))
    store = Store(db)
    store.open()
    store.shutdown()
    out = cli("doctor", "--comfyui", server.url, "--database-url", db, home=tmp_path)
    assert out.returncode == 1
    checks = _check_lines(out.stdout)
    assert checks["comfyui"] == "PASS" and checks["hooks"] == "FAIL" and checks["end-to-end"] == "FAIL"
    assert f"FAIL hooks: {server.url} has no /telemetry/health: the pack is not loaded there" in out.stdout
    assert "fix: install the pack into ComfyUI's custom_nodes/" in out.stdout
