"""`BatchLoader`: mini-batches sliced from a device-resident tensor, in the style of airbench.

No DataLoader, no workers: the whole dataset is moved to the device once, each epoch draws one
``torch.randperm`` and yields slices of it. Shuffling and augmentation draw from a generator
seeded by ``(seed, epoch)``, so epoch ``e`` yields identical batches whether it is reached by
training from scratch or by resuming with ``set_epoch(e)``.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from .augment import AUGMENTATIONS, augment_batch


class BatchLoader:
    """Iterate over ``(x, y)`` in batches of float32 inputs, scaled (uint8 / 255) and normalised.

    Images ``(N, C, H, W)`` may be augmented (one of ``AUGMENTATIONS``, optional cutout of
    side ``cutout``); augmentation acts on [0, 1] pixels, so crop padding and cutout are black,
    and normalisation ``(x - mean) / std`` per channel comes after. Other inputs, e.g. ``(N, D)``,
    pass through unaugmented. ``mean``/``std`` of ``None`` leave the scaled inputs unnormalised.

    Each ``iter()`` runs epoch ``self.epoch`` and then advances it; ``set_epoch`` jumps to an epoch.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool,
                 augment: str = "no-aug", cutout: int = 0, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, device: torch.device | str | None = None,
                 seed: int = 0, drop_last: bool = False) -> None:
        if len(x) != len(y):
            raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
        if augment not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {augment!r}; choose from: {', '.join(AUGMENTATIONS)}")
        if (augment != "no-aug" or cutout > 0) and x.ndim != 4:
            raise ValueError(f"augmentation {augment!r} (cutout={cutout}) needs images (N, C, H, W); "
                             f"got inputs of shape {tuple(x.shape)}: use augment='no-aug', cutout=0")
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        self.device = torch.device(device) if device is not None else x.device
        self.x, self.y = x.to(self.device), y.to(self.device)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.augment, self.cutout, self.seed = augment, cutout, seed
        self.epoch = 0
        self._scale = 255.0 if x.dtype == torch.uint8 else 1.0
        self._mean = self._std = None
        if mean is not None:
            stat_shape = (1, -1) + (1,) * (x.ndim - 2)  # broadcast over the channel axis (or all features)
            self._mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(stat_shape)
            self._std = torch.tensor(std, dtype=torch.float32, device=self.device).view(stat_shape)

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter()`` produce epoch ``epoch``'s order and augmentations."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # One stream per (seed, epoch), mixed by SeedSequence so nearby pairs give unrelated streams.
        # Seeded and advanced here, not lazily, so the epoch is fixed when iter() is called.
        generator = torch.Generator(device=self.device)
        generator.manual_seed(int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0]))
        self.epoch += 1
        n = len(self.x)
        if self.shuffle:
            order = torch.randperm(n, generator=generator, device=self.device)
        else:
            order = torch.arange(n, device=self.device)
        return self._batches(order, generator)

    def _batches(self, order: torch.Tensor, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            yield self._prepare(self.x[idx], generator), self.y[idx]

    def _prepare(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x = x.to(torch.float32) / self._scale
        if self.augment != "no-aug" or self.cutout > 0:
            x = augment_batch(x, self.augment, cutout=self.cutout, generator=generator)
        if self._mean is not None:
            x = (x - self._mean) / self._std
        return x


def split_tensors(ds, split: str, *, n: int | None = None, drop_last: int = 0,
                  device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """A whole split of an ``ArrayDataset`` as two tensors, preprocessed exactly as the loaders do
    (scaled, normalised, never augmented): the data measurements are taken on.

    ``drop_last`` removes that many examples from the end first (FIM's confusion set, which
    ``confusion_dataset`` appends to the training set); ``n`` then keeps the first ``n``.
    """
    if split not in ("train", "test"):
        raise ValueError(f"invalid split={split!r}; choose from: train, test")
    x, y = (ds.x_train, ds.y_train) if split == "train" else (ds.x_test, ds.y_test)
    end = len(y) - drop_last
    if n is not None:
        end = min(end, n)
    x, y = x[:end], y[:end]
    return next(iter(BatchLoader(x, y, max(len(y), 1), shuffle=False, mean=ds.mean, std=ds.std, device=device)))
