"""PoF: post-training of the feature extractor (Sato, Yamada, Tanaka, Inoue & Kawakami, ICML 2022, Algorithm 1).

The classifier θ₀ of an already trained model stays fixed; only the feature extractor φ learns.
Each step:

1. draw a weak-classifier mini-batch B; with its features F_φ(B) held fixed, take the classifier
   gradient g = ∂L_B/∂θ at θ₀ and line-search ξ*_B = argmin_{ξ≥0} L_B(φ, θ₀ − ξ ĝ), ĝ = g/‖g‖ (Eq. 2–3);
2. draw γ (uniform on [0, γ_max] by default);
3. on the step's training batch B̃ (an independent draw), update φ with the gradient of
   L_B̃(φ, θ₀ − γ ξ*_B ĝ), with ∂ĝ/∂φ := 0 (Eq. 5).

The line search follows the official code (DensoITLab/PoF-v1): in units of the raw gradient, the step
t (ξ = t‖g‖) doubles from ``init_step`` until L_B rises above L_B(θ₀); a 16-point grid on (0, t]
then gives the argmin. If the loss never rises before ``cap`` the landscape is one-sided and the step
is rejected (no perturbation). The ladder and the grids of every possible bracket end are evaluated
in one broadcast and selected on the device (for a Linear classifier the logits along the line are
z₀ − t·(F Gᵀ + g_b), so the broadcast costs two (N, K) tensors). A golden-section search on (0, t] is
the alternative. Neither makes a host synchronisation (``tests/test_host_syncs.py``), so a PoF step
costs one extra feature forward pass (under no_grad) plus classifier-sized work.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from flatlib.rules import StepContext, UpdateRule, register_rule
from flatlib.sam import bn_stats_frozen

LINE_SEARCHES = ("doubling", "golden")
GAMMAS = ("uniform", "fixed", "linear")


@dataclass
class LineSearchResult:
    """``step``: the argmin t* (0 when rejected); ``rejected``: no loss rise up to the cap; ``upper``: the bracket end."""

    step: Tensor
    rejected: Tensor
    upper: Tensor


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


def _at_least_f32(t: Tensor) -> Tensor:
    return t.to(torch.promote_types(t.dtype, torch.float32))


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


@register_rule("pof")
class PoFRule(UpdateRule):
    """Algorithm 1 of the PoF paper as an update rule; the optimizer owns only ``model.features``.

    Args:
        search_batch_size: size of the weak-classifier batch B (paper text: 32; official code: 256).
        line_search: ``"doubling"`` (official: doubling + ``grid``-point grid) or ``"golden"``.
        init_step, cap, grid: line-search settings in units of the raw gradient (official: 1, 1e4, 16).
        gamma: ``"uniform"`` on [0, gamma_max] (paper), ``"fixed"`` at gamma_max, or ``"linear"``
            from 0 to gamma_max over ``gamma_ramp_steps`` steps.
        classifier_lr: > 0 adds the paper's drift remedy, an SGD step on θ₀ after each φ update.

    Logs per step: ``pof_xi`` (ξ*_B), ``pof_gamma``, ``pof_perturbation`` (‖γ ξ*_B ĝ‖),
    ``pof_rejected`` (1 when the line search found no loss rise) and ``pof_perturbed_loss``.
    The returned loss is L_B̃ at the unperturbed (φ, θ₀).
    """

    def __init__(self, search_batch_size: int = 256, line_search: str = "doubling", init_step: float = 1.0,
                 cap: float = 1e4, grid: int = 16, gamma: str = "uniform", gamma_max: float = 2.0,
                 gamma_ramp_steps: int = 1000, classifier_lr: float = 0.0) -> None:
        if line_search not in LINE_SEARCHES:
            raise ValueError(f"line_search={line_search!r}; choose from: {', '.join(LINE_SEARCHES)}")
        if gamma not in GAMMAS:
            raise ValueError(f"gamma={gamma!r}; choose from: {', '.join(GAMMAS)}")
        if search_batch_size < 1 or grid < 1 or init_step <= 0 or cap <= init_step or gamma_max < 0:
            raise ValueError("need search_batch_size >= 1, grid >= 1, 0 < init_step < cap and gamma_max >= 0")
        self.search_batch_size, self.gamma, self.gamma_max = int(search_batch_size), gamma, float(gamma_max)
        self.gamma_ramp_steps, self.classifier_lr = int(gamma_ramp_steps), float(classifier_lr)
        self.search = dict(method=line_search, init_step=float(init_step), cap=float(cap), grid=int(grid))

    def trainable(self, model: nn.Module) -> Iterator[nn.Parameter]:
        return (p for p in model.features.parameters() if p.requires_grad)

    def draw_gamma(self, step: int, device: torch.device) -> Tensor:
        if self.gamma == "uniform":
            return self.gamma_max * torch.rand((), device=device)
        ramp = min(1.0, step / max(self.gamma_ramp_steps, 1)) if self.gamma == "linear" else 1.0
        return torch.tensor(self.gamma_max * ramp, device=device)

    def search_batch(self, ctx: StepContext) -> tuple[Tensor, Tensor]:
        """B: ``search_batch_size`` samples from fresh ``ctx.draw_batch()`` draws (independent of B̃)."""
        xs, ys, n = [], [], 0
        while n < self.search_batch_size:
            x, y = ctx.draw_batch()
            xs.append(x)
            ys.append(y)
            n += len(y)
        return torch.cat(xs)[: self.search_batch_size], torch.cat(ys)[: self.search_batch_size]

    def step(self, ctx: StepContext, x: Tensor, y: Tensor) -> Tensor:
        model = ctx.model
        theta0 = classifier_params(model)
        xb, yb = self.search_batch(ctx)
        with torch.no_grad(), bn_stats_frozen(model), ctx.autocast():
            fb = model.features(xb)
        theta32 = {k: _at_least_f32(v) for k, v in theta0.items()}  # the search runs outside autocast
        res, g, gnorm = minibatch_line_search(model, ctx.criterion, _at_least_f32(fb), yb, theta32, **self.search)
        gamma = self.draw_gamma(ctx.step, fb.device)
        coef = gamma * res.step  # perturbation θ₀ − coef · g; zero when rejected
        perturbed = {k: (theta32[k] - coef * g[k]).to(theta0[k].dtype) for k in theta0}

        ctx.optimizer.zero_grad(set_to_none=True)
        with ctx.autocast():
            f = model.features(x)
            loss_pert = ctx.criterion(functional_call(model.classifier, perturbed, (f,)), y)
        loss_pert.backward()
        ctx.optimizer.step()
        with torch.no_grad(), ctx.autocast():
            loss = ctx.criterion(model.classifier(f.detach()), y)
        if self.classifier_lr > 0:
            self.classifier_step(ctx, x, y)

        xi = res.step * gnorm
        ctx.log("pof_xi", xi)
        ctx.log("pof_gamma", gamma)
        ctx.log("pof_perturbation", gamma * xi)
        ctx.log("pof_rejected", res.rejected.float())
        ctx.log("pof_perturbed_loss", loss_pert.detach())
        return loss.detach()

    def classifier_step(self, ctx: StepContext, x: Tensor, y: Tensor) -> None:
        """The drift remedy: θ₀ ← θ₀ − lr ∂L_B̃/∂θ at the updated φ (features fixed, BN statistics untouched)."""
        model = ctx.model
        with torch.no_grad(), bn_stats_frozen(model), ctx.autocast():
            f = _at_least_f32(model.features(x))
        params = dict(model.classifier.named_parameters())
        g = grad(lambda th: ctx.criterion(functional_call(model.classifier, th, (f,)), y))(
            {k: _at_least_f32(p.detach()) for k, p in params.items()})
        with torch.no_grad():
            for k, p in params.items():
                p.sub_(self.classifier_lr * g[k].to(p.dtype))


@register_rule("classifier")
class ClassifierRule(UpdateRule):
    """Fine-tune only the classifier on fixed features (POF-X1): the optimizer owns ``model.classifier``.

    The feature extractor runs in eval mode under no_grad, so φ — BN statistics included — is unchanged.
    """

    def trainable(self, model: nn.Module) -> Iterator[nn.Parameter]:
        return (p for p in model.classifier.parameters() if p.requires_grad)

    def step(self, ctx: StepContext, x: Tensor, y: Tensor) -> Tensor:
        features = ctx.model.features
        was = features.training
        features.eval()
        try:
            with torch.no_grad(), ctx.autocast():
                f = features(x)
        finally:
            features.train(was)
        ctx.optimizer.zero_grad(set_to_none=True)
        with ctx.autocast():
            loss = ctx.criterion(ctx.model.classifier(f), y)
        loss.backward()
        ctx.optimizer.step()
        return loss.detach()
