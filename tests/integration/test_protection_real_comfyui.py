"""A real ComfyUI listening beyond loopback (`--listen 0.0.0.0`): pruning and config writes need the admin token
(403 saying to set TELEMETRY_ADMIN_TOKEN when none is configured, 401 without the right bearer token), while reads
and other writes stay as open as ComfyUI's own routes."""

from __future__ import annotations

import os

import pytest
from comfy_harness import image_workflow

pytestmark = pytest.mark.comfyui

TOKEN = "rt-admin-token-for-tests"
# The harness starts ComfyUI with `--listen 127.0.0.1`; argparse takes the last --listen, so this appends one.
SITECUSTOMIZE = """import os, sys
extra = os.environ.get("RT_TEST_EXTRA_COMFY_ARGS")
if extra and sys.argv and sys.argv[0].endswith("main.py"):
    sys.argv += extra.split()
"""


def exposed_env(tmp_path, **extra: str) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "RT_TEST_EXTRA_COMFY_ARGS": "--listen 0.0.0.0", **extra}


def admin_request(server, method: str, path: str, body=None, token: str | None = None) -> tuple[int, dict]:
    import json
    import urllib.error
    import urllib.request

    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_beyond_loopback_without_a_token_prune_and_config_writes_say_to_set_one(comfy_factory, tmp_path):
    server = comfy_factory(env=exposed_env(tmp_path)).start()
    prompt_id, _, _ = server.run_and_wait(image_workflow(prefix="exposed", color=51))
    for method, path, body in (("DELETE", "/telemetry/runs?keep=0", None),
                               ("PUT", "/telemetry/config", {"backtest_runs": 5})):
        status, answer = admin_request(server, method, path, body)
        assert status == 403 and "set TELEMETRY_ADMIN_TOKEN" in answer["error"], (method, answer)
    assert server.get(f"/telemetry/runs/{prompt_id}")["status"] == "success"
    assert server.request("POST", "/telemetry/presets", {"name": "open", "filters": {}})[0] == 201


def test_beyond_loopback_prune_and_config_writes_need_the_bearer_token(comfy_factory, tmp_path):
    server = comfy_factory(env=exposed_env(tmp_path, TELEMETRY_ADMIN_TOKEN=TOKEN)).start()
    prompt_id, _, _ = server.run_and_wait(image_workflow(prefix="token", color=52))
    assert admin_request(server, "DELETE", "/telemetry/runs?keep=0")[0] == 401
    assert admin_request(server, "DELETE", "/telemetry/runs?keep=0", token="wrong-token")[0] == 401
    status, pruned = admin_request(server, "DELETE", "/telemetry/runs?keep=0", token=TOKEN)
    assert (status, pruned["deleted"]) == (200, 1)
    assert server.request("GET", f"/telemetry/runs/{prompt_id}")[0] == 404
    status, config = admin_request(server, "PUT", "/api/telemetry/config", {"backtest_runs": 5}, token=TOKEN)
    assert status == 200 and config["backtest_runs"] == 5
    assert TOKEN not in str(server.get("/telemetry/health"))
