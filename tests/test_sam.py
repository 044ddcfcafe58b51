"""SAM / ASAM update rule: reduction to the base optimizer, a hand-written two-pass step, BN, exact restore."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from flatlib._torch import bn_stats_frozen
from flatlib.train.rules import StandardRule, StepContext, build_rule


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 3)).double()


def _batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(16, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (16,), generator=g)


def _ctx(model: nn.Module, opt: torch.optim.Optimizer) -> StepContext:
    return StepContext(model, opt, F.cross_entropy, draw_batch=lambda: _batch(99))


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_rho_zero_is_the_base_optimizer_bit_for_bit():
    a, b = _model(), _model()
    opt_a = torch.optim.SGD(a.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    opt_b = torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sam, std = build_rule("sam", rho=0.0), StandardRule()
    for s in range(5):
        x, y = _batch(s)
        la = sam.step(_ctx(a, opt_a), x, y)
        lb = std.step(_ctx(b, opt_b), x, y)
        assert torch.equal(la, lb)
    for (k, va), vb in zip(_state(a).items(), _state(b).values()):
        assert torch.equal(va, vb), k


def _hand_sam_step(model: nn.Module, x, y, rho: float, lr: float, wd: float, adaptive: bool = False, eta: float = 0.01):
    """Two explicit passes with functional_call: g at w, e, g at w + e (batch-statistics BN), SGD with wd."""
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    buffers = {k: v.clone() for k, v in model.named_buffers()}

    def loss(p):
        with bn_stats_frozen(model):
            return F.cross_entropy(functional_call(model, (p, buffers), (x,)), y)

    g = torch.func.grad(loss)(params)
    if adaptive:
        t = {k: (params[k].abs() + eta) if k.endswith("weight") else torch.ones_like(params[k]) for k in params}
        norm = torch.sqrt(sum(((t[k] * g[k]) ** 2).sum() for k in params))
        e = {k: rho * t[k] ** 2 * g[k] / norm for k in params}
    else:
        norm = torch.sqrt(sum((v ** 2).sum() for v in g.values()))
        e = {k: rho * g[k] / norm for k in params}
    g2 = torch.func.grad(loss)({k: params[k] + e[k] for k in params})
    return {k: params[k] - lr * (g2[k] + wd * params[k]) for k in params}


def _check_one_step(adaptive: bool, rho: float):
    model = _model()
    x, y = _batch()
    expected = _hand_sam_step(model, x, y, rho=rho, lr=0.3, wd=1e-2, adaptive=adaptive)
    ref_bn = copy.deepcopy(model)
    ref_bn(x)  # one training-mode forward at w: the running statistics SAM must end with
    opt = torch.optim.SGD(model.parameters(), lr=0.3, weight_decay=1e-2)
    build_rule("sam", rho=rho, adaptive=adaptive).step(_ctx(model, opt), x, y)
    for k, v in model.named_parameters():
        torch.testing.assert_close(v, expected[k], rtol=1e-12, atol=1e-12)
    for (k, v), r in zip(model.named_buffers(), ref_bn.buffers()):
        assert torch.equal(v, r), f"BN buffer {k} must be updated by the first pass only"


def test_one_sam_step_equals_hand_written_two_pass_computation():
    _check_one_step(adaptive=False, rho=0.05)


def test_one_asam_step_equals_hand_written_two_pass_computation():
    _check_one_step(adaptive=True, rho=0.5)


def test_old_weights_are_restored_exactly():
    """With lr = 0 the base optimizer leaves w alone, so SAM must put back the exact pre-step weights."""
    model = _model()
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    x, y = _batch()
    build_rule("sam", rho=0.5).step(_ctx(model, opt), x, y)
    for k, v in model.named_parameters():
        assert torch.equal(v, before[k]), k


def test_bn_stats_frozen_restores_flags_and_buffers():
    model = _model()
    buffers = _state(model)
    with bn_stats_frozen(model):
        model(_batch()[0])
    assert model[1].track_running_stats
    for k, v in model.state_dict().items():
        assert torch.equal(v, buffers[k]), k
