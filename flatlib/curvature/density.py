"""Spectral density by stochastic Lanczos quadrature (SLQ).

For a symmetric ``A`` with eigenpairs ``(λ_i, u_i)`` the spectral measure is
``μ = (1/P) Σ_i δ_{λ_i}``. For a unit random vector ``v`` with ``E[P vvᵀ] = I``,
``vᵀ f(A) v = Σ_i (u_iᵀv)² f(λ_i)`` is an unbiased estimate of ``∫ f dμ``; ``m`` Lanczos steps from
``v`` turn it into an ``m``-node Gauss quadrature with nodes the Ritz values ``θ_j`` and weights the
squared first components ``τ_j² = (e_1ᵀ s_j)²`` of the eigenvectors of ``T_m`` (Golub & Meurant;
Ubaru, Chen & Saad 2017; Ghorbani, Krishnan & Xiao 2019; Granziol et al.). Averaging over ``V``
vectors gives ``μ̂ = (1/V) Σ_v Σ_j τ_{vj}² δ_{θ_{vj}}``, exact for polynomials of degree ``< 2m``
in expectation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from flatlib._checks import finite_floats
from flatlib.curvature.lanczos import lanczos_tridiagonal
from flatlib.curvature.operator import LinearOperator, as_operator
from flatlib.progress import progress_bar
from flatlib.curvature.trace import random_vectors


@dataclass(frozen=True)
class SpectralDensity:
    """Quadrature nodes and weights ``(V, m)``; each row's weights sum to 1 (padding has weight 0)."""

    nodes: Tensor
    weights: Tensor
    num_matvecs: int

    def moments(self, k: int) -> Tensor:
        """``[∫λ dμ̂, …, ∫λ^k dμ̂]``; ``∫λ^j dμ`` equals ``tr(A^j)/P``."""
        powers = self.nodes[..., None] ** torch.arange(1, k + 1, dtype=self.nodes.dtype, device=self.nodes.device)
        return (self.weights[..., None] * powers).sum(1).mean(0)

    def smooth(self, grid: Tensor, sigma: float, log: bool = False) -> Tensor:
        """Density of ``μ̂`` convolved with a Gaussian of width ``sigma``, evaluated on ``grid``.

        With ``log=True`` returns ``log10`` of that density, computed by log-sum-exp so that tails
        far from every node stay finite for plots on a logarithmic y axis.
        """
        grid = torch.as_tensor(grid, dtype=torch.float64, device=self.nodes.device).reshape(-1)
        z = (grid[:, None] - self.nodes.reshape(1, -1)) / sigma
        logw = (self.weights.reshape(1, -1) / self.nodes.shape[0]).log()
        log_density = torch.logsumexp(logw - 0.5 * z**2, dim=1) - math.log(sigma * math.sqrt(2 * math.pi))
        return log_density / math.log(10) if log else log_density.exp()


@finite_floats
def slq(A: Tensor | LinearOperator, num_vectors: int = 1, num_iters: int = 100, *, seed: int = 0,
        progress: bool = False) -> SpectralDensity:
    """Stochastic Lanczos quadrature with ``num_vectors`` Rademacher starts of ``num_iters`` steps each.

    Example:
        >>> A = torch.diag(torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64))
        >>> slq(A, num_vectors=1, num_iters=4).moments(2)  # Rademacher start: exact for m = P
        tensor([2.5000, 7.5000], dtype=torch.float64)
    """
    A = as_operator(A)
    g = torch.Generator().manual_seed(seed)
    m = min(num_iters, A.dim)
    nodes = torch.zeros(num_vectors, m, dtype=torch.float64, device=A.device)
    weights = torch.zeros_like(nodes)
    spent = 0
    for i in progress_bar(range(num_vectors), progress, "SLQ vectors"):
        v = random_vectors(A.dim, 1, g)[:, 0]
        T = lanczos_tridiagonal(A, v, m)
        theta, S = torch.linalg.eigh(T.matrix())
        nodes[i, :len(theta)], weights[i, :len(theta)] = theta, S[0] ** 2
        spent += len(theta)
    return SpectralDensity(nodes, weights, spent)
