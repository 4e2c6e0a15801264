"""`python -m telemetry watch` as a real process for the tests: started against one or more ComfyUI URLs, recording
into a database URL (default: a SQLite file in its work directory), serving its REST on a free loopback port of its
own, answered once /telemetry/health does, stopped with SIGINT (killed if it does not exit) at the end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from comfy_harness import REPO, ComfyServer, free_port


class WatcherRest(ComfyServer):
    """The harness's HTTP helpers (request/get), pointed at the watcher's REST port."""

    def __init__(self, port: int) -> None:
        self.port = port


class WatcherProcess:
    """`python -m telemetry watch --comfyui URL [extra args]`; `database_url` None: `<workdir>/watcher.db`."""

    def __init__(self, comfyui_url: str, workdir: Path, *extra: str, database_url: str | None = None,
                 timeout: float = 30.0) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.db = workdir / "watcher.db"
        self.database_url = database_url or "sqlite:///" + str(self.db)
        self.log_path = workdir / f"watcher-{self.port}.log"
        self.server = WatcherRest(self.port)
        args = [sys.executable, "-m", "telemetry", "watch", "--comfyui", comfyui_url,
                "--database-url", self.database_url, "--serve", f"127.0.0.1:{self.port}",
                "--interval", "0.25", "--data-dir", str(workdir / "watcher-data"), *extra]
        # Only what the arguments say: no TELEMETRY_* setting of the test run's environment leaks in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(args, cwd=REPO, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_up(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_up(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"watcher exited:\n{self.log()}"
            try:
                if self.server.request("GET", "/telemetry/health", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"watcher REST did not come up:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def health(self) -> dict:
        return self.server.get("/telemetry/health")

    def run(self, run_id: str, status: str | None = None, timeout: float = 30.0) -> dict:
        """The run as the watcher stored it, once final (or once it has `status`)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            code, last = self.server.request("GET", f"/telemetry/runs/{run_id}")
            if code == 200 and (last["status"] == status if status else last["status"] != "running"):
                return last
            time.sleep(0.1)
        raise AssertionError(f"watcher did not store {run_id} ({status or 'final'}); last {str(last)[:300]}\n"
                             f"{self.log()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode
