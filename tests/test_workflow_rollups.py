"""The workflow filter by name from the rollups (`rollup_reads.workflow_keys`), on a real SQLite file and the real
PostgreSQL server: the rollups answer a name exactly when the runs it matches are those of some keys, and then as
the scan of runs does (stats and timelines); renamed workflows, two workflows of one name, a name that is another
workflow's key, fingerprints without an id and runs without a key are answered by the scan."""

from __future__ import annotations

import random

from telemetry.filters import RunFilters
from telemetry.model import Run
from telemetry.store import rollup_reads
from tests.test_rollups import DAY_MS, HOUR_MS, T0, _check_stats

STATUSES = ("success", "success", "failed", "interrupted")


def _runs(rng: random.Random, prefix: str, n: int, workflow_id: str | None, name: str | None,
          fingerprint: str | None = None) -> list[Run]:
    out = []
    for i in range(n):
        run = Run(f"{prefix}-{i:03d}", rng.choice(STATUSES), started_at_ms=T0 + rng.randrange(0, 4 * DAY_MS),
                  duration_ms=rng.lognormvariate(8, 1), workflow_id=workflow_id, workflow_name=name,
                  fingerprint=fingerprint or f"fp-{prefix}", instance=rng.choice(["a:1", "b:1"]))
        run.workflow_name_source = "ui" if name else "derived"
        run.frame_count = rng.randrange(0, 5)
        run.energy_j = rng.uniform(10, 100)
        out.append(run)
    return out


def _keys(store, w: str) -> list[str] | None:
    with store.bound():
        keys = rollup_reads.workflow_keys(w)
    return None if keys is None else sorted(keys)


def _check(store, monkeypatch, w: str, keys: list[str] | None) -> None:
    assert _keys(store, w) == keys, w
    for filters in (RunFilters(workflow=w), RunFilters(workflow=w, status=["success"], instance="a:1"),
                    RunFilters(workflow=w, since_ms=T0 + 5 * HOUR_MS + 17, until_ms=T0 + 2 * DAY_MS + 99)):
        _check_stats(store, filters, monkeypatch, expect_rollups=keys is not None)


def _check_timeline(store, w: str) -> None:
    from telemetry.analysis import queries, timeline

    filters = RunFilters(workflow=w)
    for lo, hi in ((T0, T0 + 4 * DAY_MS - 1), (T0 + 3 * HOUR_MS + 5, T0 + 2 * DAY_MS + 7)):
        with store.bound():
            raw = timeline.points(*queries.timeline_aggregates(store, filters, lo, hi, HOUR_MS))
        fast = queries.timeline_points(store, filters, lo, hi, HOUR_MS)
        assert set(fast) == set(raw)
        for b, point in raw.items():
            assert fast[b]["runs"] == point["runs"] and fast[b]["success"] == point["success"], (w, b)


def test_a_workflow_name_reads_the_rollups_only_when_they_hold_exactly_its_runs(store, monkeypatch):
    monkeypatch.setattr("telemetry.store.store.EXACT_PERCENTILES_MAX", 10)
    rng = random.Random(4)
    store.save_runs(_runs(rng, "a", 60, "wf-a", "Portrait")
                    + _runs(rng, "d", 30, "wf-d", "Twin") + _runs(rng, "e", 25, "wf-e", "Twin")
                    + _runs(rng, "f", 20, "wf-f", "wf-a")  # a name that is another workflow's key
                    + _runs(rng, "g", 20, None, "Fingered", fingerprint="fp-g")  # fingerprint, no id: key fp-g
                    + _runs(rng, "h", 15, "wf-h", "Sketch") + _runs(rng, "h2", 15, "wf-h", "Sketch v2"))
    _check(store, monkeypatch, "Portrait", ["wf-a"])
    _check(store, monkeypatch, "Twin", ["wf-d", "wf-e"])
    _check(store, monkeypatch, "wf-a", ["wf-a", "wf-f"])
    _check(store, monkeypatch, "wf-f", ["wf-f"])  # by key; its runs' name is another key, which is not asked
    _check(store, monkeypatch, "Fingered", ["fp-g"])
    _check(store, monkeypatch, "fp-g", ["fp-g"])
    _check(store, monkeypatch, "Sketch", None)  # wf-h's runs carry two names: its rollups hold both
    _check(store, monkeypatch, "Sketch v2", None)
    _check(store, monkeypatch, "Nobody", None)
    for w in ("Portrait", "Twin", "wf-a", "Sketch"):
        _check_timeline(store, w)

    # A run of fingerprint 'fp-g' with a workflow id matches 'fp-g' too: outside key fp-g, the scan answers.
    store.save_runs(_runs(rng, "gi", 3, "wf-gi", "Other", fingerprint="fp-g"))
    _check(store, monkeypatch, "fp-g", None)
    _check(store, monkeypatch, "Fingered", ["fp-g"])
    # A run named Portrait without a key (no id, no fingerprint): the rollups' '' holds every keyless run.
    keyless = _runs(rng, "k", 2, None, "Portrait")
    for run in keyless:
        run.fingerprint = None
    store.save_runs(keyless)
    _check(store, monkeypatch, "Portrait", None)
    with store.bound():
        store._delete_runs([r.run_id for r in keyless])
    _check(store, monkeypatch, "Portrait", ["wf-a"])

    # Renamed: wf-d's UI name changes; its runs are renamed with it.
    store.set_workflow_name("wf-d", "Twin renamed")
    _check(store, monkeypatch, "Twin", ["wf-e"])
    _check(store, monkeypatch, "Twin renamed", ["wf-d"])
    # One run of wf-e replaced under another name: wf-e's runs carry two names now.
    [moved] = _runs(rng, "e", 1, "wf-e", "Elsewhere")
    store.save_runs([moved])
    _check(store, monkeypatch, "Twin", None)
    _check(store, monkeypatch, "Elsewhere", None)
    # Pruned until wf-e's renamed run is gone: one name again.
    store._delete_runs([moved.run_id])
    _check(store, monkeypatch, "Twin", ["wf-e"])
    # A run of wf-a without a name: wf-a's rollups hold it, the name 'Portrait' does not match it.
    [nameless] = _runs(rng, "a", 1, "wf-a", None)
    store.save_runs([nameless])
    _check(store, monkeypatch, "Portrait", None)
    _check(store, monkeypatch, "wf-a", ["wf-a", "wf-f"])
