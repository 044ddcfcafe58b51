"""PoF's classifier-space measurements (Sato et al., ICML 2022): the line search of Eq. 2–3, ξ*_B and ΔL.

The same line search drives PoF's update rule (``flatlib.train.rules.pof``), which imports it from here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from flatlib._checks import finite_floats
from flatlib._torch import bn_mode
from flatlib.curvature import lanczos, landscape_1d
from flatlib.measures.sharpness import Data, _hessian

LINE_SEARCHES = ("doubling", "golden")


@dataclass
class LineSearchResult:
    """``step``: the argmin t* (0 when rejected); ``rejected``: no loss rise up to the cap; ``upper``: the bracket end."""

    step: Tensor
    rejected: Tensor
    upper: Tensor


@finite_floats
def line_search(loss_at: Callable[[Tensor], Tensor], loss0: Tensor, *, method: str = "doubling",
                init_step: float = 1.0, cap: float = 1e4, grid: int = 16, golden_iters: int = 24) -> LineSearchResult:
    """Minimise a 1-D function f(t), t ≥ 0, with f(0) = ``loss0``, the official PoF way.

    ``loss_at`` maps a 1-D tensor of steps to the 1-D tensor of losses. Bracketing: on the ladder
    init_step·2^k below ``cap`` the first step with f > f(0) is the bracket end (the sequential
    doubling of the official code stops at the same point). Then ``"doubling"`` takes the argmin
    of the grid t_i = i·upper/grid, i = 1..grid (resolution upper/grid), and ``"golden"`` runs
    ``golden_iters`` golden-section iterations on [0, upper] (resolution 0.618^iters·upper).
    Without any rise the search is rejected and ``step`` is 0.

    ``"doubling"`` calls ``loss_at`` once, on the ladder and on the grids of every possible bracket
    end (n + n·grid candidates, n = ⌈log2(cap/init_step)⌉), and selects the bracket and its grid
    point with tensor ops: one broadcast, no host synchronisation, no dependent second sweep.
    """
    if method not in LINE_SEARCHES:
        raise ValueError(f"unknown line search {method!r}; choose from: {', '.join(LINE_SEARCHES)}")
    n = max(1, math.ceil(math.log2(cap / init_step)))
    ladder = init_step * 2.0 ** torch.arange(n, dtype=loss0.dtype, device=loss0.device)
    if method == "doubling":
        # row k: the grid t_i = i·ladder[k]/grid, the grid that "doubling" searches if ladder[k] is the bracket end
        grids = ladder[:, None] * torch.arange(1, grid + 1, dtype=loss0.dtype, device=loss0.device) / grid
        losses = loss_at(torch.cat([ladder, grids.reshape(-1)]))
        ladder_loss, grid_loss = losses[:n], losses[n:].reshape(n, grid)
    else:
        ladder_loss = loss_at(ladder)
    rises = ladder_loss > loss0
    rejected = ~rises.any()
    first = rises.to(torch.uint8).argmax().reshape(1)  # first rise (index 0 if none; masked below)
    upper = ladder.index_select(0, first).squeeze(0)   # a tensor index: no .item()
    if method == "doubling":
        row = grid_loss.index_select(0, first).squeeze(0)
        best = grids.index_select(0, first).squeeze(0).gather(0, row.argmin().reshape(1)).squeeze(0)
    else:
        best = _golden(loss_at, upper, golden_iters)
    return LineSearchResult(torch.where(rejected, torch.zeros_like(best), best), rejected, upper)


def _golden(loss_at: Callable[[Tensor], Tensor], upper: Tensor, iters: int) -> Tensor:
    """Golden-section search for the minimum of a unimodal f on [0, upper], branch-free (tensor selects)."""
    r = (math.sqrt(5) - 1) / 2
    a, b = torch.zeros_like(upper), upper.clone()
    c, d = b - r * (b - a), a + r * (b - a)
    fc, fd = loss_at(torch.stack([c, d])).unbind()
    for _ in range(iters):
        left = fc < fd  # minimum in [a, d]
        a, b = torch.where(left, a, c), torch.where(left, d, b)
        new = torch.where(left, b - r * (b - a), a + r * (b - a))
        fnew = loss_at(new.reshape(1))[0]
        c, d, fc, fd = (torch.where(left, new, d), torch.where(left, c, new),
                        torch.where(left, fnew, fd), torch.where(left, fc, fnew))
    return (a + b) / 2



def classifier_params(model: nn.Module) -> dict[str, Tensor]:
    """The classifier's parameters θ as detached tensors (no copy)."""
    return {n: p.detach() for n, p in model.classifier.named_parameters()}


def minibatch_line_search(model: nn.Module, criterion: Callable[[Tensor, Tensor], Tensor], features: Tensor,
                          y: Tensor, theta0: dict[str, Tensor], **search) -> tuple[LineSearchResult, dict[str, Tensor], Tensor]:
    """Eq. 2–3 on one mini-batch with fixed ``features``: returns (search result, g = ∂L_B/∂θ at θ₀, ‖g‖).

    ξ*_B = result.step · ‖g‖, because the search runs along the raw gradient.
    """
    clf = model.classifier

    def loss(theta: dict[str, Tensor]) -> Tensor:
        return criterion(functional_call(clf, theta, (features,)), y)

    g = grad(loss)(theta0)
    gnorm = torch.linalg.vector_norm(torch.stack([v.norm() for v in g.values()]))

    if isinstance(clf, nn.Linear) and set(theta0) <= {"weight", "bias"}:
        # logits are affine in θ: z(t) = z₀ − t·(F Gᵀ + g_b), so every candidate is one broadcast of two (N, K) tensors
        z0 = functional_call(clf, theta0, (features,))
        dz = functional_call(clf, g, (features,)) if "bias" in g else features @ g["weight"].T

        def loss_along(t: Tensor) -> Tensor:
            return criterion(z0 - t * dz, y)
    else:
        def loss_along(t: Tensor) -> Tensor:
            return loss({k: theta0[k] - t * g[k] for k in theta0})

    result = line_search(vmap(loss_along), loss(theta0), **search)
    return result, g, gnorm


def _features(model: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad(), bn_mode(model, "eval"):
        return model.features(x)


@finite_floats
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
