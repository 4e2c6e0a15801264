"""A fleet in a real browser: two real ComfyUI instances with the pack (0.3.75 and 0.8.0) and a third real ComfyUI
without it, recorded by `python -m telemetry watch`, all record into one real PostgreSQL (a fresh schema);
`python -m telemetry serve --token` serves that database, and headless Chromium opens serve's page.

What a fleet operator sees: /telemetry/instances has the two plugins' heartbeats and the watcher's (source
"watcher", online, its run count); the page asks for the token once (and keeps it for the tab), the panel lists all
three instances by name in its instance selector, choosing one (the watched one included) filters the runs table to
exactly that instance's runs, and an instance that stopped and was not seen for 2 minutes is marked offline."""

from __future__ import annotations

import json
import threading
import urllib.request

import psycopg2
import pytest
from comfy_harness import ComfyServer, comfyui_trees, image_workflow
from matrix import require_tree
from serve_process import ServeProcess
from watcher_process import WatcherProcess

pytestmark = [pytest.mark.browser, pytest.mark.comfyui, pytest.mark.postgres]

TOKEN = "fleet-token-42"
# The names of README's "Fleet" diagram.
PLUGINS = ("studio-a:8188", "studio-b:8188")  # ComfyUIs with the pack
WATCHED = "box-c:8188"  # a ComfyUI without the pack, recorded by the watcher
INSTANCES = (WATCHED, *PLUGINS)  # as the selector lists them: by name


def _start_all(servers: list[ComfyServer]) -> None:
    errors: list[BaseException] = []

    def start(server: ComfyServer) -> None:
        try:
            server.start()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(s,)) for s in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def _schema_of(url: str) -> str:
    return url.rsplit("search_path%3D", 1)[1]


