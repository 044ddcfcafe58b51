"""Batch-wise image augmentation on the device: the four schemes of the FIM paper, plus cutout.

Scenario II of the Fisher-determinant paper (Jia & Su, ICML 2020) varies the augmentation:
``no-aug``; ``flip-only`` (random horizontal flip); ``1-crop-f`` and ``4-crop-f`` (pad k = 1 or 4
zero pixels on each side, crop a random window of the original size, then flip). Cutout
(DeVries & Taylor, 2017) zeroes a ``size x size`` square at a uniformly random centre, clipped at
the border. Every operation is a tensor op over the whole batch, in the spirit of airbench.
"""
from __future__ import annotations

import torch

AUGMENTATIONS = ("no-aug", "flip-only", "1-crop-f", "4-crop-f")
_CROP_PAD = {"no-aug": 0, "flip-only": 0, "1-crop-f": 1, "4-crop-f": 4}


def augment_batch(x: torch.Tensor, scheme: str, *, cutout: int = 0,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Augment a batch of images ``(B, C, H, W)``; returns a new tensor of the same shape and dtype.

    Random draws, in this order and all from ``generator`` (on ``x.device``): crop offsets,
    flip mask, cutout centres, so the result is a function of ``(x, generator state)``.
    """
    if scheme not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {scheme!r}; choose from: {', '.join(AUGMENTATIONS)}")
    if x.ndim != 4:
        raise ValueError(f"augmentation needs images (B, C, H, W), got shape {tuple(x.shape)}")
    pad = _CROP_PAD[scheme]
    if pad > 0:
        x = random_crop(x, pad, generator)
    if scheme != "no-aug":
        x = random_flip(x, generator)
    if cutout > 0:
        x = random_cutout(x, cutout, generator)
    return x


def random_crop(x: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero-pad by ``pad`` on each side and crop a uniformly random window of the original size.

    Two gathers (rows, then columns) with per-image offsets ``(oy, ox)`` in ``[0, 2 pad]^2``.
    """
    b, c, h, w = x.shape
    offsets = torch.randint(0, 2 * pad + 1, (2, b), generator=generator, device=x.device)
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    rows = offsets[0, :, None] + torch.arange(h, device=x.device)
    cols = offsets[1, :, None] + torch.arange(w, device=x.device)
    x = padded.gather(2, rows[:, None, :, None].expand(b, c, h, w + 2 * pad))
    return x.gather(3, cols[:, None, None, :].expand(b, c, h, w))


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    flip = torch.rand(len(x), generator=generator, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_cutout(x: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero a ``size x size`` square centred at a uniform random pixel (clipped at the border)."""
    b, _, h, w = x.shape
    centre_y = torch.randint(0, h, (b,), generator=generator, device=x.device)
    centre_x = torch.randint(0, w, (b,), generator=generator, device=x.device)
    dy = torch.arange(h, device=x.device) - (centre_y[:, None] - size // 2)
    dx = torch.arange(w, device=x.device) - (centre_x[:, None] - size // 2)
    inside = ((dy >= 0) & (dy < size))[:, :, None] & ((dx >= 0) & (dx < size))[:, None, :]
    return x.masked_fill(inside[:, None], 0)
