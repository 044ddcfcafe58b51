"""Name → builder table and :func:`build_model`, the one entry point the experiments use."""
from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial

from torch import nn

from .cnn import allcnnc, cnn6, vgg16bn
from .densenet import densenet_bc
from .mlp import logreg, mlp, mlp5, mlp100
from .resnet import preresnet164, resnet20
from .wrn import wrn

# Every builder takes keyword-only in_channels, num_classes, input_size and its own options.
# Presets are partials: their fixed options are defaults that a caller may still override.
MODELS: dict[str, Callable[..., nn.Module]] = {
    "logreg": logreg,
    "mlp": mlp,
    "mlp5": mlp5,
    "mlp100": mlp100,
    "cnn6": cnn6,
    "allcnnc": allcnnc,
    "vgg16bn": vgg16bn,
    "resnet20": resnet20,
    "preresnet164": preresnet164,
    "wrn": wrn,
    "wrn28_10": partial(wrn, depth=28, width=10, conv_bias=True),  # FF's 36,546,980 on CIFAR-100
    "wrn28_10_nobias": partial(wrn, depth=28, width=10),  # PoF's WRN-28-10, 36,536,884
    "wrn28_2": partial(wrn, depth=28, width=2),  # FIM
    "wrn16_4": partial(wrn, depth=16, width=4),
    "densenet_bc": densenet_bc,
}

_SHARED = {"in_channels", "num_classes", "input_size"}


def model_options(name: str) -> list[str]:
    """The options (keyword arguments beyond in_channels, num_classes, input_size) of model ``name``."""
    return [p for p in inspect.signature(_builder(name)).parameters if p not in _SHARED]


def _builder(name: str) -> Callable[..., nn.Module]:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from: {', '.join(MODELS)}")
    return MODELS[name]


def build_model(
    name: str, *, in_channels: int, num_classes: int, input_size: int | tuple[int, ...] = 32, **kwargs,
) -> nn.Module:
    """Build model ``name`` for inputs of shape ``(N, in_channels, *input_size)``.

    ``input_size`` is an int for square images or a tuple of spatial dims (``(40,)`` for
    MNIST-1D, MLPs only). Options (``width``, ``widths``, ``depth``, ...) go in ``kwargs``; an
    unknown name or option raises ``ValueError``. The result has ``.features`` (x → (N, F)) and
    ``.classifier`` ((N, F) → logits).

    >>> build_model("logreg", in_channels=1, num_classes=10, input_size=28).classifier
    Linear(in_features=784, out_features=10, bias=True)
    """
    builder = _builder(name)
    options = model_options(name)
    for key in kwargs:
        if key not in options:
            raise ValueError(f"model {name!r} has no option {key!r}; its options: {', '.join(options) or 'none'}")
    return builder(in_channels=in_channels, num_classes=num_classes, input_size=input_size, **kwargs)
