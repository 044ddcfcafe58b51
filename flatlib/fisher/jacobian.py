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

from flatlib._torch import ParamSpec, bn_mode, check_batch_size, check_bn_mode, select_parameters

BNMode = Literal["eval", "train", "train-frozen-stats", "train-chunks"]
BN_MODES = ("eval", "train", "train-frozen-stats", "train-chunks")
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

BN_CHUNK = 10
"""Examples per BatchNorm batch in ``bn_mode="train-chunks"`` (official InfoMCR code: 10 chunks of 10)."""


def fisher_bn_mode(mode: str) -> str:
    """The BN mode for the Fisher metrics: ``"eval"`` or a train mode (``"train"``, ``"train-frozen-stats"``
    or ``"train-chunks"``, the name stored results use), all train modes computed on chunks of ``BN_CHUNK``."""
    check_bn_mode(mode, BN_MODES)
    return mode


@contextlib.contextmanager
def bn_mode_context(model: nn.Module, mode: str) -> Iterator[None]:
    """``flatlib._torch.bn_mode`` with the Fisher vocabulary: ``"train-chunks"`` is ``"train"``."""
    with bn_mode(model, "train" if mode == "train-chunks" else mode):
        yield


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
                     params: ParamSpec = None, bn_mode: BNMode = "eval",
                     loss_fn: LossFn | None = None, chunk_size: int | None = None,
                     dtype: torch.dtype | None = None) -> torch.Tensor:
    """Per-example gradients J (N, P) of ℓ(f_w(x_i), y_i) w.r.t. the chosen parameters, flattened in order.

    ``y``: int64 labels or float (N, C) soft targets; ``loss_fn(logits, y)`` is a mean-reduced loss,
    default ``F.cross_entropy`` (which accepts both). ``dtype`` casts parameters, buffers and
    floating inputs (e.g. ``torch.float64`` for exact checks).

    ``bn_mode="eval"`` (default): BatchNorm uses running statistics, so rows are independent and
    each is computed alone (vmap over examples, ``chunk_size`` examples per call).
    ``params``: as ``flatlib._torch.select_parameters`` (``None``, a submodule name such as ``"classifier"``,
    or a list of names or parameters).
    ``bn_mode="train"`` (alias ``"train-chunks"``, the official InfoMCR evaluation): BatchNorm in train mode on
    consecutive chunks of ``BN_CHUNK`` = 10 examples; row i is ∂ℓ_i/∂w where ℓ_i is example i's
    loss in the forward pass of its chunk, i.e. with the chunk's batch statistics (the Jacobian
    of the chunk's per-example loss vector, ``jacrev``). Running statistics are never updated.
    """
    fisher_bn_mode(bn_mode)
    names = select_parameters(model, params)
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
            for i in range(0, len(x), BN_CHUNK):
                check_batch_size(model, bn_mode, len(x[i:i + BN_CHUNK]), f"BatchNorm chunk {i // BN_CHUNK} (example {i})")

            def chunk_losses(p: dict[str, torch.Tensor], r: dict[str, torch.Tensor], xc: torch.Tensor,
                             yc: torch.Tensor) -> torch.Tensor:  # buffers passed in: BN updates them in place
                return per_example_losses(loss_fn, functional_call(model, {**p, **r}, (xc,)), yc)

            rows = [flat(jacrev(chunk_losses)(w, rest, x[i:i + BN_CHUNK], y[i:i + BN_CHUNK]), len(x[i:i + BN_CHUNK]))
                    for i in range(0, len(x), BN_CHUNK)]
    return torch.cat(rows, dim=0)
