"""The doctor's checks of a ComfyUI with the pack: it answers, the pack's hooks are installed (its
`/telemetry/health`), and a tiny prompt of core nodes (EmptyImage -> PreviewImage) runs there and is then found
in the database the doctor was given: hooks, recorder and database, end to end.

Plain HTTP with the standard library; every wait is bounded (`timeout_s`)."""

from __future__ import annotations

import json
import os
import random
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

from ..model import Run
from ..store.database import sqlite_path
from .checks import Check, failed, passed
from .common import one_line

REQUIRED_HOOKS = ("executor", "task_done", "progress_handler")
REQUEST_TIMEOUT_S = 10.0
POLL_S = 0.25
RECORD_WAIT_S = 15.0  # the recorder commits a finished run within 0.5 s; the rest is a busy database's slack
START_HINT = "start ComfyUI, or pass the address it listens on: --comfyui http://HOST:PORT"
INSTALL_HINT = ("install the pack into ComfyUI's custom_nodes/ (git clone ... run-telemetry; pip install -r "
                "run-telemetry/requirements.txt into ComfyUI's Python) and restart ComfyUI; its log says why the "
                "pack did not load")


class HttpProblem(Exception):
    """No usable answer: `status` is the HTTP status (None: no connection at all)."""

    def __init__(self, message: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def http_json(base_url: str, method: str, path: str, body: Any = None,
              timeout_s: float = REQUEST_TIMEOUT_S) -> Any:
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(base_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 (an http(s) URL)
            raw = response.read()
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            parsed = json.loads(raw.decode("utf-8", errors="replace")) if raw else None
        except ValueError:
            parsed = raw.decode("utf-8", errors="replace")[:300]
        raise HttpProblem(f"{method} {path} answered HTTP {err.code}", err.code, parsed) from None
    except (urllib.error.URLError, OSError) as exc:
        raise HttpProblem(f"no answer from {base_url} ({one_line(getattr(exc, 'reason', exc), 200)})") from None
    try:
        return json.loads(raw.decode("utf-8")) if raw else None
    except ValueError:
        raise HttpProblem(f"{method} {path} did not answer JSON") from None


def comfyui_answers(base_url: str) -> Check:
    try:
        stats = http_json(base_url, "GET", "/system_stats")
    except HttpProblem as exc:
        return failed("comfyui", str(exc), START_HINT)
    system = (stats or {}).get("system") or {}
    devices = ", ".join(d.get("name", "?") for d in (stats or {}).get("devices") or []) or "no devices listed"
    version = system.get("comfyui_version") or "(version not reported)"
    return passed("comfyui", f"ComfyUI {version} at {base_url} ({devices})")


def pack_health(base_url: str) -> tuple[Check, dict[str, Any] | None]:
    """The hooks check, and the health document for the checks after it."""
    try:
        health = http_json(base_url, "GET", "/telemetry/health")
    except HttpProblem as exc:
        if exc.status == 404:
            return failed("hooks", f"{base_url} has no /telemetry/health: the pack is not loaded there",
                          INSTALL_HINT), None
        return failed("hooks", f"/telemetry/health: {exc}", INSTALL_HINT if exc.status else START_HINT), None
    if not isinstance(health, dict):
        return failed("hooks", "/telemetry/health did not answer an object", INSTALL_HINT), None
    if health.get("source") != "plugin":
        return failed("hooks", f"/telemetry/health is served by a {health.get('source')!r}, not the pack inside "
                               "ComfyUI (a watcher or `serve` has no hooks)",
                      "pass ComfyUI's own address to --comfyui"), health
    hooks = health.get("hooks") or {}
    missing = [name for name in REQUIRED_HOOKS if hooks.get(name) is not True]
    if missing:
        return failed("hooks", f"not installed: {', '.join(missing)} (installed: "
                               f"{', '.join(k for k, v in hooks.items() if v is True) or 'none'})",
                      "this ComfyUI version may not be supported (see docs/newest-comfyui.md), or "
                      "TELEMETRY_ENABLED is false; ComfyUI's log names the hook that failed"), health
    errors = hooks.get("hook_errors") or 0
    if errors:
        return failed("hooks", f"installed, but they raised {errors} time(s)",
                      "look for 'Run Telemetry' tracebacks in ComfyUI's log and report them"), health
    return passed("hooks", f"{', '.join(REQUIRED_HOOKS)} installed, no hook errors, "
                           f"{hooks.get('runs_seen', 0)} runs seen, instance {health.get('instance')}"), health


def pack_database(health: dict[str, Any], our_url: str, shown_url: str) -> Check:
    db = health.get("database") or {}
    theirs = db.get("url") or "?"
    if db.get("state") != "ok":
        return failed("comfyui database", f"the pack cannot use {theirs}: {db.get('state')} "
                                          f"{db.get('error') or db.get('reason') or ''}".strip(),
                      "see /telemetry/health's database section and ComfyUI's log; runs are buffered in memory "
                      "until the database is back")
    detail = f"the pack records into {theirs} ({db.get('kind')}), state ok"
    if not same_database(theirs, our_url, shown_url):
        detail += f"; this doctor reads {shown_url}"
    return passed("comfyui database", detail)


def same_database(theirs: str, our_url: str, shown_url: str) -> bool:
    """Whether two URLs name one database, as far as their text tells (SQLite: the same file)."""
    a, b = sqlite_path(theirs), sqlite_path(our_url)
    if a and b:
        return os.path.realpath(a) == os.path.realpath(b)
    return theirs == shown_url


def doctor_prompt() -> dict[str, Any]:
    """Two core nodes, no model files; a random colour so ComfyUI executes it instead of answering from cache."""
    return {
        "1": {"class_type": "EmptyImage",
              "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": random.randint(0, 0xFFFFFF)}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }


def end_to_end(base_url: str, find_run: Callable[[str], Run | None], shown_url: str, timeout_s: float,
               pack_url: str | None) -> Check:
    """Submit the doctor's prompt, wait for ComfyUI's history of it, then for its run in our database."""
    name = "end-to-end"
    body = {"prompt": doctor_prompt(), "client_id": f"run-telemetry-doctor-{uuid.uuid4().hex[:8]}",
            "extra_data": {"telemetry": {"workflow_name": "telemetry doctor", "tags": ["doctor"]}}}
    try:
        answer = http_json(base_url, "POST", "/prompt", body)
        prompt_id = answer["prompt_id"]
    except HttpProblem as exc:
        detail = f"ComfyUI refused the test prompt: {exc}" + (f" {one_line(exc.body, 300)}" if exc.body else "")
        return failed(name, detail, "the test prompt uses only the core nodes EmptyImage and PreviewImage; "
                                    "ComfyUI's answer above says what it refused")
    except (KeyError, TypeError):
        return failed(name, f"POST /prompt answered without a prompt_id: {str(answer)[:200]}",
                      "is --comfyui really a ComfyUI?")
    began = time.monotonic()
    deadline = began + timeout_s
    entry = None
    while time.monotonic() < deadline:
        try:
            history = http_json(base_url, "GET", f"/history/{prompt_id}")
        except HttpProblem as exc:
            return failed(name, f"waiting for prompt {prompt_id}: {exc}", START_HINT)
        if isinstance(history, dict) and prompt_id in history:
            entry = history[prompt_id]
            break
        time.sleep(POLL_S)
    if entry is None:
        return failed(name, f"prompt {prompt_id} did not finish within {timeout_s:g} s",
                      "ComfyUI's queue may be busy with other prompts: wait, or pass a longer --timeout")
    outcome = ((entry.get("status") or {}).get("status_str")) if isinstance(entry, dict) else None
    ran_s = time.monotonic() - began
    run = None
    record_deadline = time.monotonic() + RECORD_WAIT_S
    while time.monotonic() < record_deadline:
        run = find_run(prompt_id)
        if run is not None and run.status != "running":
            break
        time.sleep(POLL_S)
    if run is None or run.status == "running":
        where = f" (the pack records into {pack_url})" if pack_url else ""
        return failed(name, f"ComfyUI ran prompt {prompt_id} ({outcome}) but {shown_url} has no finished run of "
                            f"it after {RECORD_WAIT_S:g} s",
                      f"point --database-url (or TELEMETRY_DATABASE_URL) at the database this ComfyUI's pack "
                      f"records into{where}; if it is the same, /telemetry/health's recorder section says why it "
                      "is not written")
    if run.status != "success" or outcome != "success":
        return failed(name, f"prompt {prompt_id} is stored as {run.status} (ComfyUI: {outcome})"
                            + (f": {run.error.message}" if run.error else ""),
                      "ComfyUI's log shows why the test prompt did not succeed")
    return passed(name, f"prompt {prompt_id} ran in ComfyUI ({ran_s:.1f} s) and is stored as {run.status} in "
                        f"{shown_url}")
