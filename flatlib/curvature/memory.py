"""Where the Lanczos basis lives: a memory plan for tens of millions of parameters.

Lanczos with full re-orthogonalisation keeps every Krylov vector: ``P × m`` numbers. For FF's
WRN-28-10 (P = 36.5M) and m = 100 iterations that is 29 GB in float64, 15 GB in float32 — beside
the model, its double-backward graph and a batch of activations on the same GPU. `basis_plan`
picks, from the free device memory, the first of

1. float64 on the operator's device (the reference precision; every test model),
2. float32 on the device (re-orthogonalisation still accumulates in float64, chunk by chunk),
3. float32 in host memory (each new vector is re-orthogonalised on the host; slower per
   iteration, but an HVP of a large network costs far more),

whose basis takes at most ``fraction`` of the free memory. On the CPU the basis is float64 in
host memory, as before.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

# share of the free device memory the basis may take: the HVP's graph and activations need the rest
DEFAULT_FRACTION = 0.5


@dataclass(frozen=True)
class BasisPlan:
    """dtype and device of a ``(dim, num_vectors)`` Lanczos basis, its size, and why."""

    dtype: torch.dtype
    device: torch.device
    bytes: int
    reason: str


def free_device_memory(device: torch.device | str) -> int | None:
    """Free bytes on a CUDA device (``torch.cuda.mem_get_info``); None for the CPU (host memory)."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    return int(torch.cuda.mem_get_info(device)[0])


def basis_plan(dim: int, num_vectors: int, device: torch.device | str, *, free_bytes: int | None = None,
               fraction: float = DEFAULT_FRACTION) -> BasisPlan:
    """The basis layout for ``num_vectors`` Lanczos vectors of length ``dim`` next to an operator on ``device``.

    ``free_bytes`` (default: measured with `free_device_memory`) is the device's free memory; the
    basis may take ``fraction`` of it.

    Example:
        >>> basis_plan(36_500_000, 100, "cuda", free_bytes=40 * 2**30).dtype  # 29 GB in float64 > 20 GB
        torch.float32
    """
    device = torch.device(device)
    size64, size32 = dim * num_vectors * 8, dim * num_vectors * 4
    if device.type != "cuda":
        return BasisPlan(torch.float64, torch.device("cpu"), size64, "host operator: float64 basis in host memory")
    free = free_device_memory(device) if free_bytes is None else free_bytes
    budget = fraction * free
    gb = 2.0 ** 30
    if size64 <= budget:
        return BasisPlan(torch.float64, device, size64, f"float64 basis {size64 / gb:.2f} GiB fits {budget / gb:.2f} GiB")
    if size32 <= budget:
        return BasisPlan(torch.float32, device, size32,
                         f"float64 basis {size64 / gb:.2f} GiB > {budget / gb:.2f} GiB: float32 on the device")
    return BasisPlan(torch.float32, torch.device("cpu"), size32,
                     f"float32 basis {size32 / gb:.2f} GiB > {budget / gb:.2f} GiB: float32 in host memory")


def _row_chunk(V: torch.Tensor, k: int, elements: int = 2**24) -> int:
    """Rows per chunk so that a float64 copy of ``(rows, k)`` columns holds ~``elements`` numbers (128 MB)."""
    return max(1, elements // max(k, 1))


def project_out(V: torch.Tensor, k: int, w: torch.Tensor) -> torch.Tensor:
    """``w − V_k (V_kᵀ w)`` for the first ``k`` columns of ``V``, accumulated in float64 (``w`` is float64).

    A float64 basis on ``w``'s device is one pair of matrix products; any other basis (float32,
    or in host memory) is read in row chunks cast to float64 on the basis's device, so no float64
    copy of the whole basis is ever made.
    """
    if V.dtype == torch.float64 and V.device == w.device:
        return w - V[:, :k] @ (V[:, :k].T @ w)
    rows = _row_chunk(V, k)
    coeffs = torch.zeros(k, dtype=torch.float64, device=V.device)
    for r in range(0, V.shape[0], rows):
        coeffs += V[r:r + rows, :k].to(torch.float64).T @ w[r:r + rows].to(V.device)
    out = w.clone()
    for r in range(0, V.shape[0], rows):
        out[r:r + rows] -= (V[r:r + rows, :k].to(torch.float64) @ coeffs).to(w.device)
    return out


def combine(V: torch.Tensor, S: torch.Tensor, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``V S`` (Ritz vectors) in ``dtype`` on ``device``, computed in float64 row chunks of the basis."""
    if V.dtype == torch.float64 and V.device == torch.device(device):
        return (V @ S.to(V.device)).to(dtype)
    out = torch.empty(V.shape[0], S.shape[1], dtype=dtype, device=device)
    S = S.to(device=V.device, dtype=torch.float64)
    rows = _row_chunk(V, V.shape[1])
    for r in range(0, V.shape[0], rows):
        out[r:r + rows] = (V[r:r + rows].to(torch.float64) @ S).to(device=device, dtype=dtype)
    return out
