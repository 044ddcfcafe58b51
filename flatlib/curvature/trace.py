"""Stochastic trace estimators for symmetric operators, each returning an :class:`Estimate`.

Hutchinson (1989): ``tr(A) = E[zᵀAz]`` for ``E[zzᵀ] = I`` (Rademacher or Gaussian ``z``).
Hutch++ (Meyer, Musco, Musco & Woodruff 2021): project out the top of the spectrum captured by
``Q = orth(AS)`` exactly, ``tr(QᵀAQ)``, and run Hutchinson on the deflated remainder
``(I−QQᵀ)A(I−QQᵀ)``; its error falls as ``1/m`` instead of ``1/√m`` for ``m`` matrix-vector products.
The squared Frobenius norm ``‖A‖_F² = tr(A²) = E‖Az‖²`` (the "Frobenius" flatness measure of
Granziol et al.) is either estimator applied to ``A²``.
"""
from __future__ import annotations

import torch
from torch import Tensor

from flatlib.curvature.operator import LinearOperator, as_operator
from flatlib.progress import progress_bar
from flatlib.estimate import Estimate


def random_vectors(dim: int, num: int, generator: torch.Generator, distribution: str = "rademacher",
                   dtype: torch.dtype = torch.float64) -> Tensor:
    """``(dim, num)`` matrix of i.i.d. isotropic vectors (``E[zzᵀ] = I``), drawn on the CPU for reproducibility."""
    if distribution == "rademacher":
        return (2 * torch.randint(0, 2, (dim, num), generator=generator) - 1).to(dtype)
    if distribution == "normal":
        return torch.randn(dim, num, generator=generator, dtype=dtype)
    raise ValueError(f"distribution must be 'rademacher' or 'normal', got {distribution!r}")


def hutchinson_trace(A: Tensor | LinearOperator, num_samples: int = 100, *, seed: int = 0,
                     distribution: str = "rademacher", rel_stderr: float | None = None, min_samples: int = 10,
                     progress: bool = False, block_size: int = 1) -> Estimate:
    """Hutchinson's estimate of ``tr(A)`` from ``num_samples`` quadratic forms ``zᵀAz``.

    With ``rel_stderr`` set, stops as soon as ``stderr ≤ rel_stderr·|mean|`` (after ``min_samples``),
    using at most ``num_samples`` products. ``block_size`` probes go through one ``matmat`` (with
    ``HessianOperator(method="forward-over-reverse-vmap")`` they share one forward pass); the stop
    is then checked after each block. ``block_size=1`` draws the same probes as before.

    Example:
        >>> A = torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64))
        >>> hutchinson_trace(A, num_samples=10).value  # diagonal A: Rademacher z gives zᵀAz = tr(A)
        55.0
    """
    return _hutchinson(as_operator(A), num_samples, seed, distribution, rel_stderr, min_samples, progress,
                       squared=False, block_size=block_size)


def hutchpp_trace(A: Tensor | LinearOperator, num_matvecs: int = 102, *, seed: int = 0,
                  distribution: str = "rademacher") -> Estimate:
    """Hutch++ estimate of ``tr(A)`` with ``num_matvecs`` products (a third sketch, a third each way).

    ``stderr`` and ``n`` refer to the Hutchinson part on the deflated operator; the low-rank part
    ``tr(QᵀAQ)`` is exact.
    """
    A = as_operator(A)
    if num_matvecs < 3:
        raise ValueError("Hutch++ needs at least 3 matrix-vector products")
    g = torch.Generator().manual_seed(seed)
    s = min(num_matvecs // 3, A.dim)
    n = (num_matvecs - 2 * s) if s < A.dim else 0
    S = random_vectors(A.dim, s, g, distribution).to(A.device)
    Q, _ = torch.linalg.qr(A.matmat(S.to(A.dtype)).to(torch.float64))
    exact = float(torch.trace(Q.T @ A.matmat(Q.to(A.dtype)).to(torch.float64)))
    if n == 0:  # the sketch spans the whole space: the trace is exact
        return Estimate(exact, 0.0, 0)
    G = random_vectors(A.dim, n, g, distribution).to(A.device)
    G -= Q @ (Q.T @ G)
    samples = (G * A.matmat(G.to(A.dtype)).to(torch.float64)).sum(0)
    rest = Estimate.from_samples(samples)
    return Estimate(exact + rest.value, rest.stderr, rest.n)


def frobenius_norm_sq(A: Tensor | LinearOperator, num_samples: int = 100, *, seed: int = 0,
                      method: str = "hutchinson", distribution: str = "rademacher",
                      rel_stderr: float | None = None, min_samples: int = 10, progress: bool = False) -> Estimate:
    """``‖A‖_F² = tr(A²)`` of a symmetric ``A``: ``"hutchinson"`` averages ``‖Az‖²`` (one product each);
    ``"hutch++"`` runs Hutch++ on ``A²`` with ``num_samples`` products of ``A²`` (two of ``A`` each).
    """
    A = as_operator(A)
    if method == "hutchinson":
        return _hutchinson(A, num_samples, seed, distribution, rel_stderr, min_samples, progress, squared=True)
    if method == "hutch++":
        return hutchpp_trace(A @ A, num_samples, seed=seed, distribution=distribution)
    raise ValueError(f"method must be 'hutchinson' or 'hutch++', got {method!r}")


def _hutchinson(A: LinearOperator, num_samples: int, seed: int, distribution: str, rel_stderr: float | None,
                min_samples: int, show_progress: bool, squared: bool, block_size: int = 1) -> Estimate:
    """Average ``zᵀAz`` (or ``‖Az‖²`` if ``squared``) ``block_size`` vectors at a time, optionally until precise enough."""
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    g = torch.Generator().manual_seed(seed)
    samples: list[float] = []
    for start in progress_bar(range(0, num_samples, block_size), show_progress, "Hutchinson"):
        Z = random_vectors(A.dim, min(block_size, num_samples - start), g, distribution).to(A.device)
        AZ = A.matmat(Z.to(A.dtype)).to(torch.float64)
        samples.extend(((AZ * AZ).sum(0) if squared else (Z * AZ).sum(0)).tolist())
        if rel_stderr is not None and len(samples) >= max(min_samples, 2):
            est = Estimate.from_samples(samples)
            if est.stderr <= rel_stderr * abs(est.value):
                return est
    return Estimate.from_samples(samples)