def test_two_instances_and_a_watcher_on_one_postgresql_in_serves_page(chromium_browser, pg_url, pg_schema_url,
                                                                        tmp_path):
    # One of each ComfyUI where both are provisioned (a leg without 0.8.0 runs three 0.3.75 instances); the watched
    # one is the newer (/api/jobs where it has it).
    trees = [require_tree("0.3.75"), require_tree("0.8.0" if "0.8.0" in comfyui_trees() else "0.3.75")]
    servers = [ComfyServer.for_tree(tree, tmp_path / name.split(":")[0],
                                    env={"TELEMETRY_DATABASE_URL": pg_schema_url, "TELEMETRY_INSTANCE": name})
               for tree, name in zip(trees, PLUGINS, strict=True)]
    # The pack is not linked into its custom_nodes: only the watcher records this one (checked below).
    watched = ComfyServer.for_tree(trees[1], tmp_path / "box-c", link_pack=False)
    serve = watcher = None
    watcher_exit = None
    try:
        _start_all([*servers, watched])
        assert watched.request("GET", "/telemetry/health")[0] == 404, "the watched ComfyUI must not have the pack"
        watcher = WatcherProcess(watched.url, tmp_path / "watcher", "--instance", WATCHED, database_url=pg_schema_url)
        runs: dict[str, list[str]] = {name: [] for name in INSTANCES}
        # box-c's three runs are queued first and run while the plugins' are; then the watcher must have each.
        runs[WATCHED] = [watched.submit(image_workflow(prefix=f"watched{i}", color=i + 11)) for i in range(3)]
        for server, name, count in zip(servers, PLUGINS, (1, 2), strict=True):
            for i in range(count):
                prompt_id = server.submit(image_workflow(prefix=f"fleet{i}", color=i + 1))
                server.wait_run(prompt_id)
                runs[name].append(prompt_id)
        for prompt_id in runs[WATCHED]:
            stored = watcher.run(prompt_id)
            assert (stored["instance"], stored["source"], stored["status"]) == (WATCHED, "watcher", "success"), stored

        serve = ServeProcess(pg_schema_url, tmp_path, token=TOKEN).start()
        base = serve.url
        request = urllib.request.Request(base + "/telemetry/instances", headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            listed = {i["instance"]: i for i in json.loads(response.read())["instances"]}
        assert set(listed) == set(INSTANCES)
        for name, tree in zip(PLUGINS, trees, strict=True):  # each plugin's heartbeat, from its recorder thread
            beat = listed[name]
            assert beat["online"] and beat["source"] == "plugin" and beat["health"] == "ok", beat
            assert (beat["comfyui_version"], beat["frontend_version"]) == (tree.version, tree.frontend), beat
            assert beat["runs"] == len(runs[name]) and beat["queue_depth"] == 0, beat
        beat = listed[WATCHED]  # the watcher's heartbeat for the ComfyUI it watches
        assert beat["online"] and beat["source"] == "watcher", beat
        assert beat["details"]["comfyui_url"] == watched.url, beat
        assert beat["runs"] == len(runs[WATCHED]), beat

        context = chromium_browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="dark")
        page = context.new_page()
        page.set_default_timeout(30_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(base + "/")
        # The page asks for the token once.
        page.get_by_test_id("host-login").wait_for()
        page.get_by_test_id("host-token").fill("not-the-token")
        page.get_by_role("button", name="Open").click()
        page.get_by_text("That token was not accepted").wait_for()
        page.get_by_test_id("host-token").fill(TOKEN)
        page.get_by_role("button", name="Open").click()
        page.get_by_test_id("telemetry-panel").wait_for()

        select = page.get_by_test_id("instance-select")
        page.wait_for_function(
            "names => names.every(n => [...document.querySelectorAll('[data-testid=instance-select] option')]"
            ".some(o => o.value === n))", arg=list(INSTANCES))
        labels = select.locator("option").all_text_contents()
        assert labels == ["All instances", *INSTANCES], labels  # all three online, by name
        titles = select.locator("option").evaluate_all("os => os.slice(1).map(o => o.title.split(' · ')[0])")
        assert titles == ["watcher", "plugin", "plugin"], titles  # each option says who records it

        page.get_by_role("tab", name="Runs").click()
        rows = page.locator("tr.rt-row")
        page.wait_for_function("n => document.querySelectorAll('tr.rt-row').length === n",
                               arg=sum(len(ids) for ids in runs.values()))
        for name in INSTANCES:
            select.select_option(name)
            page.wait_for_function(
                "ids => { const got = [...document.querySelectorAll('tr.rt-row')].map(r => r.dataset.runId).sort();"
                " return JSON.stringify(got) === JSON.stringify(ids); }", arg=sorted(runs[name]))
            assert sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.runId)")) == sorted(runs[name])
        page.screenshot(path=str(tmp_path / "fleet-runs.png"))

        # studio-b stops; two minutes later (its heartbeat moved back, as time would) it shows as offline.
        servers[1].stop()
        conn = psycopg2.connect(pg_url)
        conn.autocommit = True
        conn.cursor().execute(f"UPDATE {_schema_of(pg_schema_url)}.instances SET last_seen_ms = last_seen_ms - "
                              "121000 WHERE instance = %s", (PLUGINS[1],))
        conn.close()
        page.reload()  # the token is kept for the tab: no second question
        page.get_by_test_id("telemetry-panel").wait_for()
        assert page.get_by_test_id("host-login").count() == 0
        page.wait_for_function(
            "label => [...document.querySelectorAll('[data-testid=instance-select] option')]"
            ".some(o => o.textContent === label)", arg=f"{PLUGINS[1]} (offline)")
        assert select.locator("option").all_text_contents() == ["All instances", WATCHED, PLUGINS[0],
                                                                  f"{PLUGINS[1]} (offline)"]
        assert errors == []
        context.close()
    finally:
        if serve is not None:
            serve.stop()
        if watcher is not None:
            watcher_exit = watcher.stop()
        for server in [*servers, watched]:
            server.stop()
    assert watcher_exit == 0 and "Traceback" not in watcher.log(), watcher.log()
