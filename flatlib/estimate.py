"""A scalar estimate with its standard error, returned by every randomized estimator."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Estimate:
    """Mean of ``n`` i.i.d. samples and the standard error of that mean."""

    value: float
    stderr: float
    n: int

    @classmethod
    def from_samples(cls, samples: torch.Tensor | list[float]) -> "Estimate":
        s = torch.as_tensor(samples, dtype=torch.float64).flatten()
        n = s.numel()
        se = float(s.std(unbiased=True) / math.sqrt(n)) if n > 1 else float("nan")
        return cls(float(s.mean()), se, n)

    def __float__(self) -> float:
        return self.value
