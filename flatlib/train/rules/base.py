"""Update rules: how one training step turns a batch into a parameter update.

The engine (``flatlib.train.engine``) owns the loop, data, schedule, mixed precision and
checkpoints; an update rule only says what happens inside one step. Plain SGD/Adam is
``StandardRule``; SAM, PoF and the Fisher regularizer are other rules, listed by name in
``flatlib.train.rules.RULES``, so a new method is a small class, not a copy of the training loop.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Iterator

import torch
from torch import nn

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class StepContext:
    """Everything a rule may use during one step.

    ``criterion`` is the mean training loss (label smoothing included, no weight decay:
    weight decay lives in the optimizer). ``draw_batch`` returns a fresh random training
    batch, for rules that need a second draw (PoF's B̃). ``autocast`` returns the
    mixed-precision context the engine chose (bf16 on CUDA, a no-op on CPU).
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    draw_batch: Callable[[], Batch]
    autocast: Callable[[], ContextManager] = contextlib.nullcontext
    epoch: int = 0
    step: int = 0
    logs: dict[str, list[float]] = field(default_factory=dict)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean training loss of the current model on (x, y), under autocast."""
        with self.autocast():
            return self.criterion(self.model(x), y)

    def log(self, name: str, value: float | torch.Tensor) -> None:
        """Record a per-step quantity (kept as a tensor: no host sync inside the step)."""
        self.logs.setdefault(name, []).append(value.detach() if torch.is_tensor(value) else value)


class UpdateRule:
    """Base class: ``step`` updates the model on (x, y) and returns the detached loss at the pre-step weights."""

    name = "base"
    # True when the step may run a model compiled with CUDA graphs (compile="auto" then uses them):
    # one model call per forward, no torch.func transforms, no host reads of graph outputs mid-step
    cuda_graphs = False
    # False when the step cannot run a channels_last model on CUDA (the engine then keeps NCHW)
    channels_last = True

    def step(self, ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def trainable(self, model: nn.Module) -> Iterator[nn.Parameter]:
        """Parameters the optimizer should own (all by default; PoF owns only the feature extractor)."""
        return (p for p in model.parameters() if p.requires_grad)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class StandardRule(UpdateRule):
    """One forward/backward pass and an optimizer step: plain SGD, Adam, AdamW."""

    name = "standard"
    cuda_graphs = True

    def step(self, ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ctx.optimizer.zero_grad(set_to_none=True)
        loss = ctx.loss(x, y)
        loss.backward()
        ctx.optimizer.step()
        return loss.detach()
