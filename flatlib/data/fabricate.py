"""Fabricated paper datasets: random images written in each dataset's real on-disk format.

``flatlib run-all --profile paper --dry-run`` must cross the paper profile's real code paths —
torchvision's dataset classes, the files they parse, the shapes they return — on a machine that
has none of the datasets (CI). ``fabricate(root, n)`` writes ``n`` random images per split (per
file for CIFAR-10's five training batches) in exactly the layout `flatlib.data.paper` reads:

==================  ===========================================================================
CIFAR-10            ``cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` (pickles)
CIFAR-100           ``cifar-100-python/{train, test, meta}`` (pickles, ``fine_labels``)
SVHN                ``{train,test,extra}_32x32.mat`` (MATLAB v5, ``X`` (32, 32, 3, N), ``y`` in 1..10)
MNIST, Fashion      ``MNIST/raw/*-ubyte``, ``FashionMNIST/raw/*-ubyte`` (idx files)
FIM-T2 ImageNet     ``imagenet128/{train,val}/<wnid>/*.png`` (128×128 RGB, an ImageFolder tree)
==================  ===========================================================================

The files carry no real data, so their checksums differ from the published ones; a folder with a
``FABRICATED`` marker file is read through `torchvision_class`, the same torchvision class with
its MD5 checks switched off (every parsing line is torchvision's own). `missing_files` lists what
a real data folder lacks, file by file, for ``flatlib data check``.
"""
from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import numpy as np

from flatlib import dryrun

MARKER = "FABRICATED"
IMAGENET_FOLDER = "imagenet128"

