"""Wide residual networks WRN-d-k (Zagoruyko & Komodakis, 2016): pre-activation basic blocks B(3,3).

Used by PoF (WRN-28-10), FIM (WRN-28-2) and FF (WRN-28×10). Named presets live in
:data:`flatlib.models.MODELS` (``wrn28_10``, ``wrn28_10_nobias``, ``wrn28_2``, ``wrn16_4``).
"""
from __future__ import annotations

from .base import FeatureClassifier, image_size, scaled
from .resnet import PreActBlock, preact_resnet


def wrn(
    *, in_channels: int, num_classes: int, input_size: int | tuple[int, ...] = 32,
    depth: int = 28, width: float = 10, dropout: float = 0.0, conv_bias: bool = False,
) -> FeatureClassifier:
    """WRN-``depth``-``width``: stem conv3x3(16), three stages of n = (depth − 4)/6 pre-activation
    basic blocks with 16·width, 32·width, 64·width filters, dropout between the two convolutions.

    ``conv_bias=True`` gives every convolution (stem and shortcuts included) a bias, as in the SWA
    code behind FF's count of 36,546,980 parameters for WRN-28-10 on CIFAR-100 (36,536,884 without).
    """
    image_size(input_size)
    if depth < 10 or (depth - 4) % 6:
        raise ValueError(f"wrn depth must be 6n + 4 with n >= 1, got {depth}")
    return preact_resnet(
        PreActBlock, in_channels=in_channels, num_classes=num_classes,
        stem=16, planes=[scaled(c, width) for c in (16, 32, 64)], blocks_per_stage=(depth - 4) // 6,
        stem_bias=conv_bias, dropout=dropout, bias=conv_bias,
    )
