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

from flatlib.train.config import TrainConfig
from flatlib.train.engine import dataset_for, load_model, train
from flatlib.claims import fim as fim_claims
from flatlib.experiments import fim_imagenet as imnet
from flatlib.experiments import fim_regularizer as reg
from flatlib.experiments import fim_scenarios as fim
from flatlib.experiments.evaluation import clean_training_set, correct_vector, evaluation
from flatlib.reference import paper_numbers
from flatlib.params import ParameterError
from flatlib.store import Store


def kendall_loop(a, b) -> float:
    """Kendall τ-a by counting concordant minus discordant pairs (no ties in the test data)."""
    s = sum(np.sign(a[i] - a[j]) * np.sign(b[i] - b[j]) for i, j in itertools.combinations(range(len(a)), 2))
    return s / (len(a) * (len(a) - 1) / 2)


def scenario_frame(seed: int = 0, levels: int = 4, seeds: int = 5, step: float = 2.0, n_test: int = 2000
                   ) -> pd.DataFrame:
    """Synthetic scenario: test error rises with the level by ``step`` points; γ̂ follows it, robustness runs
    against it, Frobenius is noise, spectral radius follows it with a little noise. Every model is right on
    the shared ``n_test`` test images except a random set of the size its test error says (rounded)."""
    rng = np.random.default_rng(seed)
    rows = []
    for lv, s in itertools.product(range(levels), range(seeds)):
        err = 2.0 + step * lv + rng.normal(0, 0.3)  # kept unrounded: the rank tests assume no ties
        correct = np.ones(n_test, dtype=bool)
        correct[rng.choice(n_test, round(err / 100 * n_test), replace=False)] = False
        rows.append({"level": f"L{lv}", "level_index": lv, "seed": s, "test_error": err,
                     "n_test": n_test, "test_correct": "".join("1" if c else "0" for c in correct),
                     "train_error": 0.0, "train_loss": 1e-3, "log_det": -100 + 5 * err, "frobenius": rng.random(),
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
    """Δ and its standard error come from the per-seed differences (the arms share seeds)."""
    a, b = [10.0, 11.0, 12.0], [9.0, 10.5, 10.6]
    frame = pd.DataFrame({"dataset": "d", "model": "m", "regularizer": ["without"] * 3 + ["with"] * 3,
                          "seed": [0, 1, 2] * 2, "test_error": a + b})
    row = reg.comparison(frame, "test_error").iloc[0]
    d = np.subtract(b, a)
    assert row["Δ (with − without)"] == pytest.approx(d.mean())
    assert row["s.e. of Δ"] == pytest.approx(np.std(d, ddof=1) / math.sqrt(3))
    assert row["lower with reg."] and row["without"] == "11.00 ± 1.00"
    # the same two sets of values paired the other way round: differences of mixed sign, within the noise
    frame.loc[frame["regularizer"] == "with", "test_error"] = [10.6, 10.5, 9.0]
    assert not reg.comparison(frame, "test_error").iloc[0]["lower with reg."]


def test_t1_table_puts_paper_numbers_in_paper_columns_only():
    frame = pd.DataFrame({"dataset": "cifar10", "model": "resnet20", "regularizer": ["without", "with"] * 2,
                          "seed": [0, 0, 1, 1],
                          "test_error": [9.0, 8.0, 9.2, 8.1], "log_det": [-1.0, -2.0, -1.1, -2.1]})
    tab = reg.t1_table(frame).iloc[0]
    assert tab["paper: without"] == "8.50 ± 0.31" and tab["paper: with"] == "7.89 ± 0.13"
    assert "8.50" not in tab["without"]
    assert reg.t3_table(frame).iloc[0]["paper: with"] == "−1138.1 ± 11.0"


@pytest.mark.parametrize("cls, profile, n", [
    (fim.ConfusionParams, "smoke", 4), (fim.ConfusionParams, "default", 30), (fim.ConfusionParams, "paper", 30),
    (fim.AugmentationParams, "default", 20), (fim.AugmentationParams, "paper", 20),
    (fim.BatchSizeParams, "default", 40), (fim.BatchSizeParams, "paper", 20),
    # smoke: 2 β-search runs + 2 plain arms; default: 9 β + 5 plain arms; paper: 7 pairs × 9 β + 35 plain arms
    # (the regularized arms join the plan once the search is stored:
    # test_beta_search_chooses_the_lowest_validation_error)
    (reg.RegularizerParams, "smoke", 4), (reg.RegularizerParams, "default", 14), (reg.RegularizerParams, "paper", 98),
    (imnet.ImageNetParams, "paper", 0),
])
def test_plan_sizes(cls, profile, n, results_root):  # an empty store: the β searches are not run yet
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
    x, y = clean_training_set(cfg)
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


def test_default_scenarios_fit_protocol():
    """S2 at default uses the label-preserving digit schemes, every scheme for the same epochs; S3 gives every
    batch size the same epochs (the paper's protocol); budget="steps" would give each the same SGD steps."""
    s2 = fim.AugmentationParams.resolve(profile="default").plan()
    assert {c.augment for c in s2} == {"no-aug", "rot-only", "1-shift-rot", "4-shift-rot"}
    assert len({(c.epochs, c.milestones) for c in s2}) == 1
    assert {c.epochs for c in fim.BatchSizeParams.resolve(profile="default").plan()} == {120}
    p = fim.BatchSizeParams.resolve(profile="default", budget="steps")
    steps = {}
    for level, cfg in fim.scenario_configs(p):
        ds = dataset_for(cfg)
        steps[level] = cfg.epochs * ds.n_train / cfg.batch_size  # steps, counting the short last batch as a fraction
        assert [m / cfg.epochs for m in cfg.milestones] == [m / p.epochs for m in p.milestones]
    assert max(steps.values()) == pytest.approx(min(steps.values()))
    assert fim.BatchSizeParams.resolve(profile="paper").budget == "epochs"
    assert {c.epochs for c in fim.BatchSizeParams.resolve(profile="paper").plan()} == {200}


def test_shift_rotate_is_identity_at_zero_and_label_preserving_in_size():
    from flatlib.data import augment_batch
    from flatlib.data.augment import random_shift_rotate

    x = torch.rand(4, 1, 8, 8)
    torch.testing.assert_close(random_shift_rotate(x, 0.0, 0.0), x, rtol=0, atol=1e-6)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    a, b = augment_batch(x, "4-shift-rot", generator=g()), augment_batch(x, "4-shift-rot", generator=g())
    assert torch.equal(a, b) and a.shape == x.shape
    one = torch.zeros(1, 1, 8, 8)
    one[0, 0, 4, 4] = 1.0
    moved = random_shift_rotate(one.expand(64, 1, 8, 8), 4 / 32, 0.0, torch.Generator().manual_seed(1))
    centre = (moved[:, 0] * torch.arange(8.0)[None, None, :]).sum((1, 2)) / moved[:, 0].sum((1, 2))
    assert float((centre - 4).abs().max()) <= 1.0 + 1e-5  # at most 4/32 of 8 pixels = 1 pixel


def test_evaluation_clean_rows_test_correctness_and_cache(tmp_path):
    cfg = TrainConfig(dataset="digits", model="mlp", model_kwargs={"widths": [16]}, n_train=48, confusion=16,
                      batch_size=32, epochs=1, lr=0.05, seed=2, progress=False)
    store = Store("smoke", tmp_path)
    res = train(cfg, store)
    ev = evaluation(cfg, store, extra={"n": ({"what": "n"}, lambda model, c: 7)})
    model = load_model(cfg, store).eval()
    x, y = clean_training_set(cfg)
    with torch.no_grad():
        out = model(x)
    assert ev["clean_train_error"] == pytest.approx(100 * float((out.argmax(1) != y).double().mean()))
    assert ev["clean_train_loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(out, y)), rel=1e-5)
    correct = correct_vector(ev)
    assert len(correct) == res.summary["n_test"] and ev["n"] == 7
    assert 100 * (1 - correct.mean()) == pytest.approx(res.summary["test_error"])
    for p in store.checkpoint_dir(cfg.key()).glob("*.pt"):
        p.unlink()
    assert evaluation(cfg, store, extra={"n": ({"what": "n"}, lambda model, c: 7)}) == ev  # from the store


def _reg_frame(seeds: int = 5, fisher_drop: float = 0.3, n_test: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for s in range(seeds):
        base = rng.random(n_test) < 0.9
        for arm in ("without", "with"):
            corr = base.copy()
            if arm == "with":
                corr[rng.choice(n_test, 4, replace=False)] = True
            rows.append({"dataset": "digits", "model": "cnn6", "regularizer": arm, "seed": s,
                         "beta": 10.0 if arm == "with" else None, "test_error": 100 * (1 - corr.mean()),
                         "train_error": 1.0, "n_test": n_test, "train_loss": 0.05,
                         "fisher_reg": 1e-3 * (1 - fisher_drop if arm == "with" else 1.0),
                         "test_correct": "".join("1" if c else "0" for c in corr),
                         "log_det": -100.0 - (20.0 + rng.normal(0, 1)) * (arm == "with")})
    return pd.DataFrame(rows)


def test_regularizer_claims_gates(results_root):
    p = reg.RegularizerParams.resolve(profile="smoke", seeds=[0, 1, 2, 3, 4])
    t1, t3 = fim_claims.regularizer(_reg_frame(), p)
    assert t1.gates["acted"].passed and t1.gates["trained"].passed
    assert not t1.gates["resolvable"].passed and t1.verdict == "inconclusive"  # 400 test images: MDE > 1 point
    assert "minimum detectable effect" in t1.reason and "McNemar" in t1.ours
    assert "paired by seed and by image" in t1.gates["resolvable"].detail
    assert "8 regularized SGD steps (8 at lr 0.005)" in t1.ours  # smoke: epoch 2 of 2, 256 images in batches of 32
    assert len(t1.values["digits:cnn6"]["mcnemar"]) == 5
    assert t3.verdict == "held" and "norm 25" in t3.ours  # γ̂ 20 % lower in every seed, well resolved
    idle = fim_claims.regularizer(_reg_frame(fisher_drop=0.0), p)
    assert all(c.verdict == "inconclusive" and "R_α" in c.reason for c in idle)  # R_α did not fall


def test_scenario_fit_gate_uses_clean_rows(results_root):
    frame = scenario_frame()
    frame["clean_train_error"], frame["clean_train_loss"] = 0.0, 1e-3
    frame["train_error"] = 3.0  # the confusion set is not memorised: does not matter for the fit gate
    frame["train_loss"] = 1e-3 * (1 + frame["level_index"])
    p = fim.ConfusionParams.resolve(profile="smoke")
    claim = fim_claims.scenario(frame, p)
    assert claim.gates["trained"].passed and "clean training rows" in claim.gates["trained"].detail
    frame.loc[0, "clean_train_error"] = 2.0
    assert not fim_claims.scenario(frame, p).gates["trained"].passed


def _pair(n: int, only_a: int, only_b: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Correctness of two models on n shared images: only_a images right only for A, only_b only for B,
    the discordant block starting at image ``offset``."""
    a, b = np.ones(n, dtype=bool), np.ones(n, dtype=bool)
    b[offset:offset + only_a] = False
    a[offset + only_a:offset + only_a + only_b] = False
    return a, b


def test_shared_test_set_mde_has_80_percent_power_under_mcnemar():
    """Simulated shared test set: n images, a fraction π of them discordant, the discordant images favouring
    arm A by δ·n. At δ = the returned MDE a two-sided McNemar z-test (α = 0.05) rejects in ≈ 80 % of trials."""
    from flatlib.claims.stats import mde_shared_test_set

    n, pi = 2000, 0.05
    a, b = _pair(n, 50, 50)
    mde = mde_shared_test_set([a], [b])
    assert mde == pytest.approx(2.8016 * math.sqrt((pi - 0.0) / n), rel=1e-3)
    rng = np.random.default_rng(0)
    disc = rng.binomial(n, pi, size=4000)
    wins = rng.binomial(disc, 0.5 + mde * n / (2 * pi * n))
    z = (2 * wins - disc) / np.sqrt(disc)
    assert 0.76 < float((np.abs(z) > 1.96).mean()) < 0.84


def test_shared_test_set_mde_floor_seed_spread_and_independent_sets():
    from flatlib.claims.stats import mde_error_difference, mde_shared_test_set, shared_test_set_variance, z_factor

    z2, n = z_factor() ** 2, 1348
    same = [np.ones(n, dtype=bool)] * 2
    floor = mde_shared_test_set(same, same)  # identical arms: δ needs δ·n discordant images
    assert floor == pytest.approx(math.sqrt(z2 * floor * (1 - floor) / n), rel=1e-9) and 0.005 < floor < 0.006
    # seed 0: A worse on 20 more images; seed 1: B worse on 20 more; disjoint images
    (a0, b0), (a1, b1) = _pair(n, 50, 70, 0), _pair(n, 70, 50, 200)
    d = np.array([(~a0).astype(float) - ~b0, (~a1).astype(float) - ~b1])
    want = d.mean(axis=0).var() / n + d.mean(axis=1).var(ddof=1) / 2
    assert shared_test_set_variance([a0, a1], [b0, b1]) == pytest.approx(want, rel=1e-12)
    assert mde_shared_test_set([a0, a1], [b0, b1]) == pytest.approx(math.sqrt(z2 * want), rel=1e-9)
    # discordances on different images average out over seeds; on the same images they do not
    spread_out = [_pair(n, 15, 15, 30 * s) for s in range(5)]
    stacked = [_pair(n, 15, 15, 0) for _ in range(5)]
    var_out = shared_test_set_variance(*map(list, zip(*spread_out)))
    var_stacked = shared_test_set_variance(*map(list, zip(*stacked)))
    assert var_out == pytest.approx(var_stacked / 5, rel=1e-9)
    # few disagreements on one shared set resolve far less than two independent test sets would need
    assert mde_shared_test_set(*map(list, zip(*stacked))) < 0.6 * mde_error_difference(0.035, n)
    with pytest.raises(ValueError):
        shared_test_set_variance([a0], [b0[:-1]])


def test_scenario_resolvable_gate_is_paired_on_the_extreme_configurations(results_root):
    """Errors that rise by 2 points per level on 2000 shared images are resolved; 0.2 points per level are not
    (independent random errors: two models disagree on ~2p of the images, so the MDE is ~1.2 points)."""
    p = fim.ConfusionParams.resolve(profile="smoke")
    for step, ok in ((2.0, True), (0.2, False)):
        frame = scenario_frame(step=step)
        frame["clean_train_error"], frame["clean_train_loss"] = 0.0, 1e-3
        frame["train_loss"] = 1e-3 * (1 + frame["level_index"])
        gate = fim_claims.scenario(frame, p).gates["resolvable"]
        assert gate.passed == ok and "L0 → L3" in gate.detail and "same 2000 test images" in gate.detail
