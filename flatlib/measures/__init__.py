"""Generalisation measures at a model's final weights, and ``measure_all`` that takes them all.

- ``sharpness``: the training-loss Hessian's λ1, trace and ‖H‖²_F (FF; Keskar et al. 2017), FIM's Fisher
  metrics, scale-aware measures (λ1·‖w‖², adaptive sharpness, PAC-Bayes σ) and baselines (‖w‖, margin);
- ``classifier``: PoF's classifier-space quantities — the line search of Eq. 2–3, ξ*_B and ΔL;
- ``reparam``: function-preserving reparameterisations, for the invariance check.

Every measure reads the model only (parameters, ``.grad``, ``requires_grad``, training flags and BN
buffers are bit-identical afterwards) and evaluates BatchNorm with its running statistics.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn

from flatlib._torch import weight_norm
from flatlib.measures.classifier import (LineSearchResult, classifier_delta_l, line_search, mean_xi,
                                         minibatch_line_search)
from flatlib.measures.reparam import rescale_layers, scale_before_batchnorm
from flatlib.measures.sharpness import (Data, adaptive_sharpness, fisher_measures, hessian_frobenius_sq,
                                        hessian_lambda1, hessian_trace, output_margin, pac_bayes_sigma)


@dataclass(frozen=True)
class MeasureConfig:
    """Sample sizes of ``measure_all``; small by default (a few seconds for a small network)."""

    lanczos_iters: int = 20
    trace_matvecs: int = 30
    frobenius_samples: int = 20
    n_prime: int = 50
    num_subsets: int = 5
    delta_l_step: float = 0.1
    xi_batch_size: int = 32
    xi_batches: int = 10
    asam_rho: float = 0.5
    asam_steps: int = 5
    pac_threshold: float = 0.1
    pac_samples: int = 8
    pac_iters: int = 12
    margin_quantile: float = 0.1
    seed: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


MEASURES: dict[str, tuple[str, int]] = {
    "lambda1": ("Hessian λ1", +1),
    "trace": ("Hessian trace", +1),
    "frobenius": ("Hessian ‖H‖²_F", +1),
    "log_det": ("γ̂ (Fisher log det)", +1),
    "fisher_trace": ("Fisher trace", +1),
    "spectral_radius": ("λmax(JJᵀ)/N′", +1),
    "robustness": ("robustness ‖∂f/∂x‖²", +1),
    "clf_lambda1": ("classifier λ1 (PoF)", +1),
    "delta_l": ("classifier ΔL (PoF)", +1),
    "xi": ("mean ξ*_B (PoF)", -1),
    "lambda1_wnorm": ("λ1·‖w‖²", +1),
    "trace_wnorm": ("trace·‖w‖²", +1),
    "asam": ("adaptive sharpness", +1),
    "pac_sigma": ("PAC-Bayes σ", -1),
    "pac_mag_sigma": ("PAC-Bayes σ (magnitude-aware)", -1),
    "weight_norm": ("‖w‖", +1),
    "margin": ("output margin (10th pct.)", -1),
}
"""Every measure ``measure_all`` returns: (label, expected sign). The sign is the direction its
proponents claim: +1 when a larger value should mean worse generalisation (a sharper or more
complex model), −1 when larger should mean better (flatter: a larger PAC-Bayes σ, a larger
line-search step ξ*_B along the batch gradient, a larger margin)."""


def measure_all(model: nn.Module, train: Data, test: Data, config: MeasureConfig = MeasureConfig(), *,
                dtype: torch.dtype = torch.float64) -> dict[str, float]:
    """Every measure of ``MEASURES`` at the model's current weights, as ``{name: value}``.

    ``train`` is a fixed subset of the (un-augmented, normalised) training set on which the
    curvature, Fisher, sharpness and margin measures are taken; ``test`` serves PoF's ΔL only.
    The measures run on a ``dtype`` copy of the model in eval mode: the model itself is untouched.
    """
    m = copy.deepcopy(model).to(dtype).eval()
    for p in m.parameters():  # curvature over every parameter, frozen ones included
        p.requires_grad_(True)
    train, test = (train[0].to(dtype), train[1]), (test[0].to(dtype), test[1])
    c, s = config, config.seed
    out = {"lambda1": hessian_lambda1(m, train, num_iters=c.lanczos_iters, seed=s),
           "trace": hessian_trace(m, train, num_matvecs=c.trace_matvecs, seed=s),
           "frobenius": hessian_frobenius_sq(m, train, num_samples=c.frobenius_samples, seed=s)}
    out.update(fisher_measures(m, train, n_prime=min(c.n_prime, len(train[1])), num_subsets=c.num_subsets, seed=s))
    out.update(classifier_delta_l(m, train, test, step=c.delta_l_step, num_iters=c.lanczos_iters, seed=s))
    out["xi"] = mean_xi(m, train, batch_size=c.xi_batch_size, num_batches=c.xi_batches, seed=s)
    norm_sq = weight_norm(m) ** 2
    out["lambda1_wnorm"], out["trace_wnorm"] = out["lambda1"] * norm_sq, out["trace"] * norm_sq
    out["asam"] = adaptive_sharpness(m, train, rho=c.asam_rho, steps=c.asam_steps, seed=s)
    out["pac_sigma"] = pac_bayes_sigma(m, train, threshold=c.pac_threshold, num_samples=c.pac_samples,
                                       iters=c.pac_iters, seed=s)
    out["pac_mag_sigma"] = pac_bayes_sigma(m, train, threshold=c.pac_threshold, num_samples=c.pac_samples,
                                           iters=c.pac_iters, magnitude_aware=True, seed=s)
    out["weight_norm"] = math.sqrt(norm_sq)
    out["margin"] = output_margin(m, train, quantile=c.margin_quantile)
    return {k: out[k] for k in MEASURES}


__all__ = ["MEASURES", "LineSearchResult", "MeasureConfig", "adaptive_sharpness", "classifier_delta_l",
           "fisher_measures", "hessian_frobenius_sq", "hessian_lambda1", "hessian_trace", "line_search",
           "mean_xi", "measure_all", "minibatch_line_search", "output_margin", "pac_bayes_sigma", "rescale_layers",
           "scale_before_batchnorm", "weight_norm"]
