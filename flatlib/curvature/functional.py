"""The dataset loss as a pure function of a chosen subset of a model's parameters.

Everything curvature-related is built on :class:`FunctionalLoss`: it snapshots (and casts)
the model's parameters and buffers once, and evaluates ``L(θ) = Σ_b (n_b/N) ℓ_b(θ)`` with
:func:`torch.func.functional_call`, so the user's module is never written to: its
parameters, ``.grad``, ``requires_grad`` and BN running statistics stay bit-identical.
Module mode flags (``training``, BN ``track_running_stats``) are switched only inside
:func:`eval_mode` (``flatlib._torch.bn_mode``) and always restored.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from flatlib._torch import ParamSpec, check_batch_size, check_bn_mode, model_dtype, select_parameters
from flatlib._torch import bn_mode as _bn_mode

Data = Iterable[tuple[Tensor, Tensor]] | tuple[Tensor, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]


def flatten(tensors: dict[str, Tensor] | Sequence[Tensor]) -> Tensor:
    """Concatenate tensors (in order) into one vector."""
    values = tensors.values() if isinstance(tensors, dict) else tensors
    return torch.cat([t.reshape(-1) for t in values])


def unflatten(vector: Tensor, like: dict[str, Tensor]) -> dict[str, Tensor]:
    """Split a flat vector into views shaped like the tensors of ``like``."""
    out, start = {}, 0
    for name, t in like.items():
        out[name] = vector[start:start + t.numel()].view_as(t)
        start += t.numel()
    if start != vector.numel():
        raise ValueError(f"vector has {vector.numel()} entries, parameters have {start}")
    return out


def iterate_batches(data: Data, batch_size: int | None = None) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(x, y)`` batches from a re-iterable of batches or from a tensor pair ``(X, Y)``.

    A tensor pair is one batch unless ``batch_size`` splits it into consecutive slices.
    """
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        X, Y = data
        step = X.shape[0] if batch_size is None else batch_size
        for i in range(0, X.shape[0], step):
            yield X[i:i + step], Y[i:i + step]
    else:
        if isinstance(data, Iterator):
            raise TypeError("data must be re-iterable (a list, DataLoader, ...), not a one-shot iterator")
        yield from data


def eval_mode(model: nn.Module, bn_mode: str = "eval") -> contextlib.AbstractContextManager:
    """Every module in eval mode, BatchNorm per ``bn_mode`` (``flatlib._torch.BN_MODES``); restored on exit.

    Any train mode evaluates BN with batch statistics and never touches a running statistic
    (``"train-frozen-stats"``): the estimators only read the model.
    """
    return _bn_mode(model, "eval" if check_bn_mode(bn_mode) == "eval" else "train-frozen-stats")


class FunctionalLoss:
    """``θ ↦ mean loss`` over one batch, with every other tensor frozen as a cast copy.

    Args:
        model: the network; only read.
        loss_fn: ``loss_fn(logits, y)`` with mean reduction (default cross-entropy).
        params: which parameters form ``θ`` (see :func:`select_parameters`).
        bn_mode: ``"eval"`` (running statistics) or ``"train"``/``"train-frozen-stats"`` (batch statistics);
            checked here, so an unknown mode fails at construction.
        dtype: floating dtype of the computation (default: the model's); parameters, buffers and
            inputs are cast copies.
        device: where to compute (default: the model's device).
    """

    def __init__(self, model: nn.Module, *, loss_fn: LossFn | None = None, params: ParamSpec = None,
                 bn_mode: str = "eval", dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None):
        self.model = model
        self.loss_fn = loss_fn if loss_fn is not None else F.cross_entropy
        self.bn_mode = check_bn_mode(bn_mode)
        self.dtype = dtype if dtype is not None else model_dtype(model)
        first = next(model.parameters(), None)
        self.device = torch.device(device) if device is not None else (
            first.device if first is not None else torch.device("cpu"))
        self.names = select_parameters(model, params)
        with torch.no_grad():
            tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
            copies = {n: self._cast(t).clone() for n, t in tensors.items()}
        self.theta = {n: copies.pop(n) for n in self.names}
        self.frozen = copies
        self.dim = sum(t.numel() for t in self.theta.values())

    def _cast(self, t: Tensor) -> Tensor:
        t = t.detach().to(self.device)
        return t.to(self.dtype) if t.is_floating_point() else t

    def theta_flat(self) -> Tensor:
        """The chosen parameters as one vector (a copy)."""
        return flatten(self.theta).clone()

    def batch(self, x: Tensor, y: Tensor, index: int | None = None) -> tuple[Tensor, Tensor]:
        """Move a batch to the compute device and cast floating inputs/targets to the dtype.

        In a train BN mode a one-example batch fails here with a one-line message naming batch ``index``.
        """
        check_batch_size(self.model, self.bn_mode, x.shape[0], "batch" if index is None else f"batch {index}")
        return self._cast(x), self._cast(y)

    def __call__(self, theta: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        """Mean loss of the batch at parameters ``theta``; call inside :func:`eval_mode`."""
        logits = functional_call(self.model, {**self.frozen, **theta}, (x,))
        return self.loss_fn(logits, y)

    def modes(self) -> contextlib.AbstractContextManager:
        """Context in which :meth:`__call__` evaluates with this loss's ``bn_mode``."""
        return eval_mode(self.model, self.bn_mode)

    @torch.no_grad()
    def dataset_loss(self, theta: dict[str, Tensor], data: Data, batch_size: int | None = None) -> float:
        """``Σ_b (n_b/N) ℓ_b(θ)``, the mean loss over the whole dataset."""
        total, count = 0.0, 0
        with self.modes():
            for i, (x, y) in enumerate(iterate_batches(data, batch_size)):
                x, y = self.batch(x, y, i)
                total += float(self(theta, x, y)) * y.shape[0]
                count += y.shape[0]
        return total / count
