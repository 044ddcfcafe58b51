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
