"""Starts a real ComfyUI server on loopback with this pack installed, for integration and browser tests.

The tests run on a matrix of ComfyUI trees (see `comfyui_trees`): scripts/provision.sh prepares ComfyUI 0.3.75 and,
when its tarball is given, 0.8.0, and prints their paths (`RUN_TELEMETRY_COMFYUI_TREES`). Each tree is served its
own pinned frontend, and the browser tests also a newer one, from the frontends provision unpacks
(`RUN_TELEMETRY_FRONTEND_DIR`) with `--front-end-root`. Each server gets its own scratch base directory, so models,
outputs and the telemetry database are isolated.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PACK_FOLDER = "run-telemetry"
CACHE = Path(os.environ.get("RUN_TELEMETRY_CACHE") or Path.home() / ".cache" / "run-telemetry")
DEFAULT_COMFYUI_DIR = CACHE / "comfyui-0.3.75"
# The ComfyUI versions every real-server test runs on (RUN_TELEMETRY_COMFYUI_VERSIONS overrides, comma-separated).
MATRIX_VERSIONS = ("0.3.75", "0.8.0")
# The newest ComfyUI frontend the browser tests also check (served with --front-end-root).
NEWEST_FRONTEND = "1.58.1"


def tree_version(root: Path) -> str | None:
    """The ComfyUI version of a tree (its comfyui_version.py), or None when `root` is not a ComfyUI tree."""
    if not (root / "main.py").is_file():
        return None
    match = None
    try:
        match = re.search(r"__version__\s*=\s*[\"']([^\"']+)", (root / "comfyui_version.py").read_text())
    except OSError:
        pass
    return match.group(1) if match else "unknown"


def pinned_frontend(root: Path) -> str | None:
    """The comfyui-frontend-package version a tree's requirements.txt pins."""
    try:
        text = (root / "requirements.txt").read_text()
    except OSError:
        return None
    match = re.search(r"^\s*comfyui-frontend-package\s*==\s*([0-9][0-9.]*)", text, re.MULTILINE)
    return match.group(1) if match else None


def frontend_root(version: str | None) -> Path | None:
    """The unpacked static folder of a frontend version (scripts/provision.sh), or None if it is not there."""
    if not version:
        return None
    base = Path(os.environ.get("RUN_TELEMETRY_FRONTEND_DIR") or CACHE / "frontends")
    path = base / version / "static"
    return path if (path / "index.html").is_file() else None


def comfyui_trees() -> dict[str, Path]:
    """Version -> ComfyUI tree: the provisioning cache's trees, then COMFYUI_DIR, then the list scripts/provision.sh
    prints (`RUN_TELEMETRY_COMFYUI_TREES`, `;`-separated); a later source wins for the same version."""
    candidates = [CACHE / f"comfyui-{v}" for v in MATRIX_VERSIONS]
    if os.environ.get("COMFYUI_DIR"):
        candidates.append(Path(os.environ["COMFYUI_DIR"]))
    candidates += [Path(p) for p in os.environ.get("RUN_TELEMETRY_COMFYUI_TREES", "").split(";") if p.strip()]
    trees: dict[str, Path] = {}
    for path in candidates:
        version = tree_version(path)
        if version:
            trees[version] = path.resolve()
    return trees


def matrix_versions() -> list[str]:
    """The versions the real-server tests are parametrized over: the matrix (or RUN_TELEMETRY_COMFYUI_VERSIONS),
    plus any other version a provided tree has (COMFYUI_DIR pointing at another ComfyUI)."""
    wanted = os.environ.get("RUN_TELEMETRY_COMFYUI_VERSIONS")
    versions = [v.strip() for v in wanted.split(",") if v.strip()] if wanted else list(MATRIX_VERSIONS)
    if not wanted:
        versions += [v for v in comfyui_trees() if v not in versions]
    return versions


def comfyui_dir() -> Path | None:
    """The first tree of the matrix that is present (benchmarks and the demo use one ComfyUI)."""
    trees = comfyui_trees()
    if os.environ.get("COMFYUI_DIR"):
        explicit = Path(os.environ["COMFYUI_DIR"])
        if tree_version(explicit):
            return explicit.resolve()
    return next((trees[v] for v in matrix_versions() if v in trees), None)


