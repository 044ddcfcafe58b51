"""PoF: the line search, the reduction to SGD at γ = 0, a hand-written step, θ₀ untouched, B ≠ B̃, rejections."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from flatlib.train.config import TrainConfig
from flatlib.train.engine import load_model, train
from flatlib.models.base import FeatureClassifier
from flatlib.measures.classifier import line_search, minibatch_line_search
from flatlib.train.rules import StandardRule, StepContext, build_rule
from flatlib.store import Store


def _sequential_official(f, f0: float, init: float = 1.0, cap: float = 1e4, grid: int = 16):
    """The official code's loop, literally: double until f rises (reject at the cap), then a grid argmin."""
    t = init
    while f(t) <= f0:
        t *= 2
        if t >= cap:
            return 0.0, True
    steps = [t * i / grid for i in range(1, grid + 1)]
    return min(steps, key=f), False


@pytest.mark.parametrize("t_star", [0.37, 3.3, 41.0, 900.0])
def test_line_search_finds_quadratic_minimum_within_grid_resolution(t_star):
    curv = 0.7
    f = lambda t: curv * (t - t_star) ** 2  # noqa: E731
    f0 = torch.tensor(f(0.0), dtype=torch.float64)
    res = line_search(f, f0)
    assert not res.rejected
    assert abs(float(res.step) - t_star) <= float(res.upper) / 16 / 2 + 1e-12  # nearest grid point
    gold = line_search(f, f0, method="golden", golden_iters=40)
    assert abs(float(gold.step) - t_star) <= 1e-6 * float(gold.upper)
    ref, rejected = _sequential_official(lambda t: f(torch.tensor(t, dtype=torch.float64)), float(f0))
    assert not rejected and float(res.step) == pytest.approx(ref, rel=1e-12)


def test_line_search_matches_the_official_loop_on_random_nonquadratic_functions():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        a, b, c = (torch.rand(3, generator=g, dtype=torch.float64) * torch.tensor([5.0, 50.0, 2.0], dtype=torch.float64))
        f = lambda t: torch.log1p(torch.exp(c * (t - b))) + a * torch.exp(-t)  # noqa: E731
        f0 = f(torch.tensor(0.0, dtype=torch.float64))
        res = line_search(f, f0, cap=1e3)
        ref, rejected = _sequential_official(lambda t: float(f(torch.tensor(t, dtype=torch.float64))), float(f0), cap=1e3)
        assert bool(res.rejected) == rejected
        assert float(res.step) == pytest.approx(ref, rel=1e-12)


def test_line_search_rejects_one_sided_landscapes():
    f = lambda t: 1.0 / (1.0 + t)  # noqa: E731  (never rises)
    res = line_search(f, torch.tensor(1.0, dtype=torch.float64), cap=1e4)
    assert bool(res.rejected) and float(res.step) == 0.0


def _model() -> FeatureClassifier:
    torch.manual_seed(0)
    return FeatureClassifier(nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Tanh()), nn.Linear(6, 3)).double()


