"""DenseNet-BC (Huang et al., 2017), the FIM paper's DenseNet-BC-k=12 (depth 100)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import FeatureClassifier, image_size, kaiming_init


class DenseLayer(nn.Module):
    """Bottleneck layer BN-ReLU-conv1x1(4k)-BN-ReLU-conv3x3(k); its k new maps are concatenated to the input."""

    def __init__(self, c_in: int, growth_rate: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, 4 * growth_rate, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth_rate)
        self.conv2 = nn.Conv2d(4 * growth_rate, growth_rate, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(x))))))
        return torch.cat([x, y], dim=1)


def _transition(c_in: int, c_out: int) -> nn.Sequential:
    """BN-ReLU-conv1x1 compression followed by 2×2 average pooling."""
    return nn.Sequential(nn.BatchNorm2d(c_in), nn.ReLU(), nn.Conv2d(c_in, c_out, 1, bias=False), nn.AvgPool2d(2))


def densenet_bc(
    *, in_channels: int, num_classes: int, input_size: int | tuple[int, ...] = 32,
    depth: int = 100, growth_rate: int = 12,
) -> FeatureClassifier:
    """DenseNet-BC for CIFAR: stem conv3x3(2k), three dense blocks of n = (depth − 4)/6 bottleneck
    layers separated by transitions with compression 0.5, then BN-ReLU-global pool → Linear.

    No dropout (the paper uses none with data augmentation). Depth 100, k = 12 has 769,162
    parameters on CIFAR-10 (the paper's "0.8M").
    """
    image_size(input_size)
    if depth < 10 or (depth - 4) % 6:
        raise ValueError(f"densenet_bc depth must be 6n + 4 with n >= 1, got {depth}")
    n = (depth - 4) // 6
    c = 2 * growth_rate
    layers: list[nn.Module] = [nn.Conv2d(in_channels, c, 3, padding=1, bias=False)]
    for block in range(3):
        for _ in range(n):
            layers.append(DenseLayer(c, growth_rate))
            c += growth_rate
        if block < 2:
            layers.append(_transition(c, c // 2))
            c //= 2
    layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return kaiming_init(FeatureClassifier(nn.Sequential(*layers), nn.Linear(c, num_classes)))
