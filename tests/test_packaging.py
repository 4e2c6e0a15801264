"""The pack as users install it: from the Registry (the archive `comfy node pack` builds, unpacked into a fresh
custom_nodes/), through ComfyUI-Manager's "install via git URL" (a plain clone + requirements.txt, no build step),
and what both may and may not carry (no bytecode, no build output but the committed panel bundle)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import early_process
import pytest
from comfy_harness import PACK_FOLDER, REPO, ComfyServer, image_workflow
from matrix import skip_or_fail

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

PANEL_BUNDLE = "web/dist/telemetry.js"
# What neither git nor the archive may hold: bytecode (enterprise ComfyUI builds refuse packs with it), caches,
# dependency folders and build output other than the committed panel bundle.
FORBIDDEN = re.compile(r"(^|/)(__pycache__|\.pytest_cache|\.ruff_cache|node_modules|build|[^/]+\.egg-info)(/|$)"
                       r"|\.py[cod]$|\.db(-wal|-shm)?$|(^|/)node\.zip$")


def _git_files() -> list[str]:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        skip_or_fail("not a git checkout (or no git): cannot list what the repository holds")
    out = subprocess.run(["git", "-C", str(REPO), "ls-files", "--cached", "--others", "--exclude-standard"],
                         check=True, capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line and (REPO / line).exists()]


def _comfy_cli() -> list[str]:
    try:
        import comfy_cli  # noqa: F401
    except ImportError:
        skip_or_fail("comfy-cli is not installed (pip install -r requirements-dev.txt)")
    return [sys.executable, "-m", "comfy_cli", "--skip-prompt"]


def _comfy_env() -> dict[str, str]:
    # comfy-cli's usage tracking off (its documented opt-out), and no prompt for it
    return {**os.environ, "DO_NOT_TRACK": "1", "COMFY_NO_TELEMETRY": "1"}


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _requirement_names(lines: list[str]) -> dict[str, str]:
    reqs = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            name = re.split(r"[<>=!~ \[;]", line, maxsplit=1)[0].lower().replace("_", "-")
            reqs[name] = line
    return reqs


def test_the_repository_holds_no_bytecode_or_build_output_but_the_panel_bundle():
    files = _git_files()
    assert PANEL_BUNDLE in files, "the committed panel bundle is what a git-URL install (ComfyUI-Manager) serves"
    assert "__init__.py" in files and "requirements.txt" in files
    # The schema fixtures are databases made by earlier releases on purpose (tests/test_migrations.py).
    assert [f for f in files if FORBIDDEN.search(f) and not f.startswith("tests/fixtures/schema/")] == []


def test_requirements_declare_what_runs_outside_comfyui_and_never_torch():
    reqs = _requirement_names((REPO / "requirements.txt").read_text().splitlines())
    deps = _requirement_names(_pyproject()["project"]["dependencies"])
    for name in ("numpy", "scipy", "pydantic", "peewee", "aiohttp"):
        assert name in reqs, f"requirements.txt lacks {name}"
    assert re.search(r"pydantic\s*>=\s*2", reqs["pydantic"])
    assert deps == reqs, "pyproject.toml's dependencies and requirements.txt differ"
    assert not {"torch", "torchvision", "torchaudio"} & set(reqs), "torch is ComfyUI's own: never a requirement"


def _node_validate() -> tuple[list[str], dict]:
    """`comfy node validate` (seconds): started as soon as the tests are collected (early_process.py), beside the
    tests before it. Without comfy-cli, nothing: the test skips (or fails) as `_comfy_cli` says."""
    if importlib.util.find_spec("comfy_cli") is None:
        return [sys.executable, "-c", ""], {}
    return [sys.executable, "-m", "comfy_cli", "--skip-prompt", "node", "validate"], {"cwd": REPO, "env": _comfy_env()}


def test_pyproject_passes_comfy_node_validate_with_icon_repository_and_comfyui_version(request):
    _comfy_cli()
    result = early_process.finished(request.node.name, _node_validate, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Error" not in output and "Warning" not in output and "Security warnings" not in output, output

    from comfy_cli.registry.config_parser import extract_node_configuration

    config = extract_node_configuration(str(REPO / "pyproject.toml"))
    assert config is not None
    assert config.project.name == PACK_FOLDER and config.project.version
    assert config.project.urls.repository.startswith("https://github.com/")
    assert config.project.supported_comfyui_version.startswith(">=")
    assert config.tool_comfy.publisher_id and config.tool_comfy.display_name
    assert PANEL_BUNDLE.rsplit("/", 1)[0] in config.tool_comfy.includes
    icon = config.tool_comfy.icon
    assert icon.startswith("https://raw.githubusercontent.com/"), icon
    icon_path = icon.split("/main/", 1)[1]
    assert icon_path in _git_files(), f"the Icon URL points at {icon_path}, which the repository does not hold"
    assert (REPO / icon_path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _pack(tmp_path: Path) -> Path:
    """`comfy node pack` on the files the repository holds (tracked and new, as a commit would have them)."""
    src = tmp_path / "src"
    for rel in _git_files():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, src / rel)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q"], cwd=src, check=True)
    subprocess.run([*git, "add", "-A"], cwd=src, check=True)
    result = subprocess.run([*_comfy_cli(), "node", "pack"], cwd=src, env=_comfy_env(), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    archive = src / "node.zip"
    assert archive.is_file(), result.stdout + result.stderr
    return archive


@pytest.mark.comfyui
def test_the_registry_archive_installs_loads_records_a_run_and_serves_the_panel(comfy_tree, tmp_path):
    archive = _pack(tmp_path)
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        assert PANEL_BUNDLE in names, "the Registry archive must carry the built panel (no build step on install)"
        assert "__init__.py" in names and "telemetry/capture/plugin.py" in names and "requirements.txt" in names
        assert [n for n in names if FORBIDDEN.search(n)] == []
        assert not [n for n in names if n.startswith(("tests/", "bench/", "web/src/", "web/node_modules/"))], \
            ".comfyignore keeps the tests, benchmarks and panel sources out of what users install"
        base = tmp_path / "comfy-base"
        target = base / "custom_nodes" / PACK_FOLDER
        target.mkdir(parents=True)
        zf.extractall(target)

    server = ComfyServer.for_tree(comfy_tree, base, link_pack=False)
    try:
        server.start()
        health = server.get("/telemetry/health")
        assert health["hooks"]["executor"] and health["optional"] == {}, health
        prompt_id, _, run = server.run_and_wait(image_workflow(prefix="registry"))
        assert run["run_id"] == prompt_id and run["status"] == "success" and run["output_counts"]["images"] == 2
        status, served = server.request("GET", f"/extensions/{PACK_FOLDER}/telemetry.js")
        assert status == 200
        assert served == (target / PANEL_BUNDLE).read_text()
        log = server.log_tail(10**6)
        assert "Run Telemetry recording to sqlite" in log
        loaded = re.search(rf"^\s*[\d.]+ seconds( \(IMPORT FAILED\))?: \S*custom_nodes/{PACK_FOLDER}$", log, re.M)
        assert loaded and not loaded.group(1), "ComfyUI's import report must list the pack as loaded"
        assert "Run Telemetry failed" not in log and "could not start" not in log
    finally:
        server.stop()


_BLOCK_ANALYSIS_PREDICT = '''
import importlib.abc
import sys


class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.endswith("telemetry.analysis.predict"):
            raise ImportError("No module named 'scipy.optimize' (blocked by the test)")
        return None


sys.meta_path.insert(0, _Blocked())
'''


@pytest.mark.comfyui
def test_a_failed_optional_import_is_logged_and_reported_in_health(comfy_factory, tmp_path):
    """An import the analysis needs fails (injected at its predict module, as a missing scipy would): the log and
    /health say so, its routes are absent, and runs are still recorded and served."""
    block = tmp_path / "block"
    block.mkdir()
    (block / "sitecustomize.py").write_text(_BLOCK_ANALYSIS_PREDICT)
    pythonpath = os.pathsep.join(p for p in (str(block), os.environ.get("PYTHONPATH", "")) if p)
    server = comfy_factory(env={"PYTHONPATH": pythonpath}).start()
    optional = server.get("/telemetry/health")["optional"]
    assert set(optional) == {"analysis", "analysis_routes"}, optional
    assert all(v.startswith("ImportError: ") and "scipy.optimize" in v for v in optional.values()), optional
    assert "Run Telemetry: analysis is off (ImportError" in server.log_tail(10**6)
    assert server.request("GET", "/telemetry/recommendations")[0] == 404
    prompt_id, _, run = server.run_and_wait(image_workflow(prefix="no-analysis"))
    assert run["status"] == "success"
    assert server.get("/telemetry/runs?limit=5")["runs"][0]["run_id"] == prompt_id


EARLY_PROCESSES = {"test_pyproject_passes_comfy_node_validate_with_icon_repository_and_comfyui_version": _node_validate}
