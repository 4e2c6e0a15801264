"""dashboards/run-telemetry.json: a Grafana dashboard whose every PromQL query names only metrics that the app's
real exposition has (runs recorded through the real recorder into real SQLite, so labelled series exist)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_metrics import recording_server, sample_runs, scrape

DASHBOARD = Path(__file__).resolve().parent.parent / "dashboards" / "run-telemetry.json"

# PromQL words that are not metric names: keywords, aggregation modifiers, Grafana's own functions
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or",
             "unless", "atan2", "inf", "nan"}
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NUMBERS = re.compile(r"(?<![A-Za-z0-9_:])\d[A-Za-z0-9_.]*")  # 0.95, 1e3, durations after offset (1h)
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are neither functions, keywords, label
    names (in {...} matchers or grouping clauses), durations ([5m]) nor strings."""
    expr = _STRINGS.sub('""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = _GROUPING.sub(" ", expr)
    expr = _NUMBERS.sub(" ", expr)
    names = set()
    for match in _IDENT.finditer(expr):
        word, rest = match.group(), expr[match.end():].lstrip()
        if rest.startswith("(") or word.lower() in _KEYWORDS or expr[match.start() - 1:match.start()] == "$":
            continue
        names.add(word)
    return names


def test_the_promql_name_extraction():
    assert promql_metric_names('histogram_quantile(0.95, sum by (le, workflow) (rate(a_bucket{x="y(z)",'
                               'comfyui_instance=~"$comfyui_instance"}[$__rate_interval])))') == {"a_bucket"}
    assert promql_metric_names("sum(rate(a_total[5m])) / sum without (b) (c) > bool 0 or on(d) e offset 1h") == {
        "a_total", "c", "e"}
    assert promql_metric_names('label_values(up{job="x"}, comfyui_instance)') == {"up", "comfyui_instance"}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _panels(panels: list[dict]) -> Iterator[dict]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # rows may hold panels


def queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    found = [(f"panel {p.get('title')!r}", t["expr"]) for p in _panels(dashboard()["panels"])
             for t in p.get("targets", []) if t.get("expr")]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            label_values = re.fullmatch(r"\s*label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*", query)
            found.append((f"variable {variable['name']!r}", label_values.group(1) if label_values else query))
    return found


def test_the_dashboard_is_grafana_json_with_a_comfyui_instance_variable_and_the_panels():
    board = dashboard()
    assert 36 <= board["schemaVersion"] <= 41 and board["uid"] and board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    instance = variables["comfyui_instance"]
    assert instance["type"] == "query" and instance["includeAll"] and instance["multi"]
    assert "comfyui_instance" in instance["query"]["query"]
    panels = list(_panels(board["panels"]))
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:  # every query follows the instance selector
            assert 'comfyui_instance=~"$comfyui_instance"' in target["expr"], panel["title"]
    text = " ".join(expr for _, expr in queries())
    for needed in ("comfyui_telemetry_runs_total", "comfyui_telemetry_run_duration_seconds_bucket",
                   "comfyui_telemetry_recorder_queue_depth", "comfyui_telemetry_last_run_gpu_peak_bytes",
                   "comfyui_telemetry_energy_joules_total", "comfyui_telemetry_energy_cost_total",
                   "comfyui_telemetry_recorder_buffered_runs", "comfyui_telemetry_recorder_dropped_runs_total"):
        assert needed in text, f"no panel queries {needed}"
    assert "histogram_quantile(0.5," in text and "histogram_quantile(0.95," in text


@pytest.fixture(scope="module")
def exposed_names(tmp_path_factory) -> set[str]:
    """Every sample name of a real scrape of the app after runs were recorded (a price set: the cost exists)."""
    tmp_path = tmp_path_factory.mktemp("dashboard-app")
    with recording_server(tmp_path, {"instance": "studio-a", "energy_price_per_kwh": "0.30"}) as server:
        for run in sample_runs():
            assert server.app.recorder.submit(lambda run=run: [run])
        assert server.app.recorder.flush()
        _, text = scrape(server.url)
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def _query_params() -> list:
    return [pytest.param(where, expr, id=f"{n}-" + re.sub(r"[^a-z0-9]+", "-", where.lower()).strip("-"))
            for n, (where, expr) in enumerate(queries())]


@pytest.mark.parametrize("where,expr", _query_params())
def test_every_metric_a_dashboard_query_names_is_in_the_exposition(where, expr, exposed_names):
    names = promql_metric_names(expr)
    assert names, f"{where}: no metric found in {expr!r}"
    assert names <= exposed_names, f"{where}: {sorted(names - exposed_names)} not in the exposition ({expr!r})"
