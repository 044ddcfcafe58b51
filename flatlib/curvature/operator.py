"""A small square linear-operator algebra on flattened parameter space.

Subclasses implement only ``_matmat(M)`` for a ``(P, k)`` matrix; the base class
provides ``@``, ``matvec``/``matmat``, a matrix-vector counter, sums, scalar multiples,
products and the Tikhonov shift ``A + λI``. Estimators accept either such an operator
or a dense tensor (wrapped by :func:`as_operator`), so they are testable on plain matrices.
"""
from __future__ import annotations

import torch
from torch import Tensor


class LinearOperator:
    """A ``(dim, dim)`` operator on vectors of a given dtype and device.

    ``num_matvecs`` counts columns multiplied through :meth:`matmat` (one per vector), the
    cost unit of every iterative method here.
    """

    def __init__(self, dim: int, dtype: torch.dtype, device: torch.device | str):
        self.dim = int(dim)
        self.dtype = dtype
        self.device = torch.device(device)
        self.num_matvecs = 0

    @property
    def shape(self) -> tuple[int, int]:
        return (self.dim, self.dim)

    def _matmat(self, M: Tensor) -> Tensor:
        raise NotImplementedError

    def matmat(self, M: Tensor) -> Tensor:
        """``A @ M`` for ``M`` of shape ``(dim, k)``; ``M`` is cast to the operator's dtype/device."""
        if M.ndim != 2 or M.shape[0] != self.dim:
            raise ValueError(f"expected a ({self.dim}, k) matrix, got shape {tuple(M.shape)}")
        self.num_matvecs += M.shape[1]
        return self._matmat(M.to(dtype=self.dtype, device=self.device))

    def matvec(self, v: Tensor) -> Tensor:
        """``A @ v`` for a vector ``v`` of shape ``(dim,)``."""
        if v.ndim != 1:
            raise ValueError(f"expected a vector, got shape {tuple(v.shape)}")
        return self.matmat(v[:, None])[:, 0]

    def __matmul__(self, other: Tensor | LinearOperator) -> Tensor | LinearOperator:
        if isinstance(other, LinearOperator):
            return _ProductOperator(self, other)
        return self.matvec(other) if other.ndim == 1 else self.matmat(other)

    def __add__(self, other: LinearOperator) -> LinearOperator:
        if not isinstance(other, LinearOperator):
            return NotImplemented
        return _SumOperator(self, other)

    def __mul__(self, scale: float) -> LinearOperator:
        return _ScaledOperator(self, float(scale))

    __rmul__ = __mul__

    def shift(self, lam: float) -> LinearOperator:
        """``A + λI``, e.g. the Hessian of a loss with L2 penalty ``λ/2 ‖θ‖²``."""
        return self + lam * IdentityOperator(self.dim, self.dtype, self.device)

    def to_dense(self) -> Tensor:
        """The full ``(dim, dim)`` matrix, column by column (for tests and small models)."""
        return self.matmat(torch.eye(self.dim, dtype=self.dtype, device=self.device))


class DenseOperator(LinearOperator):
    """A dense square matrix viewed as an operator."""

    def __init__(self, A: Tensor):
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"expected a square matrix, got shape {tuple(A.shape)}")
        super().__init__(A.shape[0], A.dtype, A.device)
        self.A = A

    def _matmat(self, M: Tensor) -> Tensor:
        return self.A @ M


class IdentityOperator(LinearOperator):
    """The identity ``I``."""

    def _matmat(self, M: Tensor) -> Tensor:
        return M.clone()


class _SumOperator(LinearOperator):
    def __init__(self, A: LinearOperator, B: LinearOperator):
        _check_compatible(A, B)
        super().__init__(A.dim, A.dtype, A.device)
        self.A, self.B = A, B

    def _matmat(self, M: Tensor) -> Tensor:
        return self.A.matmat(M) + self.B.matmat(M)


class _ScaledOperator(LinearOperator):
    def __init__(self, A: LinearOperator, scale: float):
        super().__init__(A.dim, A.dtype, A.device)
        self.A, self.scale = A, scale

    def _matmat(self, M: Tensor) -> Tensor:
        return self.scale * self.A.matmat(M)


class _ProductOperator(LinearOperator):
    def __init__(self, A: LinearOperator, B: LinearOperator):
        _check_compatible(A, B)
        super().__init__(A.dim, A.dtype, A.device)
        self.A, self.B = A, B

    def _matmat(self, M: Tensor) -> Tensor:
        return self.A.matmat(self.B.matmat(M))


def _check_compatible(A: LinearOperator, B: LinearOperator) -> None:
    if (A.dim, A.dtype, A.device) != (B.dim, B.dtype, B.device):
        raise ValueError(f"incompatible operators: {(A.dim, A.dtype, A.device)} vs {(B.dim, B.dtype, B.device)}")


def as_operator(A: Tensor | LinearOperator) -> LinearOperator:
    """Wrap a dense symmetric matrix as an operator; operators pass through unchanged."""
    return A if isinstance(A, LinearOperator) else DenseOperator(A)
