"""The store on a real SQLite file and on the real PostgreSQL server: the same behaviour on both."""

from __future__ import annotations

import pytest

from telemetry.collector import build_run
from telemetry.filters import FilterError, Page, parse_page, parse_run_filters
from telemetry.model import Run, RunLabels
from telemetry.store.migrations import LATEST_VERSION


def _runs(recorded_runs) -> list[Run]:
    runs = []
    for case in recorded_runs["cases"]:
        (prompt_id, item), = case["history"].items()
        runs.append(build_run(prompt_id, item, ))
    return runs


def test_runs_round_trip_with_their_parts(store, recorded_runs):
    runs = _runs(recorded_runs)
    store.save_runs(runs)
    for run in runs:
        assert store.get_run(run.run_id).to_dict() == run.to_dict()
    assert store.schema_version == LATEST_VERSION


def test_saving_again_replaces_instead_of_duplicating(store, recorded_runs):
    runs = _runs(recorded_runs)
    store.save_runs(runs)
    store.save_runs(runs)
    assert store.query_runs(parse_run_filters({}), Page())[1] == len(runs)
    assert len(store.get_run(runs[0].run_id).nodes) == runs[0].node_count


def test_filters_sorting_and_paging(store, recorded_runs):
    runs = _runs(recorded_runs)
    runs[0].labels = RunLabels("Saga", "Scene 1", ["night", "rain"])
    store.save_runs(runs)
    q = lambda **kw: store.query_runs(parse_run_filters(kw), parse_page(kw))  # noqa: E731
    assert q(status="failed,interrupted")[1] == 2
    assert q(label="rain")[1] == 1 and q(label="Scene 1")[1] == 1 and q(label="ra")[1] == 0
    assert q(q="allocate")[1] == 1
    longest, _ = q(sort="-duration_ms", limit="1")
    assert longest[0].status == "interrupted"
    page, total = q(limit="2", offset="4")
    assert total == 5 and len(page) == 1
    assert q(workflow=runs[1].fingerprint)[1] >= 1


def test_stats_match_the_runs(store, recorded_runs):
    store.save_runs(_runs(recorded_runs))
    stats = store.stats(parse_run_filters({}))
    assert stats["total_runs"] == 5 and stats["by_status"]["success"] == 3
    assert stats["success_rate"] == pytest.approx(0.6)
    assert stats["total_frames"] == 10
    assert stats["p50_duration_ms"] <= stats["p95_duration_ms"]


def test_stale_running_runs_are_closed_per_instance(store):
    store.save_runs([Run("a", "running", instance="h:1"), Run("b", "running", instance="h:2"),
                     Run("c", "success", instance="h:1")])
    assert store.close_stale_running("h:1", "crash") == ["a"]
    assert store.get_run("a").status == "interrupted" and store.get_run("b").status == "running"


def test_retention_by_count_and_age(store):
    import time

    now = int(time.time() * 1000)
    store.save_runs([Run(f"r{i}", "success", started_at_ms=now - i * 86_400_000) for i in range(10)])
    assert store.apply_retention(max_age_days=5.5, max_runs=None) == 4
    assert store.apply_retention(max_age_days=None, max_runs=3) == 3
    assert [r.run_id for r in store.query_runs(parse_run_filters({}), Page())[0]] == ["r0", "r1", "r2"]


def test_presets_and_workflow_names(store):
    preset = store.save_preset("Failures ✨", {"status": ["failed"]})
    assert [p.name for p in store.list_presets()] == ["Failures ✨"]
    assert store.delete_preset(preset.id) and not store.list_presets()
    store.save_runs([Run("w1", "success", workflow_id="wf", workflow_name="derived")])
    assert store.set_workflow_name("wf", "Portrait") == 1
    assert store.get_run("w1").workflow_name == "Portrait"


@pytest.mark.parametrize("query,message", [
    ({"status": "done"}, "'status' has unknown value"),
    ({"limit": "0"}, "'limit' must be at least 1"),
    ({"limit": "501"}, "'limit' must be at most 500"),
    ({"limit": "ten"}, "'limit' must be an integer"),
    ({"sort": "name"}, "'sort' must be one of"),
    ({"since_ms": "5", "until_ms": "1"}, "'until_ms' is before 'since_ms'"),
])
def test_bad_filters_say_what_is_wrong(query, message):
    with pytest.raises(FilterError, match=message):
        parse_run_filters(query)
        parse_page(query)
