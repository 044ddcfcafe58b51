"""Exact dense Hessians of small models, the reference every estimator is tested against."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from flatlib.curvature.functional import Data, FunctionalLoss, LossFn, ParamSpec, iterate_batches, unflatten


def exact_hessian(model: nn.Module, data: Data, *, loss_fn: LossFn | None = None, params: ParamSpec = None,
                  bn_mode: str = "eval", dtype: torch.dtype = torch.float64,
                  device: torch.device | str | None = None, batch_size: int | None = None) -> Tensor:
    """The ``(P, P)`` Hessian ``Σ_b (n_b/N) ∇²ℓ_b``, row by row with reverse-over-reverse autograd.

    Costs ``P`` backward passes per batch and ``P²`` memory: for models with at most a few
    thousand parameters. Same conventions, and no side effects, as :class:`HessianOperator`.
    Deliberately not ``torch.func.hessian``: its ``vmap`` over BatchNorm in batch-statistics
    mode returns wrong second derivatives (observed with torch 2.14; the un-vectorised
    products agree with finite differences).
    """
    loss = FunctionalLoss(model, loss_fn=loss_fn, params=params, bn_mode=bn_mode, dtype=dtype, device=device)
    theta = loss.theta_flat()
    total, count = torch.zeros(loss.dim, loss.dim, dtype=dtype, device=loss.device), 0
    with loss.modes():
        for i, (x, y) in enumerate(iterate_batches(data, batch_size)):
            x, y = loss.batch(x, y, i)
            H_b = torch.autograd.functional.hessian(lambda t: loss(unflatten(t, loss.theta), x, y), theta)
            total += y.shape[0] * H_b
            count += y.shape[0]
    return total / count
