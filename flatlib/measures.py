"""Generalisation measures at a model's final weights: one small function each, and ``measure_all``.

The three papers each test their own measure on their own models; this module puts every
measure behind one call so that the study chapter can test them all on the same population.
Every measure reads the model only (parameters, ``.grad``, ``requires_grad``, training flags and
BN buffers are bit-identical afterwards) and evaluates BatchNorm with its running statistics.

Curvature measures (FF, Keskar et al. 2017): the top eigenvalue λ1, trace and squared Frobenius
norm of the training-loss Hessian (``flatlib.curvature``). Fisher measures (FIM, Jia & Su 2020):
γ̂, tr F, λmax(JJᵀ)/N′ and input-Jacobian robustness (``flatlib.fisher``). PoF's classifier-space
quantities (Sato et al. 2022): the classifier block's λ1, the test-loss rise along its eigenvector
and the mean line-search step ξ*_B. Scale-aware measures: λ1·‖w‖², tr·‖w‖² (Tsuzuku et al.
2020, FF Sec. 5), adaptive worst-case sharpness (ASAM, Kwon et al. 2021) and PAC-Bayes flatness
(Jiang et al. 2020, "Fantastic generalization measures"), plain and magnitude-aware. Baselines:
‖w‖ and a low quantile of the output margin.

The section at the end builds function-preserving reparameterisations (layer rescaling under
ReLU, weight scaling before BatchNorm) for the invariance check.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap

from flatlib.curvature import HessianOperator, frobenius_norm_sq, hutchpp_trace, lanczos, landscape_1d
from flatlib.fisher import fim_metrics
from flatlib.fisher.jacobian import bn_mode_context
from flatlib.models.base import weight_layers
from flatlib.pof import minibatch_line_search

Data = tuple[Tensor, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]


# ------------------------------------------------------------------------------------------ helpers
def _params(model: nn.Module) -> dict[str, Tensor]:
    """Detached parameters (no copy): the point w at which a measure is taken."""
    return {n: p.detach() for n, p in model.named_parameters()}


def _functional_loss(model: nn.Module, data: Data, loss_fn: LossFn | None = None) -> Callable[[dict[str, Tensor]], Tensor]:
    """w ↦ mean loss over ``data`` with BN in eval mode; call it inside ``bn_mode_context(model, "eval")``.

    Buffers are cloned, so nothing the forward pass does reaches the model.
    """
    x, y = data
    loss_fn = loss_fn or F.cross_entropy
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}

    def loss(w: dict[str, Tensor]) -> Tensor:
        return loss_fn(functional_call(model, {**w, **buffers}, (x,)), y)

    return loss


def weight_norm(model: nn.Module) -> float:
    """‖w‖₂ over all parameters (BN affine parameters included)."""
    return float(torch.sqrt(sum((p.detach().double() ** 2).sum() for p in model.parameters())))


def _hessian(model: nn.Module, data: Data, params: str | None = None, loss_fn: LossFn | None = None) -> HessianOperator:
    return HessianOperator(model, data, loss_fn=loss_fn, params=params, bn_mode="eval",
                           dtype=next(model.parameters()).dtype)


# ------------------------------------------------------------------------------------ curvature (FF)
def hessian_lambda1(model: nn.Module, data: Data, *, num_iters: int = 20, tol: float = 1e-3, seed: int = 0,
                    loss_fn: LossFn | None = None) -> float:
    """λ1(∇²L): the top Hessian eigenvalue of the mean training loss on ``data`` (Lanczos, BN eval).

    The classic sharpness of Keskar et al. (2017) and FF's Figs. 1-8. Lanczos stops at residual
    ``tol``·λ1 or after ``num_iters`` products.
    """
    return float(lanczos(_hessian(model, data, loss_fn=loss_fn), k=1, num_iters=num_iters, tol=tol,
                         seed=seed).eigenvalues[0])


def hessian_trace(model: nn.Module, data: Data, *, num_matvecs: int = 30, seed: int = 0,
                  loss_fn: LossFn | None = None) -> float:
    """tr(∇²L) by Hutch++ (Meyer et al. 2021) with ``num_matvecs`` Hessian-vector products (BN eval)."""
    return hutchpp_trace(_hessian(model, data, loss_fn=loss_fn), num_matvecs, seed=seed).value


def hessian_frobenius_sq(model: nn.Module, data: Data, *, num_samples: int = 20, seed: int = 0,
                         loss_fn: LossFn | None = None) -> float:
    """‖∇²L‖²_F = tr(H²) = E‖Hz‖² (Hutchinson, Rademacher z), FF's "Frobenius" flatness (BN eval)."""
    return frobenius_norm_sq(_hessian(model, data, loss_fn=loss_fn), num_samples, seed=seed).value


