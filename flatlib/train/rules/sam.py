"""Sharpness-aware minimisation (Foret et al., ICLR 2021) and its adaptive variant ASAM (Kwon et al., 2021).

One SAM step on a batch B:

1. g = ∇L_B(w)  (loss gradient only: weight decay stays in the base optimizer);
2. ascend to w + e with e = ρ g / ‖g‖ (one global norm over all parameters with a gradient);
   ASAM: e = ρ T² g / ‖T g‖ with T = |w| + η on weights and T = 1 on biases;
3. g_SAM = ∇L_B(w + e), with BatchNorm running statistics frozen (they are updated by pass 1 only);
4. restore the exact old weights (a copy, not w + e − e, which is not bit-exact in floating point)
   and let the base optimizer step with g_SAM.

With ρ = 0 the second gradient is taken at the same weights on the same batch, so the step is the
base optimizer's step bit for bit (for models without dropout).
"""
from __future__ import annotations

import torch
from torch import nn

from flatlib._checks import finite_floats
from flatlib._torch import bn_stats_frozen
from flatlib.train.rules.base import StepContext, UpdateRule


class SAMRule(UpdateRule):
    """SAM (``adaptive=False``) or ASAM (``adaptive=True``) around the engine's base optimizer.

    Args:
        rho: ascent radius ρ (Foret et al.: 0.05; PoF uses 0.01 on SVHN; ASAM's paper uses 0.5 on CIFAR).
        adaptive: ASAM's scale-invariant ascent with T = |w| + η on parameters named ``*weight``.
        eta: ASAM's η.
    """

    name = "sam"
    cuda_graphs = True  # two model calls per step; each gets its own CUDA graph (BN frozen in the second)

    @finite_floats
    def __init__(self, rho: float = 0.05, adaptive: bool = False, eta: float = 0.01) -> None:
        if rho < 0:
            raise ValueError(f"rho must be >= 0, got {rho}")
        self.rho, self.adaptive, self.eta = float(rho), bool(adaptive), float(eta)

    def step(self, ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        opt = ctx.optimizer
        opt.zero_grad(set_to_none=True)
        loss = ctx.loss(x, y)
        loss.backward()
        named = [(n, p) for n, p in ctx.model.named_parameters() if p.grad is not None]
        params = [p for _, p in named]
        with torch.no_grad():
            e = self.ascent(named)
            old = [p.detach().clone() for p in params]
            torch._foreach_add_(params, e)
        opt.zero_grad(set_to_none=True)
        with bn_stats_frozen(ctx.model):
            ctx.loss(x, y).backward()
        with torch.no_grad():
            torch._foreach_copy_(params, old)
        opt.step()
        return loss.detach()

    def ascent(self, named: list[tuple[str, nn.Parameter]]) -> list[torch.Tensor]:
        """The perturbation e for each parameter, from the gradients currently in ``.grad``."""
        grads = [p.grad for _, p in named]
        if self.adaptive:
            scale = [p.detach().abs() + self.eta if n.endswith("weight") else torch.ones_like(p) for n, p in named]
            tg = torch._foreach_mul(grads, scale)
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tg)))
            e = torch._foreach_mul(tg, scale)
        else:
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
            e = [g.clone() for g in grads]
        torch._foreach_mul_(e, self.rho / (norm + 1e-12))
        return e
