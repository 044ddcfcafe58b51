"""Tests of flatlib.curvature against dense float64 Hessians from torch.func.

A table of small cases (MLP, CNN, CNN+BN in both BN modes, several parameter subsets) is crossed
with the checks; randomized estimators are checked against their own standard errors over
several seeds. References: ``torch.func.hessian`` (exact), ``torch.linalg.eigvalsh``, PyHessian
and curvlinops.
"""
from __future__ import annotations

import copy
import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from flatlib.curvature import (
    HessianOperator,
    IdentityOperator,
    LinearOperator,
    exact_hessian,
    filter_normalized_direction,
    flatten,
    frobenius_norm_sq,
    hutchinson_trace,
    hutchpp_trace,
    landscape_1d,
    landscape_2d,
    lanczos,
    power_iteration,
    select_parameters,
    slq,
)

from cases import CNN, MLP, N, SIZES, batches, problem  # noqa: F401  (the shared case table)


# (model, params, bn_mode)
CASES = [
    ("mlp", None, "eval"),
    ("mlp", "classifier", "eval"),
    ("mlp", "features.2", "eval"),
    ("mlp", ["features.0.weight", "classifier.bias"], "eval"),
    ("cnn", None, "eval"),
    ("cnn_bn", None, "eval"),
    ("cnn_bn", None, "train"),
    ("cnn_bn", "features.1", "train"),
]
IDS = [f"{m}-{p if isinstance(p, str) or p is None else '+'.join(p)}-{b}" for m, p, b in CASES]


@functools.cache
def _exact(name: str, params, bn_mode: str) -> torch.Tensor:
    model, X, Y = problem(name)
    params = list(params) if isinstance(params, tuple) else params
    return exact_hessian(model, batches(X, Y), params=params, bn_mode=bn_mode)


def exact(name, params, bn_mode) -> torch.Tensor:
    return _exact(name, tuple(params) if isinstance(params, list) else params, bn_mode)


def operator(name, params, bn_mode, **kwargs) -> HessianOperator:
    model, X, Y = problem(name)
    return HessianOperator(model, batches(X, Y), params=params, bn_mode=bn_mode, dtype=torch.float64, **kwargs)


# ---------------------------------------------------------------- Hessian-vector products

