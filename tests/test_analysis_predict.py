"""Predictions from a fingerprint's history: a workflow whose time is linear in pixels x steps is predicted within
15% MAPE in backtest, "not enough history" below the minimum, and the queue ETA adds predictions up."""

from __future__ import annotations

import numpy as np
import pytest
import test_analysis_support as support
from test_analysis_support import GIB, HOUR, T0, make_run

from telemetry import prompt_info
from telemetry.analysis import predict as pred
from telemetry.filters import FilterError

service = support.service  # fixture; `store` (SQLite file and PostgreSQL) comes from conftest

SIDES = (512, 640, 768, 896, 1024, 1152)
STEPS = (10, 20, 30, 40)


def prompt(side: int, steps: int, batch: int = 1) -> dict:
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": side, "height": side, "batch_size": batch}},
        "3": {"class_type": "KSampler", "inputs": {"model": ["4", 0], "latent_image": ["5", 0], "steps": steps,
                                                   "seed": 1, "cfg": 7.0}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0]}},
    }


def true_duration_ms(side: int, steps: int) -> float:
    return 1_500.0 + 2.0e-5 * side * side * steps  # overhead + time linear in pixels x steps


def true_peak_bytes(side: int) -> float:
    return 6 * GIB + side * side * 4_000.0


def history(n: int, seed: int = 0, noise: float = 0.05) -> list:
    rng = np.random.default_rng(seed)
    fp = prompt_info.fingerprint(prompt(512, 20))
    runs = []
    for i in range(n):
        side, steps = int(rng.choice(SIDES)), int(rng.choice(STEPS))
        runs.append(make_run(
            f"p-{i}", "linear", T0 + i * HOUR, fingerprint=fp,
            params=prompt_info.extract_parameters(prompt(side, steps)),
            duration_ms=true_duration_ms(side, steps) * float(rng.lognormal(0, noise)),
            gpu_peak=int(true_peak_bytes(side) * float(rng.lognormal(0, noise / 2)))))
    return runs


def test_linear_workflow_backtests_within_15_percent_mape():
    runs = history(200, seed=1)
    loads = [pred.Workload.from_parameters(r.parameters) for r in runs]
    result = pred.backtest(pred.DURATION, loads, [r.duration_ms for r in runs], test_runs=100, coverage=0.8,
                           min_runs=5, history_runs=300)
    assert result["runs_tested"] == 100
    assert result["mape_percent"] < 15
    assert 0.65 <= result["interval_coverage"] <= 0.95  # nominal 80%
    peak = pred.backtest(pred.GPU_PEAK, loads, [r.gpu_peak_bytes for r in runs], 100, 0.8, 5, 300)
    assert peak["mape_percent"] < 15


def test_small_history_still_backtests_within_15_percent():
    runs = history(25, seed=4)
    loads = [pred.Workload.from_parameters(r.parameters) for r in runs]
    result = pred.backtest(pred.DURATION, loads, [r.duration_ms for r in runs], 15, 0.8, 5, 300)
    assert result["runs_tested"] == 15 and result["mape_percent"] < 15


def test_fixed_settings_predict_the_typical_run():
    loads = [pred.Workload(1024 * 1024, 20, None, 1)] * 10
    model = pred.fit(pred.DURATION, loads, [9_000, 10_000, 11_000, 10_000, 10_500, 9_500, 10_000, 30_000, 10_000,
                                            10_200], min_runs=5)
    guess = model.predict(loads[0])
    assert model.kind == "constant" and guess["value"] == pytest.approx(10_000, rel=0.05)
    assert guess["low"] < 10_000 < guess["high"]


def test_prediction_for_a_prompt_uses_its_parameters(store, service):
    store.save_runs(history(60, seed=2))
    result = service.predict({"prompt": prompt(1024, 30)})
    assert result["enough_history"] and result["history_runs"] == 60
    assert result["workflow"] == "linear" and result["parameters"]["pixels"] == 1024 * 1024
    duration = result["duration_ms"]
    assert duration["value"] == pytest.approx(true_duration_ms(1024, 30), rel=0.1)
    assert duration["low"] < duration["value"] < duration["high"] and duration["model"] == "linear"
    assert result["gpu_peak_bytes"]["value"] == pytest.approx(true_peak_bytes(1024), rel=0.1)
    accuracy = service.accuracy()
    (entry,) = accuracy["workflows"]
    assert entry["workflow"] == "linear" and entry["duration_ms"]["mape_percent"] < 15
    assert accuracy["overall"]["duration_ms"]["runs_tested"] == entry["duration_ms"]["runs_tested"] == 30


def test_not_enough_history_instead_of_a_guess(store, service):
    store.save_runs(history(4))
    result = service.predict(prompt(768, 20))
    assert not result["enough_history"]
    assert result["duration_ms"]["value"] is None
    assert result["duration_ms"]["reason"].startswith("not enough history: 4 successful run(s)")
    store.save_runs(history(5))
    service.on_run_stored(history(5)[-1])  # a stored run drops the cached model
    assert service.predict(prompt(768, 20))["enough_history"]


def test_a_new_workflow_has_no_history(service):
    result = service.predict(prompt(768, 20) | {"10": {"class_type": "ImageInvert", "inputs": {"image": ["8", 0]}}})
    assert result["history_runs"] == 0 and result["duration_ms"]["reason"].startswith("not enough history: 0")


