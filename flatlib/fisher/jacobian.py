"""Per-example loss gradients J ∈ R^{N×P}: the building block of the Fisher metrics (FIM Sec. 5.3).

Row i of J is ∇_w ℓ(f_w(x_i), y_i). Computed with torch.func (``vmap`` over ``grad`` of a
``functional_call``) on detached copies of the parameters, so the model is never touched:
parameters, ``.grad``, ``requires_grad``, training flags and BN buffers are bit-identical afterwards.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, jacrev, vmap

BNMode = Literal["eval", "train-chunks"]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

BN_CHUNK = 10
"""Examples per BatchNorm batch in ``bn_mode="train-chunks"`` (official InfoMCR code: 10 chunks of 10)."""


def select_params(model: nn.Module, params: Sequence[nn.Parameter | str] | None = None) -> list[str]:
    """Names of the parameters to differentiate: given objects or names, default all trainable ones."""
    named = dict(model.named_parameters())
    if params is None:
        return [n for n, p in named.items() if p.requires_grad]
    by_id = {id(p): n for n, p in named.items()}
    names = [p if isinstance(p, str) else by_id.get(id(p)) for p in params]
    unknown = [p for p, n in zip(params, names) if n is None or n not in named]
    if unknown:
        raise ValueError(f"{len(unknown)} of the given parameters do not belong to the model")
    return names


@contextlib.contextmanager
def bn_mode_context(model: nn.Module, bn_mode: BNMode) -> Iterator[None]:
    """Temporarily put the model in eval mode; with ``"train-chunks"`` BatchNorm layers (only) in train mode.

    Every module's ``training`` flag is restored on exit, whatever it was before.
    """
    if bn_mode not in ("eval", "train-chunks"):
        raise ValueError(f"bn_mode must be 'eval' or 'train-chunks', got {bn_mode!r}")
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        if bn_mode == "train-chunks":
            for m in model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.train()
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def detached_state(model: nn.Module, names: Sequence[str], dtype: torch.dtype | None
                   ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(differentiated params, everything else) as detached tensors for ``functional_call``.

    Buffers are cloned so that a train-mode BatchNorm updates the clones, never the model.
    Floating tensors are cast to ``dtype`` when given.
    """
    def cast(t: torch.Tensor) -> torch.Tensor:
        return t.to(dtype) if dtype is not None and t.is_floating_point() else t

    chosen = set(names)
    params = {n: cast(p.detach()) for n, p in model.named_parameters() if n in chosen}
    rest = {n: cast(p.detach()) for n, p in model.named_parameters() if n not in chosen}
    rest.update({n: cast(b.detach()).clone() for n, b in model.named_buffers()})
    return params, rest


def per_example_losses(loss_fn: LossFn, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Vector of ℓ(z_i, y_i), applying a mean-reduced ``loss_fn`` to one example at a time."""
    return vmap(lambda z, t: loss_fn(z.unsqueeze(0), t.unsqueeze(0)))(logits, y)


def default_chunk_size(n: int, num_params: int) -> int:
    """Examples per vmap call: keep the chunk's gradients around 2^25 numbers (128 MiB in float32)."""
    return max(1, min(n, 2**25 // max(num_params, 1)))


def per_sample_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                     params: Sequence[nn.Parameter | str] | None = None, bn_mode: BNMode = "eval",
                     loss_fn: LossFn | None = None, chunk_size: int | None = None,
                     dtype: torch.dtype | None = None) -> torch.Tensor:
    """Per-example gradients J (N, P) of ℓ(f_w(x_i), y_i) w.r.t. the chosen parameters, flattened in order.

    ``y``: int64 labels or float (N, C) soft targets; ``loss_fn(logits, y)`` is a mean-reduced loss,
    default ``F.cross_entropy`` (which accepts both). ``dtype`` casts parameters, buffers and
    floating inputs (e.g. ``torch.float64`` for exact checks).

    ``bn_mode="eval"`` (default): BatchNorm uses running statistics, so rows are independent and
    each is computed alone (vmap over examples, ``chunk_size`` examples per call).
    ``bn_mode="train-chunks"`` (official InfoMCR evaluation): BatchNorm in train mode on
    consecutive chunks of ``BN_CHUNK`` = 10 examples; row i is ∂ℓ_i/∂w where ℓ_i is example i's
    loss in the forward pass of its chunk, i.e. with the chunk's batch statistics (the Jacobian
    of the chunk's per-example loss vector, ``jacrev``). Running statistics are never updated.
    """
    names = select_params(model, params)
    loss_fn = loss_fn or F.cross_entropy
    if dtype is not None:
        x = x.to(dtype) if x.is_floating_point() else x
        y = y.to(dtype) if y.is_floating_point() else y
    with bn_mode_context(model, bn_mode):
        w, rest = detached_state(model, names, dtype)
        num_params = sum(t.numel() for t in w.values())

        def flat(g: dict[str, torch.Tensor], n: int) -> torch.Tensor:
            return torch.cat([g[k].reshape(n, -1) for k in names], dim=1)

        if bn_mode == "eval":
            def loss_one(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
                logits = functional_call(model, {**p, **rest}, (xi.unsqueeze(0),))
                return loss_fn(logits, yi.unsqueeze(0))

            step = chunk_size or default_chunk_size(len(x), num_params)
            grad_fn = vmap(grad(loss_one), in_dims=(None, 0, 0))
            rows = [flat(grad_fn(w, x[i:i + step], y[i:i + step]), len(x[i:i + step]))
                    for i in range(0, len(x), step)]
        else:
            def chunk_losses(p: dict[str, torch.Tensor], r: dict[str, torch.Tensor], xc: torch.Tensor,
                             yc: torch.Tensor) -> torch.Tensor:  # buffers passed in: BN updates them in place
                return per_example_losses(loss_fn, functional_call(model, {**p, **r}, (xc,)), yc)

            rows = [flat(jacrev(chunk_losses)(w, rest, x[i:i + BN_CHUNK], y[i:i + BN_CHUNK]), len(x[i:i + BN_CHUNK]))
                    for i in range(0, len(x), BN_CHUNK)]
    return torch.cat(rows, dim=0)
