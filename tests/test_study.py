"""The study chapter's analysis: granulated Kendall τ against direct computations on synthetic populations."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau

from flatlib.experiments.study import granulated_tau, intervention_pairs, overall_tau, varying_fields


def grid(seed: int = 0) -> pd.DataFrame:
    """A 3 × 2 × 2 grid of (lr, batch_size, seed) with random measure and gap values."""
    rng = np.random.default_rng(seed)
    rows = [{"lr": lr, "batch_size": bs, "seed": s} for lr, bs, s in itertools.product([0.01, 0.1, 0.3], [32, 128], [0, 1])]
    f = pd.DataFrame(rows)
    return f.assign(m=rng.normal(size=len(f)), gap=rng.normal(size=len(f)))


def test_granulated_tau_is_the_mean_over_groups_of_kendall_tau():
    f = grid()
    fields = varying_fields(f)
    assert set(fields) == {"lr", "batch_size", "seed"}
    out = granulated_tau(f, intervention_pairs(f, fields), "m", "gap", bootstrap=20, min_groups=1).set_index("intervention")
    assert set(out.index) == {"lr", "batch_size", "seed"}  # joint changes of grid factors have intermediates
    for factor in ("lr", "batch_size", "seed"):
        others = [c for c in ("lr", "batch_size", "seed") if c != factor]
        taus = [kendalltau(g["m"], g["gap"]).statistic for _, g in f.groupby(others)]  # no ties: τ-b = τ-a
        assert out.loc[factor, "tau"] == pytest.approx(np.mean(taus))
        assert out.loc[factor, "groups"] == len(taus)
        assert out.loc[factor, "lo"] <= out.loc[factor, "tau"] <= out.loc[factor, "hi"]


def test_joint_intervention_kept_when_a_field_never_varies_alone():
    """FF-style comparison: optimizer and weight decay change together, never alone, per seed."""
    f = pd.DataFrame({"optimizer": ["sgd", "adam"] * 3, "weight_decay": [0.0, 0.5] * 3, "seed": [0, 0, 1, 1, 2, 2],
                      "m": [1.0, 2.0, 1.0, 3.0, 2.0, 1.0], "gap": [1.0, 2.0, 1.0, 2.0, 1.0, 2.0]})
    out = granulated_tau(f, intervention_pairs(f, varying_fields(f)), "m", "gap", bootstrap=20, min_groups=3)
    row = out.set_index("intervention").loc["optimizer+weight_decay"]
    assert row["tau"] == pytest.approx((1 + 1 - 1) / 3) and row["groups"] == 3


def test_overall_tau_and_interval():
    f = grid(1)
    tau, lo, hi = overall_tau(f, "m", "gap", bootstrap=200)
    assert tau == pytest.approx(kendalltau(f["m"], f["gap"]).statistic)
    assert lo <= tau <= hi
    perfect = f.assign(m=f["gap"] * 2)
    assert overall_tau(perfect, "m", "gap", bootstrap=50) == pytest.approx((1.0, 1.0, 1.0))


def test_missing_values_compare_equal():
    f = pd.DataFrame({"parent": [None, None, "abc"], "lr": [0.1, 0.2, 0.1], "m": [1.0, 2.0, 3.0], "gap": [1.0, 2.0, 0.0]})
    assert set(varying_fields(f)) == {"parent", "lr"}
    pairs = intervention_pairs(f, varying_fields(f))
    assert set(pairs["intervention"]) == {"lr", "parent"}  # the joint pair has model 0 in between


def test_measure_run_reports_a_singular_gram_as_minus_inf_without_a_warning(results_root):
    """γ̂ of a model with fewer parameters than N′ is −∞; the study reports it in its tables, so the
    measurement must not also print the warning (a from-scratch book build fails on cell stderr)."""
    import warnings

    from flatlib.train.config import TrainConfig
    from flatlib.train.engine import train
    from flatlib.experiments import study
    from flatlib.measures import MeasureConfig
    from flatlib.store import Store

    cfg = TrainConfig(dataset="toy", dataset_kwargs={"n_train": 64, "n_test": 64}, model="logreg", epochs=1,
                      batch_size=32, progress=False)  # 44 parameters < N′ = 50
    store = Store("smoke")
    train(cfg, store)
    mcfg = MeasureConfig(lanczos_iters=4, trace_matvecs=3, frobenius_samples=2, n_prime=50, num_subsets=2,
                         xi_batches=2, asam_steps=1, pac_samples=2, pac_iters=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = study.measure_run(cfg, store, mcfg, n_measure=64)
    assert values["log_det"] == float("-inf")


def test_forward_mode_ad_does_not_print_torchs_own_futurewarning():
    """The first ``torch.func.jvp`` loads torch's decompositions, which warns about torch.jit.script."""
    import subprocess
    import sys

    code = ("import torch, flatlib.curvature\n"
            "from torch.func import grad, jvp\n"
            "x = torch.randn(3)\n"
            "print(jvp(grad(lambda t: (t ** 3).sum()), (x,), (torch.ones(3),))[1].shape)\n")
    out = subprocess.run([sys.executable, "-W", "error::FutureWarning", "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stderr == "", out.stderr