def test_queue_eta_adds_predictions_up(store, service):
    store.save_runs(history(60, seed=3))
    unknown = prompt(768, 20) | {"10": {"class_type": "ImageInvert", "inputs": {"image": ["8", 0]}}}
    items = [(1, "a", prompt(512, 20), {"workflow_name": "first"}, []), (2, "b", prompt(1024, 40), {}, []),
             (3, "c", unknown, {}, []), (4, "d", prompt(512, 20), {}, [])]
    eta = service.queue_eta(items)
    a, b, c, d = eta["items"]
    assert eta["has_predictions"] and a["workflow_name"] == "first"
    assert [i["position"] for i in eta["items"]] == [0, 1, 2, 3]
    assert a["predicted_finish_ms"] == pytest.approx(a["predicted_start_ms"] + a["predicted_duration_ms"])
    assert b["predicted_start_ms"] == pytest.approx(a["predicted_finish_ms"])
    assert b["predicted_duration_ms"] == pytest.approx(true_duration_ms(1024, 40), rel=0.1)
    assert c["predicted_duration_ms"] is None and c["reason"].startswith("not enough history")
    assert d["predicted_start_ms"] is None  # not guessed after an item without a prediction


def test_each_comfyui_of_a_fleet_gets_its_own_queue_chain(store, service):
    """Two ComfyUIs run their queues side by side: box-b's first prompt starts now, not after box-a's queue."""
    store.save_runs(history(60, seed=3))
    queues = {"box-a": [(1, "a1", prompt(1024, 40), {}, []), (2, "a2", prompt(1024, 40), {}, [])],
              "box-b": [(7, "b1", prompt(512, 20), {}, [])]}
    eta = service.fleet_queue_eta(queues)
    assert [q["instance"] for q in eta["queues"]] == ["box-a", "box-b"] and eta["has_predictions"]
    assert [(i["instance"], i["prompt_id"], i["position"]) for i in eta["items"]] == [
        ("box-a", "a1", 0), ("box-a", "a2", 1), ("box-b", "b1", 0)]
    a1, a2, b1 = eta["items"]
    assert a2["predicted_start_ms"] == pytest.approx(a1["predicted_finish_ms"])
    assert b1["predicted_start_ms"] == pytest.approx(a1["predicted_start_ms"])  # both start now
    only_b = service.fleet_queue_eta(queues, "box-b")
    assert [i["prompt_id"] for i in only_b["items"]] == ["b1"]
    assert [q["instance"] for q in only_b["queues"]] == ["box-b"]
    assert service.fleet_queue_eta(queues, "box-c") == {"items": [], "has_predictions": False, "queues": []}


def test_predict_says_what_is_wrong_with_the_body(service):
    with pytest.raises(FilterError, match="API-format prompt"):
        service.predict([1, 2])
    with pytest.raises(FilterError, match="node\\(s\\) 'nodes', 'links' have no 'class_type'"):
        service.predict({"nodes": [], "links": []})


def test_node_ids_that_are_digits_only_to_unicode_are_ordered_not_a_server_error(service):
    """A superscript digit is `str.isdigit()` but no int (found by schemathesis on POST /telemetry/predict)."""
    from telemetry.analysis.actions import _sorted

    nodes = {"¹": {"class_type": "KSampler", "inputs": {"steps": 20}}, "2": {"class_type": "EmptyLatentImage",
                                                                             "inputs": {"width": 512}}}
    assert prompt_info.extract_parameters(nodes)["steps"] == 20
    assert [node_id for node_id, _ in _sorted(nodes)] == ["2", "¹"]
    assert service.predict(nodes)["history_runs"] == 0


def _solve_with_numpy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """`predict._solve` as it was written with np.median and np.allclose: the reference for the faster one."""
    from scipy.optimize import nnls

    base, target, weights = x / y[:, None], np.ones_like(y), np.ones_like(y)
    coef = np.zeros(x.shape[1])
    for _ in range(pred._IRLS_STEPS):
        sw = np.sqrt(weights)
        coef, _norm = nnls(base * sw[:, None], target * sw)
        resid = target - base @ coef
        scale = 1.4826 * float(np.median(np.abs(resid - np.median(resid))))
        if scale <= 1e-9:
            break
        u = np.abs(resid) / (pred._HUBER_K * scale)
        new = np.where(u <= 1.0, 1.0, 1.0 / np.maximum(u, 1e-12))
        if np.allclose(new, weights, atol=1e-4):
            break
        weights = new
    return coef


def test_the_fast_median_and_solve_give_numpys_answers_bit_for_bit():
    rng = np.random.default_rng(3)
    for n in (1, 2, 3, 4, 7, 10, 299, 300, 331):
        values = rng.lognormal(0.0, 1.0, n) - 1.0
        assert pred.median(values) == float(np.median(values))
        assert pred.median(np.round(values, 1)) == float(np.median(np.round(values, 1)))  # ties
        x = np.column_stack([np.ones(n), rng.uniform(0.1, 1.0, n), rng.uniform(0.1, 1.0, n)])
        y = x @ np.array([2.0, 5.0, 1.0]) * rng.lognormal(0.0, 0.2, n)
        assert np.array_equal(pred._solve(x, y), _solve_with_numpy(x, y))
        assert np.array_equal(pred._solve(x[:, :1], y), _solve_with_numpy(x[:, :1], y))


def test_the_quantile_of_a_sorted_array_is_numpys_bit_for_bit():
    rng = np.random.default_rng(4)
    for n in (1, 2, 3, 10, 30, 330, 331):
        ratios = np.sort(rng.lognormal(0.0, 0.3, n))
        for q in (0.0, 1.0, 0.5, 0.1, 0.9, 0.0963, 0.9034, 1 / 3, 2 / 3, 0.05, 0.95, *rng.uniform(0, 1, 20)):
            assert pred.sorted_quantile(ratios, q) == float(np.quantile(ratios, q)), (n, q)