# every file the paper loaders read, relative to the data root (for `flatlib data check`)
REQUIRED_FILES: dict[str, list[str]] = {
    "cifar10": [f"cifar-10-batches-py/{f}" for f in (*[f"data_batch_{i}" for i in range(1, 6)], "test_batch",
                                                     "batches.meta")],
    "cifar100": [f"cifar-100-python/{f}" for f in ("train", "test", "meta")],
    "svhn": ["train_32x32.mat", "test_32x32.mat", "extra_32x32.mat"],
    "mnist": [f"MNIST/raw/{f}" for f in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")],
    "fashion_mnist": [f"FashionMNIST/raw/{f}" for f in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                                        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")],
}


def is_fabricated(root: Path) -> bool:
    """Whether ``root`` was written by `fabricate` (then checksums are not checked)."""
    return (Path(root) / MARKER).exists()


def torchvision_class(class_name: str, root: Path):
    """torchvision's dataset class ``class_name``; for a fabricated root, the same class without MD5 checks.

    The subclass keeps torchvision's name (MNIST derives its folder from it) and parsing code; only
    the published checksums become ``None``, which torchvision's ``check_integrity`` reads as
    "the file exists".
    """
    import torchvision.datasets

    cls = getattr(torchvision.datasets, class_name)
    if not is_fabricated(root):
        return cls
    attrs: dict = {}
    if hasattr(cls, "train_list"):  # CIFAR-10/100
        attrs = {"train_list": [[f, None] for f, _ in cls.train_list], "test_list": [[f, None] for f, _ in cls.test_list],
                 "meta": {**cls.meta, "md5": None}}
    if hasattr(cls, "split_list"):  # SVHN
        attrs = {"split_list": {k: [url, f, None] for k, (url, f, _) in cls.split_list.items()}}
    return type(cls.__name__, (cls,), attrs)


def missing_files(root: Path) -> dict[str, list[Path]]:
    """Per dataset, the files under ``root`` that the paper loaders need and cannot find (empty: complete)."""
    root = Path(root)
    out = {name: [root / f for f in files if not (root / f).is_file()] for name, files in REQUIRED_FILES.items()}
    folder = root / IMAGENET_FOLDER
    out["imagenet128"] = [folder / s for s in ("train", "val") if not (folder / s).is_dir()]
    return out


# ------------------------------------------------------------------------------------------ writers
def _images(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 256, (n, *shape), dtype=np.uint8)


def _labels(rng: np.random.Generator, n: int, k: int) -> list[int]:
    # every class at least once when n >= k, so per-class code paths see all classes
    return [int(v) for v in (np.arange(n) % k if n >= k else rng.integers(0, k, n))]


def _pickle(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=2)


def write_cifar10(root: Path, n: int, rng: np.random.Generator) -> None:
    """Five training batches of ``n`` images each and a test batch of ``n`` (rows of 3072 bytes, CHW)."""
    folder = root / "cifar-10-batches-py"
    for i in range(1, 6):
        _pickle(folder / f"data_batch_{i}", {"batch_label": f"training batch {i} of 5",
                                             "data": _images(rng, n, (3072,)), "labels": _labels(rng, n, 10)})
    _pickle(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "data": _images(rng, n, (3072,)),
                                    "labels": _labels(rng, n, 10)})
    _pickle(folder / "batches.meta", {"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": n,
                                      "num_vis": 3072})


def write_cifar100(root: Path, n: int, rng: np.random.Generator) -> None:
    """``train`` (5n images) and ``test`` (n) with fine and coarse labels, and ``meta``."""
    folder = root / "cifar-100-python"
    for split, count in (("train", 5 * n), ("test", n)):
        _pickle(folder / split, {"data": _images(rng, count, (3072,)), "fine_labels": _labels(rng, count, 100),
                                 "coarse_labels": _labels(rng, count, 20)})
    _pickle(folder / "meta", {"fine_label_names": [f"fine{i}" for i in range(100)],
                              "coarse_label_names": [f"coarse{i}" for i in range(20)]})


def write_svhn(root: Path, n: int, rng: np.random.Generator) -> None:
    """``{train,test,extra}_32x32.mat``: ``X`` (32, 32, 3, N) uint8, ``y`` (N, 1) in 1..10 (10 is the digit 0)."""
    import scipy.io

    root.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test", "extra"):
        x = np.ascontiguousarray(_images(rng, n, (32, 32, 3)).transpose(1, 2, 3, 0))
        y = (np.array(_labels(rng, n, 10), dtype=np.uint8) + 1)[:, None]
        scipy.io.savemat(root / f"{split}_32x32.mat", {"X": x, "y": y})


def _idx(path: Path, array: np.ndarray) -> None:
    """An idx file: magic (0, 0, 0x08 = uint8, ndim), big-endian int32 dims, then the bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(struct.pack(">BBBB", 0, 0, 0x08, array.ndim))
        fh.write(struct.pack(f">{array.ndim}I", *array.shape))
        fh.write(array.astype(np.uint8).tobytes())


def write_mnist_like(root: Path, folder: str, n: int, rng: np.random.Generator) -> None:
    """``<folder>/raw/{train,t10k}-{images,labels}-idx{3,1}-ubyte`` with ``n`` 28×28 images per split."""
    raw = root / folder / "raw"
    for split in ("train", "t10k"):
        _idx(raw / f"{split}-images-idx3-ubyte", _images(rng, n, (28, 28)))
        _idx(raw / f"{split}-labels-idx1-ubyte", np.array(_labels(rng, n, 10), dtype=np.uint8))


def write_imagenet(root: Path, n: int, rng: np.random.Generator, classes: int = 2) -> None:
    """FIM-T2's layout (``fim_imagenet``): an ImageFolder tree ``imagenet128/{train,val}/<wnid>/*.png``."""
    from PIL import Image

    for split in ("train", "val"):
        for c in range(classes):
            folder = root / IMAGENET_FOLDER / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(max(1, n // classes)):
                Image.fromarray(_images(rng, 1, (128, 128, 3))[0]).save(folder / f"{split}_{c}_{i}.png")


def fabricate(root: str | Path, n: int = 4, *, seed: int = 0) -> Path:
    """Write every paper dataset with ``n`` random images per split (per file for CIFAR-10) under ``root``.

    Returns ``root``; marks it ``FABRICATED`` so loaders skip the published checksums.
    """
    if n < 1:
        raise ValueError(f"need n >= 1 images per split, got {n}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    write_cifar10(root, n, rng)
    write_cifar100(root, n, rng)
    write_svhn(root, n, rng)
    write_mnist_like(root, "MNIST", n, rng)
    write_mnist_like(root, "FashionMNIST", n, rng)
    write_imagenet(root, n, rng)
    (root / MARKER).write_text(f"random images, {n} per split, written by flatlib.data.fabricate (seed {seed})\n")
    return root


def prepare_dry_run(s: dryrun.Settings, data: Path | None = None, results: Path | None = None) -> Path:
    """Write the fabricated data (once per image count) and export the dry run's environment in this process.

    ``data``/``results`` default to ``results-dryrun/data`` and ``results-dryrun`` (``flatlib plan`` uses
    folders of its own).
    """
    root = data or dryrun.data_root()
    marker = root / MARKER
    if not marker.exists() or f"{s.images} per split" not in marker.read_text():
        fabricate(root, s.images)
    os.environ.update(dryrun.environment(s, data=root, results=results))
    return root
