"""Starts a real ComfyUI server on loopback with this pack installed, for integration and browser tests.

The ComfyUI tree comes from `COMFYUI_DIR` (scripts/provision.sh prepares ComfyUI 0.3.75 and prints its path);
each server gets its own scratch base directory, so models, outputs and the telemetry database are isolated.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PACK_FOLDER = "run-telemetry"
DEFAULT_COMFYUI_DIR = Path.home() / ".cache" / "run-telemetry" / "comfyui-0.3.75"


def comfyui_dir() -> Path | None:
    path = Path(os.environ.get("COMFYUI_DIR") or DEFAULT_COMFYUI_DIR)
    return path if (path / "main.py").is_file() else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ComfyServer:
    def __init__(self, base_dir: Path, env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.base_dir = base_dir
        self.port = port or free_port()
        self.env = env or {}
        self.process: subprocess.Popen | None = None
        self.log_path = base_dir / f"comfyui-{self.port}.log"
        (base_dir / "custom_nodes").mkdir(parents=True, exist_ok=True)
        link = base_dir / "custom_nodes" / PACK_FOLDER
        if not link.exists():
            link.symlink_to(REPO, target_is_directory=True)
        nodes_link = base_dir / "custom_nodes" / "run_telemetry_test_nodes"  # tests/node_pack: the tests' own nodes
        nodes_link.exists() or nodes_link.symlink_to(REPO / "tests" / "node_pack", target_is_directory=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_path(self) -> Path:
        return self.base_dir / "user" / "__run_telemetry" / "telemetry.db"

    def start(self, timeout: float = 120.0) -> ComfyServer:
        root = comfyui_dir()
        assert root is not None, "no ComfyUI: run scripts/provision.sh or set COMFYUI_DIR"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
             "--base-directory", str(self.base_dir), "--disable-auto-launch"],
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
