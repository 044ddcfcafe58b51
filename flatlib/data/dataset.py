"""`ArrayDataset`: a whole dataset as four tensors, plus the statistics used to normalise it."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch


@dataclass
class ArrayDataset:
    """Train and test splits held as tensors, small enough to live on one device.

    Images are ``(N, C, H, W)`` (``uint8`` for datasets stored as bytes, ``float32`` in [0, 1]
    otherwise); 1-D signals and tabular data are ``(N, D)`` ``float32`` with one "channel".
    ``mean``/``std`` are the per-channel statistics of ``x_train`` after scaling to [0, 1]
    (``uint8 / 255``), the constants a loader normalises with.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.x_train) != len(self.y_train) or len(self.x_test) != len(self.y_test):
            raise ValueError(f"{self.name}: inputs and labels differ in length")
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise ValueError(f"{self.name}: mean/std need one entry per channel ({self.in_channels})")

    @classmethod
    def from_tensors(cls, name: str, x_train: torch.Tensor, y_train: torch.Tensor,
                     x_test: torch.Tensor, y_test: torch.Tensor, num_classes: int) -> "ArrayDataset":
        """Build a dataset, computing ``mean``/``std`` from the training inputs."""
        mean, std = channel_stats(x_train)
        return cls(name, x_train, y_train.long(), x_test, y_test.long(), num_classes, mean, std)

    @property
    def in_channels(self) -> int:
        return self.x_train.shape[1] if self.x_train.ndim >= 3 else 1

    @property
    def input_size(self) -> tuple[int, ...]:
        """Spatial shape of one input: ``(H, W)`` for images, ``(D,)`` for ``(N, D)`` data."""
        return tuple(self.x_train.shape[2:] if self.x_train.ndim >= 3 else self.x_train.shape[1:])

    @property
    def n_train(self) -> int:
        return len(self.x_train)

    @property
    def n_test(self) -> int:
        return len(self.x_test)

    def to(self, device: torch.device | str) -> "ArrayDataset":
        """A copy with all four tensors on ``device``."""
        return dataclasses.replace(self, x_train=self.x_train.to(device), y_train=self.y_train.to(device),
                                   x_test=self.x_test.to(device), y_test=self.y_test.to(device))


def channel_stats(x: torch.Tensor, chunk: int = 8192) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) standard deviation of ``x`` scaled to [0, 1].

    Accumulates sums in float64 over chunks of samples, so a uint8 dataset of a few GB
    (SVHN with its extra split) is never copied to float as a whole.
    """
    scale = 255.0 if x.dtype == torch.uint8 else 1.0
    channels = x.shape[1] if x.ndim >= 3 else 1
    total = torch.zeros(channels, dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    for part in x.split(chunk):
        part = part.to(torch.float64).div(scale).reshape(len(part), channels, -1)
        total += part.sum((0, 2)).cpu()
        total_sq += part.square().sum((0, 2)).cpu()
    count = x.numel() / len(total)
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())
