"""Every recommendation rule fires exactly when it should: a labelled set of synthetic workflows (positives and
near-threshold negatives) stored through the real Store, evaluated run by run as the recorder does, must give
100% precision and recall. Also the recommendation lifecycle: update, resolve, re-open, dismiss."""

from __future__ import annotations

import numpy as np
import pytest
import test_analysis_support as support
from test_analysis_support import GIB, HOUR, MINUTE, T0, make_run, store_and_evaluate

from telemetry.analysis.service import AnalysisNotFound
from telemetry.model import ErrorKind
from telemetry.store.schema import RecommendationRow


def _steady(wf: str, n: int = 30, duration=lambda i: 10_000 + (i % 5) * 100, **kw) -> list:
    """n successful runs an hour apart with a small deterministic wobble (p95 = 10.4 s by default)."""
    return [make_run(f"{wf}-{i}", wf, T0 + i * HOUR, duration_ms=duration(i), **kw) for i in range(n)]


def _with_tail(wf: str, tail: list[dict], n: int = 30, **kw) -> list:
    """n - len(tail) steady runs, then `tail` (make_run overrides), runs an hour apart unless 't' is given."""
    runs = _steady(wf, n - len(tail), **kw)
    t = T0 + (n - len(tail)) * HOUR
    for j, over in enumerate(tail):
        over = dict(over)
        t = over.pop("t", t if j == 0 else t + HOUR)
        args = {**kw, **over}
        runs.append(make_run(f"{wf}-t{j}", wf, t, **args))
    return runs


def _fails_in_last_20(wf: str, failures: int) -> list:
    runs = _steady(wf, 10)
    for i in range(20):
        failed = i % 4 == 1 and i // 4 < failures  # spread out, never back to back (no retry chain)
        runs.append(make_run(f"{wf}-w{i}", wf, T0 + (10 + i) * HOUR, status="failed" if failed else "success"))
    return runs


def _retries(wf: str, attempts: int, gap_ms: int, **kw) -> list:
    """A steady history, then `attempts` failures each re-run `gap_ms` after the previous one ended, then a
    success."""
    runs = _steady(wf, 20)
    t = T0 + 20 * HOUR
    for j in range(attempts):
        runs.append(make_run(f"{wf}-f{j}", wf, t, status="failed", duration_ms=5_000, **kw))
        t += 5_000 + gap_ms
    runs.append(make_run(f"{wf}-ok", wf, t, **kw))
    return runs


def _shift(wf: str, factor: float, metric: str = "duration") -> list:
    runs = []
    for i in range(40):
        level = factor if i >= 20 else 1.0
        wobble = 1 + ((i * 7) % 5 - 2) * 0.01
        if metric == "duration":
            runs.append(make_run(f"{wf}-{i}", wf, T0 + i * HOUR, duration_ms=10_000 * level * wobble))
        else:
            runs.append(make_run(f"{wf}-{i}", wf, T0 + i * HOUR, gpu_peak=int(8 * GIB * level * wobble)))
    return runs


def _noise(wf: str, seed: int) -> list:
    rng = np.random.default_rng(seed)
    return [make_run(f"{wf}-{i}", wf, T0 + i * HOUR, duration_ms=float(10_000 * rng.lognormal(0, 0.1)),
                     gpu_peak=int(8 * GIB * rng.lognormal(0, 0.05))) for i in range(60)]


# workflow -> (runs, the kinds that must be recommended, and nothing else)
service = support.service  # fixture; `store` (SQLite file and PostgreSQL) comes from conftest

