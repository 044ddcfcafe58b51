"""Optimizers and learning-rate schedules, as small pure functions of the config."""
from __future__ import annotations

from typing import Iterable

import torch

from flatlib.train.config import TrainConfig


def build_optimizer(cfg: TrainConfig, params: Iterable[torch.nn.Parameter], fused: bool = False) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov, L2 weight decay), Adam (L2) or AdamW.

    AdamW is decoupled weight decay as in Loshchilov & Hutter and FF's code: each step first
    does ``p <- p * (1 - lr * wd)``, then the Adam update (this is what ``torch.optim.AdamW`` does).
    ``fused`` selects the fused CUDA kernels.
    """
    params = list(params)
    kw = {"fused": True} if fused else {}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay, **kw)
    cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, **kw)


def lr_at(cfg: TrainConfig, epoch: int) -> float:
    """Learning rate for (0-based) ``epoch`` under the config's schedule (plateau excluded).

    - ``constant``; ``multistep``: ×``lr_factor`` at each milestone epoch (the PoF/WRN recipe);
    - ``linear_decay``: FF Eq. 14 (after Izmailov et al. 2018): with t = epoch/T, constant to
      t = 0.5, linear decay to r·α0 at t = 0.9, then constant. With iterate averaging (Eq. 15)
      T is the averaging start and the schedule ends at α_avg = ``cfg.averaging_lr``
      (default α0/2, the SWA codebase's setting used by FF's Gadam code).
    """
    base = cfg.lr
    if cfg.schedule in ("constant", "plateau"):
        return base
    if cfg.schedule == "multistep":
        return base * cfg.lr_factor ** sum(epoch >= m for m in cfg.milestones)
    if cfg.averaging_start is not None:
        horizon = cfg.averaging_start - 1
        end_ratio = (cfg.averaging_lr if cfg.averaging_lr is not None else base / 2) / base
    else:
        horizon, end_ratio = cfg.epochs, cfg.final_lr_ratio
    t = epoch / max(horizon, 1)
    if t <= 0.5:
        return base
    if t <= 0.9:
        return base * (1 - (1 - end_ratio) * (t - 0.5) / 0.4)
    return base * end_ratio


class Plateau:
    """Divide the lr by 10 when the training loss has not improved by 1e-4 (relative) for ``patience`` epochs."""

    def __init__(self, lr: float, patience: int = 5) -> None:
        self.lr, self.patience, self.best, self.bad = lr, patience, float("inf"), 0

    def update(self, train_loss: float) -> float:
        if train_loss < self.best * (1 - 1e-4):
            self.best, self.bad = train_loss, 0
        else:
            self.bad += 1
            if self.bad > self.patience:
                self.lr, self.bad = self.lr / 10, 0
        return self.lr

    def state_dict(self) -> dict:
        return dict(lr=self.lr, best=self.best, bad=self.bad)

    def load_state_dict(self, s: dict) -> None:
        self.lr, self.best, self.bad = s["lr"], s["best"], s["bad"]


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
