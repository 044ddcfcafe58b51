"""PoF's one-broadcast line search selects the same step as the two dependent sweeps it replaced."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from flatlib.measures.classifier import minibatch_line_search


def _two_sweep(clf: nn.Module, criterion, features, y, theta0, init_step=1.0, cap=1e4, grid=16):
    """The previous implementation, literally: the ladder in one vmap, then the grid of the bracket in a second."""
    def loss(theta):
        return criterion(functional_call(clf, theta, (features,)), y)

    g = grad(loss)(theta0)
    loss_at = vmap(lambda t: loss({k: theta0[k] - t * g[k] for k in theta0}))
    loss0 = loss(theta0)
    n = max(1, math.ceil(math.log2(cap / init_step)))
    ladder = init_step * 2.0 ** torch.arange(n, dtype=loss0.dtype)
    rises = loss_at(ladder) > loss0
    rejected = ~rises.any()
    upper = ladder[rises.to(torch.uint8).argmax()]
    steps = upper * torch.arange(1, grid + 1, dtype=loss0.dtype) / grid
    best = steps[loss_at(steps).argmin()]
    return torch.where(rejected, torch.zeros_like(best), best), rejected, upper


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_broadcast_line_search_equals_the_two_sweep_search(bias, smoothing):
    criterion = lambda z, y: F.cross_entropy(z, y, label_smoothing=smoothing)  # noqa: E731
    seen_rejected = seen_accepted = 0
    for seed in range(40):
        g = torch.Generator().manual_seed(seed)
        n, d, k = 24, 7, 5
        clf = nn.Linear(d, k, bias=bias).double()
        scale = [1e-3, 0.1, 1.0, 10.0][seed % 4]  # from tiny to confident classifiers: brackets all along the ladder
        with torch.no_grad():
            for p in clf.parameters():
                p.copy_(scale * torch.randn(p.shape, generator=g, dtype=torch.float64))
        features = torch.randn(n, d, generator=g, dtype=torch.float64) * (1 + seed % 3)
        y = torch.randint(0, k, (n,), generator=g)
        model = nn.Module()
        model.classifier = clf
        theta0 = {name: p.detach() for name, p in clf.named_parameters()}
        cap = [1e4, 4.0][seed % 2]
        res, _, _ = minibatch_line_search(model, criterion, features, y, theta0, cap=cap)
        step, rejected, upper = _two_sweep(clf, criterion, features, y, theta0, cap=cap)
        assert bool(res.rejected) == bool(rejected), seed
        assert torch.equal(res.upper, upper), seed
        assert torch.equal(res.step, step), (seed, float(res.step), float(step))
        seen_rejected += bool(rejected)
        seen_accepted += not bool(rejected)
    assert seen_rejected and seen_accepted  # both branches exercised
