"""`python -m telemetry watch`: arguments, defaults, and the REST app it serves with `--serve`."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys

import pytest
from aiohttp.test_utils import TestClient, TestServer

from telemetry.cli import build_parser, main, watch_options
from telemetry.watch.app import DEFAULT_DATA_DIR, build, default_instance, make_web_app, parse_host_port


def test_watch_defaults(monkeypatch):
    monkeypatch.delenv("TELEMETRY_COMFYUI_URL", raising=False)
    options = watch_options(build_parser().parse_args(["watch"]))
    assert options.comfyui_url == "http://127.0.0.1:8188"
    assert options.database_url is None and options.serve is None
    assert options.interval_s == 1.0 and options.instance is None and options.websocket is True
    assert options.data_dir == DEFAULT_DATA_DIR == os.path.join(os.path.expanduser("~"), ".run_telemetry")


def test_watch_arguments():
    args = build_parser().parse_args(["watch", "--comfyui", "http://gpu-box:8188", "--database-url",
                                      "postgresql://u@db/t", "--serve", "0.0.0.0:9000", "--interval", "0.5",
                                      "--instance", "box-1", "--no-websocket"])
    options = watch_options(args)
    assert (options.comfyui_url, options.database_url, options.serve, options.interval_s, options.instance,
            options.websocket) == ("http://gpu-box:8188", "postgresql://u@db/t", "0.0.0.0:9000", 0.5, "box-1", False)


@pytest.mark.parametrize("argv", [["watch", "--interval", "0"], ["watch", "--interval", "x"], []])
def test_bad_arguments_exit_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2


def test_a_url_that_is_not_http_is_refused(capsys):
    assert main(["watch", "--comfyui", "ftp://x"]) == 2
    assert "not an http" in capsys.readouterr().err


def test_instance_defaults_to_the_plugins_name_for_the_same_comfyui():
    assert default_instance("http://127.0.0.1:8188") == f"{socket.gethostname()}:8188"
    assert default_instance("http://localhost:9999/") == f"{socket.gethostname()}:9999"
    assert default_instance("http://gpu-box:8188") == "gpu-box:8188"
    assert default_instance("https://comfy.example.org") == "comfy.example.org:443"


def test_host_port_forms():
    assert parse_host_port("127.0.0.1:8190") == ("127.0.0.1", 8190)
    assert parse_host_port("8191") == ("127.0.0.1", 8191)
    assert parse_host_port("[::1]:8192") == ("::1", 8192)
    assert parse_host_port("0.0.0.0") == ("0.0.0.0", 8190)


def test_database_defaults_to_sqlite_in_the_data_dir_or_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("TELEMETRY_DATABASE_URL", raising=False)
    options = watch_options(build_parser().parse_args(["watch", "--data-dir", str(tmp_path)]))
    assert build(options).store.url == "sqlite:///" + str(tmp_path / "telemetry.db")
    env_db = tmp_path / "env.db"
    monkeypatch.setenv("TELEMETRY_DATABASE_URL", "sqlite:///" + str(env_db))
    assert build(options).store.url == "sqlite:///" + str(env_db)
    options.database_url = "sqlite:///" + str(tmp_path / "flag.db")
    assert build(options).store.url == options.database_url  # the flag wins


def test_served_rest_is_the_plugins_rest_with_the_watchers_state(tmp_path, monkeypatch):
    monkeypatch.delenv("TELEMETRY_DATABASE_URL", raising=False)
    options = watch_options(build_parser().parse_args(["watch", "--data-dir", str(tmp_path),
                                                       "--comfyui", "http://127.0.0.1:1"]))
    app = build(options)

    async def go() -> None:
        async with TestClient(TestServer(make_web_app(app))) as client:
            health = await (await client.get("/telemetry/health")).json()
            assert health["source"] == "watcher" and health["hooks"]["mode"] == "watcher"
            assert health["hooks"]["comfyui_url"] == "http://127.0.0.1:1"
            assert health["database"]["kind"] == "sqlite"
            runs = await (await client.get("/api/telemetry/runs")).json()
            assert runs == {"runs": [], "total": 0, "total_capped": False, "limit": 50, "offset": 0,
                            "next_cursor": None}
            missing = await client.get("/telemetry/runs/nope")
            assert missing.status == 404

    asyncio.run(go())
    app.store.close()


def test_module_entry_point_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "telemetry", "watch", "--help"], capture_output=True, text=True,
                         timeout=60, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0 and "--comfyui" in out.stdout and "--serve" in out.stdout
