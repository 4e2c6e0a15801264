"""`python -m telemetry serve` as a real process for the tests: started on a free loopback port over a database URL,
answered once its page does, stopped (terminated, then killed) at the end."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from comfy_harness import REPO, free_port


def wait_http(url: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    """Until `url` answers (any HTTP status); fails when the process exits first or it never does."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            assert process.poll() is None, "serve exited"
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.2)


class ServeProcess:
    def __init__(self, database_url: str, workdir: Path, token: str | None = None) -> None:
        self.database_url = database_url
        self.workdir = workdir
        self.token = token
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServeProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETRY_")}
        args = [sys.executable, "-m", "telemetry", "serve", "--listen", f"127.0.0.1:{self.port}", "--database-url",
                self.database_url, "--data-dir", str(self.workdir / "serve")]
        if self.token:
            args += ["--token", self.token]
        with open(self.workdir / "serve.log", "ab") as log:
            self.process = subprocess.Popen(args, cwd=REPO, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=log,
                                            stderr=subprocess.STDOUT)
        try:
            wait_http(self.url + "/", self.process)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(30)
