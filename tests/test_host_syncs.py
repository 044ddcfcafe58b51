"""No host synchronisation inside a warm training step, for every update rule (counted on the CPU).

A host sync (``.item()``, ``bool(t)``, a 0-dim tensor used as an index, a data-dependent shape)
makes the CPU wait for the GPU. The same aten ops run on the CPU, so ``HostSyncCounter`` proves
here what a GPU profile would show: the second step of each rule dispatches none of them.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from flatlib.hostsync import HostSyncCounter
from flatlib.models.base import FeatureClassifier
from flatlib.train.rules import StepContext, build_rule


def _model(head: str = "linear") -> FeatureClassifier:
    torch.manual_seed(0)
    features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten())
    classifier = nn.Linear(4 * 6 * 6, 5) if head == "linear" else nn.Sequential(
        nn.Linear(4 * 6 * 6, 8), nn.ReLU(), nn.Linear(8, 5))
    return FeatureClassifier(features, classifier)


def _batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(16, 3, 8, 8, generator=g), torch.randint(0, 5, (16,), generator=g)


CASES = [
    ("standard", {}, "linear"),
    ("sam", {}, "linear"),
    ("sam", {"adaptive": True}, "linear"),
    ("pof", {"search_batch_size": 8}, "linear"),
    ("pof", {"search_batch_size": 8}, "mlp"),  # the generic (vmapped functional_call) line search
    ("pof", {"search_batch_size": 8, "line_search": "golden"}, "linear"),
    ("pof", {"search_batch_size": 8, "classifier_lr": 0.01, "gamma": "linear"}, "linear"),
    ("classifier", {}, "linear"),
    ("fisher", {"num_subbatches": 4}, "linear"),
    ("fisher", {"num_subbatches": 4, "reuse_mean_grad": True}, "linear"),
    ("fisher", {"num_subbatches": 4, "batched": False}, "linear"),
    ("fisher", {"num_subbatches": 4, "first_order": False}, "linear"),
    ("fisher", {"num_subbatches": 4, "clip_tau": 1.0}, "linear"),
    ("fisher", {"num_subbatches": 4, "gradient": "hvp"}, "linear"),
    ("fisher", {"num_subbatches": 4, "gradient": "hvp", "batched": False}, "linear"),
]


@pytest.mark.parametrize("optimizer", ["sgd", "adamw-fused"])
@pytest.mark.parametrize("rule_name,kwargs,head", CASES, ids=lambda v: str(v))
def test_warm_step_makes_no_host_sync(rule_name, kwargs, head, optimizer):
    model = _model(head)
    rule = build_rule(rule_name, **kwargs)
    params = list(rule.trainable(model))
    opt = (torch.optim.SGD(params, lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4) if optimizer == "sgd"
           else torch.optim.AdamW(params, lr=1e-3, fused=True))  # the engine's optimizers on CUDA are fused
    draws = iter(range(100, 200))
    ctx = StepContext(model, opt, F.cross_entropy, draw_batch=lambda: _batch(next(draws)))
    rule.step(ctx, *_batch(0))  # warm: lazily created optimizer state, first-call caches
    ctx.step = 1
    with HostSyncCounter() as syncs:
        loss = rule.step(ctx, *_batch(1))
    assert syncs.count == 0, dict(syncs.ops)
    assert torch.isfinite(loss)


def test_counter_sees_the_syncs_it_should():
    t = torch.arange(5.0)
    with HostSyncCounter() as syncs:
        t.sum().item()
        bool(t.max() > 2)
        t[t.argmax()]  # a 0-dim tensor index reads the index on the host
        t[t > 2]
        torch.isfinite(t).all()  # stays a tensor: no sync
    assert syncs.count >= 4 and syncs.ops["_local_scalar_dense"] >= 2 and syncs.ops["boolean-mask index"] == 1, dict(syncs.ops)
