"""Fully connected models: softmax regression and ReLU MLPs (FF Sec. 4, PoF's toy MLP).

Inputs of any shape ``(N, C, *input_size)`` or ``(N, *input_size)`` are flattened to
``in_channels · prod(input_size)`` features, so the same builders serve 28×28 MNIST, 8×8 digits
and 1-D MNIST-1D signals (``in_channels=1, input_size=(40,)``).
"""
from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from .base import FeatureClassifier, input_numel


def mlp(
    *, in_channels: int, num_classes: int, input_size: int | tuple[int, ...] = 32,
    widths: Sequence[int] = (100,),
) -> FeatureClassifier:
    """Flatten → [Linear(·, w) → ReLU for w in widths] → Linear(·, num_classes).

    ``features`` is everything up to the last hidden ReLU; ``classifier`` is the output Linear.
    ``widths=()`` is softmax regression.
    """
    layers: list[nn.Module] = [nn.Flatten()]
    fan_in = input_numel(in_channels, input_size)
    for w in widths:
        layers += [nn.Linear(fan_in, w), nn.ReLU()]
        fan_in = w
    return FeatureClassifier(nn.Sequential(*layers), nn.Linear(fan_in, num_classes))


def logreg(*, in_channels: int, num_classes: int, input_size: int | tuple[int, ...] = 32) -> FeatureClassifier:
    """Softmax (multinomial logistic) regression, FF-F1: 784·10 + 10 = 7,850 parameters on MNIST."""
    return mlp(in_channels=in_channels, num_classes=num_classes, input_size=input_size, widths=())


def mlp100(*, in_channels: int, num_classes: int, input_size: int | tuple[int, ...] = 32) -> FeatureClassifier:
    """One hidden layer of 100 ReLU units, FF-F2: 79,510 parameters on MNIST.

    (FF's text says "parameter count 9960", which no one-hidden-layer MLP of width 100 on 784
    inputs has; 784·100 + 100 + 100·10 + 10 = 79,510.)
    """
    return mlp(in_channels=in_channels, num_classes=num_classes, input_size=input_size, widths=(100,))


def mlp5(
    *, in_channels: int, num_classes: int, input_size: int | tuple[int, ...] = 32, width: int = 64,
) -> FeatureClassifier:
    """PoF's toy MLP with 5 weight layers: 4 hidden ReLU layers of ``width`` units + the classifier.

    The PoF paper (Fig. 1, Sec. 2.2) does not give the width; 64 is our default.
    """
    return mlp(in_channels=in_channels, num_classes=num_classes, input_size=input_size, widths=(width,) * 4)
