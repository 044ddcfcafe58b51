"""Batched curvature: vmapped HVP columns, block Hutchinson, and Lanczos stopped on the Ritz-value error bound."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from flatlib.curvature import HessianOperator, hutchinson_trace, lanczos


def _problem():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()
    g = torch.Generator().manual_seed(1)
    return model, (torch.randn(40, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (40,), generator=g))


def test_vmap_hvp_equals_double_backward():
    model, data = _problem()
    ops = {m: HessianOperator(model, data, batch_size=16, dtype=torch.float64, method=m)
           for m in ("double-backward", "forward-over-reverse-vmap")}
    M = torch.randn(ops["double-backward"].dim, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    a, b = (op.matmat(M) for op in ops.values())
    torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)
    assert ops["forward-over-reverse-vmap"].num_matvecs == 6


def test_block_hutchinson_is_unbiased_and_block_one_is_unchanged():
    g = torch.Generator().manual_seed(3)
    Q, _ = torch.linalg.qr(torch.randn(60, 60, generator=g, dtype=torch.float64))
    A = Q @ torch.diag(torch.linspace(-1, 5, 60, dtype=torch.float64)) @ Q.T
    one = hutchinson_trace(A, num_samples=40, seed=5)
    assert hutchinson_trace(A, num_samples=40, seed=5, block_size=1).value == one.value
    values = torch.tensor([hutchinson_trace(A, num_samples=32, seed=s, block_size=8).value for s in range(200)])
    se = values.std() / 200 ** 0.5
    assert abs(float(values.mean()) - float(torch.trace(A))) < 4 * se  # calibration over seeds, not one lucky draw
    est = hutchinson_trace(A, num_samples=400, seed=0, block_size=16, rel_stderr=0.02)
    assert est.n % 16 == 0 and est.stderr <= 0.02 * abs(est.value)


@pytest.mark.parametrize("seed", range(5))
def test_gap_stop_meets_the_tolerance_with_fewer_products(seed):
    g = torch.Generator().manual_seed(seed)
    n = 300
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    lam = torch.cat([torch.tensor([10.0, 7.0, 6.5], dtype=torch.float64), torch.rand(n - 3, generator=g, dtype=torch.float64) * 5])
    A = Q @ torch.diag(lam) @ Q.T
    tol = 1e-3
    res = lanczos(A, k=1, tol=tol, seed=seed, stop="residual")
    gap = lanczos(A, k=1, tol=tol, seed=seed, stop="gap")
    assert gap.converged and abs(float(gap.eigenvalues[0]) - 10.0) <= tol * 10.0
    assert gap.num_matvecs <= res.num_matvecs
