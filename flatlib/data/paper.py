"""The datasets of the papers, read through torchvision's dataset classes from a local folder.

The folder is ``root``, else ``$FLATLIB_DATA``, else ``~/.cache/flatlib/data``, laid out as
torchvision expects. Downloading happens only with ``download=True``; anything missing raises a
one-line `MissingDataError` instead of a torchvision traceback.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .dataset import ArrayDataset
from .fabricate import torchvision_class  # torchvision's class; without MD5 checks for fabricated folders


class MissingDataError(FileNotFoundError):
    """A dataset's files are not on disk and were not (or could not be) downloaded."""


def data_root(root: str | Path | None = None) -> Path:
    """``root`` if given, else ``$FLATLIB_DATA``, else ``~/.cache/flatlib/data``."""
    if root is None:
        root = os.environ.get("FLATLIB_DATA") or Path.home() / ".cache" / "flatlib" / "data"
    return Path(root).expanduser()


def _open(name: str, root: Path, what: str, download: bool, make):
    """Run a torchvision constructor, turning "not found" and failed downloads into one line."""
    try:
        return make()
    except (RuntimeError, OSError) as err:  # torchvision: RuntimeError; failed download: URLError etc.
        if download:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            problem = f"not found in {root} and download failed ({reason}); copy {what} into {root}"
        else:
            problem = (f"not found (or corrupted) in {root}; run with download=True on a machine "
                       f"with internet, or copy {what} into {root}")
        raise MissingDataError(f"{name}: {problem} (set FLATLIB_DATA or root= to use another folder)") from None


def _cifar(name: str, class_name: str, num_classes: int, root: Path, download: bool) -> ArrayDataset:
    cls = torchvision_class(class_name, root)  # deferred import: torchvision costs seconds
    splits = [_open(name, root, cls.base_folder, download,
                    lambda train=train: cls(str(root), train=train, download=download))
              for train in (True, False)]
    # torchvision keeps CIFAR as (N, H, W, C) uint8; models want (N, C, H, W).
    x = [torch.from_numpy(s.data).permute(0, 3, 1, 2).contiguous() for s in splits]
    y = [torch.as_tensor(s.targets) for s in splits]
    return ArrayDataset.from_tensors(name, x[0], y[0], x[1], y[1], num_classes)


def cifar10(root: Path, *, download: bool = False) -> ArrayDataset:
    """CIFAR-10: 50000/10000 RGB 32x32 images, 10 classes (folder ``cifar-10-batches-py``)."""
    return _cifar("cifar10", "CIFAR10", 10, root, download)


def cifar100(root: Path, *, download: bool = False) -> ArrayDataset:
    """CIFAR-100: 50000/10000 RGB 32x32 images, 100 fine classes (folder ``cifar-100-python``)."""
    return _cifar("cifar100", "CIFAR100", 100, root, download)


def svhn(root: Path, *, download: bool = False, extra: bool = False) -> ArrayDataset:
    """SVHN: 73257 train / 26032 test RGB 32x32 digits; ``extra=True`` appends the 531131 extra images.

    Files ``train_32x32.mat``, ``test_32x32.mat`` (and ``extra_32x32.mat``) directly in the folder;
    label 10 ("0") is mapped to 0 by torchvision.
    """
    SVHN = torchvision_class("SVHN", root)

    def load(split: str):
        what = SVHN.split_list[split][1]
        return _open("svhn", root, what, download, lambda: SVHN(str(root), split=split, download=download))

    train = [load("train")] + ([load("extra")] if extra else [])
    test = load("test")
    x_train = torch.from_numpy(np.concatenate([s.data for s in train]))
    y_train = torch.from_numpy(np.concatenate([s.labels for s in train]))
    x_test = torch.from_numpy(np.ascontiguousarray(test.data))  # torchvision returns a transposed view
    return ArrayDataset.from_tensors("svhn", x_train, y_train, x_test, torch.from_numpy(test.labels), 10)


def _mnist_like(name: str, class_name: str, root: Path, download: bool) -> ArrayDataset:
    cls = torchvision_class(class_name, root)
    what = f"{cls.__name__}/raw/*-ubyte"
    splits = [_open(name, root, what, download,
                    lambda train=train: cls(str(root), train=train, download=download))
              for train in (True, False)]
    x = [s.data.unsqueeze(1) for s in splits]  # (N, 28, 28) uint8 -> (N, 1, 28, 28)
    return ArrayDataset.from_tensors(name, x[0], splits[0].targets, x[1], splits[1].targets, 10)


def mnist(root: Path, *, download: bool = False) -> ArrayDataset:
    """MNIST: 60000/10000 grey 28x28 digits (folder ``MNIST/raw``)."""
    return _mnist_like("mnist", "MNIST", root, download)


def fashion_mnist(root: Path, *, download: bool = False) -> ArrayDataset:
    """Fashion-MNIST: 60000/10000 grey 28x28 clothing images, 10 classes (folder ``FashionMNIST/raw``)."""
    return _mnist_like("fashion_mnist", "FashionMNIST", root, download)


PAPER_DATASETS = {"cifar10": cifar10, "cifar100": cifar100, "svhn": svhn,
                  "fashion_mnist": fashion_mnist, "mnist": mnist}