LABELLED = {
    "healthy": (lambda wf: _steady(wf), set()),
    "noise-1": (lambda wf: _noise(wf, 1), set()),
    "noise-2": (lambda wf: _noise(wf, 2), set()),
    "success-75": (lambda wf: _fails_in_last_20(wf, 5), {"low_success_rate"}),
    "success-80": (lambda wf: _fails_in_last_20(wf, 4), set()),  # exactly at the threshold: not under it
    "gpu-over-abs": (lambda wf: _with_tail(wf, [{"gpu_peak": int(20.1 * GIB), "gpu_total": 48 * GIB}]), {"gpu_peak"}),
    "gpu-under-abs": (lambda wf: _with_tail(wf, [{"gpu_peak": int(19.9 * GIB), "gpu_total": 48 * GIB}]), set()),
    "gpu-over-frac": (lambda wf: _with_tail(wf, [{"gpu_peak": int(14.5 * GIB), "gpu_total": 16 * GIB}]),
                      {"gpu_peak"}),
    "gpu-under-frac": (lambda wf: _with_tail(wf, [{"gpu_peak": int(14.3 * GIB), "gpu_total": 16 * GIB}]), set()),
    "long-61s": (lambda wf: _steady(wf, duration=lambda i: 61_000 + (i % 3) * 100), {"long_duration"}),
    "long-59s": (lambda wf: _steady(wf, duration=lambda i: 59_000 + (i % 3) * 100), set()),
    "baseline-over": (lambda wf: _with_tail(wf, [{"duration_ms": 16_000}]), {"duration_above_baseline"}),
    "baseline-under": (lambda wf: _with_tail(wf, [{"duration_ms": 15_400}]), set()),
    "retry-3": (lambda wf: _retries(wf, 3, 5 * MINUTE), {"retry"}),
    "retry-2": (lambda wf: _retries(wf, 2, 5 * MINUTE), set()),
    "retry-slow": (lambda wf: _retries(wf, 3, 45 * MINUTE), set()),  # re-runs too far apart to be retries
    "retry-scene": (lambda wf: _retries(wf, 4, MINUTE, scene="Scene 3", story="Saga"), {"retry"}),
    "oom": (lambda wf: _with_tail(wf, [{"status": "failed", "error_kind": ErrorKind.OOM, "error_node": "VAEDecode",
                                        "params": {"width": 1280, "height": 720, "pixels": 1280 * 720, "steps": 20,
                                                   "batch": 4, "frames": 81}}]), {"oom"}),
    "plain-failure": (lambda wf: _with_tail(wf, [{"status": "failed"}]), set()),
    "dominant-70": (lambda wf: _steady(wf, sampler_share=0.7), {"dominant_node"}),
    "dominant-49": (lambda wf: _steady(wf, sampler_share=0.49), set()),
    "slower-40pc": (lambda wf: _shift(wf, 1.4), {"regression"}),
    "slower-10pc": (lambda wf: _shift(wf, 1.1), set()),
    "hungrier-40pc": (lambda wf: _shift(wf, 1.4, "gpu"), {"regression"}),
}


def test_every_rule_fires_exactly_when_it_should(store, service):
    for wf, (build, _expected) in LABELLED.items():
        store_and_evaluate(store, service, build(wf))
    tp = fp = fn = 0
    mismatches = {}
    for wf, (_build, expected) in LABELLED.items():
        rows = list(RecommendationRow.select().where(RecommendationRow.workflow_key == wf))
        ever = {r.kind for r in rows}  # anything that ever opened, in any state
        now_open = {r.kind for r in rows if r.state == "open"}
        tp += len(ever & expected)
        fp += len(ever - expected)
        fn += len(expected - ever)
        if ever != expected or now_open != expected:
            mismatches[wf] = {"expected": expected, "ever": ever, "open": now_open,
                              "messages": [r.message for r in rows]}
    assert not mismatches
    assert tp == sum(len(e) for _, e in LABELLED.values()) and fp == 0 and fn == 0  # precision = recall = 100%


def test_oom_advice_is_drawn_from_the_failed_run(store, service):
    opened = store_and_evaluate(store, service, LABELLED["oom"][0]("oom"))
    (rec,) = [r for r in opened if r["kind"] == "oom"]
    assert rec["severity"] == "critical" and rec["evidence_run_ids"] == ["oom-t0"]
    assert "VAEDecode" in rec["message"] and "1280x720" in rec["message"]
    action = rec["action"]
    assert "batch size from 4 to 2" in action and "Tiled" in action and "81 frames" in action
    assert "--lowvram" in action


def test_scene_retries_are_keyed_by_the_scene(store, service):
    store_and_evaluate(store, service, LABELLED["retry-scene"][0]("retry-scene"))
    (row,) = RecommendationRow.select().where(RecommendationRow.kind == "retry")
    assert row.condition_key.startswith("retry:scene:") and "Scene 3" in row.message and "4 times" in row.message


def test_same_condition_updates_one_recommendation_and_resolves_when_it_clears(store, service):
    wf = "cycle"
    runs = _fails_in_last_20(wf, 5)
    opened = store_and_evaluate(store, service, runs)
    assert [r["kind"] for r in opened] == ["low_success_rate"]
    # One more failure: the same recommendation is updated, not duplicated, and not pushed again.
    more = make_run(f"{wf}-x1", wf, T0 + 40 * HOUR, status="failed")
    assert store_and_evaluate(store, service, [more]) == []
    rows = list(RecommendationRow.select().where(RecommendationRow.kind == "low_success_rate"))
    assert len(rows) == 1 and rows[0].state == "open" and f"{wf}-x1" in rows[0].evidence_run_ids
    # Storing the same run again changes nothing.
    assert store_and_evaluate(store, service, [more]) == []
    assert RecommendationRow.select().count() == 1
    # Twenty successes later the rate is back to 100%: resolved by itself.
    fixed = [make_run(f"{wf}-ok{i}", wf, T0 + (41 + i) * HOUR) for i in range(20)]
    store_and_evaluate(store, service, fixed)
    assert RecommendationRow.get_by_id(rows[0].id).state == "resolved"
    # It comes back: the same row re-opens and is pushed again.
    again = [make_run(f"{wf}-f{i}", wf, T0 + (61 + i) * HOUR, status="failed" if i % 2 else "success")
             for i in range(12)]
    opened = store_and_evaluate(store, service, again)
    assert [r["id"] for r in opened] == [rows[0].id]
    assert RecommendationRow.select().count() == 1