def _batch(seed: int, n: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def _ctx(model, opt, draws: list) -> StepContext:
    def draw():
        draws.append(len(draws))
        return _batch(1000 + len(draws))
    return StepContext(model, opt, F.cross_entropy, draw_batch=draw)


def test_gamma_zero_is_plain_sgd_on_the_feature_extractor():
    a, b = _model(), _model()
    rule = build_rule("pof", gamma="fixed", gamma_max=0.0, search_batch_size=16)
    opt_a = torch.optim.SGD(rule.trainable(a), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    opt_b = torch.optim.SGD(b.features.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    for s in range(4):
        x, y = _batch(s)
        la = rule.step(_ctx(a, opt_a, []), x, y)
        lb = StandardRule().step(_ctx(b, opt_b, []), x, y)
        assert torch.equal(la, lb)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


def test_one_step_equals_hand_written_eq5_with_search_batch_from_an_independent_draw():
    model = _model()
    ref = copy.deepcopy(model)
    x, y = _batch(0)
    draws: list = []
    rule = build_rule("pof", gamma="fixed", gamma_max=2.0, search_batch_size=16)
    opt = torch.optim.SGD(rule.trainable(model), lr=0.1)
    ctx = _ctx(model, opt, draws)
    rule.step(ctx, x, y)
    assert len(draws) == 1  # B came from draw_batch, not from the step's batch B̃
    xb, yb = _batch(1001)
    xb, yb = xb[:16], yb[:16]

    # by hand: features of B with batch statistics, line search, perturbed classifier, gradient on B̃ w.r.t. φ
    theta0 = {k: v.detach() for k, v in ref.classifier.named_parameters()}
    buffers = {k: v.clone() for k, v in ref.features.named_buffers()}
    with torch.no_grad():
        fb = functional_call(ref.features, ({k: v.detach() for k, v in ref.features.named_parameters()}, buffers), (xb,))
    res, g, gnorm = minibatch_line_search(ref, F.cross_entropy, fb, yb, theta0)
    assert float(ctx.logs["pof_xi"][0]) == pytest.approx(float(res.step * gnorm), rel=1e-12)
    other, *_ = minibatch_line_search(ref, F.cross_entropy, ref.features(x).detach(), y, theta0)
    assert float(other.step) != float(res.step)  # the search really used B, not B̃
    pert = {k: theta0[k] - 2.0 * res.step * g[k] for k in theta0}
    loss = F.cross_entropy(functional_call(ref.classifier, pert, (ref.features(x),)), y)
    grads = torch.autograd.grad(loss, list(ref.features.parameters()))
    for (k, p), gk, p0 in zip(model.features.named_parameters(), grads, ref.features.parameters()):
        torch.testing.assert_close(p, p0 - 0.1 * gk, rtol=1e-12, atol=1e-12)
    assert float(ctx.logs["pof_perturbation"][0]) == pytest.approx(2.0 * float(res.step * gnorm), rel=1e-12)
    assert float(ctx.logs["pof_rejected"][0]) == 0.0


def test_rejected_step_has_no_perturbation_and_is_counted():
    model = _model()
    rule = build_rule("pof", gamma="fixed", gamma_max=2.0, search_batch_size=16, cap=2.0)  # ladder {1}: tiny cap
    opt = torch.optim.SGD(rule.trainable(model), lr=0.1)
    # a batch whose loss decreases along -g for every step ≤ 1: the loss cannot rise before the cap
    ctx = StepContext(model, opt, F.cross_entropy, draw_batch=lambda: _batch(7))
    with torch.no_grad():
        model.classifier.weight.mul_(1e-3)
    rule.step(ctx, *_batch(0))
    assert float(ctx.logs["pof_rejected"][0]) == 1.0
    assert float(ctx.logs["pof_perturbation"][0]) == 0.0


def test_post_training_leaves_theta0_bit_identical_and_trains_features(results_root):
    store = Store("smoke")
    parent = TrainConfig(dataset="toy", model="mlp5", model_kwargs={"width": 16}, epochs=3, lr=0.1,
                         batch_size=64, progress=False, snapshot_epochs=(2,))
    cfg = TrainConfig(dataset="toy", model="mlp5", model_kwargs={"width": 16}, epochs=2, lr=0.01, batch_size=64,
                      progress=False, rule="pof", rule_kwargs={"search_batch_size": 32}, parent=parent,
                      parent_epoch=2)
    result = train(cfg, store)
    before, after = load_model(parent, store, epoch=2), load_model(cfg, store)
    for (k, v0), v1 in zip(before.classifier.state_dict().items(), after.classifier.state_dict().values()):
        assert torch.equal(v0, v1), k
    assert not all(torch.equal(a, b) for a, b in zip(before.features.parameters(), after.features.parameters()))
    steps = 2 * len(range(0, 2000, 64))
    assert {len(v) for k, v in result.logs.items() if k.startswith("pof_")} == {steps}
    assert all(0 <= g <= 2 for g in result.logs["pof_gamma"])


def test_classifier_space_measurements_match_the_exact_hessian():
    """experiments.pof_common / pof_images: the classifier-block Hessian and the F5 Rayleigh quotient against
    curvature.exact_hessian."""
    from flatlib.curvature import exact_hessian
    from flatlib.experiments.pof_common import classifier_hessian
    from flatlib.experiments.pof_images import hessian_components

    model = _model().float().eval()
    x, y = _batch(3)
    ref = exact_hessian(model, (x.float(), y), params="classifier")
    torch.testing.assert_close(classifier_hessian(model, x.float(), y), ref, rtol=1e-5, atol=1e-7)
    theta = {k: v.detach().double() for k, v in model.classifier.named_parameters()}
    m64 = copy.deepcopy(model).double()
    g = torch.func.grad(lambda th: F.cross_entropy(functional_call(m64.classifier, th, (m64.features(x),)), y))(theta)
    g = torch.cat([v.reshape(-1) for v in g.values()])
    expected = float(g @ ref @ g / (g @ g))
    assert hessian_components(model, [(x.float(), y)])[0] == pytest.approx(expected, rel=1e-5)
