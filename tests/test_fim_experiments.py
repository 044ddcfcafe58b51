"""Tests for the FIM chapter's analysis code (flatlib.experiments.fim_scenarios, fim_regularizer,
fim_imagenet): rank correlations, verdict rules,
run plans per profile, the benchmark reader, and the metric measurement on a stored run."""
from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from flatlib.config import TrainConfig
from flatlib.engine import dataset_for, load_model, train
from flatlib.claims import fim as fim_claims
from flatlib.experiments import fim_imagenet as imnet
from flatlib.experiments import fim_regularizer as reg
from flatlib.experiments import fim_scenarios as fim
from flatlib.reference import paper_numbers
from flatlib.params import ParameterError
from flatlib.store import Store


def kendall_loop(a, b) -> float:
    """Kendall τ-a by counting concordant minus discordant pairs (no ties in the test data)."""
    s = sum(np.sign(a[i] - a[j]) * np.sign(b[i] - b[j]) for i, j in itertools.combinations(range(len(a)), 2))
    return s / (len(a) * (len(a) - 1) / 2)


def scenario_frame(seed: int = 0, levels: int = 4, seeds: int = 5) -> pd.DataFrame:
    """Synthetic scenario: test error rises with the level; γ̂ follows it, robustness runs against it,
    Frobenius is noise, spectral radius follows it with a little noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for lv, s in itertools.product(range(levels), range(seeds)):
        err = 2.0 * lv + rng.normal(0, 0.3)
        rows.append({"level": f"L{lv}", "level_index": lv, "seed": s, "test_error": err, "train_error": 0.0,
                     "train_loss": 1e-3, "log_det": -100 + 5 * err, "frobenius": rng.random(),
                     "spectral_radius": err + rng.normal(0, 0.2), "robustness": -err, "fisher_trace": err})
    return pd.DataFrame(rows)


def test_kendall_matches_pair_count_and_ranks_minus_inf_lowest():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=12), rng.normal(size=12)
    tau, p = fim.kendall(a, b)
    assert tau == pytest.approx(kendall_loop(a, b), abs=1e-12)
    assert 0 < p <= 1
    a_inf = a.copy()
    a_inf[np.argmin(a)] = -np.inf  # a singular subset: still the smallest value
    assert fim.kendall(a_inf, b)[0] == pytest.approx(tau, abs=1e-12)
    assert math.isnan(fim.kendall(np.ones(5), np.arange(5.0))[0])  # constant input: undefined
    assert math.isnan(fim.kendall(np.array([1.0, np.nan, 2.0]), np.arange(3.0))[0])  # < 3 finite pairs


def test_rank_table_on_synthetic_scenario():
    frame = scenario_frame()
    tab = fim.rank_table(frame, "FIM-S1").set_index("metric")
    assert list(tab.index) == ["log_det", "frobenius", "spectral_radius", "robustness", "fisher_trace"]
    assert tab.loc["log_det", "Kendall τ (all models)"] == pytest.approx(1.0)
    assert tab.loc["robustness", "Kendall τ (all models)"] == pytest.approx(-1.0)
    assert tab.loc["spectral_radius", "Kendall τ (all models)"] == pytest.approx(
        kendall_loop(frame["spectral_radius"].to_numpy(), frame["test_error"].to_numpy()))
    assert tab.loc["log_det", "tracks (ours)"] and tab.loc["spectral_radius", "tracks (ours)"]
    assert not tab.loc["robustness", "tracks (ours)"]  # significant, but the wrong sign
    assert not tab.loc["frobenius", "tracks (ours)"]   # noise
    assert tab.loc["log_det", "τ (config means)"] == pytest.approx(1.0)
    assert tab.loc["robustness", "paper: tracks"] == False  # noqa: E712  (the paper's reading of Fig. 2)


@pytest.mark.parametrize("ours, expected", [
    ({"log_det": True, "frobenius": True, "spectral_radius": True, "robustness": False}, "held"),
    ({"log_det": True, "frobenius": False, "spectral_radius": True, "robustness": False}, "partly held"),
    ({"log_det": True, "frobenius": True, "spectral_radius": True, "robustness": True}, "partly held"),
    ({"log_det": False, "frobenius": True, "spectral_radius": True, "robustness": False}, "did not hold"),
])
def test_scenario_verdict_rule(ours, expected):
    table = pd.DataFrame({"metric": list(ours), "tracks (ours)": list(ours.values())})
    assert fim_claims.scenario_verdict(table, "FIM-S1") == expected and "Kendall" in fim_claims.SCENARIO_RULE


def test_scenario_verdict_s2_needs_others_to_fail():
    only_gamma = {"log_det": True, "frobenius": False, "spectral_radius": False, "robustness": False}
    table = pd.DataFrame({"metric": list(only_gamma), "tracks (ours)": list(only_gamma.values())})
    assert fim_claims.scenario_verdict(table, "FIM-S2") == "held"
    assert fim_claims.scenario_verdict(table, "FIM-S3") == "partly held"


def test_comparison_difference_and_standard_error():
    a, b = [10.0, 11.0, 12.0], [9.0, 9.5, 10.0, 9.5]
    frame = pd.DataFrame({"dataset": "d", "model": "m", "regularizer": ["without"] * 3 + ["with"] * 4,
                          "test_error": a + b})
    row = reg.comparison(frame, "test_error").iloc[0]
    se = math.sqrt(np.var(a, ddof=1) / 3 + np.var(b, ddof=1) / 4)
    assert row["Δ (with − without)"] == pytest.approx(np.mean(b) - np.mean(a))
    assert row["s.e. of Δ"] == pytest.approx(se)
    assert row["lower with reg."] and row["without"] == "11.00 ± 1.00"
    frame.loc[frame["regularizer"] == "with", "test_error"] = [10.5, 11.5, 12.0, 10.0]  # within the noise
    assert not reg.comparison(frame, "test_error").iloc[0]["lower with reg."]


def test_t1_table_puts_paper_numbers_in_paper_columns_only():
    frame = pd.DataFrame({"dataset": "cifar10", "model": "resnet20", "regularizer": ["without", "with"] * 2,
                          "test_error": [9.0, 8.0, 9.2, 8.1], "log_det": [-1.0, -2.0, -1.1, -2.1]})
    tab = reg.t1_table(frame).iloc[0]
    assert tab["paper: without"] == "8.50 ± 0.31" and tab["paper: with"] == "7.89 ± 0.13"
    assert "8.50" not in tab["without"]
    assert reg.t3_table(frame).iloc[0]["paper: with"] == "−1138.1 ± 11.0"


@pytest.mark.parametrize("cls, profile, n", [
    (fim.ConfusionParams, "smoke", 4), (fim.ConfusionParams, "default", 30), (fim.ConfusionParams, "paper", 30),
    (fim.AugmentationParams, "default", 20), (fim.AugmentationParams, "paper", 20),
    (fim.BatchSizeParams, "default", 20), (fim.BatchSizeParams, "paper", 20),
    # smoke: 2 β-search runs + 2 plain arms; default: 9 β + 5 plain arms; paper: 7 pairs × 9 β + 35 plain arms
    # (the regularized arms join the plan once the search is stored:
    # test_beta_search_chooses_the_lowest_validation_error)
    (reg.RegularizerParams, "smoke", 4), (reg.RegularizerParams, "default", 14), (reg.RegularizerParams, "paper", 98),
    (imnet.ImageNetParams, "paper", 0),
])
def test_plan_sizes(cls, profile, n):
    plan = cls.resolve(profile=profile).plan()
    assert len(plan) == n
    assert len({c.key() for c in plan}) == n  # no duplicated runs


def test_paper_scenario_configs_follow_the_paper():
    s1 = fim.ConfusionParams.resolve(profile="paper").plan()
    assert {c.confusion for c in s1} == {0, 1000, 2000, 3000, 4000, 5000}
    assert all(c.dataset == "cifar10" and c.model == "resnet20" and c.n_train == 10_000 and c.epochs == 200
               and c.lr == 0.1 and c.schedule == "plateau" and c.augment == "4-crop-f" for c in s1)
    assert len({c.seed for c in s1}) == 5  # a new subset and confusion set per model
    s2 = fim.AugmentationParams.resolve(profile="paper").plan()
    assert {c.augment for c in s2} == {"no-aug", "flip-only", "1-crop-f", "4-crop-f"}
    s3 = fim.BatchSizeParams.resolve(profile="paper").plan()
    assert {c.batch_size for c in s3} == {128, 256, 512, 1024} and all(c.augment == "4-crop-f" for c in s3)


def test_paper_regularizer_configs():
    runs = reg.regularizer_configs(reg.RegularizerParams.resolve(profile="paper"))
    pairs = {(d, m) for d, m, _, _ in runs}
    table1 = {tuple(k.split(":")[:2]) for k in paper_numbers("FIM-T1")}
    assert pairs == table1  # Table 1's seven (dataset, model) pairs
    for dataset, model, regularized, cfg in runs:
        recipe = reg.ORIGINAL_RECIPES[model]
        assert cfg.milestones == recipe["milestones"] and cfg.epochs == recipe["epochs"]
        if regularized:
            assert cfg.rule == "fisher"
            assert cfg.rule_kwargs == {"alpha": 1e-4, "beta": 10.0, "num_subbatches": 8,
                                       "start_epoch": recipe["milestones"][0]}  # on after the first lr drop
        else:
            assert cfg.rule == "standard"


def test_paper_beta_search_is_the_papers():
    p = reg.RegularizerParams.resolve(profile="paper")
    search = reg.beta_search_configs(p)
    assert {b for _, b, _ in search} == {1, 5, 10, 20, 30, 40, 50, 75, 100}  # FIM Sec. 7.2.1
    assert all(c.dataset_kwargs == {"validation": 5000} and c.rule == "fisher" and c.rule_kwargs["beta"] == b
               for _, b, c in search)  # CIFAR's 45k/5k split


def test_beta_search_chooses_the_lowest_validation_error(results_root):
    from flatlib.store import Store

    p = reg.RegularizerParams.resolve(profile="smoke")
    store = Store("smoke")
    assert reg.beta_search(p, store, train=False) is None  # nothing stored yet
    frame = reg.beta_search(p, store)
    assert list(frame["beta"]) == [1.0, 10.0] and frame["chosen"].sum() == 1
    best = frame.loc[frame["chosen"]].iloc[0]
    assert best["validation_error"] == frame["validation_error"].min()
    assert reg.chosen_betas(reg.beta_search(p, store, train=False)) == {"digits:cnn6": best["beta"]}
    # the search runs evaluate on held-out training images, never on the test set
    ds_keys = {c.dataset_kwargs.get("validation") for *_, c in reg.beta_search_configs(p)}
    assert ds_keys == {64}
    plan = p.plan()  # the search is stored: the regularized arms now use the chosen β
    regs = [c for c in plan if c.rule == "fisher" and "validation" not in c.dataset_kwargs]
    assert len(plan) == 6 and {c.rule_kwargs["beta"] for c in regs} == {best["beta"]}


def test_regularizer_rejects_unsplittable_batches():
    with pytest.raises(ParameterError, match="divisible"):
        reg.RegularizerParams.resolve(profile="smoke", n_train=260).plan()  # last batch of 4 < M = 8
    with pytest.raises(ParameterError, match="dataset:model"):
        reg.RegularizerParams.resolve(profile="smoke", pairs=["digits-cnn6"])


def _bench(tmp_path, name, device, ratio):
    (tmp_path / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    blob = {"device": device, "batch_size": 128, "results": [
        {"name": "wrn28_2/plain", "value": 100.0, "ratio": 1.0},
        {"name": "wrn28_2/fisher", "value": 100.0 * ratio, "ratio": ratio}]}
    (tmp_path / "benchmarks" / "results" / name).write_text(json.dumps(blob))


def test_benchmark_reader_and_tc_verdict(tmp_path, monkeypatch):
    monkeypatch.setattr(reg, "project_root", lambda: tmp_path)
    monkeypatch.setenv("FLATLIB_RESULTS", str(tmp_path / "results"))
    assert fim_claims.timing(reg.benchmark_results(), "default").verdict == "not run"
    _bench(tmp_path, "fisher_reg-cpu.json", "Intel(R) Xeon(R) Processor (2 threads)", 3.5)
    bench = reg.benchmark_results()
    assert list(bench["candidate"]) == ["plain", "fisher"] and bench["ms/step"].iloc[1] == pytest.approx(350.0)
    assert fim_claims.timing(bench, "default").verdict == "not run"  # CPU only: not comparable with the paper's GPUs
    _bench(tmp_path, "fisher_reg-h100.json", "NVIDIA H100 80GB HBM3", 1.4)
    tc = fim_claims.timing(reg.benchmark_results(), "default")
    assert tc.verdict == "held" and tc.scale == "GPU benchmark, NVIDIA H100 80GB HBM3"
    _bench(tmp_path, "fisher_reg-a100.json", "NVIDIA A100-SXM4-40GB", 2.5)
    assert fim_claims.timing(reg.benchmark_results(), "default").verdict == "partly held"


def test_imagenet_skip_reasons(tmp_path):
    assert "paper profile" in imnet.imagenet_skip_reason(imnet.ImageNetParams.resolve(profile="default"))
    p = imnet.ImageNetParams.resolve(profile="paper", data_dir=str(tmp_path))
    assert "no ImageNet" in imnet.imagenet_skip_reason(p)
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    assert "found" in imnet.imagenet_skip_reason(p)


def test_measure_uses_clean_rows_and_is_cached(tmp_path):
    """Metrics of a stored run equal fim_metrics on its clean, normalised training rows; the second call
    is served from the store (the checkpoint may be gone)."""
    from flatlib.fisher import fim_metrics

    cfg = TrainConfig(dataset="digits", model="cnn6", model_kwargs={"width": 0.125}, n_train=48, confusion=16,
                      batch_size=32, epochs=1, lr=0.05, seed=3, progress=False)
    store = Store("smoke", tmp_path)
    train(cfg, store)
    x, y = fim.clean_training_set(cfg)
    ds = dataset_for(cfg)
    assert len(x) == 48 and torch.equal(y, ds.y_train[:48])
    assert abs(float(x.mean())) < 1.0  # normalised, not raw pixels
    got = fim.measure(cfg, store, n_prime=6, num_subsets=2)
    ref = fim_metrics(load_model(cfg, store), x, y, n_prime=6, num_subsets=2, seed=cfg.seed)
    for m, est in ref.items():
        assert got[m]["value"] == pytest.approx(est.value, rel=1e-6, abs=1e-12)
    for p in store.checkpoint_dir(cfg.key()).glob("*.pt"):
        p.unlink()
    assert fim.measure(cfg, store, n_prime=6, num_subsets=2) == got
