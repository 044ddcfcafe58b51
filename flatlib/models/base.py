"""The shared shape of every model: ``logits = classifier(features(x))``, plus layer listing and init.

PoF (Sec. 3) post-trains the feature extractor with the classifier held fixed, and the curvature
code looks at one weight layer at a time, so every network in :mod:`flatlib.models` is a
:class:`FeatureClassifier` whose two halves are separate modules and whose weight layers are
registered in the order the forward pass calls them.
"""
from __future__ import annotations

import math

from torch import Tensor, nn


class FeatureClassifier(nn.Module):
    """A network split into ``features: x -> (N, F)`` and ``classifier: (N, F) -> (N, K)``."""

    def __init__(self, features: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.features = features
        self.classifier = classifier

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


_WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The Linear and Conv modules of ``model`` as ``(qualified name, module)``, in forward order.

    Every model of this package registers its layers in the order its forward pass calls them
    (a residual projection comes after the block's two convolutions), so registration order is
    forward order.
    """
    return [(n, m) for n, m in model.named_modules() if isinstance(m, _WEIGHT_LAYERS)]


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters (BatchNorm affine weights included, running statistics not)."""
    return sum(p.numel() for p in model.parameters())


def kaiming_init(model: nn.Module) -> nn.Module:
    """He et al. (2015) init for convolutions, N(0, 2 / (k² · C_out)), zero conv biases; BN weight 1, bias 0.

    This is the init of the ResNet/WRN/DenseNet/VGG reference codes. Linear layers keep PyTorch's
    default. Returns ``model`` for chaining.
    """
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model


def _spatial(input_size: int | tuple[int, ...]) -> tuple[int, ...]:
    return (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)


def image_size(input_size: int | tuple[int, ...]) -> tuple[int, int]:
    """``(H, W)`` of a 2-D input; an int means a square image. Convolutional models need 2-D input."""
    size = _spatial(input_size)
    if len(size) != 2:
        raise ValueError(f"convolutional models need a 2-D input_size (H, W), got {input_size!r}")
    return size


def input_numel(in_channels: int, input_size: int | tuple[int, ...]) -> int:
    """Number of input features of one sample: ``in_channels · prod(input_size)`` (int = square image)."""
    return in_channels * math.prod(_spatial(input_size))


def scaled(channels: int, width: float) -> int:
    """``channels`` times a width multiplier, rounded, at least 1."""
    return max(1, round(channels * width))
