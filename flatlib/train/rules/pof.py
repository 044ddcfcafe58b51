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

from typing import Iterator

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad

from flatlib._checks import finite_floats
from flatlib._torch import bn_stats_frozen
from flatlib.measures.classifier import LINE_SEARCHES, classifier_params, minibatch_line_search
from flatlib.train.rules.base import StepContext, UpdateRule

GAMMAS = ("uniform", "fixed", "linear")


def _at_least_f32(t: Tensor) -> Tensor:
    return t.to(torch.promote_types(t.dtype, torch.float32))


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

    name = "pof"

    @finite_floats
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


class ClassifierRule(UpdateRule):
    """Fine-tune only the classifier on fixed features (POF-X1): the optimizer owns ``model.classifier``.

    The feature extractor runs in eval mode under no_grad, so φ — BN statistics included — is unchanged.
    """

    name = "classifier"

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