@pytest.mark.parametrize("method", ["forward-over-reverse", "double-backward"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_hvp_matches_exact_hessian(case, method):
    H_exact = exact(*case)
    H = operator(*case, method=method)
    V = torch.randn(H.dim, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(H @ V, H_exact @ V, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(H @ V[:, 0], H_exact @ V[:, 0], rtol=1e-10, atol=1e-12)
    assert H.num_matvecs == 4 and H.num_samples == N
    assert torch.allclose(H_exact, H_exact.T, atol=1e-12)


def test_parameter_selection():
    model, _, _ = problem("mlp")
    assert select_parameters(model, "classifier") == ["classifier.weight", "classifier.bias"]
    assert select_parameters(model, "features.2") == ["features.2.weight", "features.2.bias"]
    assert select_parameters(model) == select_parameters(model, "all") == [n for n, _ in model.named_parameters()]
    H_block = exact("mlp", "classifier", "eval")
    H_all = exact("mlp", None, "eval")
    torch.testing.assert_close(H_block, H_all[-H_block.shape[0]:, -H_block.shape[0]:], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["mlp", "cnn", "cnn_bn"])
def test_unequal_batches_equal_full_batch(name):
    """Σ_b (n_b/N) H_b v over a DataLoader with a short last batch equals the full-batch HVP (eval BN)."""
    model, X, Y = problem(name)
    loader = DataLoader(TensorDataset(X, Y), batch_size=8)  # 8, 8, 8, 6
    H_batched = HessianOperator(model, loader, dtype=torch.float64)
    H_full = HessianOperator(model, (X, Y), dtype=torch.float64)
    H_sliced = HessianOperator(model, (X, Y), batch_size=7, dtype=torch.float64)
    v = torch.randn(H_full.dim, dtype=torch.float64)
    torch.testing.assert_close(H_batched @ v, H_full @ v, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(H_sliced @ v, H_full @ v, rtol=1e-10, atol=1e-12)


def test_float32_operator_approximates_float64():
    model, X, Y = problem("cnn")
    H64 = operator("cnn", None, "eval")
    H32 = HessianOperator(model, batches(X, Y), dtype=torch.float32)
    v = torch.randn(H64.dim, dtype=torch.float64)
    out = H32 @ v
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), H64 @ v, rtol=1e-4, atol=1e-5)


def test_bn_train_and_eval_differ():
    """BN with batch statistics (train) and with running statistics (eval) are different Hessians."""
    H_eval, H_train = exact("cnn_bn", None, "eval"), exact("cnn_bn", None, "train")
    assert (H_eval - H_train).norm() > 0.1 * H_eval.norm()
    v = torch.randn(H_eval.shape[0], dtype=torch.float64)
    torch.testing.assert_close(operator("cnn_bn", None, "train") @ v, H_train @ v, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(operator("cnn_bn", None, "eval") @ v, H_eval @ v, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- eigenvalues

@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_lanczos_top5_matches_eigvalsh(case):
    H_exact = exact(*case)
    evals = torch.linalg.eigvalsh(H_exact).flip(0)[:5]
    H = operator(*case)
    result = lanczos(H, k=5, num_iters=H.dim, tol=1e-10)
    torch.testing.assert_close(result.eigenvalues, evals, rtol=1e-6, atol=1e-9 * evals[0].abs())
    residual = H_exact @ result.eigenvectors.double() - result.eigenvectors.double() * result.eigenvalues
    assert residual.norm(dim=0).max() < 1e-6 * evals[0].abs()
    assert result.converged and result.num_matvecs == H.num_matvecs


def test_lanczos_smallest_and_power_iteration_on_matrix():
    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(60, 60, dtype=torch.float64, generator=g))
    lam = torch.cat([torch.tensor([10.0, 5.0]), torch.linspace(-1, 1, 58, dtype=torch.float64)])
    A = Q @ torch.diag(lam) @ Q.T
    smallest = lanczos(A, k=3, which="smallest", num_iters=60, tol=1e-10).eigenvalues
    torch.testing.assert_close(smallest, torch.linalg.eigvalsh(A)[:3], rtol=1e-8, atol=1e-10)
    top = power_iteration(A, num_iters=500, tol=1e-12)
    assert abs(top.eigenvalue - 10.0) < 1e-8 and abs(abs(top.eigenvector @ Q[:, 0]) - 1) < 1e-6


@pytest.mark.parametrize("name", ["mlp", "cnn", "cnn_bn"])
def test_lanczos_reaches_lambda_max_within_30_hvps(name):
    lam_max = torch.linalg.eigvalsh(exact(name, None, "eval"))[-1]
    result = lanczos(operator(name, None, "eval"), k=1, tol=1e-3)
    assert result.num_matvecs <= 30
    assert abs(result.eigenvalues[0] - lam_max) <= 1e-3 * abs(lam_max)


def test_weight_decay_shifts_spectrum():
    lam = 0.37
    top = lanczos(operator("cnn", None, "eval"), tol=1e-10, num_iters=300).eigenvalues[0]
    top_wd = lanczos(operator("cnn", None, "eval", weight_decay=lam), tol=1e-10, num_iters=300).eigenvalues[0]
    torch.testing.assert_close(top_wd - top, torch.tensor(lam, dtype=torch.float64), rtol=1e-8, atol=1e-10)
    H = operator("cnn", None, "eval")
    v = torch.randn(H.dim, dtype=torch.float64)
    torch.testing.assert_close(H.shift(lam) @ v, operator("cnn", None, "eval", weight_decay=lam) @ v)
    torch.testing.assert_close((H + lam * IdentityOperator(H.dim, H.dtype, H.device)) @ v, H @ v + lam * v)


# ---------------------------------------------------------------- traces and Frobenius norms

def _z_scores(estimator, truth: float, seeds=range(20)) -> torch.Tensor:
    ests = [estimator(seed) for seed in seeds]
    return torch.tensor([(e.value - truth) / e.stderr for e in ests])


ESTIMATORS = {
    "hutchinson": lambda A, n: hutchinson_trace(A, num_samples=n),
    "hutch++": lambda A, n: hutchpp_trace(A, num_matvecs=n),
    "frobenius": lambda A, n: frobenius_norm_sq(A, num_samples=n),
    "frobenius-hutch++": lambda A, n: frobenius_norm_sq(A, num_samples=n, method="hutch++"),
}


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("case", [CASES[0], CASES[6]], ids=[IDS[0], IDS[6]])
def test_trace_estimators_on_hessian(case, estimator):
    """Same seed, same probes: the operator gives the dense estimate; with many probes it is within 3 se."""
    H_exact = exact(*case)
    truth = float(torch.trace(H_exact)) if estimator in ("hutchinson", "hutch++") else float((H_exact**2).sum())
    estimate = ESTIMATORS[estimator]
    assert estimate(operator(*case), 12).value == pytest.approx(estimate(H_exact, 12).value, rel=1e-9)
    precise = estimate(H_exact, 3000)
    assert abs(precise.value - truth) <= 3 * precise.stderr + 1e-9 * abs(truth), (precise, truth)


def test_trace_stderr_is_calibrated():
    """Over 20 seeds, (estimate − truth)/stderr has mean ≈ 0 and spread ≈ 1 for every estimator."""
    g = torch.Generator().manual_seed(0)
    B = torch.randn(80, 80, dtype=torch.float64, generator=g)
    A = B @ B.T / 80 - 0.5 * torch.eye(80, dtype=torch.float64)
    tr, fro = float(torch.trace(A)), float((A**2).sum())
    for z in [_z_scores(lambda s: hutchinson_trace(A, num_samples=30, seed=s), tr),
              _z_scores(lambda s: hutchinson_trace(A, num_samples=30, seed=s, distribution="normal"), tr),
              _z_scores(lambda s: hutchpp_trace(A, num_matvecs=45, seed=s), tr),
              _z_scores(lambda s: frobenius_norm_sq(A, num_samples=30, seed=s), fro)]:
        assert z.abs().max() < 4 and abs(z.mean()) < 0.8 and 0.5 < z.std() < 1.6, z


def test_hutchpp_beats_hutchinson_on_decaying_spectrum():
    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(200, 200, dtype=torch.float64, generator=g))
    A = Q @ torch.diag(1.0 / torch.arange(1, 201, dtype=torch.float64) ** 2) @ Q.T
    tr = float(torch.trace(A))
    err = lambda est: abs(est.value - tr)  # noqa: E731
    hutch = sum(err(hutchinson_trace(A, num_samples=60, seed=s)) for s in range(5))
    hpp = sum(err(hutchpp_trace(A, num_matvecs=60, seed=s)) for s in range(5))
    assert hpp < 0.2 * hutch
    assert hutchpp_trace(A, num_matvecs=600).value == pytest.approx(tr, rel=1e-12)  # sketch spans everything


def test_rel_stderr_stopping():
    g = torch.Generator().manual_seed(0)
    B = torch.randn(50, 50, dtype=torch.float64, generator=g)
    est = hutchinson_trace(B @ B.T, num_samples=10_000, rel_stderr=0.01)
    assert est.stderr <= 0.01 * abs(est.value) and est.n < 10_000


# ---------------------------------------------------------------- spectral density

def test_slq_quadrature_is_exact_for_low_degree():
    """Each start vector's m-node Gauss quadrature integrates λ^k exactly for k < 2m (here k ≤ 4, m = 3)."""
    g = torch.Generator().manual_seed(0)
    B = torch.randn(40, 40, dtype=torch.float64, generator=g)
    A = (B + B.T) / 2
    density = slq(A, num_vectors=1, num_iters=3, seed=5)
    z = (2 * torch.randint(0, 2, (40, 1), generator=torch.Generator().manual_seed(5)) - 1).double()[:, 0]
    z = z / z.norm()
    expected = torch.stack([z @ torch.linalg.matrix_power(A, k) @ z for k in range(1, 5)])
    torch.testing.assert_close(density.moments(4), expected, rtol=1e-10, atol=1e-10)
    assert density.weights.sum(1).sub(1).abs().max() < 1e-12 and density.num_matvecs == 3


def test_slq_moments_match_traces():
    """∫λ^k dμ̂ within 2% of tr(A^k)/P, k = 1..4, for a spectrum spread over [1, 2] in a random basis.

    The relative standard error of the k = 4 moment is about 0.7% here (P = 1000, 60 vectors).
    """
    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(1000, 1000, dtype=torch.float64, generator=g))
    lam = torch.linspace(1, 2, 1000, dtype=torch.float64)
    density = slq((Q * lam) @ Q.T, num_vectors=60, num_iters=20)
    exact_moments = torch.stack([(lam**k).mean() for k in range(1, 5)])
    torch.testing.assert_close(density.moments(4), exact_moments, rtol=0.02, atol=0)


@pytest.mark.parametrize("case", [CASES[4], CASES[6]], ids=[IDS[4], IDS[6]])
def test_slq_moments_on_hessian(case):
    """On a Hessian with outliers the per-vector spread is large: moments within 3 standard errors."""
    H_exact = exact(*case)
    lam = torch.linalg.eigvalsh(H_exact)
    H = operator(*case)
    density = slq(H, num_vectors=8, num_iters=12)
    per_vector = (density.weights[..., None] * density.nodes[..., None] ** torch.arange(1, 5)).sum(1)
    stderr = per_vector.std(0) / 8**0.5
    exact_moments = torch.stack([(lam**k).mean() for k in range(1, 5)])
    assert ((density.moments(4) - exact_moments).abs() <= 3 * stderr + 1e-12).all()
    assert H.num_matvecs == density.num_matvecs == 96


def test_smoothed_density_integrates_to_one():
    density = slq(torch.diag(torch.linspace(-1, 4, 50, dtype=torch.float64)), num_vectors=3, num_iters=10)
    grid = torch.linspace(-5, 8, 4001, dtype=torch.float64)
    rho = density.smooth(grid, sigma=0.2)
    assert torch.trapezoid(rho, grid) == pytest.approx(1.0, abs=1e-6)
    log_rho = density.smooth(torch.tensor([100.0]), sigma=0.2, log=True)
    assert torch.isfinite(log_rho).all() and log_rho.item() < -100  # far tail stays finite on a log axis
    torch.testing.assert_close(density.smooth(grid, 0.2, log=True), rho.log10())


# ---------------------------------------------------------------- landscapes

def test_landscape_at_zero_is_model_loss():
    model, X, Y = problem("cnn_bn")
    with torch.no_grad():
        loss = F.cross_entropy(model(X), Y).item()
    d = filter_normalized_direction(model, seed=0)
    df = landscape_1d(model, {"train": batches(X, Y), "test": (X[:10], Y[:10])}, d, [-0.5, 0.0, 0.5])
    assert list(df.columns) == ["alpha", "loss", "split"] and len(df) == 6
    assert df.query("alpha == 0 and split == 'train'").loss.item() == pytest.approx(loss, rel=1e-5)
    df2 = landscape_2d(model, (X, Y), d, filter_normalized_direction(model, seed=1), [0.0, 1.0], [0.0, 0.3])
    assert list(df2.columns) == ["alpha", "beta", "loss", "split"] and len(df2) == 4
    assert df2.query("alpha == 0 and beta == 0").loss.item() == pytest.approx(loss, rel=1e-5)


def test_filter_normalized_direction():
    model, _, _ = problem("cnn")
    d = filter_normalized_direction(model, seed=3)
    for name, part in zip(select_parameters(model), d.split([p.numel() for p in model.parameters()])):
        theta = dict(model.named_parameters())[name].detach().double()
        if theta.ndim == 1:
            assert (part == 0).all()
        else:
            rows = part.view(theta.shape[0], -1).norm(dim=1)
            torch.testing.assert_close(rows, theta.reshape(theta.shape[0], -1).norm(dim=1))
    assert not torch.equal(d, filter_normalized_direction(model, seed=4))
    assert filter_normalized_direction(model, params="classifier").numel() == 16 * 3 + 3


def test_landscape_quadratic_on_linear_model():
    """For a linear model with MSE loss, L(θ + αd + βe) is exactly the second-order Taylor polynomial."""
    torch.manual_seed(0)
    model = nn.Linear(4, 2).double()
    X, Y = torch.randn(N, 4, dtype=torch.float64), torch.randn(N, 2, dtype=torch.float64)
    data = batches(X, Y)
    d, e = torch.randn(10, dtype=torch.float64), torch.randn(10, dtype=torch.float64)
    params = list(model.parameters())
    g = flatten(torch.autograd.grad(F.mse_loss(model(X), Y), params))
    H = exact_hessian(model, data, loss_fn=F.mse_loss)
    L0 = F.mse_loss(model(X), Y).item()
    alphas = [-1.0, 0.0, 0.5, 2.0]
    df = landscape_1d(model, data, d, alphas, loss_fn=F.mse_loss, dtype=torch.float64)
    expected = [L0 + a * g @ d + a**2 / 2 * d @ H @ d for a in alphas]
    torch.testing.assert_close(torch.tensor(df.loss.values), torch.stack(expected), rtol=1e-10, atol=1e-12)
    df2 = landscape_2d(model, data, d, e, [1.0], [-0.5], loss_fn=F.mse_loss, dtype=torch.float64)
    u = d - 0.5 * e
    assert df2.loss.item() == pytest.approx(float(L0 + g @ u + u @ H @ u / 2), rel=1e-10)


# ---------------------------------------------------------------- no side effects

def _snapshot(model: nn.Module) -> dict:
    return {
        "params": {n: p.detach().clone() for n, p in model.named_parameters()},
        "grads": {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "dtypes": {n: p.dtype for n, p in model.state_dict().items()},
        "training": {n: m.training for n, m in model.named_modules()},
        "track": {n: m.track_running_stats for n, m in model.named_modules() if hasattr(m, "track_running_stats")},
        "buffers": {n: b.clone() for n, b in model.named_buffers()},
    }


def _assert_same(before: dict, after: dict) -> None:
    assert before.keys() == after.keys()
    for key in before:
        assert before[key].keys() == after[key].keys(), key
        for name, a in before[key].items():
            b = after[key][name]
            if isinstance(a, torch.Tensor):
                assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), (key, name)
            else:
                assert a == b, (key, name)


@pytest.mark.parametrize("start_training", [False, True])
def test_no_side_effects(start_training):
    model, X, Y = problem("cnn_bn")
    model.train(start_training)
    model.features[1].train(not start_training)  # mixed flags must come back exactly
    model.features[3].weight.requires_grad_(False)
    F.cross_entropy(model(X), Y).backward()  # .grad tensors on some params, None on the frozen one
    model.classifier.bias.grad = None
    before = _snapshot(model)
    data = batches(X, Y)
    for bn_mode in ["eval", "train"]:
        for method in ["forward-over-reverse", "double-backward"]:
            H = HessianOperator(model, data, bn_mode=bn_mode, method=method, dtype=torch.float64)
            H @ torch.randn(H.dim, dtype=torch.float64)
        lanczos(HessianOperator(model, data, bn_mode=bn_mode), k=2, num_iters=5)
        hutchinson_trace(HessianOperator(model, data, bn_mode=bn_mode), num_samples=2)
        slq(HessianOperator(model, data, bn_mode=bn_mode, params="classifier"), num_iters=3)
        exact_hessian(model, data, bn_mode=bn_mode, params="features.1")
        d = filter_normalized_direction(model)
        landscape_1d(model, data, d, [0.0, 1.0], bn_mode=bn_mode)
        landscape_2d(model, data, d, d, [1.0], [1.0], bn_mode=bn_mode)
    _assert_same(before, _snapshot(model))


# ---------------------------------------------------------------- cross-checks with other libraries

def _eval_cnn() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    model, X, Y = problem("cnn_bn")
    return model.double().eval(), X.double(), Y


def test_against_pyhessian():
    pyhessian = pytest.importorskip("pyhessian")
    model, X, Y = _eval_cnn()
    data = batches(X, Y)
    H_exact = exact("cnn_bn", None, "eval")
    lam_max, tr = torch.linalg.eigvalsh(H_exact)[-1].item(), torch.trace(H_exact).item()
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # PyHessian draws its vectors in the default dtype
    try:
        torch.manual_seed(0)
        ph = pyhessian.hessian(copy.deepcopy(model), nn.CrossEntropyLoss(), dataloader=data, cuda=False)
        (ph_top,), _ = ph.eigenvalues(maxIter=400, tol=1e-10)
        ph_samples = torch.tensor(ph.trace(maxIter=100, tol=-float("inf")))
    finally:
        torch.set_default_dtype(default)
    ours = lanczos(HessianOperator(model, data, dtype=torch.float64), tol=1e-10, num_iters=300).eigenvalues[0].item()
    assert ph_top == pytest.approx(lam_max, rel=1e-4) and ours == pytest.approx(lam_max, rel=1e-8)
    ph_se = ph_samples.std().item() / len(ph_samples) ** 0.5
    ours_tr = hutchinson_trace(HessianOperator(model, data, dtype=torch.float64), num_samples=100)
    assert abs(ph_samples.mean().item() - tr) <= 3 * ph_se and abs(ours_tr.value - tr) <= 3 * ours_tr.stderr
    assert abs(ph_samples.mean().item() - tr) <= 0.01 * abs(tr) + 3 * ph_se


class _External(LinearOperator):
    """Another library's Hessian operator seen through our interface, to run the same estimators on it."""

    def __init__(self, H, dim: int):
        super().__init__(dim, torch.float64, "cpu")
        self.H = H

    def _matmat(self, M: torch.Tensor) -> torch.Tensor:
        return self.H @ M


def test_against_curvlinops():
    curvlinops = pytest.importorskip("curvlinops")
    model, X, Y = _eval_cnn()
    data = batches(X, Y)
    params = [p for p in model.parameters() if p.requires_grad]
    H_cl = curvlinops.HessianLinearOperator(model, nn.CrossEntropyLoss(), params, data, check_deterministic=False)
    ours = HessianOperator(model, data, dtype=torch.float64)
    theirs = _External(H_cl, ours.dim)
    V = torch.randn(ours.dim, 4, dtype=torch.float64)
    torch.testing.assert_close(ours @ V, theirs @ V, rtol=1e-9, atol=1e-11)
    top_ours, top_theirs = (lanczos(A, tol=1e-6).eigenvalues[0].item() for A in (ours, theirs))
    assert top_ours == pytest.approx(top_theirs, rel=0.01)
    tr_ours, tr_theirs = (hutchinson_trace(A, num_samples=20).value for A in (ours, theirs))
    assert tr_ours == pytest.approx(tr_theirs, rel=0.01)  # same seed: same probe vectors
