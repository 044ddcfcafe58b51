"""One table of test cases shared by the curvature, Fisher, measures and update-rule tests.

Tiny models with a ``features``/``classifier`` split (an MLP with dropout, a CNN, a CNN with
BatchNorm whose running statistics differ from any batch's), crossed with the BN modes and
dtypes; on a machine with CUDA a device axis is added automatically. ``snapshot`` and
``assert_untouched`` check that an estimator left the model bit-identical.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import itertools

import torch
from torch import nn

N, SIZES = 30, [12, 11, 7]  # a dataset split into batches of unequal size
MODELS = ("mlp", "cnn", "cnn_bn")
BN_MODES = ("eval", "train")
DTYPES = (torch.float64, torch.float32)
DEVICES = ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 6), nn.Tanh(), nn.Dropout(0.5))
        self.classifier = nn.Linear(6, 3)

    def forward(self, x):
        return self.classifier(self.features(x))


class CNN(nn.Module):
    def __init__(self, batch_norm: bool):
        super().__init__()
        norm = nn.BatchNorm2d(3) if batch_norm else nn.Identity()
        self.features = nn.Sequential(nn.Conv2d(1, 3, 3), norm, nn.ReLU(), nn.Conv2d(3, 4, 3), nn.Tanh(),
                                      nn.Flatten())
        self.classifier = nn.Linear(16, 3)

    def forward(self, x):
        return self.classifier(self.features(x))


@functools.cache
def _problem(name: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    if name == "mlp":
        model, X = MLP(), torch.randn(N, 5)
    else:
        model, X = CNN(batch_norm=name == "cnn_bn"), torch.randn(N, 1, 6, 6)
    if name == "cnn_bn":  # non-trivial running statistics, so that eval and train BN differ
        with torch.no_grad():
            model.train()(X + 0.5)
    return model.eval(), X, torch.randint(0, 3, (N,))


def problem(name: str, dtype: torch.dtype = torch.float32, device: str = "cpu"
            ) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A fresh copy of a small model (in eval mode) and its dataset (X, Y), in ``dtype`` on ``device``."""
    model, X, Y = _problem(name)
    return copy.deepcopy(model).to(dtype=dtype, device=device), X.to(dtype=dtype, device=device), Y.to(device)


def batches(X: torch.Tensor, Y: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(zip(X.split(SIZES), Y.split(SIZES)))


@dataclasses.dataclass(frozen=True)
class Case:
    model: str
    bn_mode: str = "eval"
    dtype: torch.dtype = torch.float64
    device: str = "cpu"

    @property
    def id(self) -> str:
        return f"{self.model}-{self.bn_mode}-{str(self.dtype).removeprefix('torch.')}-{self.device}"

    def problem(self) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
        return problem(self.model, self.dtype, self.device)


def cases(models=MODELS, bn_modes=BN_MODES, dtypes=DTYPES, devices=DEVICES) -> list[Case]:
    """The cross product, without the redundant train-mode cases of models that have no BatchNorm."""
    return [Case(m, b, d, dev) for m, b, d, dev in itertools.product(models, bn_modes, dtypes, devices)
            if b == "eval" or m == "cnn_bn"]


def ids(table: list[Case]) -> list[str]:
    return [c.id for c in table]


def snapshot(model: nn.Module) -> dict:
    """Everything an estimator must leave alone: state (BN buffers included), grads, flags."""
    return {"state": {k: v.clone() for k, v in model.state_dict().items()},
            "grad": {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()},
            "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
            "training": [m.training for m in model.modules()],
            "track": [getattr(m, "track_running_stats", None) for m in model.modules()]}


def assert_untouched(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert after["requires_grad"] == before["requires_grad"]
    assert after["training"] == before["training"] and after["track"] == before["track"]
    assert before["state"].keys() == after["state"].keys()
    for k, v in before["state"].items():
        assert torch.equal(after["state"][k], v), k
    for k, v in before["grad"].items():
        assert (v is None and after["grad"][k] is None) or torch.equal(after["grad"][k], v), k
