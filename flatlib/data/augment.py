"""Batch-wise image augmentation on the device: the four schemes of the FIM paper, plus cutout.

Scenario II of the Fisher-determinant paper (Jia & Su, ICML 2020) varies the augmentation:
``no-aug``; ``flip-only`` (random horizontal flip); ``1-crop-f`` and ``4-crop-f`` (pad k = 1 or 4
zero pixels on each side, crop a random window of the original size, then flip). Cutout
(DeVries & Taylor, 2017) zeroes a ``size x size`` square at a uniformly random centre, clipped at
the border. Every operation is a tensor op over the whole batch, in the spirit of airbench.

Label-preserving analogues for digit images (``rot-only``, ``1-shift-rot``, ``4-shift-rot``): a
mirrored digit is another glyph (or none), so the flip is replaced by a random rotation of at most
``ROTATION_DEG`` degrees, the range conventionally used for handwritten digits; and the crop's
integer shift of up to k pixels of a 32-pixel CIFAR image becomes a shift of up to the same
*fraction* k/32 of the image side (continuous, bilinear, zero fill), so on 8x8 digits ``4-shift``
moves by at most 1 pixel where ``4-crop`` would move by half the image.
"""
from __future__ import annotations

import torch

AUGMENTATIONS = ("no-aug", "flip-only", "1-crop-f", "4-crop-f", "rot-only", "1-shift-rot", "4-shift-rot")
_CROP_PAD = {"no-aug": 0, "flip-only": 0, "1-crop-f": 1, "4-crop-f": 4}
_SHIFT_ROT = {"rot-only": 0, "1-shift-rot": 1, "4-shift-rot": 4}  # shift in 32nds of the image side
ROTATION_DEG = 15.0
"""Largest rotation (degrees) of the digit schemes, the flip's label-preserving substitute."""


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
    if scheme in _SHIFT_ROT:
        x = random_shift_rotate(x, _SHIFT_ROT[scheme] / 32, ROTATION_DEG, generator)
        return random_cutout(x, cutout, generator) if cutout > 0 else x
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


def random_shift_rotate(x: torch.Tensor, shift: float, degrees: float,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Rotate each image by a uniform angle in ±``degrees`` about its centre, then shift it by a
    uniform offset in ±``shift`` × its side along each axis (bilinear resampling, zero fill)."""
    b = len(x)
    u = torch.rand(3, b, generator=generator, device=x.device) * 2 - 1
    angle = u[0] * (degrees * torch.pi / 180)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # affine_grid works in [-1, 1] coordinates: a shift of s × side is 2 s there
    theta = torch.stack([torch.stack([cos, -sin, 2 * shift * u[1]], 1),
                         torch.stack([sin, cos, 2 * shift * u[2]], 1)], 1).to(x.dtype)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
