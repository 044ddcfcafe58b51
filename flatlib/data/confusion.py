"""Training-set surgery: random subsets, validation hold-outs, and the FIM paper's Scenario I confusion sets."""
from __future__ import annotations

import dataclasses

import torch

from .dataset import ArrayDataset


def subset(ds: ArrayDataset, n_train: int, seed: int) -> ArrayDataset:
    """A uniformly random ``n_train`` of the training split (drawn by ``seed``); test split unchanged.

    ``mean``/``std`` stay those of the full training split, so subsets share one normalisation.
    """
    idx = _draw(ds, n_train, torch.Generator().manual_seed(seed))
    return dataclasses.replace(ds, name=f"{ds.name}[{n_train}, seed={seed}]",
                               x_train=ds.x_train[idx], y_train=ds.y_train[idx])


def holdout(ds: ArrayDataset, n: int) -> ArrayDataset:
    """Hold ``n`` training images out as the evaluation split (the test split is dropped).

    The papers pick hyperparameters on such a split (FIM: β on CIFAR's 45k/5k; FF: 45k/5k MNIST).
    The ``n`` images are one fixed uniform draw (generator seed 0), the same for every run and
    seed, so runs that differ in a hyperparameter are compared on the same images. A run on the
    result reports validation numbers under the names ``test_*``. ``mean``/``std`` stay those of
    the full training split, the normalisation the final runs use.
    """
    if not 0 < n < ds.n_train:
        raise ValueError(f"{ds.name}: a validation hold-out needs 0 < n < {ds.n_train} training images, got {n}")
    idx = torch.randperm(ds.n_train, generator=torch.Generator().manual_seed(0)).to(ds.x_train.device)
    train, val = idx[:-n], idx[-n:]
    return dataclasses.replace(ds, name=f"{ds.name}[validation {n}]", x_train=ds.x_train[train],
                               y_train=ds.y_train[train], x_test=ds.x_train[val], y_test=ds.y_train[val])


def confusion_dataset(ds: ArrayDataset, n: int, k: int, seed: int) -> ArrayDataset:
    """Scenario I of Jia & Su (ICML 2020): ``n`` clean training images plus ``k`` with random labels.

    ``n + k`` distinct training images are drawn uniformly by ``seed``; the first ``n`` rows keep
    their labels, the last ``k`` rows (the confusion set) get labels drawn uniformly from all
    classes, also by ``seed``. The paper trains on both and evaluates its metrics on the ``n``
    clean rows (``x_train[:n]``). The test split and ``mean``/``std`` are unchanged.
    """
    g = torch.Generator().manual_seed(seed)
    idx = _draw(ds, n + k, g)
    random_labels = torch.randint(ds.num_classes, (k,), generator=g).to(ds.y_train.device)
    return dataclasses.replace(ds, name=f"{ds.name}[{n}+{k} confused, seed={seed}]",
                               x_train=ds.x_train[idx], y_train=torch.cat([ds.y_train[idx[:n]], random_labels]))


def _draw(ds: ArrayDataset, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` distinct training indices, uniformly at random."""
    if count > ds.n_train:
        raise ValueError(f"{ds.name}: cannot draw {count} training samples from {ds.n_train}")
    return torch.randperm(ds.n_train, generator=generator)[:count].to(ds.x_train.device)
