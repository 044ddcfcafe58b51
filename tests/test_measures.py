"""flatlib.measures against exact computations on tiny float64 models, no side effects, and invariance."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cases import assert_untouched, snapshot
from flatlib.curvature import exact_hessian
from flatlib.measures import (MEASURES, MeasureConfig, adaptive_sharpness, classifier_delta_l, fisher_measures,
                              hessian_frobenius_sq, hessian_lambda1, hessian_trace, measure_all, output_margin,
                              pac_bayes_sigma, rescale_layers, scale_before_batchnorm, weight_norm)
from flatlib.models import build_model
from flatlib.models.base import FeatureClassifier

torch.set_num_threads(1)
SMALL = MeasureConfig(lanczos_iters=10, trace_matvecs=9, frobenius_samples=5, n_prime=10, num_subsets=2,
                      xi_batches=3, asam_steps=2, pac_samples=3, pac_iters=6)


def tiny_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("mlp", in_channels=1, num_classes=3, input_size=(4,), widths=[5]).double()


def tiny_bn_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    m = build_model("cnn6", in_channels=1, num_classes=3, input_size=4, width=0.04, batch_norm=True).double()
    with torch.no_grad():  # non-trivial running statistics
        for b in m.modules():
            if isinstance(b, nn.BatchNorm2d):
                b.running_mean.uniform_(-0.5, 0.5)
                b.running_var.uniform_(0.5, 2.0)
    return m


def data(n: int = 40, shape: tuple[int, ...] = (1, 4), seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


# ------------------------------------------------------------------------------------------ exact references
def test_curvature_measures_match_exact_hessian():
    model, d = tiny_mlp(), data()
    H = exact_hessian(model, d, dtype=torch.float64)
    ev = torch.linalg.eigvalsh(H)
    assert hessian_lambda1(model, d, num_iters=H.shape[0], tol=1e-10) == pytest.approx(float(ev[-1]), rel=1e-6)
    # Hutch++ with 3·P products sketches the whole space: exact
    assert hessian_trace(model, d, num_matvecs=3 * H.shape[0]) == pytest.approx(float(ev.sum()), rel=1e-8)
    fro, exact = hessian_frobenius_sq(model, d, num_samples=400), float((H ** 2).sum())
    # Rademacher Hutchinson on H²: var(zᵀH²z) = 2(‖H²‖²_F − Σ_i (H²)_ii²)
    H2 = H @ H
    se = math.sqrt(2 * (float((H2 ** 2).sum()) - float((H2.diagonal() ** 2).sum())) / 400)
    assert abs(fro - exact) < 4 * se


def test_fisher_measures_match_direct_loops():
    model, (x, y) = tiny_mlp(), data(n=12)
    got = fisher_measures(model, (x, y), n_prime=12, num_subsets=1)  # one subset = the whole set
    rows = []
    for i in range(len(y)):
        g = torch.autograd.grad(F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]), list(model.parameters()))
        rows.append(torch.cat([t.reshape(-1) for t in g]))
    J = torch.stack(rows)
    G = J @ J.T
    assert got["log_det"] == pytest.approx(float(torch.logdet(G)), rel=1e-8)
    assert got["fisher_trace"] == pytest.approx(float(torch.trace(G)) / 12, rel=1e-10)
    assert got["spectral_radius"] == pytest.approx(float(torch.linalg.eigvalsh(G)[-1]) / 12, rel=1e-8)
    jac = [torch.autograd.functional.jacobian(lambda v: model(v[None])[0], x[i]) for i in range(len(y))]
    assert got["robustness"] == pytest.approx(sum(float((j ** 2).sum()) for j in jac) / 12, rel=1e-10)


def linear_mse(d: int = 6, n: int = 50):
    """w ↦ mean (Xw − y)²: E_u L(w + u) − L(w) = σ² tr(XᵀX)/n exactly for u ~ N(0, σ²I)."""
    g = torch.Generator().manual_seed(3)
    X = torch.randn(n, d, generator=g, dtype=torch.float64) * torch.linspace(0.5, 2.0, d, dtype=torch.float64)
    model = nn.Linear(d, 1, bias=False).double()
    torch.nn.init.normal_(model.weight, generator=g)
    y = (X @ model.weight.detach().T)[:, 0] + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
    loss = lambda z, t: ((z[:, 0] - t) ** 2).mean()  # noqa: E731
    return model, (X, y), loss, X.T @ X / n


def test_pac_bayes_bisection_on_a_known_quadratic():
    model, d, loss, A = linear_mse()
    m, thr = 2000, 0.2
    sigma = pac_bayes_sigma(model, d, threshold=thr, num_samples=m, iters=30, loss_fn=loss, chunk=m)
    exact = math.sqrt(thr / float(torch.trace(A)))
    # the MC estimate of tr A is zᵀAz averaged over m Gaussian draws: relative sd √(2‖A‖²_F/m)/tr A
    rel_sd = math.sqrt(2 * float((A ** 2).sum()) / m) / float(torch.trace(A))
    assert sigma == pytest.approx(exact, rel=4 * rel_sd / 2 + 1e-6)  # σ ∝ (tr A)^(-1/2): half the relative error


def test_pac_bayes_magnitude_aware_on_a_known_quadratic():
    model, d, loss, A = linear_mse()
    w2 = model.weight.detach()[0] ** 2
    sigma = pac_bayes_sigma(model, d, threshold=0.2, num_samples=2000, iters=30, magnitude_aware=True, loss_fn=loss,
                            chunk=2000)
    exact = math.sqrt(0.2 / float((A.diagonal() * w2).sum()))  # E uᵀAu = σ² Σ_i A_ii w_i²
    assert sigma == pytest.approx(exact, rel=0.05)


def test_adaptive_sharpness_at_a_quadratic_minimum():
    """At the least-squares minimum L(w+ε) − L(w) = εᵀAε, so max_{‖ε/|w|‖≤ρ} = ρ² λmax(D A D), D = diag|w|."""
    model, (X, _), loss, A = linear_mse()
    y = (X @ model.weight.detach().T)[:, 0]  # w is the exact minimiser: zero gradient, random start
    D = torch.diag(model.weight.detach()[0].abs())
    exact = 0.3 ** 2 * float(torch.linalg.eigvalsh(D @ A @ D)[-1])
    got = adaptive_sharpness(model, (X, y), rho=0.3, steps=200, loss_fn=loss)
    assert got <= exact * (1 + 1e-9)
    assert got == pytest.approx(exact, rel=1e-4)


def test_margin_and_weight_norm_by_hand():
    lin = nn.Linear(2, 3, bias=False).double()
    model = FeatureClassifier(nn.Identity(), lin)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(3, 2, dtype=torch.float64))  # logits (x1, x2, 0)
    x = torch.tensor([[3.0, 1.0], [1.0, 2.0], [0.5, 0.0], [-1.0, -2.0], [2.0, 2.0]], dtype=torch.float64)
    y = torch.tensor([0, 1, 0, 2, 1])
    margins = torch.tensor([2.0, 1.0, 0.5, 1.0, 0.0], dtype=torch.float64)  # f_y − max_{j≠y} f_j
    assert output_margin(model, (x, y), quantile=0.1) == pytest.approx(float(torch.quantile(margins, 0.1)))
    assert output_margin(model, (x, y), quantile=0.5) == pytest.approx(1.0)
    assert weight_norm(model) == pytest.approx(math.sqrt(2.0))


def test_classifier_delta_l_uses_the_top_classifier_eigenvector():
    model, d = tiny_mlp(), data()
    got = classifier_delta_l(model, d, d, step=0.1, num_iters=50, tol=1e-10)
    H = exact_hessian(model, d, params="classifier", dtype=torch.float64)
    ev, V = torch.linalg.eigh(H)
    assert got["clf_lambda1"] == pytest.approx(float(ev[-1]), rel=1e-6)
    theta = {n: p.detach() for n, p in model.classifier.named_parameters()}
    alpha = 0.1 * float(torch.sqrt(sum((t ** 2).sum() for t in theta.values())))
    f = model.features(d[0]).detach()

    def loss_at(a: float) -> float:
        v = V[:, -1]
        w = (theta["weight"] + a * v[:theta["weight"].numel()].view_as(theta["weight"]))
        b = theta["bias"] + a * v[theta["weight"].numel():]
        return float(F.cross_entropy(f @ w.T + b, d[1]))

    assert got["delta_l"] == pytest.approx(0.5 * (loss_at(alpha) + loss_at(-alpha)) - loss_at(0.0), rel=1e-5)


# ------------------------------------------------------------------------------------------ side effects
@pytest.mark.parametrize("build, shape", [(tiny_mlp, (1, 4)), (tiny_bn_cnn, (1, 4, 4))])
def test_measure_all_has_no_side_effects(build, shape):
    model = build()
    model.train()
    next(model.parameters()).grad = torch.ones_like(next(model.parameters()))
    before = snapshot(model)
    out = measure_all(model, data(shape=shape), data(n=20, shape=shape, seed=2), SMALL)
    assert list(out) == list(MEASURES)
    assert all(math.isfinite(v) for v in out.values())
    assert_untouched(model, before)


# ------------------------------------------------------------------------------------------ invariance
def relative_change(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), 1e-12)


def test_rescaling_preserves_function_and_changes_lambda1_only_for_variant_measures():
    model, train, test = tiny_mlp(), data(), data(n=20, seed=2)
    scaled = rescale_layers(model, 0, 4.0)
    x = train[0]
    assert torch.allclose(model(x), scaled(x), rtol=1e-12, atol=1e-12)
    before, after = measure_all(model, train, test, SMALL), measure_all(scaled, train, test, SMALL)
    for name in ("lambda1", "trace", "log_det", "weight_norm", "pac_sigma"):
        assert relative_change(before[name], after[name]) > 0.05, name
    for name in ("robustness", "margin", "asam", "pac_mag_sigma"):
        assert relative_change(before[name], after[name]) < 1e-6, name


def test_scaling_before_batchnorm_preserves_function_and_classifier_measures():
    model, shape = tiny_bn_cnn(), (1, 4, 4)
    train, test = data(shape=shape), data(n=20, shape=shape, seed=2)
    scaled = scale_before_batchnorm(model, 3.0)
    model.eval(), scaled.eval()
    assert torch.allclose(model(train[0]), scaled(train[0]), rtol=1e-10, atol=1e-12)
    before, after = measure_all(model, train, test, SMALL), measure_all(scaled, train, test, SMALL)
    for name in ("lambda1", "weight_norm"):
        assert relative_change(before[name], after[name]) > 0.05, name
    for name in ("clf_lambda1", "delta_l", "xi", "robustness", "margin", "asam", "pac_mag_sigma"):
        assert relative_change(before[name], after[name]) < 1e-6, name


def test_reparameterisations_reject_bad_input():
    with pytest.raises(ValueError):
        rescale_layers(tiny_mlp(), 0, -1.0)
    with pytest.raises(ValueError):
        rescale_layers(tiny_mlp(), 1, 2.0)  # the last weight layer has no successor
    with pytest.raises(ValueError):
        scale_before_batchnorm(tiny_mlp(), 2.0)