def test_dismissed_stays_dismissed_unless_much_worse(store, service):
    wf = "dismiss"
    store_and_evaluate(store, service, _fails_in_last_20(wf, 5))  # 75%: warning
    (rec,) = service.recommendations(state="open")["recommendations"]
    assert rec["severity"] == "warning"
    assert service.dismiss(rec["id"])["state"] == "dismissed"
    # Slightly worse (70%): still dismissed, evidence refreshed.
    t = T0 + 30 * HOUR
    assert store_and_evaluate(store, service, [make_run(f"{wf}-a", wf, t, status="failed")]) == []
    row = RecommendationRow.get_by_id(rec["id"])
    assert row.state == "dismissed" and f"{wf}-a" in row.evidence_run_ids
    # Much worse (failure rate 1.5x the 25% at dismissal): re-opens once and is pushed.
    worse = [make_run(f"{wf}-b{i}", wf, t + (i + 1) * HOUR, status="failed") for i in range(6)]
    opened = store_and_evaluate(store, service, worse)
    assert [(r["id"], r["state"]) for r in opened] == [(rec["id"], "open")]
    assert opened[0]["details"]["score"] >= 1.5 * 0.25


def test_dismissed_reopens_when_it_turns_critical(store, service):
    wf = "crit"
    store_and_evaluate(store, service, _fails_in_last_20(wf, 5))
    (rec,) = service.recommendations(state="open")["recommendations"]
    service.dismiss(rec["id"])
    service.set_config({"dismissed_reopen_factor": 100})  # only a severity rise can re-open it now
    t = T0 + 30 * HOUR
    worse = [make_run(f"{wf}-b{i}", wf, t + i * HOUR, status="failed") for i in range(8)]
    opened = store_and_evaluate(store, service, worse)
    assert [(r["id"], r["severity"]) for r in opened] == [(rec["id"], "critical")]


def test_dismissing_an_unknown_recommendation_is_not_found(service):
    with pytest.raises(AnalysisNotFound, match="no recommendation with id 999"):
        service.dismiss(999)


def test_on_demand_evaluation_after_a_threshold_change(store, service):
    store_and_evaluate(store, service, _steady("wf-45s", duration=lambda i: 45_000))
    assert service.recommendations()["recommendations"] == []
    service.set_config({"duration_threshold_ms": 40_000})
    result = service.evaluate("wf-45s")
    assert [r["kind"] for r in result["opened"]] == ["long_duration"]
    with pytest.raises(AnalysisNotFound):
        service.evaluate("no-such-workflow")


def test_queued_run_over_free_memory_is_warned_and_resolved_when_it_leaves_the_queue(store, service):
    from telemetry import prompt_info

    def prompt(side: int) -> dict:
        return {"5": {"class_type": "EmptyLatentImage", "inputs": {"width": side, "height": side, "batch_size": 1}},
                "3": {"class_type": "KSampler", "inputs": {"steps": 20, "latent_image": ["5", 0]}}}

    fp = prompt_info.fingerprint(prompt(512))
    runs = []
    for i, side in enumerate([512, 768, 1024] * 4):
        params = prompt_info.extract_parameters(prompt(side))
        runs.append(make_run(f"q-{i}", "q", T0 + i * HOUR, params=params, fingerprint=fp,
                             gpu_peak=int(4 * GIB + side * side * 8 * 1024)))
    store.save_runs(runs)
    items = [(1, "p-small", prompt(512), {}, []), (2, "p-big", prompt(2048), {}, [])]
    opened = service.check_queue_memory(items, free_bytes=12 * GIB)
    assert [r["kind"] for r in opened] == ["queue_memory"] and "p-big" in opened[0]["message"]
    assert service.check_queue_memory(items, free_bytes=12 * GIB) == []  # no duplicate
    service.check_queue_memory(items[:1], free_bytes=12 * GIB)
    (row,) = RecommendationRow.select().where(RecommendationRow.kind == "queue_memory")
    assert row.state == "resolved"


def test_oom_without_a_gpu_is_called_memory_and_gets_no_gpu_advice():
    from telemetry.analysis.advice import memory_advice

    assert "--lowvram" in memory_advice({"batch": 4}, "EmptyImage")
    text = memory_advice({"batch": 4}, "EmptyImage", on_gpu=False)
    assert text.startswith("To fit in memory (EmptyImage)") and "--lowvram" not in text
    assert "lower the batch size from 4 to 2" in text
