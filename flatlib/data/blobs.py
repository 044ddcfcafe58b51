"""``blobs``: Gaussian class clusters, generated; the FF chapter's stand-in for MNIST (FF-F1/F2).

At the ``default`` profile the 1,000 test images of ``mnist5k`` are too few to resolve a 1-point
difference in test error at softmax regression's ~10 % error (the half-width of a one-sided 95 %
bound is ≈ 2.3 points), and a larger MNIST is not shipped with any installed package. ``blobs``
draws as many test points as the comparison needs. Each class ``k`` has a mean ``μ_k = sep·u_k``
with ``u_k`` orthonormal random directions; an input is ``μ_y + ε``, ``ε ~ N(0, I_dim)``, labels
uniform. With equal isotropic covariances the Bayes classifier is linear, so softmax regression
(FF-F1's convex model) can reach it and, as on MNIST, cannot fit the training set perfectly.

Defaults, each for a reason: 10 classes as MNIST; ``dim = 70`` keeps MNIST's ratio of training
images to input dimensions (45,000 / 784 ≈ 57; here 4,000 / 70); ``sep = 3.5`` puts the Bayes
accuracy at 95.7 % (nearest mean, Monte Carlo), inside the paper's MNIST accuracies of its two
models (93.5–96.7 %, FF Figs. 1–2); 10,000 test points.
"""
from __future__ import annotations

import torch

from .dataset import ArrayDataset


def blobs(*, seed: int = 0, n_train: int = 4000, n_test: int = 10000, dim: int = 20, num_classes: int = 10,
          sep: float = 3.5) -> ArrayDataset:
    """Generate the dataset instance ``seed`` (means and samples both depend on it)."""
    if num_classes > dim:
        raise ValueError(f"blobs needs num_classes <= dim, got {num_classes} > {dim}")
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(dim, num_classes, generator=g))   # orthonormal columns
    means = sep * u.T
    n = n_train + n_test
    y = torch.randint(num_classes, (n,), generator=g)
    x = means[y] + torch.randn(n, dim, generator=g)
    return ArrayDataset.from_tensors("blobs", x[:n_train], y[:n_train], x[n_train:], y[n_train:], num_classes)
