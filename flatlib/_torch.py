"""Small torch helpers every layer shares, each defined once: BatchNorm modes, parameter selection,
the loss as a function of the parameters and the weight norm.

**BatchNorm modes** (one vocabulary for curvature, Fisher, measures and update rules):

- ``"eval"``: BN normalises with its running statistics;
- ``"train"``: BN normalises with the batch's statistics (``training=True``) and updates running
  statistics, as in a training step. Estimators run it on cloned buffers, so the model is never touched;
- ``"train-frozen-stats"``: BN normalises with the batch's statistics; running statistics are
  neither read nor written (``track_running_stats=False``) — SAM's and PoF's second forward pass.

The value of the loss is the same under ``"train"`` and ``"train-frozen-stats"``; they differ only in
what happens to the running statistics.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

BNMode = Literal["eval", "train", "train-frozen-stats"]
BN_MODES: tuple[str, ...] = ("eval", "train", "train-frozen-stats")
ParamSpec = None | str | Sequence[str | nn.Parameter]
LossFn = Callable[[Tensor, Tensor], Tensor]


def check_bn_mode(mode: str, allowed: Sequence[str] = BN_MODES) -> str:
    """Return ``mode`` or raise a one-line ``ValueError`` listing the valid modes."""
    if mode not in allowed:
        raise ValueError(f"invalid bn_mode={mode!r}; choose from: {', '.join(map(repr, allowed))}")
    return mode


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def check_batch_size(model: nn.Module, mode: str, n: int, where: str) -> None:
    """One example cannot give batch statistics: fail with a one-line message naming the batch."""
    if n < 2 and mode != "eval" and has_batchnorm(model):
        raise ValueError(f"{where} has {n} example; bn_mode={mode!r} needs at least 2 per batch "
                         f"for BatchNorm's batch statistics (use bn_mode='eval' or another batch size)")


@contextlib.contextmanager
def bn_mode(model: nn.Module, mode: BNMode, *, others_eval: bool = True) -> Iterator[None]:
    """Temporarily set BatchNorm layers to ``mode`` (see the module docstring); restore every flag on exit.

    ``others_eval=True`` also switches every other module (dropout, ...) to eval mode, as estimators
    want; ``False`` leaves them as they are, as an update rule's second forward pass wants.

    >>> model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3)).train()
    >>> with bn_mode(model, "eval"):
    ...     model[1].training
    False
    >>> model[1].training, model[1].track_running_stats
    (True, True)
    """
    check_bn_mode(mode)
    saved = [(m, m.training, getattr(m, "track_running_stats", None)) for m in model.modules()]
    try:
        for m in model.modules():
            is_bn = isinstance(m, nn.modules.batchnorm._BatchNorm)
            if is_bn:
                m.training = mode != "eval"
                if mode == "train-frozen-stats":
                    m.track_running_stats = False
            elif others_eval:
                m.training = False
        yield
    finally:
        for m, training, track in saved:
            m.training = training
            if track is not None:
                m.track_running_stats = track


def select_parameters(model: nn.Module, params: ParamSpec = None) -> list[str]:
    """Names of the chosen parameters, in ``named_parameters`` order of the selection.

    ``None``/``"all"``: every trainable parameter; one string: that submodule's trainable parameters
    (``"classifier"``, ``"features.3"``) or, if no such submodule, that one parameter's name; a sequence:
    exactly those parameter names or ``nn.Parameter`` objects. A string is never read character by character.

    >>> model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    >>> select_parameters(model, "1")
    ['1.weight', '1.bias']
    >>> select_parameters(model, ["0.bias"])
    ['0.bias']
    """
    named = dict(model.named_parameters())
    if params is None or (isinstance(params, str) and params == "all"):
        names = [n for n, p in named.items() if p.requires_grad]
    elif isinstance(params, str):
        if params in named:
            names = [params]
        else:
            try:
                module = model.get_submodule(params)
            except AttributeError:
                raise KeyError(f"params={params!r} is neither a submodule nor a parameter of the model") from None
            owned = {id(p) for p in module.parameters()}
            names = [n for n, p in named.items() if id(p) in owned and p.requires_grad]
    else:
        by_id = {id(p): n for n, p in named.items()}
        names = [p if isinstance(p, str) else by_id.get(id(p)) for p in params]
        missing = [p if isinstance(p, str) else "<a parameter object>" for p, n in zip(params, names)
                   if n is None or n not in named]
        if missing:
            raise KeyError(f"unknown parameter names: {missing}")
    if not names:
        raise ValueError(f"parameter selection {params!r} is empty")
    return names


def functional_loss(model: nn.Module, loss_fn: LossFn | None = None,
                    frozen: dict[str, Tensor] | None = None) -> Callable[[dict[str, Tensor], Tensor, Tensor], Tensor]:
    """``(w, x, y) ↦ loss_fn(model_w(x), y)`` through ``torch.func.functional_call``.

    ``frozen`` holds the tensors not in ``w`` (default: clones of the model's buffers, so a
    train-mode BatchNorm writes to the clones, never to the model). Call it inside :func:`bn_mode`.
    """
    loss_fn = loss_fn or F.cross_entropy
    if frozen is None:
        frozen = {n: b.detach().clone() for n, b in model.named_buffers()}

    def loss(w: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        return loss_fn(functional_call(model, {**frozen, **w}, (x,)), y)

    return loss


def weight_norm(model: nn.Module) -> float:
    """‖w‖₂ over all parameters (BN affine parameters included), in float64.

    >>> weight_norm(nn.Linear(3, 1, bias=False).requires_grad_(False).apply(lambda m: m.weight.fill_(2.0)))
    3.4641016151377544
    """
    return float(torch.sqrt(sum((p.detach().double() ** 2).sum() for p in model.parameters())))


def model_dtype(model: nn.Module, default: torch.dtype = torch.float32) -> torch.dtype:
    """The dtype of the model's first floating parameter (``default`` if it has none)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), default)


def bn_stats_frozen(model: nn.Module) -> contextlib.AbstractContextManager:
    """The model's own mode, with BN running statistics neither read nor written while in training mode.

    Shorthand for :func:`bn_mode` with ``"train-frozen-stats"`` (model in training mode) or ``"eval"``,
    leaving dropout and every other module as it is: the second forward pass of SAM and PoF.
    """
    return bn_mode(model, "train-frozen-stats" if model.training else "eval", others_eval=False)
