"""Sharpness, Fisher, scale-aware and baseline measures at a model's final weights: one small function each.

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

PoF's classifier-space measures are in ``flatlib.measures.classifier``; the reparameterisations for
the invariance check in ``flatlib.measures.reparam``; ``measure_all`` in ``flatlib.measures``.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import vmap

from flatlib._checks import finite_floats
from flatlib._torch import bn_mode, functional_loss
from flatlib.curvature import HessianOperator, frobenius_norm_sq, hutchpp_trace, lanczos
from flatlib.fisher import fim_metrics

Data = tuple[Tensor, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]


# ------------------------------------------------------------------------------------------ helpers
def _params(model: nn.Module) -> dict[str, Tensor]:
    """Detached parameters (no copy): the point w at which a measure is taken."""
    return {n: p.detach() for n, p in model.named_parameters()}


def _functional_loss(model: nn.Module, data: Data, loss_fn: LossFn | None = None) -> Callable[[dict[str, Tensor]], Tensor]:
    """w ↦ mean loss over ``data`` (``flatlib._torch.functional_loss`` on cloned buffers); call it inside
    ``bn_mode(model, "eval")``."""
    x, y = data
    loss = functional_loss(model, loss_fn)
    return lambda w: loss(w, x, y)


def _hessian(model: nn.Module, data: Data, params: str | None = None, loss_fn: LossFn | None = None) -> HessianOperator:
    return HessianOperator(model, data, loss_fn=loss_fn, params=params, bn_mode="eval",
                           dtype=next(model.parameters()).dtype)


# ------------------------------------------------------------------------------------ curvature (FF)
@finite_floats
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


# ------------------------------------------------------------------------------------------ scale-aware
@finite_floats
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
    with bn_mode(model, "eval"):
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


@finite_floats
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
    with torch.no_grad(), bn_mode(model, "eval"):
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
@finite_floats
def output_margin(model: nn.Module, data: Data, *, quantile: float = 0.1) -> float:
    """The ``quantile`` (10th percentile) over ``data`` of the logit margin f_y(x) − max_{j≠y} f_j(x) (BN eval).

    A low quantile rather than the minimum, as in Jiang et al. (2020), so one outlier does not decide it.
    """
    x, y = data
    with torch.no_grad(), bn_mode(model, "eval"):
        z = model(x).double()
    true = z.gather(1, y[:, None])[:, 0]
    other = z.scatter(1, y[:, None], -math.inf).amax(1)
    return float(torch.quantile(true - other, quantile))