# ------------------------------------------------------------------------------------------ Fisher (FIM)
def fisher_measures(model: nn.Module, data: Data, *, n_prime: int = 50, num_subsets: int = 5,
                    seed: int = 0) -> dict[str, float]:
    """FIM's four metrics over T subsets of N′ training points (``flatlib.fisher.fim_metrics``, BN eval):

    ``log_det`` γ̂ = (1/T) Σ_t ln|J_t J_tᵀ| (FIM Eq. 6), ``fisher_trace`` tr F = ‖J_t‖²_F/N′,
    ``spectral_radius`` λmax(J_t J_tᵀ)/N′ and ``robustness`` mean ‖∂f(x)/∂x‖²_F (Sokolić et al. 2017).
    """
    est = fim_metrics(model, *data, n_prime=n_prime, num_subsets=num_subsets, seed=seed,
                      metrics=("log_det", "fisher_trace", "spectral_radius", "robustness"))
    return {k: e.value for k, e in est.items()}


# ------------------------------------------------------------------------------------------ PoF
def _features(model: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad(), bn_mode_context(model, "eval"):
        return model.features(x)


def classifier_delta_l(model: nn.Module, train: Data, test: Data, *, step: float = 0.1, num_iters: int = 20,
                       tol: float = 1e-3, seed: int = 0) -> dict[str, float]:
    """PoF's final-layer sharpness (POF-F1c, Fig. 1): ``clf_lambda1`` and ``delta_l``.

    v₁ is the top eigenvector of the classifier block of the training-loss Hessian (Lanczos,
    features fixed, BN eval), λ1 its eigenvalue, and

        ΔL = ½ [L_test(θ + αv₁) + L_test(θ − αv₁)] − L_test(θ),   α = ``step`` · ‖θ‖,

    the mean test-loss rise one step along ±v₁ (the sign of v₁ is arbitrary). The step is
    relative to the classifier's norm θ so that it means the same for small and large
    classifiers; 0.1 moves the classifier by a tenth of its length.
    """
    H = _hessian(model, train, params="classifier")
    top = lanczos(H, k=1, num_iters=num_iters, tol=tol, seed=seed)
    theta_norm = float(torch.sqrt(sum((p.detach().double() ** 2).sum() for p in model.classifier.parameters())))
    alpha = step * theta_norm
    s = landscape_1d(model, {"test": test}, top.eigenvectors[:, 0], [-alpha, 0.0, alpha], params="classifier",
                     dtype=H.dtype).set_index("alpha")["loss"]
    return {"clf_lambda1": float(top.eigenvalues[0]), "delta_l": float(0.5 * (s[-alpha] + s[alpha]) - s[0.0])}


def mean_xi(model: nn.Module, data: Data, *, batch_size: int = 32, num_batches: int = 10, seed: int = 0) -> float:
    """Mean over random training mini-batches B of PoF's ξ*_B (Eq. 2-3, the official doubling + grid search).

    ξ*_B = argmin_{ξ≥0} L_B(φ, θ − ξ ĝ), ĝ = ∂L_B/∂θ / ‖∂L_B/∂θ‖, on fixed eval-mode features; a
    rejected search (no loss rise up to the cap) counts as 0, as in PoF's training rule.
    """
    x, y = data
    f = _features(model, x)
    theta = {n: p.detach() for n, p in model.classifier.named_parameters()}
    g = torch.Generator().manual_seed(seed)
    xis = []
    for _ in range(num_batches):
        idx = torch.randperm(len(y), generator=g)[:batch_size].to(y.device)
        res, _, gnorm = minibatch_line_search(model, F.cross_entropy, f[idx], y[idx], theta)
        xis.append(float(res.step * gnorm))
    return sum(xis) / len(xis)


# ------------------------------------------------------------------------------------------ scale-aware
def adaptive_sharpness(model: nn.Module, data: Data, *, rho: float = 0.5, steps: int = 5, seed: int = 0,
                       loss_fn: LossFn | None = None) -> float:
    """Adaptive worst-case sharpness (ASAM, Kwon et al. 2021): max_{‖T_w⁻¹ε‖₂ ≤ ρ} L(w + ε) − L(w), T_w = diag|w|.

    With ε = T_w δ the constraint is the ball ‖δ‖ ≤ ρ. Start at ASAM's step δ₀ = ρ T_w∇L/‖T_w∇L‖
    (a seeded random direction if the gradient vanishes), then ``steps`` projected ascent steps
    δ ← Π_ρ(δ + ρ ĝ), ĝ the normalised ∇_δ L(w + T_w δ) = T_w ∇L(w + T_w δ); returns the largest
    loss rise seen. Scaling a weight and the inverse scaling elsewhere leaves T_w δ, hence the
    value, unchanged (the measure's point).
    """
    w = _params(model)
    scale = {k: v.abs() for k, v in w.items()}
    with bn_mode_context(model, "eval"):
        loss = _functional_loss(model, data, loss_fn)
        base = float(loss(w))

        def ascent_direction(delta: dict[str, Tensor]) -> tuple[float, dict[str, Tensor]]:
            leaves = {k: (w[k] + scale[k] * delta[k]).requires_grad_() for k in w}
            with torch.enable_grad():
                value = loss(leaves)
                grads = torch.autograd.grad(value, list(leaves.values()))
            return float(value.detach()), {k: scale[k] * gk for k, gk in zip(leaves, grads)}

        def normalised(d: dict[str, Tensor]) -> dict[str, Tensor] | None:
            n = torch.sqrt(sum((v.double() ** 2).sum() for v in d.values()))
            return None if float(n) == 0.0 else {k: v / n.to(v.dtype) for k, v in d.items()}

        _, g = ascent_direction({k: torch.zeros_like(v) for k, v in w.items()})
        u = normalised(g)
        if u is None:
            gen = torch.Generator().manual_seed(seed)
            u = normalised({k: torch.randn(v.shape, generator=gen, dtype=v.dtype).to(v.device) for k, v in w.items()})
        delta = {k: rho * v for k, v in u.items()}
        best = -math.inf
        for _ in range(steps + 1):
            value, g = ascent_direction(delta)
            best = max(best, value - base)
            u = normalised(g)
            if u is None:
                break
            step = {k: delta[k] + rho * u[k] for k in w}
            n = float(torch.sqrt(sum((v.double() ** 2).sum() for v in step.values())))
            delta = {k: v * min(1.0, rho / n) for k, v in step.items()}
    return best


def pac_bayes_sigma(model: nn.Module, data: Data, *, threshold: float = 0.1, num_samples: int = 8, iters: int = 15,
                    magnitude_aware: bool = False, sigma_init: float = 0.01, seed: int = 0,
                    loss_fn: LossFn | None = None, chunk: int = 16) -> float:
    """PAC-Bayes flatness (Jiang et al. 2020, Sec. C): the largest σ with E_u[L(w + u)] − L(w) ≤ ``threshold``.

    u ~ N(0, σ²I) (``pacbayes.flatness``), or u_i ~ N(0, σ²w_i²) with ``magnitude_aware``
    (``pacbayes.mag.flatness``). The expectation is a Monte-Carlo mean over ``num_samples``
    standard-normal draws z that are the same for every σ (common random numbers, so the
    estimated rise is a smooth function of σ). σ is bracketed by doubling from ``sigma_init``
    and then bisected ``iters`` times; the lower end — a σ verified to satisfy the bound — is
    returned. Jiang et al. report 1/σ²; larger σ is flatter. The draws are evaluated ``chunk`` at a time (vmap).
    """
    w = _params(model)
    gen = torch.Generator().manual_seed(seed)
    z = {k: torch.randn((num_samples, *v.shape), generator=gen, dtype=v.dtype).to(v.device)
         * (v.abs() if magnitude_aware else 1) for k, v in w.items()}
    with torch.no_grad(), bn_mode_context(model, "eval"):
        loss = _functional_loss(model, data, loss_fn)
        base = float(loss(w))
        batched = vmap(loss)

        def rise(sigma: float) -> float:
            total = sum(float(batched({k: w[k] + sigma * z[k][i:i + chunk] for k in w}).sum())
                        for i in range(0, num_samples, chunk))
            return total / num_samples - base

        lo, hi = 0.0, sigma_init
        for _ in range(60):  # bracket: rise(lo) ≤ threshold < rise(hi)
            if rise(hi) > threshold:
                break
            lo, hi = hi, 2 * hi
        else:
            return math.inf
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if rise(mid) <= threshold else (lo, mid)
    return lo


# ------------------------------------------------------------------------------------------ baselines
def output_margin(model: nn.Module, data: Data, *, quantile: float = 0.1) -> float:
    """The ``quantile`` (10th percentile) over ``data`` of the logit margin f_y(x) − max_{j≠y} f_j(x) (BN eval).

    A low quantile rather than the minimum, as in Jiang et al. (2020), so one outlier does not decide it.
    """
    x, y = data
    with torch.no_grad(), bn_mode_context(model, "eval"):
        z = model(x).double()
    true = z.gather(1, y[:, None])[:, 0]
    other = z.scatter(1, y[:, None], -math.inf).amax(1)
    return float(torch.quantile(true - other, quantile))


# ------------------------------------------------------------------------------------------ all at once
@dataclass(frozen=True)
class MeasureConfig:
    """Sample sizes of ``measure_all``; small by default (a few seconds for a small network)."""

    lanczos_iters: int = 20
    trace_matvecs: int = 30
    frobenius_samples: int = 20
    n_prime: int = 50
    num_subsets: int = 5
    delta_l_step: float = 0.1
    xi_batch_size: int = 32
    xi_batches: int = 10
    asam_rho: float = 0.5
    asam_steps: int = 5
    pac_threshold: float = 0.1
    pac_samples: int = 8
    pac_iters: int = 12
    margin_quantile: float = 0.1
    seed: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


MEASURES: dict[str, tuple[str, int]] = {
    "lambda1": ("Hessian λ1", +1),
    "trace": ("Hessian trace", +1),
    "frobenius": ("Hessian ‖H‖²_F", +1),
    "log_det": ("γ̂ (Fisher log det)", +1),
    "fisher_trace": ("Fisher trace", +1),
    "spectral_radius": ("λmax(JJᵀ)/N′", +1),
    "robustness": ("robustness ‖∂f/∂x‖²", +1),
    "clf_lambda1": ("classifier λ1 (PoF)", +1),
    "delta_l": ("classifier ΔL (PoF)", +1),
    "xi": ("mean ξ*_B (PoF)", -1),
    "lambda1_wnorm": ("λ1·‖w‖²", +1),
    "trace_wnorm": ("trace·‖w‖²", +1),
    "asam": ("adaptive sharpness", +1),
    "pac_sigma": ("PAC-Bayes σ", -1),
    "pac_mag_sigma": ("PAC-Bayes σ (magnitude-aware)", -1),
    "weight_norm": ("‖w‖", +1),
    "margin": ("output margin (10th pct.)", -1),
}
"""Every measure ``measure_all`` returns: (label, expected sign). The sign is the direction its
proponents claim: +1 when a larger value should mean worse generalisation (a sharper or more
complex model), −1 when larger should mean better (flatter: a larger PAC-Bayes σ, a larger
line-search step ξ*_B along the batch gradient, a larger margin)."""


def measure_all(model: nn.Module, train: Data, test: Data, config: MeasureConfig = MeasureConfig(), *,
                dtype: torch.dtype = torch.float64) -> dict[str, float]:
    """Every measure of ``MEASURES`` at the model's current weights, as ``{name: value}``.

    ``train`` is a fixed subset of the (un-augmented, normalised) training set on which the
    curvature, Fisher, sharpness and margin measures are taken; ``test`` serves PoF's ΔL only.
    The measures run on a ``dtype`` copy of the model in eval mode: the model itself is untouched.
    """
    m = copy.deepcopy(model).to(dtype).eval()
    for p in m.parameters():  # curvature over every parameter, frozen ones included
        p.requires_grad_(True)
    device = next(m.parameters()).device  # measured where the model is (load_model: the run's device)
    train = (train[0].to(device=device, dtype=dtype), train[1].to(device))
    test = (test[0].to(device=device, dtype=dtype), test[1].to(device))
    c, s = config, config.seed
    out = {"lambda1": hessian_lambda1(m, train, num_iters=c.lanczos_iters, seed=s),
           "trace": hessian_trace(m, train, num_matvecs=c.trace_matvecs, seed=s),
           "frobenius": hessian_frobenius_sq(m, train, num_samples=c.frobenius_samples, seed=s)}
    out.update(fisher_measures(m, train, n_prime=min(c.n_prime, len(train[1])), num_subsets=c.num_subsets, seed=s))
    out.update(classifier_delta_l(m, train, test, step=c.delta_l_step, num_iters=c.lanczos_iters, seed=s))
    out["xi"] = mean_xi(m, train, batch_size=c.xi_batch_size, num_batches=c.xi_batches, seed=s)
    norm_sq = weight_norm(m) ** 2
    out["lambda1_wnorm"], out["trace_wnorm"] = out["lambda1"] * norm_sq, out["trace"] * norm_sq
    out["asam"] = adaptive_sharpness(m, train, rho=c.asam_rho, steps=c.asam_steps, seed=s)
    out["pac_sigma"] = pac_bayes_sigma(m, train, threshold=c.pac_threshold, num_samples=c.pac_samples,
                                       iters=c.pac_iters, seed=s)
    out["pac_mag_sigma"] = pac_bayes_sigma(m, train, threshold=c.pac_threshold, num_samples=c.pac_samples,
                                           iters=c.pac_iters, magnitude_aware=True, seed=s)
    out["weight_norm"] = math.sqrt(norm_sq)
    out["margin"] = output_margin(m, train, quantile=c.margin_quantile)
    return {k: out[k] for k in MEASURES}


# ------------------------------------------------------------------------------------------ reparameterisations
def rescale_layers(model: nn.Module, layer: int, alpha: float) -> nn.Module:
    """A copy computing the same function: weight layer ``layer`` (index into ``weight_layers``) and its bias
    are multiplied by α > 0 and the next weight layer's weight divided by α.

    Exact when only positively homogeneous maps (ReLU, max/average pooling, flatten) lie between
    the two layers, since relu(αz) = α relu(z) for α > 0 (Dinh et al. 2017, "Sharp minima can
    generalize for deep nets").
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    out = copy.deepcopy(model)
    layers = weight_layers(out)
    if not 0 <= layer < len(layers) - 1:
        raise ValueError(f"layer must be in [0, {len(layers) - 2}] for a model with {len(layers)} weight layers")
    first, second = layers[layer][1], layers[layer + 1][1]
    with torch.no_grad():
        first.weight.mul_(alpha)
        if first.bias is not None:
            first.bias.mul_(alpha)
        second.weight.div_(alpha)
    return out


def scale_before_batchnorm(model: nn.Module, alpha: float) -> nn.Module:
    """A copy computing the same function in eval mode: every weight layer that feeds a BatchNorm is scaled by α > 0.

    BN(αz) = BN(z) in train mode; in eval mode the running mean is scaled by α, the running
    variance by α² and ε by α², so (αz − αμ)/√(α²σ² + α²ε) is exactly the old normalised value.
    The weights then differ in norm while the function does not (the scale invariance behind
    "sharpness" changes under BN, e.g. van Laarhoven 2017).
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    out = copy.deepcopy(model)
    modules = [m for m in out.modules() if not list(m.children())]
    scaled = 0
    with torch.no_grad():
        for prev, bn in zip(modules, modules[1:]):
            if isinstance(bn, nn.modules.batchnorm._BatchNorm) and isinstance(prev, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                prev.weight.mul_(alpha)
                if prev.bias is not None:
                    prev.bias.mul_(alpha)
                bn.running_mean.mul_(alpha)
                bn.running_var.mul_(alpha ** 2)
                bn.eps *= alpha ** 2
                scaled += 1
    if not scaled:
        raise ValueError("the model has no weight layer directly followed by a BatchNorm layer")
    return out
