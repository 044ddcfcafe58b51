"""Extreme eigenpairs of symmetric operators: Lanczos with full re-orthogonalisation, power iteration.

Lanczos (Lanczos 1950; see Golub & Van Loan, *Matrix Computations*, §10.1) builds an
orthonormal Krylov basis ``V_m`` of ``span{v, Av, …, A^{m-1}v}`` with ``V_mᵀ A V_m = T_m``
tridiagonal; eigenpairs ``(θ_i, s_i)`` of ``T_m`` give Ritz pairs ``(θ_i, V_m s_i)`` whose residual
is ``‖A V_m s_i − θ_i V_m s_i‖ = β_m |s_{m,i}|``. Re-orthogonalising every new vector against the
whole basis (twice, in float64) prevents the ghost eigenvalues of the plain three-term recurrence.
This is the method of Granziol et al. ("Flatness is a false friend") and Ghorbani et al. (2019).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from flatlib._checks import finite_floats
from flatlib.curvature.operator import LinearOperator, as_operator
from flatlib.progress import progress_bar


@dataclass(frozen=True)
class Tridiagonal:
    """Output of ``m`` Lanczos steps: ``T = tridiag(beta[:-1], alpha, beta[:-1])``, basis ``(P, m)``.

    ``beta[-1]`` is the norm of the final residual (``0`` when the Krylov space became invariant).
    """

    alpha: Tensor
    beta: Tensor
    basis: Tensor

    def matrix(self) -> Tensor:
        """The ``(m, m)`` tridiagonal matrix ``T``."""
        off = self.beta[:-1]
        return torch.diag(self.alpha) + torch.diag(off, 1) + torch.diag(off, -1)


def lanczos_tridiagonal(A: Tensor | LinearOperator, v0: Tensor, num_iters: int, *,
                        should_stop: Callable[[Tridiagonal], bool] | None = None,
                        show_progress: bool = False) -> Tridiagonal:
    """Run up to ``num_iters`` Lanczos steps from ``v0`` with full re-orthogonalisation (float64).

    Stops early if the residual vanishes (invariant subspace) or ``should_stop(partial)`` is true.
    """
    A = as_operator(A)
    m = min(num_iters, A.dim)
    V = torch.empty(A.dim, m, dtype=torch.float64, device=A.device)
    q = v0.to(dtype=torch.float64, device=A.device)
    q = q / q.norm()
    alphas, betas, scale = [], [], 0.0
    for j in progress_bar(range(m), show_progress, "Lanczos"):
        V[:, j] = q
        w = A.matvec(q.to(A.dtype)).to(torch.float64)
        alpha = torch.dot(q, w)
        w -= alpha * q
        if j > 0:
            w -= betas[-1] * V[:, j - 1]
        for _ in range(2):  # classical Gram-Schmidt twice is enough in floating point ("twice is enough")
            w -= V[:, :j + 1] @ (V[:, :j + 1].T @ w)
        beta = w.norm()
        alphas.append(alpha)
        betas.append(beta)
        scale = max(scale, abs(float(alpha)) + float(beta))
        partial = Tridiagonal(torch.stack(alphas), torch.stack(betas), V[:, :j + 1])
        if float(beta) <= 1e-12 * scale or (should_stop is not None and should_stop(partial)):
            return partial
        q = w / beta
    return partial


@dataclass(frozen=True)
class LanczosResult:
    """``k`` Ritz values (ordered from the requested end), Ritz vectors ``(P, k)`` and HVPs spent."""

    eigenvalues: Tensor
    eigenvectors: Tensor
    num_matvecs: int
    converged: bool


@finite_floats
def lanczos(A: Tensor | LinearOperator, k: int = 1, *, num_iters: int = 100, tol: float = 1e-4, seed: int = 0,
            which: str = "largest", progress: bool = False, stop: str = "residual") -> LanczosResult:
    """The ``k`` largest (or smallest) eigenpairs of a symmetric operator by Lanczos.

    ``stop="residual"``: iterates until each wanted Ritz pair has residual ``r = ‖Ax − θx‖ ≤ tol·|θ|``,
    which bounds the distance of ``θ`` to the spectrum by ``tol·|θ|``, or ``num_iters`` products.
    ``stop="gap"``: until the eigenvalue error bound ``min(r, r²/δ) ≤ tol·|θ|`` holds, with δ the
    distance from θ to the nearest other Ritz value (the quadratic bound ``|θ − λ| ≤ r²/δ`` of
    Kato–Temple; Parlett, *The Symmetric Eigenvalue Problem*, §11.7). Ritz values converge
    quadratically in the residual, so this stops much earlier for the same eigenvalue accuracy;
    the Ritz gap can overestimate the true gap early on, so δ is taken only once m ≥ k + 2.

    Example:
        >>> A = torch.diag(torch.arange(1.0, 101.0, dtype=torch.float64))
        >>> result = lanczos(A, k=2, tol=1e-8)
        >>> result.eigenvalues.round(decimals=6), result.converged
        (tensor([100.,  99.], dtype=torch.float64), True)
    """
    if stop not in ("residual", "gap"):
        raise ValueError(f"stop must be 'residual' or 'gap', got {stop!r}")
    if which not in ("largest", "smallest"):
        raise ValueError(f"which must be 'largest' or 'smallest', got {which!r}")
    A = as_operator(A)
    k = min(k, A.dim)

    def wanted(T: Tridiagonal) -> tuple[Tensor, Tensor]:
        theta, S = torch.linalg.eigh(T.matrix())
        idx = torch.arange(len(theta) - 1, len(theta) - 1 - min(k, len(theta)), -1) if which == "largest" \
            else torch.arange(min(k, len(theta)))
        return theta[idx], S[:, idx]

    def converged(T: Tridiagonal) -> bool:
        if len(T.alpha) < k:
            return False
        theta, S = wanted(T)
        residual = T.beta[-1] * S[-1].abs()
        if stop == "gap" and len(T.alpha) >= k + 2:
            ritz = torch.linalg.eigvalsh(T.matrix())
            gap = torch.stack([(ritz - t).abs().sort().values[1] for t in theta])  # [0] is θ itself
            residual = torch.minimum(residual, residual ** 2 / gap.clamp_min(torch.finfo(torch.float64).tiny))
        return bool((residual <= tol * theta.abs().clamp_min(torch.finfo(torch.float64).tiny)).all())

    v0 = torch.randn(A.dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    T = lanczos_tridiagonal(A, v0, max(num_iters, k), should_stop=converged, show_progress=progress)
    theta, S = wanted(T)
    return LanczosResult(theta, (T.basis @ S).to(A.dtype), num_matvecs=len(T.alpha),
                         converged=converged(T) or float(T.beta[-1]) == 0.0)


class PowerIterationResult(NamedTuple):
    eigenvalue: float
    eigenvector: Tensor
    num_matvecs: int


@finite_floats
def power_iteration(A: Tensor | LinearOperator, *, num_iters: int = 100, tol: float = 1e-3,
                    seed: int = 0) -> PowerIterationResult:
    """Dominant (largest-magnitude) eigenpair by power iteration, as in PyHessian (Yao et al. 2020).

    Stops when the Rayleigh quotient changes by less than ``tol`` relative; unlike Lanczos this
    says little about the actual error when the top eigenvalues are close.
    """
    A = as_operator(A)
    v = torch.randn(A.dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    v = (v / v.norm()).to(dtype=A.dtype, device=A.device)
    eigenvalue = None
    for i in range(1, num_iters + 1):
        Av = A.matvec(v)
        new = float(torch.dot(v, Av))
        v = Av / Av.norm()
        if eigenvalue is not None and abs(new - eigenvalue) <= tol * abs(eigenvalue):
            return PowerIterationResult(new, v, i)
        eigenvalue = new
    return PowerIterationResult(eigenvalue, v, num_iters)