@dataclass(frozen=True)
class ComfyTree:
    """One leg of the matrix: a ComfyUI tree and the frontend it is served with (None: the installed package)."""

    version: str
    root: Path
    frontend: str | None = None
    front_end_root: Path | None = None

    @property
    def label(self) -> str:
        return f"ComfyUI {self.version}" + (f" + frontend {self.frontend}" if self.frontend else "")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ComfyServer:
    def __init__(self, base_dir: Path, env: dict[str, str] | None = None, port: int | None = None,
                 root: Path | None = None, front_end_root: Path | None = None, link_pack: bool = True) -> None:
        """`root`: the ComfyUI tree (default: `comfyui_dir()`); `front_end_root`: a frontend's static folder served
        with --front-end-root (default: the tree's pinned frontend when provisioned); `link_pack`: link this checkout
        into custom_nodes/ (False: the caller installs the pack there itself, e.g. from the Registry archive)."""
        self.base_dir = base_dir
        self.port = port or free_port()
        self.env = env or {}
        self.root = root or comfyui_dir()
        if front_end_root is None and self.root is not None:
            front_end_root = frontend_root(pinned_frontend(self.root))
        self.front_end_root = front_end_root
        self.process: subprocess.Popen | None = None
        self.log_path = base_dir / f"comfyui-{self.port}.log"
        (base_dir / "custom_nodes").mkdir(parents=True, exist_ok=True)
        link = base_dir / "custom_nodes" / PACK_FOLDER
        if link_pack and not link.exists():
            link.symlink_to(REPO, target_is_directory=True)
        nodes_link = base_dir / "custom_nodes" / "run_telemetry_test_nodes"  # tests/node_pack: the tests' own nodes
        nodes_link.exists() or nodes_link.symlink_to(REPO / "tests" / "node_pack", target_is_directory=True)

    @classmethod
    def for_tree(cls, tree: ComfyTree, base_dir: Path, **kwargs: Any) -> ComfyServer:
        return cls(base_dir, root=tree.root, front_end_root=tree.front_end_root, **kwargs)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_path(self) -> Path:
        return self.base_dir / "user" / "__run_telemetry" / "telemetry.db"

    def start(self, timeout: float = 120.0) -> ComfyServer:
        root = self.root
        assert root is not None, "no ComfyUI: run scripts/provision.sh or set COMFYUI_DIR"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        log = open(self.log_path, "ab")
        args = [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
                "--base-directory", str(self.base_dir), "--disable-auto-launch"]
        if self.front_end_root is not None:
            args += ["--front-end-root", str(self.front_end_root)]
        self.process = subprocess.Popen(
            args,
            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.process.returncode}; log:\n{self.log_tail()}")
            try:
                self.get("/system_stats", timeout=2)
                return self
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"ComfyUI did not answer within {timeout}s; log:\n{self.log_tail()}")

    def stop(self, kill: bool = False, timeout: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL if kill else signal.SIGTERM)
            self.process.wait(timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) != 0:
                    break
            time.sleep(0.2)

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    # -- HTTP --------------------------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> tuple[int, Any]:
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as err:
            raw, status = err.read(), err.code
        text = raw.decode("utf-8", errors="replace")
        try:
            return status, json.loads(text) if text else None
        except ValueError:
            return status, text

    def get(self, path: str, timeout: float = 30.0) -> Any:
        status, data = self.request("GET", path, timeout=timeout)
        if status >= 400:
            raise urllib.error.HTTPError(self.url + path, status, str(data), None, None)  # type: ignore[arg-type]
        return data

    def submit(self, prompt: dict[str, Any], client_id: str | None = None,
               extra_data: dict[str, Any] | None = None) -> str:
        body: dict[str, Any] = {"prompt": prompt}
        if client_id:
            body["client_id"] = client_id
        if extra_data:
            body["extra_data"] = extra_data
        status, data = self.request("POST", "/prompt", body)
        assert status == 200, f"POST /prompt answered {status}: {data}"
        return data["prompt_id"]

    def wait_history(self, prompt_id: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            history = self.get(f"/history/{prompt_id}")
            if prompt_id in history:
                return history[prompt_id]
            time.sleep(0.1)
        raise TimeoutError(f"prompt {prompt_id} not in /history after {timeout}s")

    def wait_run(self, run_id: str, timeout: float = 30.0, status: str | None = None) -> dict[str, Any]:
        """The stored run once it is final (or has `status`)."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            code, last = self.request("GET", f"/telemetry/runs/{run_id}")
            if code == 200 and (last["status"] == status if status else last["status"] != "running"):
                return last
            time.sleep(0.1)
        raise TimeoutError(f"run {run_id} not stored as final within {timeout}s (last: {str(last)[:300]})")

    def wait_running(self, prompt_id: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            queue = self.get("/queue")
            if any(item[1] == prompt_id for item in queue.get("queue_running", [])):
                return
            time.sleep(0.05)
        raise TimeoutError(f"prompt {prompt_id} never started")

    def interrupt(self) -> None:
        self.request("POST", "/interrupt", {})

    def run_and_wait(self, prompt: dict[str, Any], **kwargs: Any) -> tuple[str, dict[str, Any], dict[str, Any]]:
        prompt_id = self.submit(prompt, **kwargs)
        history = self.wait_history(prompt_id)
        return prompt_id, history, self.wait_run(prompt_id)


def new_client_id() -> str:
    return uuid.uuid4().hex


# -- workflows that need no model files (docs/real-comfyui.md) ---------------------------------------------------


def image_workflow(width: int = 64, height: int = 64, batch: int = 2, prefix: str = "rt", blur: int = 1,
                   color: int = 0) -> dict[str, Any]:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": width, "height": height, "batch_size": batch,
                                                     "color": color}},
        "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": blur, "sigma": 1.0}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}},
    }


def multi_output_workflow(batch: int = 3) -> dict[str, Any]:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": batch, "color": 7}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
        "3": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "multi"}},
    }


def failing_workflow() -> dict[str, Any]:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 16384, "height": 16384, "batch_size": 4096,
                                                     "color": 0}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }


def slow_workflow(blurs: int = 12, size: int = 1024, batch: int = 4) -> dict[str, Any]:
    prompt: dict[str, Any] = {"1": {"class_type": "EmptyImage",
                                    "inputs": {"width": size, "height": size, "batch_size": batch, "color": 3}}}
    previous = "1"
    for i in range(2, blurs + 2):
        prompt[str(i)] = {"class_type": "ImageBlur", "inputs": {"image": [previous, 0], "blur_radius": 31,
                                                                "sigma": 10.0}}
        previous = str(i)
    prompt[str(blurs + 2)] = {"class_type": "SaveImage", "inputs": {"images": [previous, 0],
                                                                     "filename_prefix": "slow"}}
    return prompt


def animated_workflow(frames: int = 5) -> dict[str, Any]:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": frames, "color": 9}},
        "2": {"class_type": "SaveAnimatedWEBP", "inputs": {"images": ["1", 0], "filename_prefix": "anim",
                                                           "fps": 6.0, "lossless": False, "quality": 50,
                                                           "method": "default"}},
    }
