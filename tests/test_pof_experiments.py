"""The PoF chapter's measurements and rules: continuous ΔL / flat width against analytic 1-D functions, the
acted-gate quantities, per-image correctness strings, and the POF-X1 rule on a no-op, a worsening and a gain."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from flatlib.claims import pof as claims
from flatlib.claims.rules import mcnemar_counts
from flatlib.claims.stats import mcnemar
from flatlib.claims.verdict import Gate
from flatlib.experiments.pof_common import (bits_to_bool, correct_bits, flat_interval, minimum_along,
                                            relative_change)

GRID = np.linspace(-3.0, 3.0, 41)  # the default slice: step 0.15


def _grid(f):
    return GRID, np.array([f(a) for a in GRID])


@pytest.mark.parametrize("a_star", [0.37, -1.234, 0.075, 0.0])
def test_continuous_delta_l_matches_the_analytic_minimum_off_the_grid(a_star):
    f = lambda a: 2.0 * (a - a_star) ** 2 + 1.0 + 0.1 * (a - a_star) ** 4  # noqa: E731
    a, l_min = minimum_along(f, *_grid(f), xatol=1e-7)
    assert a == pytest.approx(a_star, abs=1e-5)
    assert f(0.0) - l_min == pytest.approx(f(0.0) - 1.0, abs=1e-9)  # ΔL = f(0) − min f


def test_continuous_minimum_breaks_grid_ties():
    """Two grid points tie (minimum halfway between them); the continuous minimiser finds the true one."""
    f = lambda a: (a - 0.075) ** 2  # noqa: E731  (0.0 and 0.15 are equally far)
    a, l_min = minimum_along(f, *_grid(f), xatol=1e-8)
    assert a == pytest.approx(0.075, abs=1e-6) and l_min < 1e-10


def test_continuous_minimum_finds_the_global_minimum_of_a_double_well():
    f = lambda a: (a * a - 4) ** 2 / 16 + 0.05 * a  # noqa: E731  (global minimum near α = −2)
    a, _ = minimum_along(f, *_grid(f), xatol=1e-8)
    fine = np.linspace(-3, 3, 600001)
    assert a == pytest.approx(fine[np.argmin(f(fine))], abs=2e-5) and a < 0


def test_flat_width_by_root_finding_matches_the_analytic_roots():
    """f = α² left of 0 and 4α² right of it: the loss stays within tol of f(0) on [−√tol, √tol / 2]."""
    f = lambda a: a * a if a < 0 else 4 * a * a  # noqa: E731
    tol = 0.1
    lo, hi, capped = flat_interval(f, *_grid(f), level=f(0.0) + tol, xtol=1e-10)
    assert lo == pytest.approx(-math.sqrt(tol), abs=1e-8)
    assert hi == pytest.approx(math.sqrt(tol) / 2, abs=1e-8)
    assert not capped


def test_flat_width_is_capped_when_the_loss_never_leaves_the_band():
    f = lambda a: 0.001 * a * a  # noqa: E731
    lo, hi, capped = flat_interval(f, *_grid(f), level=f(0.0) + 0.1, xtol=1e-10)
    assert capped and (lo, hi) == (-3.0, 3.0)


def test_correctness_bits_round_trip_and_are_compact():
    model = nn.Linear(3, 4)
    x, y = torch.randn(1001, 3), torch.randint(4, (1001,))
    h = correct_bits(model, x, y)
    assert len(h) == 2 * math.ceil(1001 / 8)
    with torch.no_grad():
        expected = (model(x).argmax(1) == y).numpy()
    np.testing.assert_array_equal(bits_to_bool(h, 1001), expected)


def test_relative_change_of_weights():
    a = nn.Linear(3, 2)
    b = nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    assert relative_change(a, b) == 0.0
    with torch.no_grad():
        b.weight.mul_(1.1)
        b.bias.mul_(1.1)
    assert relative_change(a, b) == pytest.approx(0.1, rel=1e-6)


def test_mcnemar_from_counts_equals_mcnemar_on_a_constructed_pair():
    rng = np.random.default_rng(0)
    a = rng.random(500) < 0.7
    b = a.copy()
    flip = rng.choice(500, 40, replace=False)
    b[flip] = ~b[flip]
    ref = mcnemar(a, b)
    got = mcnemar_counts(ref.only_a, ref.only_b)
    assert (got.only_a, got.only_b) == (ref.only_a, ref.only_b) and got.pvalue == pytest.approx(ref.pvalue)


def test_paired_prediction_mde_shrinks_with_fewer_discordant_points():
    n = np.array([10000] * 3)
    few = claims.mde_paired_predictions(np.array([5] * 3), np.array([5] * 3), n, np.zeros(3))
    many = claims.mde_paired_predictions(np.array([200] * 3), np.array([200] * 3), n, np.zeros(3))
    assert few < many
    # no discordant points and no seed spread: nothing to detect against, MDE 0
    assert claims.mde_paired_predictions(np.zeros(3), np.zeros(3), n, np.zeros(3)) == 0.0
    # one seed, 2b discordant of n: 2.80 · √(2b/n)/n in points
    assert claims.mde_paired_predictions(np.array([50]), np.array([50]), np.array([10000]), np.zeros(1)) == \
        pytest.approx(100 * 2.8016 * math.sqrt(100 / 10000) / math.sqrt(10000), rel=1e-3)


def test_decay_floor_is_ten_times_weight_decays_shrinkage():
    assert claims.decay_floor(1e-3, 5e-4, 0.9, 100) == pytest.approx(10 * 1e-3 * 5e-4 * 100 / 0.1)
    assert claims.decay_floor(1e-3, 0.0, 0.9, 100) == claims.FLOAT_FLOOR


def _pairs(only_ft: list[int], only_pof: list[int], n: int = 10000, err: float = 30.0) -> pd.DataFrame:
    rows = []
    for seed, (b, c) in enumerate(zip(only_ft, only_pof)):
        rows.append({"seed": seed, "pair": "X1", "n_test": n, "only_treatment": b, "only_control": c,
                     "error_treatment": err + 100 * (c - b) / n, "error_control": err})
    return pd.DataFrame(rows)


TRAINED = Gate(True, "trained")


def test_x1_a_fine_tune_that_moved_nothing_is_inconclusive():
    acted = claims.finetune_acted(np.zeros(3), np.zeros(3), floor=1e-4)
    c = claims.x1_claim(acted, _pairs([0, 0, 0], [0, 0, 0]), TRAINED, "constructed")
    assert not acted.passed
    assert c.verdict == "inconclusive" and "acted" in c.reason


def test_x1_a_worsening_is_reported_not_held():
    acted = claims.finetune_acted(np.full(3, 1e-2), np.full(3, -0.05), floor=1e-4)
    c = claims.x1_claim(acted, _pairs([1, 0, 2], [20, 25, 18], n=40000), TRAINED, "constructed")
    assert acted.passed and c.gates["resolvable"].passed
    assert c.verdict == "partly held" and "worse" in c.ours and c.values["worsened"]


def test_x1_a_significant_gain_did_not_hold_and_noise_held():
    acted = claims.finetune_acted(np.full(3, 1e-2), np.full(3, -0.05), floor=1e-4)
    assert claims.x1_claim(acted, _pairs([20, 25, 18], [1, 0, 2], n=40000), TRAINED, "constructed").verdict == "did not hold"
    assert claims.x1_claim(acted, _pairs([3, 2, 4], [2, 4, 3], n=40000), TRAINED, "constructed").verdict == "held"


def test_pof_acted_gate_needs_both_the_features_and_lambda1_to_move():
    class P:
        batch_size, post_epochs, pof_lr, weight_decay, num_minibatches = 128, [3, 15], 1.6e-4, 5e-4, 400

    g = pd.DataFrame({"seed": [0, 1], "n_train": [4000, 4000], "phi_change": [1e-2, 1e-2],
                      "lambda1_sam": [10.0, 10.0], "lambda1_pof": [8.0, 7.0], "phi_change_sam": [1e-4, 2e-4],
                      "phi_change_d2": [3e-2, 3e-2], "grad_pof": [0.5, 0.25], "grad_sgd": [0.01, 0.01],
                      "phi_norm": [100.0, 50.0]})
    gate = claims.pof_acted(g, P)
    assert gate.passed
    # the context (no gate): ‖ḡ_PoF‖/(λ‖φ‖) = 0.5/0.05 = 10 and 0.25/0.025 = 10; 0.01/0.05 = 0.2, 0.01/0.025 = 0.4;
    # PoF's floor after Δ₂ = 15 epochs of 32 steps: 10·1.6e-4·5e-4·480/0.1 = 3.84e-3
    assert "is 10, 10× weight decay's pull" in gate.detail and "0.2, 0.4×" in gate.detail
    assert "(T = 480)" in gate.detail and "floor 0.0038" in gate.detail
    assert not claims.pof_acted(g.assign(lambda1_pof=[10.0, 10.01]), P).passed   # λ1 unchanged
    assert not claims.pof_acted(g.assign(phi_change=[1e-6, 1e-2]), P).passed      # φ did not move in one seed


def test_packed_frames_round_trip():
    from flatlib.experiments.pof_common import pack_frame, unpack_frame

    f = pd.DataFrame({"split": ["train", "test", "train"], "xi": [0.5, 1e-3, 2.25], "rejected": [False, True, False],
                      "rank": [1, 7, 2]})
    g = unpack_frame(json_round_trip(pack_frame(f)))
    pd.testing.assert_frame_equal(g[["split", "rejected", "rank"]], f[["split", "rejected", "rank"]], check_dtype=False)
    np.testing.assert_allclose(g["xi"], f["xi"], rtol=1e-7)


def json_round_trip(d):
    import json

    return json.loads(json.dumps(d))


def test_pof_gradient_is_the_update_rules_feature_gradient():
    """`pof_gradient` on one (B, B̃) pair equals −Δφ of one PoF step (plain SGD, lr 1, the same B, B̃ and γ), which
    tests/test_pof.py checks against a hand-written Eq. 5; with γ_max = 0 it equals the unperturbed gradient."""
    import copy

    import torch.nn.functional as F

    from flatlib.experiments.pof_common import random_batches
    from flatlib.experiments.pof_images import PoFImagesParams, pof_gradient
    from flatlib.models.base import FeatureClassifier
    from flatlib.train.rules import StepContext, build_rule

    torch.manual_seed(0)
    model = FeatureClassifier(nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 6), nn.Tanh()), nn.Linear(6, 3))
    with torch.no_grad():
        model.classifier.weight.mul_(3.0)  # a trained-looking classifier: the line search finds a rise
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 5, generator=g), torch.randint(0, 3, (64,), generator=g)
    p = PoFImagesParams.resolve(profile="smoke", num_minibatches=1, batch_size=16, search_batch_size=8)
    got = pof_gradient(model, (x, y), p, seed=3)

    (xb, yb), = random_batches(x, y, 8, 1, 3 + 5)
    (xt, yt), = random_batches(x, y, 16, 1, 3 + 6)
    gamma = p.gamma_max * torch.rand(1, generator=torch.Generator().manual_seed(3 + 4), dtype=torch.float64)[0]
    m = copy.deepcopy(model).double()
    rule = build_rule("pof", gamma="fixed", gamma_max=float(gamma), search_batch_size=8)
    opt = torch.optim.SGD(rule.trainable(m), lr=1.0)
    before = torch.cat([q.detach().reshape(-1).clone() for q in m.features.parameters()])
    ctx = StepContext(m, opt, F.cross_entropy, draw_batch=lambda: (xb.double(), yb))
    rule.step(ctx, xt.double(), yt)
    assert float(ctx.logs["pof_rejected"][0]) == 0.0 and float(ctx.logs["pof_perturbation"][0]) > 0
    after = torch.cat([q.detach().reshape(-1) for q in m.features.parameters()])
    assert got["grad_pof"] == pytest.approx(float((before - after).norm()), rel=1e-6)  # γ is float32 in the rule
    assert got["phi_norm"] == pytest.approx(float(before.norm()), rel=1e-12)
    assert got["grad_pof"] != pytest.approx(got["grad_sgd"], rel=1e-3)

    flat0 = pof_gradient(model, (x, y), PoFImagesParams.resolve(profile="smoke", num_minibatches=1, batch_size=16,
                                                                search_batch_size=8, gamma_max=0.0), seed=3)
    assert flat0["grad_pof"] == pytest.approx(flat0["grad_sgd"], rel=1e-12)
    assert flat0["grad_sgd"] == pytest.approx(got["grad_sgd"], rel=1e-12)
