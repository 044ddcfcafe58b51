"""The Fisher regularizer's gradient under the GPU path's matrix-product precision, against float64.

On CUDA the regularizer's sub-batch passes run in float32 with autocast off, but cuDNN convolutions
(and matmuls where enabled) use TF32: operands rounded to 10 mantissa bits, float32 accumulation.
``ReducedPrecision`` emulates that on the CPU by rounding the floating operands of every matrix
product and convolution (forward, backward and forward-mode) to TF32 or bf16. The first-order
regularizer gradient is compared with the same quantity in float64 at gradient sizes reached after
the first lr drop (when the paper switches the regularizer on). The paper's difference form
g_i − ∇L(B_i, w − α g_i) cancels to ~α·λ relative and loses that to rounding; the HVP form α H_i g_i
(``FisherRule(gradient="hvp")``) does not.
"""
from __future__ import annotations

import contextlib
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from flatlib.train.rules.fisher import FisherRule
from flatlib.train.rules import StepContext

aten = torch.ops.aten
_PRODUCTS = {aten.mm.default, aten.addmm.default, aten.bmm.default, aten.baddbmm.default,
             aten.convolution.default, aten.convolution_backward.default}
_MANTISSA = {"tf32": 10, "bf16": 7}


def round_mantissa(t: torch.Tensor, bits: int) -> torch.Tensor:
    """float32 → the nearest float32 with ``bits`` explicit mantissa bits (round half to even)."""
    drop = 23 - bits
    i = t.view(torch.int32)
    i = (i + ((1 << (drop - 1)) - 1) + ((i >> drop) & 1)) & ~((1 << drop) - 1)
    return i.view(torch.float32)


class ReducedPrecision(TorchDispatchMode):
    """Matrix products and convolutions see float32 operands rounded to ``fmt`` ("tf32" or "bf16")."""

    def __init__(self, fmt: str) -> None:
        super().__init__()
        self.bits = _MANTISSA[fmt]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in _PRODUCTS:
            args = tuple(round_mantissa(a, self.bits) if torch.is_tensor(a) and a.dtype == torch.float32 else a
                         for a in args)
        return func(*args, **(kwargs or {}))


def _teacher_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 16, generator=g, dtype=torch.float64)
    w = torch.randn(16, 5, generator=g, dtype=torch.float64)
    return x, (x @ w + 0.5 * torch.randn(n, 5, generator=g, dtype=torch.float64)).argmax(1)


@pytest.fixture(scope="module")
def trained():
    """An MLP trained (float64) until its batch gradient is > 10× smaller than at initialisation, as after an lr drop."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 5)).double()
    x, y = _teacher_data(2048, 0)
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    grad_norm = lambda: torch.cat([g.flatten() for g in torch.autograd.grad(  # noqa: E731
        F.cross_entropy(model(x[:64]), y[:64]), list(model.parameters()))]).norm()
    g_init = float(grad_norm())
    for epoch in range(30):
        for i in range(0, 2048, 64):
            opt.zero_grad()
            F.cross_entropy(model(x[i:i + 64]), y[i:i + 64]).backward()
            opt.step()
    return model, x[:64], y[:64], g_init, float(grad_norm())  # a training batch, as in a training step


BETA = 1e6  # the step's gradient is β∇R + (1/M)Σg_i: a large β makes the reduced-precision mean gradient negligible


def regularizer_gradient(model: nn.Module, x, y, dtype, gradient: str, fmt: str | None = None) -> torch.Tensor:
    """∇R_α of one FisherRule step (M = 8, α = 1e-4), read from the gradient it hands the optimizer, in float64."""
    model = copy.deepcopy(model).to(dtype)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # a step that leaves p.grad for us to read
    ctx = StepContext(model, opt, F.cross_entropy, draw_batch=lambda: (x, y))
    rule = FisherRule(alpha=1e-4, beta=BETA, num_subbatches=8, reuse_mean_grad=True, gradient=gradient)
    with ReducedPrecision(fmt) if fmt else contextlib.nullcontext():
        rule.step(ctx, x.to(dtype), y)
    update = torch.cat([p.grad.flatten() for p in model.parameters()]).double()
    plain = copy.deepcopy(model).double()
    mean_grad = torch.cat([g.flatten() for g in torch.autograd.grad(
        F.cross_entropy(plain(x.double()), y), list(plain.parameters()))])
    return (update - mean_grad) / BETA


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


@pytest.fixture(scope="module")
def reference(trained):
    model, x, y, g_init, g_now = trained
    assert g_now < g_init / 10
    return regularizer_gradient(model, x, y, torch.float64, "difference")


@pytest.mark.parametrize("fmt", [None, "tf32", "bf16"])
def test_hvp_gradient_matches_float64_under_reduced_precision(trained, reference, fmt):
    model, x, y, *_ = trained
    got = regularizer_gradient(model, x, y, torch.float32, "hvp", fmt)
    assert _cos(reference, got) >= 0.99
    assert float((got - reference).norm() / reference.norm()) < 0.1


def test_difference_form_cancels_under_tf32(trained, reference):
    """Why the HVP form exists: the paper's difference of two gradients is lost to TF32 rounding at these sizes."""
    model, x, y, *_ = trained
    assert _cos(reference, regularizer_gradient(model, x, y, torch.float32, "difference", "tf32")) < 0.9


def test_hvp_and_difference_forms_agree_in_float64(trained, reference):
    model, x, y, *_ = trained
    assert _cos(reference, regularizer_gradient(model, x, y, torch.float64, "hvp")) > 1 - 1e-6


def test_round_mantissa_keeps_the_format_exactly():
    t = torch.randn(1000)
    for fmt, bits in _MANTISSA.items():
        r = round_mantissa(t, bits)
        assert torch.equal(round_mantissa(r, bits), r)
        assert float(((r - t).abs() / t.abs()).max()) <= 2.0 ** -(bits + 1)
    assert torch.equal(round_mantissa(t, 7), t.bfloat16().float())  # bf16 conversion rounds half to even too
