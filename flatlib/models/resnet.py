"""Pre-activation residual networks (He et al., 2016b, "Identity mappings in deep residual networks").

A block computes ``o = ReLU(BN(x))``, a residual branch on ``o``, and adds the shortcut: ``x``
itself, or a 1×1 convolution of ``o`` where the shape changes (projection on the pre-activated
input, as in He et al.'s pre-act code). The network is conv3x3 stem → stages → BN → ReLU → global
average pool → Linear; the final BN+ReLU and the pool belong to ``features``.
Wide ResNets (:mod:`flatlib.models.wrn`) reuse :func:`preact_resnet` with :class:`PreActBlock`.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from .base import FeatureClassifier, image_size, kaiming_init, scaled


class PreActBlock(nn.Module):
    """Basic block: BN-ReLU-conv3x3(stride)-BN-ReLU-[dropout]-conv3x3, plus the shortcut."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int, *, dropout: float = 0.0, bias: bool = False) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, planes, 3, stride=stride, padding=1, bias=bias)
        self.bn2 = nn.BatchNorm2d(planes)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=bias)
        needs_projection = stride != 1 or c_in != planes
        self.shortcut = nn.Conv2d(c_in, planes, 1, stride=stride, bias=bias) if needs_projection else None

    def forward(self, x: Tensor) -> Tensor:
        o = F.relu(self.bn1(x))
        y = self.conv2(self.dropout(F.relu(self.bn2(self.conv1(o)))))
        return y + (x if self.shortcut is None else self.shortcut(o))


class PreActBottleneck(nn.Module):
    """Bottleneck block: BN-ReLU-conv1x1-BN-ReLU-conv3x3(stride)-BN-ReLU-conv1x1(4·planes), plus the shortcut."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int) -> None:
        super().__init__()
        c_out = planes * self.expansion
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, c_out, 1, bias=False)
        needs_projection = stride != 1 or c_in != c_out
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False) if needs_projection else None

    def forward(self, x: Tensor) -> Tensor:
        o = F.relu(self.bn1(x))
        y = self.conv2(F.relu(self.bn2(self.conv1(o))))
        y = self.conv3(F.relu(self.bn3(y)))
        return y + (x if self.shortcut is None else self.shortcut(o))


def preact_resnet(
    block: type[PreActBlock] | type[PreActBottleneck], *, in_channels: int, num_classes: int,
    stem: int, planes: Sequence[int], blocks_per_stage: int, stem_bias: bool = False, **block_options,
) -> FeatureClassifier:
    """Stem conv3x3(stem) → one stage per entry of ``planes`` (stride 2 from the second on) → BN-ReLU-pool → Linear."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, stem, 3, padding=1, bias=stem_bias)]
    c = stem
    for i, p in enumerate(planes):
        for j in range(blocks_per_stage):
            layers.append(block(c, p, 2 if i > 0 and j == 0 else 1, **block_options))
            c = p * block.expansion
    layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return kaiming_init(FeatureClassifier(nn.Sequential(*layers), nn.Linear(c, num_classes)))


def resnet20(
    *, in_channels: int, num_classes: int, input_size: int | tuple[int, ...] = 32, width: float = 1.0,
) -> FeatureClassifier:
    """Pre-activation ResNet-20 for CIFAR (FIM: He et al. 2016a's ResNet-20 with pre-activation).

    Stem of 16 filters and three stages of 3 basic blocks with 16, 32, 64 filters, all times
    ``width``; 1×1 projection shortcuts where the shape changes (He 2016a used parameter-free
    zero-padding shortcuts; the pre-activation code uses projections).
    """
    image_size(input_size)
    return preact_resnet(
        PreActBlock, in_channels=in_channels, num_classes=num_classes,
        stem=scaled(16, width), planes=[scaled(c, width) for c in (16, 32, 64)], blocks_per_stage=3,
    )


def preresnet164(
    *, in_channels: int, num_classes: int, input_size: int | tuple[int, ...] = 32,
    depth: int = 164, width: float = 1.0,
) -> FeatureClassifier:
    """Bottleneck pre-activation ResNet (He et al., 2016b) of ``depth = 9n + 2``, FF-F4.

    Stem of 16 filters, three stages of n bottleneck blocks with 16, 32, 64 planes (outputs 4×),
    times ``width``. Depth 164 has 1,726,388 parameters on CIFAR-100.
    """
    image_size(input_size)
    if depth < 11 or (depth - 2) % 9:
        raise ValueError(f"preresnet164 depth must be 9n + 2 with n >= 1, got {depth}")
    return preact_resnet(
        PreActBottleneck, in_channels=in_channels, num_classes=num_classes,
        stem=scaled(16, width), planes=[scaled(c, width) for c in (16, 32, 64)], blocks_per_stage=(depth - 2) // 9,
    )
