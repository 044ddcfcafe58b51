"""A trained run scored once more from its checkpoint: its fit on the clean training rows and which test
images it gets right (for McNemar's test and the paired, shared-test-set comparisons in
`flatlib.claims.stats`). Used by the FIM scenarios and regularizer and by the FF sweeps.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from flatlib.data import split_tensors
from flatlib.train.config import TrainConfig
from flatlib.train.engine import dataset_for, load_model, resolve_device
from flatlib.store import Store

# the store kind keeps the name of its first user (the FIM scenarios), so the committed records stay valid
KIND = "fim_eval"


def clean_training_set(cfg: TrainConfig, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The run's un-augmented, normalised training inputs without its confusion set (FIM Sec. 7.1:
    "all metrics are computed on the un-augmented training set" / "on the sampled 10000 images")."""
    return split_tensors(dataset_for(cfg), "train", drop_last=cfg.confusion, device=device)


def test_set(cfg: TrainConfig, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The run's normalised test inputs and labels (shared by every run on the same dataset split)."""
    return split_tensors(dataset_for(cfg), "test", device=device)


@torch.no_grad()
def _loss_error(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float, torch.Tensor]:
    was = model.training
    model.eval()
    out = torch.cat([model(x[i:i + 1024]) for i in range(0, len(x), 1024)]).float()
    model.train(was)
    correct = out.argmax(1) == y
    return float(F.cross_entropy(out, y, reduction="mean")), 100.0 * float((~correct).double().mean()), correct


def evaluation(cfg: TrainConfig, store: Store, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The trained run's loss and error (%) on its clean, un-augmented training rows, and which test
    images it classifies correctly (a '0'/'1' string in test-set order, for McNemar's test), cached in
    the store. ``extra``: {name: (spec, fn(model, cfg) -> value)} adds further cached measurements."""
    spec = {"run": cfg.key(), "what": "clean-train fit and test correctness",
            **{k: s for k, (s, _) in (extra or {}).items()}}

    def compute() -> dict[str, Any]:
        device = resolve_device(cfg.device)
        model = load_model(cfg, store, device=device)
        loss, err, _ = _loss_error(model, *clean_training_set(cfg, device))
        _, test_err, correct = _loss_error(model, *test_set(cfg, device))
        out = {"clean_train_loss": loss, "clean_train_error": err, "test_error": test_err,
               "test_correct": "".join("1" if c else "0" for c in correct.tolist())}
        out.update({k: fn(model, cfg) for k, (_, fn) in (extra or {}).items()})
        return out

    return store.cached(KIND, spec, compute)


def correct_vector(ev: Mapping[str, Any]) -> np.ndarray:
    """The per-image correctness of an ``evaluation`` record (or a result row holding its ``test_correct``)."""
    return np.frombuffer(ev["test_correct"].encode(), dtype=np.uint8) == ord("1")
