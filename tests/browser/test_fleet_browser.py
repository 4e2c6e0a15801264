"""A fleet in a real browser: two real ComfyUI instances with the pack (0.3.75 and 0.8.0) record into one real
PostgreSQL (a fresh schema), `python -m telemetry serve --token` serves that database, and headless Chromium opens
serve's page.

What a fleet operator sees: the page asks for the token once (and keeps it for the tab), the panel lists both
instances by name in its instance selector, choosing one filters the runs table to that instance's runs, and an
instance that stopped and was not seen for 2 minutes is marked offline."""

from __future__ import annotations

import json
import threading
import urllib.request

import psycopg2
import pytest
from comfy_harness import ComfyServer, comfyui_trees, image_workflow
from matrix import require_tree
from serve_process import ServeProcess

pytestmark = [pytest.mark.browser, pytest.mark.comfyui, pytest.mark.postgres]

TOKEN = "fleet-token-42"
INSTANCES = ("studio-a:8188", "studio-b:8188")


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


def test_two_instances_on_one_postgresql_in_serves_page(chromium_browser, pg_url, pg_schema_url, tmp_path):
    # One of each ComfyUI where both are provisioned (a leg without 0.8.0 runs two 0.3.75 instances).
    trees = [require_tree("0.3.75"), require_tree("0.8.0" if "0.8.0" in comfyui_trees() else "0.3.75")]
    servers = [ComfyServer.for_tree(tree, tmp_path / name.split(":")[0],
                                    env={"TELEMETRY_DATABASE_URL": pg_schema_url, "TELEMETRY_INSTANCE": name})
               for tree, name in zip(trees, INSTANCES, strict=True)]
    serve = None
    try:
        _start_all(servers)
        runs: dict[str, list[str]] = {name: [] for name in INSTANCES}
        for server, name, count in zip(servers, INSTANCES, (1, 2), strict=True):
            for i in range(count):
                prompt_id = server.submit(image_workflow(prefix=f"fleet{i}", color=i + 1))
                server.wait_run(prompt_id)
                runs[name].append(prompt_id)

        serve = ServeProcess(pg_schema_url, tmp_path, token=TOKEN).start()
        base = serve.url
        request = urllib.request.Request(base + "/telemetry/instances", headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            listed = {i["instance"]: i for i in json.loads(response.read())["instances"]}
        assert set(listed) == set(INSTANCES)
        for name, tree in zip(INSTANCES, trees, strict=True):  # each plugin's heartbeat, from its recorder thread
            beat = listed[name]
            assert beat["online"] and beat["source"] == "plugin" and beat["health"] == "ok", beat
            assert (beat["comfyui_version"], beat["frontend_version"]) == (tree.version, tree.frontend), beat
            assert beat["runs"] == len(runs[name]) and beat["queue_depth"] == 0, beat

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
        assert labels == ["All instances", *INSTANCES], labels  # both online, by name

        page.get_by_role("tab", name="Runs").click()
        rows = page.locator("tr.rt-row")
        page.wait_for_function("n => document.querySelectorAll('tr.rt-row').length === n", arg=3)
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
                              "121000 WHERE instance = %s", (INSTANCES[1],))
        conn.close()
        page.reload()  # the token is kept for the tab: no second question
        page.get_by_test_id("telemetry-panel").wait_for()
        assert page.get_by_test_id("host-login").count() == 0
        page.wait_for_function(
            "label => [...document.querySelectorAll('[data-testid=instance-select] option')]"
            ".some(o => o.textContent === label)", arg=f"{INSTANCES[1]} (offline)")
        assert select.locator("option").all_text_contents() == ["All instances", INSTANCES[0],
                                                                  f"{INSTANCES[1]} (offline)"]
        assert errors == []
        context.close()
    finally:
        if serve is not None:
            serve.stop()
        for server in servers:
            server.stop()
