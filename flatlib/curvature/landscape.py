"""1-D and 2-D slices of the loss landscape, ``L(θ + α d₁ + β d₂)``, as tidy DataFrames.

Directions live in the flattened space of the chosen parameters (see ``params``). Random
directions are filter-normalised as in Li, Xu, Taylor, Studer & Goldstein (2018), "Visualizing
the loss landscape of neural nets": each filter (output row) of a Gaussian direction is rescaled to
the norm of the matching filter of ``θ``, which removes the scale invariance of ReLU/BN networks.
The model is only read: every loss is a functional call on copies of its tensors.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pandas as pd
import torch
from torch import Tensor, nn

from flatlib._checks import finite_floats
from flatlib.curvature.functional import Data, FunctionalLoss, LossFn, ParamSpec, select_parameters, unflatten


def filter_normalized_direction(model: nn.Module, *, seed: int = 0, params: ParamSpec = None,
                                ignore_bias_bn: bool = True) -> Tensor:
    """A random direction (float64, CPU) with ``‖d_f‖ = ‖θ_f‖`` for each filter ``f`` of each weight of rank ≥ 2.

    Parameters of rank ≤ 1 (biases, BN affine) get zero (Li et al.'s default) or, with
    ``ignore_bias_bn=False``, a copy of themselves.
    """
    g = torch.Generator().manual_seed(seed)
    named = dict(model.named_parameters())
    parts = []
    for name in select_parameters(model, params):
        theta = named[name].detach().to("cpu", torch.float64)
        if theta.ndim <= 1:
            parts.append(torch.zeros_like(theta) if ignore_bias_bn else theta.clone())
            continue
        d = torch.randn(theta.shape, generator=g, dtype=torch.float64)
        d_rows, t_rows = d.reshape(d.shape[0], -1), theta.reshape(theta.shape[0], -1)
        d_rows *= t_rows.norm(dim=1, keepdim=True) / (d_rows.norm(dim=1, keepdim=True) + 1e-10)
        parts.append(d_rows.reshape(-1))
    return torch.cat([p.reshape(-1) for p in parts])


@finite_floats
def landscape_1d(model: nn.Module, data: Data | Mapping[str, Data], direction: Tensor, alphas: Iterable[float], *,
                 loss_fn: LossFn | None = None, params: ParamSpec = None, bn_mode: str = "eval",
                 dtype: torch.dtype | None = None, device: torch.device | str | None = None,
                 batch_size: int | None = None) -> pd.DataFrame:
    """Dataset loss at ``θ + α d`` for each ``α``: columns ``alpha, loss, split``.

    ``data`` is one dataset (split ``"train"``) or a mapping such as ``{"train": ..., "test": ...}``.
    """
    rows = _evaluate(model, data, [direction], [(a,) for a in alphas], loss_fn, params, bn_mode, dtype, device,
                     batch_size)
    return pd.DataFrame([{"alpha": c[0], "loss": loss, "split": split} for c, loss, split in rows])


@finite_floats
def landscape_2d(model: nn.Module, data: Data | Mapping[str, Data], d1: Tensor, d2: Tensor,
                 alphas: Iterable[float], betas: Iterable[float], *, loss_fn: LossFn | None = None,
                 params: ParamSpec = None, bn_mode: str = "eval", dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None, batch_size: int | None = None) -> pd.DataFrame:
    """Dataset loss at ``θ + α d₁ + β d₂`` on the grid ``alphas × betas``: columns ``alpha, beta, loss, split``."""
    grid = [(a, b) for a in alphas for b in betas]
    rows = _evaluate(model, data, [d1, d2], grid, loss_fn, params, bn_mode, dtype, device, batch_size)
    return pd.DataFrame([{"alpha": c[0], "beta": c[1], "loss": loss, "split": split} for c, loss, split in rows])


def _evaluate(model: nn.Module, data: Data | Mapping[str, Data], directions: Sequence[Tensor],
              coords: Sequence[tuple[float, ...]], loss_fn: LossFn | None, params: ParamSpec, bn_mode: str,
              dtype: torch.dtype, device: torch.device | str | None,
              batch_size: int | None) -> list[tuple[tuple[float, ...], float, str]]:
    """``(coords, loss, split)`` for every split and every point ``θ + Σ c_i d_i``."""
    loss = FunctionalLoss(model, loss_fn=loss_fn, params=params, bn_mode=bn_mode, dtype=dtype, device=device)
    splits = dict(data) if isinstance(data, Mapping) else {"train": data}
    theta = loss.theta_flat()
    dirs = [d.to(dtype=loss.dtype, device=loss.device) for d in directions]
    for d in dirs:
        if d.shape != theta.shape:
            raise ValueError(f"direction has shape {tuple(d.shape)}, parameters have {tuple(theta.shape)}")
    rows = []
    for c in coords:
        point = unflatten(theta + sum(ci * d for ci, d in zip(c, dirs)), loss.theta)
        for split, split_data in splits.items():
            rows.append((tuple(float(ci) for ci in c), loss.dataset_loss(point, split_data, batch_size), split))
    return rows
