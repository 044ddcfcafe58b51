"""The dataset loss as a pure function of a chosen subset of a model's parameters.

Everything curvature-related is built on :class:`FunctionalLoss`: it snapshots (and casts)
the model's parameters and buffers once, and evaluates ``L(θ) = Σ_b (n_b/N) ℓ_b(θ)`` with
:func:`torch.func.functional_call`, so the user's module is never written to: its
parameters, ``.grad``, ``requires_grad`` and BN running statistics stay bit-identical.
Module mode flags (``training``, BN ``track_running_stats``) are switched only inside
:func:`eval_mode` and always restored.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

Data = Iterable[tuple[Tensor, Tensor]] | tuple[Tensor, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]
ParamSpec = None | str | Sequence[str]


def select_parameters(model: nn.Module, params: ParamSpec = None) -> list[str]:
    """Names of the parameters spanning the curvature space, in ``named_parameters`` order.

    ``None``/``"all"``: every trainable parameter; a submodule name such as ``"classifier"``
    or ``"features.3"``: that block's trainable parameters; a list: exactly those names.
    """
    named = dict(model.named_parameters())
    if params is None or params == "all":
        names = [n for n, p in named.items() if p.requires_grad]
    elif isinstance(params, str):
        module = model.get_submodule(params)
        owned = {id(p) for p in module.parameters()}
        names = [n for n, p in named.items() if id(p) in owned and p.requires_grad]
    else:
        names = list(params)
        missing = [n for n in names if n not in named]
        if missing:
            raise KeyError(f"unknown parameter names: {missing}")
    if not names:
        raise ValueError(f"parameter selection {params!r} is empty")
    return names


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


@contextlib.contextmanager
def eval_mode(model: nn.Module, bn_mode: str = "eval") -> Iterator[None]:
    """Temporarily put every module in eval mode, BatchNorm per ``bn_mode``; restore on exit.

    ``bn_mode="train"``: BN normalises with batch statistics (``training=True``) but with
    ``track_running_stats=False`` so no running statistic is read or updated.
    ``bn_mode="eval"``: BN uses its running statistics. Dropout is always off.
    """
    if bn_mode not in ("eval", "train"):
        raise ValueError(f"bn_mode must be 'eval' or 'train', got {bn_mode!r}")
    saved = [(m, m.training, getattr(m, "track_running_stats", None)) for m in model.modules()]
    try:
        for m in model.modules():
            m.training = False
            if bn_mode == "train" and isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.training, m.track_running_stats = True, False
        yield
    finally:
        for m, training, track in saved:
            m.training = training
            if track is not None:
                m.track_running_stats = track


class FunctionalLoss:
    """``θ ↦ mean loss`` over one batch, with every other tensor frozen as a cast copy.

    Args:
        model: the network; only read.
        loss_fn: ``loss_fn(logits, y)`` with mean reduction (default cross-entropy).
        params: which parameters form ``θ`` (see :func:`select_parameters`).
        bn_mode: ``"eval"`` (running statistics) or ``"train"`` (batch statistics).
        dtype: floating dtype of the computation; parameters, buffers and inputs are cast copies.
        device: where to compute (default: the model's device).
    """

    def __init__(self, model: nn.Module, *, loss_fn: LossFn | None = None, params: ParamSpec = None,
                 bn_mode: str = "eval", dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None):
        self.model = model
        self.loss_fn = loss_fn if loss_fn is not None else F.cross_entropy
        self.bn_mode = bn_mode
        self.dtype = dtype
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

    def batch(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Move a batch to the compute device and cast floating inputs/targets to the dtype."""
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
            for x, y in iterate_batches(data, batch_size):
                x, y = self.batch(x, y)
                total += float(self(theta, x, y)) * y.shape[0]
                count += y.shape[0]
        return total / count
