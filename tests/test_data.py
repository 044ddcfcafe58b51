"""Tests for flatlib.data: dataset loading (embedded and fabricated on-disk files), augmentation,
the device-resident BatchLoader, and confusion sets."""
import math
import os
import pickle

import numpy as np
import pytest
import scipy.io
import torch

from flatlib.data import (AUGMENTATIONS, DATASETS, EMBEDDED, PAPER_DATASETS, ArrayDataset, BatchLoader,
                          MissingDataError, augment_batch, confusion_dataset, load_dataset, subset)
from flatlib.data.augment import ROTATION_DEG
from flatlib.data.dataset import channel_stats


def assert_same_dataset(a: ArrayDataset, b: ArrayDataset) -> None:
    for field in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert (a.mean, a.std, a.num_classes) == (b.mean, b.std, b.num_classes)


# ----------------------------------------------------------------------------- embedded datasets

EMBEDDED_CASES = {  # name: (options, x_train shape, x_test shape, dtype)
    "toy": ({}, (2000, 10), (10000, 10), torch.float32),
    "mnist1d": ({"num_samples": 500}, (400, 40), (100, 40), torch.float32),
    "digits": ({}, (1437, 1, 8, 8), (360, 1, 8, 8), torch.float32),
    "mnist5k": ({}, (4000, 1, 28, 28), (1000, 1, 28, 28), torch.uint8),
    "mnist5k14": ({}, (4000, 1, 14, 14), (1000, 1, 14, 14), torch.float32),  # FF-F3 default: mnist5k pooled 2×2
    "blobs": ({}, (4000, 20), (10000, 20), torch.float32),  # FF-F1/F2 default stand-in for MNIST
}


def test_registry_lists_every_dataset():
    assert set(EMBEDDED) == set(EMBEDDED_CASES)
    assert set(PAPER_DATASETS) == {"cifar10", "cifar100", "svhn", "fashion_mnist", "mnist"}
    assert set(DATASETS) == set(EMBEDDED) | set(PAPER_DATASETS)


def test_unknown_dataset_is_one_line_listing_choices():
    with pytest.raises(ValueError, match=r"unknown dataset 'nope'; choose from: toy, .*, cifar10, .*mnist$") as err:
        load_dataset("nope")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", list(EMBEDDED_CASES))
def test_embedded_shapes_dtypes_labels_and_determinism(name):
    options, train_shape, test_shape, dtype = EMBEDDED_CASES[name]
    ds = load_dataset(name, seed=3, **options)
    assert ds.name == name
    assert tuple(ds.x_train.shape) == train_shape and tuple(ds.x_test.shape) == test_shape
    assert ds.x_train.dtype == ds.x_test.dtype == dtype
    assert ds.y_train.dtype == ds.y_test.dtype == torch.int64
    assert (ds.n_train, ds.n_test) == (train_shape[0], test_shape[0])
    assert ds.input_size == (train_shape[2:] if len(train_shape) == 4 else train_shape[1:])
    assert ds.in_channels == 1 and len(ds.mean) == len(ds.std) == 1
    for y in (ds.y_train, ds.y_test):  # every class present, nothing outside the range
        assert torch.equal(y.unique(), torch.arange(ds.num_classes))
    if ds.x_train.ndim == 4 and dtype == torch.float32:
        assert ds.x_train.min() >= 0 and ds.x_train.max() <= 1
    assert_same_dataset(ds, load_dataset(name, seed=3, **options))
    other = load_dataset(name, seed=4, **options)
    assert not torch.equal(ds.y_train, other.y_train) or not torch.equal(ds.x_train, other.x_train)


@pytest.mark.parametrize("name", ["digits", "mnist5k"])
def test_image_splits_are_stratified(name):
    ds = load_dataset(name)
    train_counts, test_counts = ds.y_train.bincount(), ds.y_test.bincount()
    expected = (train_counts + test_counts) * ds.n_test / (ds.n_train + ds.n_test)
    assert (test_counts - expected).abs().max() <= 1
    if name == "mnist5k":  # 500 real images per class in the file
        assert torch.equal(train_counts + test_counts, torch.full((10,), 500))


def test_mnist1d_leaves_global_rngs_alone():
    np_state = np.random.get_state()[1].copy()
    load_dataset("mnist1d", num_samples=100)
    assert np.array_equal(np.random.get_state()[1], np_state)


def test_toy_options_and_label_noise():
    ds = load_dataset("toy", n_train=300, n_test=200, dim=5, num_classes=3, noise=0.0)
    assert ds.x_train.shape == (300, 5) and ds.x_test.shape == (200, 5) and ds.num_classes == 3
    noisy = load_dataset("toy", n_train=300, n_test=200, dim=5, num_classes=3, noise=0.5)
    assert torch.equal(ds.x_train, noisy.x_train)  # same inputs, only labels resampled
    changed = (ds.y_train != noisy.y_train).float().mean().item()
    # Expected fraction changed: noise * (K-1)/K = 1/3; binomial s.e. ~ 0.027 over 300 points.
    assert abs(changed - 1 / 3) < 0.12


def test_channel_stats_match_direct_computation():
    x = torch.randint(0, 256, (50, 3, 4, 5), dtype=torch.uint8)
    mean, std = channel_stats(x, chunk=7)
    xf = x.double().div(255).transpose(0, 1).reshape(3, -1)
    torch.testing.assert_close(torch.tensor(mean, dtype=torch.float64), xf.mean(1))
    torch.testing.assert_close(torch.tensor(std, dtype=torch.float64), xf.std(1, unbiased=False))
    flat = torch.randn(40, 6, dtype=torch.float64)
    mean, std = channel_stats(flat)
    torch.testing.assert_close(torch.tensor(mean + std, dtype=torch.float64),
                               torch.stack([flat.mean(), flat.std(unbiased=False)]))


def test_to_moves_every_tensor():
    ds = load_dataset("toy", n_train=10, n_test=5)
    moved = ds.to("meta")
    assert all(t.device.type == "meta" for t in (moved.x_train, moved.y_train, moved.x_test, moved.y_test))
    assert ds.x_train.device.type == "cpu"


# ----------------------------------------------------------------------------- paper datasets on disk

@pytest.fixture
def skip_md5(monkeypatch):
    """Fabricated files cannot match torchvision's md5 sums: accept any existing file (tests only)."""
    import torchvision.datasets.cifar
    import torchvision.datasets.svhn

    def exists(fpath, md5=None):
        return os.path.isfile(fpath)

    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", exists)
    monkeypatch.setattr(torchvision.datasets.svhn, "check_integrity", exists)


def _pickle(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj))


def _cifar_rows(rng, n):  # CIFAR stores each image as 3072 bytes: R plane, G plane, B plane
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8)


def test_cifar10_from_python_pickle_batches(tmp_path, skip_md5):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    batches = [(_cifar_rows(rng, 3), rng.integers(0, 10, 3).tolist()) for _ in range(6)]
    for i, (data, labels) in enumerate(batches):
        _pickle(folder / (f"data_batch_{i + 1}" if i < 5 else "test_batch"), {"data": data, "labels": labels})
    _pickle(folder / "batches.meta", {"label_names": [f"c{i}" for i in range(10)]})

    ds = load_dataset("cifar10", root=tmp_path)
    x_train = np.concatenate([d for d, _ in batches[:5]]).reshape(-1, 3, 32, 32)
    assert ds.x_train.dtype == torch.uint8 and ds.x_train.shape == (15, 3, 32, 32)
    assert np.array_equal(ds.x_train.numpy(), x_train)
    assert ds.y_train.tolist() == sum((labels for _, labels in batches[:5]), [])
    assert np.array_equal(ds.x_test.numpy(), batches[5][0].reshape(-1, 3, 32, 32))
    assert ds.y_test.tolist() == batches[5][1]
    assert (ds.num_classes, ds.in_channels, ds.input_size) == (10, 3, (32, 32))
    torch.testing.assert_close(torch.tensor(ds.mean), torch.from_numpy(x_train / 255).mean((0, 2, 3)).float())


def test_cifar100_uses_fine_labels(tmp_path, skip_md5, monkeypatch):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    train, test = _cifar_rows(rng, 4), _cifar_rows(rng, 2)
    _pickle(folder / "train", {"data": train, "fine_labels": [0, 99, 5, 7], "coarse_labels": [0, 19, 1, 1]})
    _pickle(folder / "test", {"data": test, "fine_labels": [42, 3], "coarse_labels": [8, 0]})
    _pickle(folder / "meta", {"fine_label_names": [f"c{i}" for i in range(100)]})
    monkeypatch.setenv("FLATLIB_DATA", str(tmp_path))  # the root comes from the environment here

    ds = load_dataset("cifar100")
    assert ds.num_classes == 100
    assert np.array_equal(ds.x_train.numpy(), train.reshape(-1, 3, 32, 32))
    assert ds.y_train.tolist() == [0, 99, 5, 7] and ds.y_test.tolist() == [42, 3]


def _svhn_mat(path, rng, n):
    x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)  # SVHN's .mat layout: H, W, C, N
    y = rng.integers(1, 11, (n, 1)).astype(np.uint8)  # digit 0 is stored as label 10
    y[0] = 10
    scipy.io.savemat(path, {"X": x, "y": y})
    return x.transpose(3, 2, 0, 1), np.where(y[:, 0] == 10, 0, y[:, 0])


@pytest.mark.parametrize("extra", [False, True])
def test_svhn_from_mat_files(tmp_path, skip_md5, extra):
    rng = np.random.default_rng(2)
    x_tr, y_tr = _svhn_mat(tmp_path / "train_32x32.mat", rng, 5)
    x_te, y_te = _svhn_mat(tmp_path / "test_32x32.mat", rng, 3)
    x_ex, y_ex = _svhn_mat(tmp_path / "extra_32x32.mat", rng, 4)
    if extra:
        x_tr, y_tr = np.concatenate([x_tr, x_ex]), np.concatenate([y_tr, y_ex])

    ds = load_dataset("svhn", root=tmp_path, extra=extra)
    assert ds.x_train.dtype == torch.uint8 and ds.x_train.shape == (len(y_tr), 3, 32, 32)
    assert np.array_equal(ds.x_train.numpy(), x_tr) and np.array_equal(ds.y_train.numpy(), y_tr)
    assert np.array_equal(ds.x_test.numpy(), x_te) and np.array_equal(ds.y_test.numpy(), y_te)
    assert ds.y_train.min() == 0 and ds.y_train.max() <= 9


def _idx_file(path, array):
    """Big-endian idx format: magic (0, 0, dtype 0x08 = ubyte, ndim), then each dim as uint32."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_like_from_idx_files(tmp_path, name, folder):
    rng = np.random.default_rng(3)
    raw = tmp_path / folder / "raw"
    arrays = {}
    for split, n in (("train", 6), ("t10k", 4)):
        arrays[split] = rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n)
        _idx_file(raw / f"{split}-images-idx3-ubyte", arrays[split][0])
        _idx_file(raw / f"{split}-labels-idx1-ubyte", arrays[split][1])

    ds = load_dataset(name, root=tmp_path)
    assert ds.x_train.dtype == torch.uint8 and ds.x_train.shape == (6, 1, 28, 28)
    assert np.array_equal(ds.x_train[:, 0].numpy(), arrays["train"][0])
    assert np.array_equal(ds.y_train.numpy(), arrays["train"][1])
    assert np.array_equal(ds.x_test[:, 0].numpy(), arrays["t10k"][0])
    assert np.array_equal(ds.y_test.numpy(), arrays["t10k"][1])


@pytest.mark.parametrize("name, what", [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python"),
                                        ("svhn", "train_32x32.mat"), ("mnist", "MNIST/raw"),
                                        ("fashion_mnist", "FashionMNIST/raw")])
def test_missing_data_is_one_line_naming_dataset_folder_and_remedy(tmp_path, name, what):
    with pytest.raises(MissingDataError) as err:
        load_dataset(name, root=tmp_path / "empty")
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{name}: not found")
    assert str(tmp_path / "empty") in message and what in message and "download=True" in message
    assert isinstance(err.value, FileNotFoundError)
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_corrupted_cifar_files_are_missing_data(tmp_path):
    """Without the md5 patch, fabricated files fail torchvision's integrity check: reported, not raised raw."""
    _pickle(tmp_path / "cifar-10-batches-py" / "data_batch_1", {"data": np.zeros((1, 3072), np.uint8), "labels": [0]})
    with pytest.raises(MissingDataError, match="cifar10: not found"):
        load_dataset("cifar10", root=tmp_path)


# ----------------------------------------------------------------------------- augmentation

def reference_augment(x, scheme, cutout, seed):
    """Per-image loop drawing from the generator in the documented order: crop, flip, cutout."""
    g = torch.Generator().manual_seed(seed)
    b, _, h, w = x.shape
    pad = {"1-crop-f": 1, "4-crop-f": 4}.get(scheme, 0)
    out = x.clone()
    shift = {"rot-only": 0, "1-shift-rot": 1, "4-shift-rot": 4}.get(scheme)
    if shift is not None:  # the digit schemes: rotation + shift per image, then (optionally) cutout, no flip
        u = torch.rand(3, b, generator=g) * 2 - 1
        for i in range(b):
            a = u[0, i] * (ROTATION_DEG * torch.pi / 180)
            tx, ty = 2 * (shift / 32) * u[1, i], 2 * (shift / 32) * u[2, i]  # affine_grid: [-1, 1] coordinates
            theta = torch.stack([torch.stack([torch.cos(a), -torch.sin(a), tx]),
                                 torch.stack([torch.sin(a), torch.cos(a), ty])])[None].to(x.dtype)
            grid = torch.nn.functional.affine_grid(theta, [1, *x.shape[1:]], align_corners=False)
            out[i] = torch.nn.functional.grid_sample(x[i:i + 1], grid, align_corners=False)[0]
    elif pad:
        offsets = torch.randint(0, 2 * pad + 1, (2, b), generator=g)
        padded = torch.zeros(b, x.shape[1], h + 2 * pad, w + 2 * pad, dtype=x.dtype)
        padded[:, :, pad:pad + h, pad:pad + w] = x
        for i in range(b):
            oy, ox = offsets[:, i].tolist()
            out[i] = padded[i, :, oy:oy + h, ox:ox + w]
    if scheme != "no-aug" and shift is None:
        flip = torch.rand(b, generator=g) < 0.5
        for i in range(b):
            if flip[i]:
                out[i] = out[i].flip(-1)
    if cutout:
        cy, cx = torch.randint(0, h, (b,), generator=g), torch.randint(0, w, (b,), generator=g)
        for i in range(b):
            y0, x0 = cy[i].item() - cutout // 2, cx[i].item() - cutout // 2
            out[i, :, max(y0, 0):max(y0 + cutout, 0), max(x0, 0):max(x0 + cutout, 0)] = 0
    return out


@pytest.fixture
def images():
    return torch.rand(64, 3, 9, 7) + 0.5  # no zero pixels, no symmetry; non-square to catch axis mix-ups


@pytest.mark.parametrize("scheme", AUGMENTATIONS)
@pytest.mark.parametrize("cutout", [0, 4])
def test_augment_matches_per_image_reference(images, scheme, cutout):
    out = augment_batch(images, scheme, cutout=cutout, generator=torch.Generator().manual_seed(7))
    assert out.shape == images.shape and out.dtype == images.dtype
    assert torch.equal(out, reference_augment(images, scheme, cutout, seed=7))


def test_no_aug_is_identity(images):
    assert torch.equal(augment_batch(images, "no-aug", generator=torch.Generator()), images)


def test_flip_only_flips_exactly_the_drawn_images(images):
    out = augment_batch(images, "flip-only", generator=torch.Generator().manual_seed(1))
    chosen = torch.rand(len(images), generator=torch.Generator().manual_seed(1)) < 0.5
    flipped = (out == images.flip(-1)).flatten(1).all(1)
    kept = (out == images).flatten(1).all(1)
    assert torch.equal(flipped, chosen) and torch.equal(kept, ~chosen)
    assert 10 < chosen.sum() < 54  # Binomial(64, 1/2): both kinds occur


@pytest.mark.parametrize("scheme, pad", [("1-crop-f", 1), ("4-crop-f", 4)])
def test_crops_are_shifts_of_the_zero_padded_image(images, scheme, pad):
    out = augment_batch(images, scheme, generator=torch.Generator().manual_seed(2))
    h, w = images.shape[-2:]
    padded = torch.nn.functional.pad(images, (pad,) * 4)
    windows = padded.unfold(2, h, 1).unfold(3, w, 1)  # (B, C, 2p+1, 2p+1, H, W): every shift
    windows = windows.permute(0, 2, 3, 1, 4, 5)
    match = ((windows == out[:, None, None]) | (windows.flip(-1) == out[:, None, None])).flatten(3).all(3)
    assert match.any((1, 2)).all()  # every output is a (possibly flipped) window
    offsets = match.flatten(1).float().argmax(1)
    assert len(offsets.unique()) > (2 * pad + 1) ** 2 // 2  # and the shifts vary


def test_cutout_zeroes_one_clipped_square(images):
    size = 4
    out = augment_batch(images, "no-aug", cutout=size, generator=torch.Generator().manual_seed(3))
    zero = out == 0
    assert torch.equal(zero[:, :1].expand_as(zero), zero)  # same square in every channel
    assert torch.equal(out[~zero], images[~zero])  # everything else untouched
    rows, cols = zero[:, 0].any(2), zero[:, 0].any(1)
    assert torch.equal(zero[:, 0], rows[:, :, None] & cols[:, None, :])  # a rectangle...
    for r in (rows, cols):  # ...of contiguous rows/columns, at most `size` long
        n = r.sum(1)
        assert (n >= 1).all() and (n <= size).all()
        first = r.float().argmax(1)
        span = torch.arange(r.shape[1]) - first[:, None]
        assert torch.equal(r, (span >= 0) & (span < n[:, None]))
    assert (zero[:, 0].sum((1, 2)) == size * size).any()  # unclipped squares are size x size


def test_augment_is_deterministic_given_generator_and_works_on_uint8():
    x = torch.randint(1, 256, (32, 3, 8, 8), dtype=torch.uint8)
    a = augment_batch(x, "4-crop-f", cutout=3, generator=torch.Generator().manual_seed(5))
    b = augment_batch(x, "4-crop-f", cutout=3, generator=torch.Generator().manual_seed(5))
    c = augment_batch(x, "4-crop-f", cutout=3, generator=torch.Generator().manual_seed(6))
    assert a.dtype == torch.uint8 and torch.equal(a, b) and not torch.equal(a, c)


def test_augment_rejects_unknown_scheme_and_non_images():
    with pytest.raises(ValueError, match="choose from: no-aug, flip-only, 1-crop-f, 4-crop-f"):
        augment_batch(torch.zeros(2, 1, 4, 4), "2-crop")
    with pytest.raises(ValueError, match="images"):
        augment_batch(torch.zeros(2, 8), "flip-only")


# ----------------------------------------------------------------------------- BatchLoader

def indexed_images(n=50):
    """uint8 images whose label is their index, to track which sample lands where."""
    return torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)), \
        torch.arange(n)


@pytest.mark.parametrize("drop_last", [False, True])
def test_loader_covers_every_sample_once_per_epoch(drop_last):
    x, y = indexed_images(50)
    loader = BatchLoader(x, y, 8, shuffle=True, augment="1-crop-f", drop_last=drop_last)
    assert len(loader) == (6 if drop_last else 7)
    for _ in range(2):
        batches = list(loader)
        assert len(batches) == len(loader)
        assert all(len(yb) == 8 for _, yb in batches[:6])
        seen = torch.cat([yb for _, yb in batches])
        assert len(seen.unique()) == len(seen) == (48 if drop_last else 50)
        assert all(xb.dtype == torch.float32 and xb.shape[1:] == (3, 8, 8) for xb, _ in batches)
    assert not torch.equal(seen, torch.arange(len(seen)))  # shuffled


def test_loader_epochs_are_reproducible_and_distinct():
    x, y = indexed_images(40)
    kwargs = dict(shuffle=True, augment="4-crop-f", cutout=3, mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.4), seed=11)
    first = BatchLoader(x, y, 16, **kwargs)
    epochs = [list(first) for _ in range(3)]
    resumed = BatchLoader(x, y, 16, **kwargs)
    resumed.set_epoch(2)
    for (xa, ya), (xb, yb) in zip(epochs[2], list(resumed), strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(epochs[1][0][1], epochs[2][0][1])  # a new order each epoch
    fresh = BatchLoader(x, y, 16, **kwargs)
    batches = iter(fresh)  # the epoch is fixed when iteration starts
    fresh.set_epoch(9)
    assert torch.equal(next(batches)[0], epochs[0][0][0])
    other_seed = BatchLoader(x, y, 16, **{**kwargs, "seed": 12})
    assert not torch.equal(next(iter(other_seed))[1], epochs[0][0][1])
    # Same order but a different augmentation draw in a different epoch: compare images by label.
    by_label = [torch.cat([xb for xb, _ in e])[torch.cat([yb for _, yb in e]).argsort()] for e in epochs]
    assert not torch.equal(by_label[0], by_label[1])


def test_loader_normalises_per_channel_without_shuffling():
    x, y = indexed_images(20)
    mean, std = (0.5, 0.25, 0.75), (0.1, 0.2, 0.3)
    loader = BatchLoader(x, y, 6, shuffle=False, mean=mean, std=std)
    xb = torch.cat([b for b, _ in loader])
    assert torch.equal(torch.cat([b for _, b in loader]), y)
    expected = (x.double() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(xb.double(), expected, atol=1e-6, rtol=1e-6)
    plain = torch.cat([b for b, _ in BatchLoader(x, y, 6, shuffle=False)])
    torch.testing.assert_close(plain, x.float() / 255)


def test_loader_on_flat_float_data():
    ds = load_dataset("toy", n_train=30, n_test=5)
    loader = BatchLoader(ds.x_train, ds.y_train, 7, shuffle=False, mean=ds.mean, std=ds.std)
    xb = torch.cat([b for b, _ in loader])
    torch.testing.assert_close(xb, (ds.x_train - ds.mean[0]) / ds.std[0])
    with pytest.raises(ValueError, match="needs images"):
        BatchLoader(ds.x_train, ds.y_train, 7, shuffle=True, augment="flip-only")
    with pytest.raises(ValueError, match="needs images"):
        BatchLoader(ds.x_train, ds.y_train, 7, shuffle=True, cutout=2)
    with pytest.raises(ValueError, match="choose from"):
        BatchLoader(*indexed_images(4), 2, shuffle=True, augment="8-crop-f")


# ----------------------------------------------------------------------------- confusion sets

@pytest.fixture
def tagged():
    """A dataset whose first feature is the sample's index in the training split."""
    n, k = 300, 10
    x = torch.stack([torch.arange(n, dtype=torch.float32), torch.zeros(n)], 1)
    y = torch.randint(0, k, (n,), generator=torch.Generator().manual_seed(0))
    return ArrayDataset.from_tensors("tagged", x, y, x[:20], y[:20], k)


def test_confusion_sizes_disjointness_and_labels(tagged):
    n, k = 100, 150
    ds = confusion_dataset(tagged, n, k, seed=0)
    idx = ds.x_train[:, 0].long()
    assert ds.n_train == n + k and len(idx.unique()) == n + k  # clean and confusion rows are disjoint
    assert torch.equal(ds.y_train[:n], tagged.y_train[idx[:n]])  # clean rows keep their labels
    random_labels = ds.y_train[n:]
    assert random_labels.min() >= 0 and random_labels.max() < tagged.num_classes
    # Uniform labels agree with the true ones w.p. 1/10: Binomial(150, 0.1), mean 15, s.d. 3.7.
    assert (random_labels == tagged.y_train[idx[n:]]).sum() < 35
    assert ds.x_test is tagged.x_test and (ds.mean, ds.std) == (tagged.mean, tagged.std)
    again, other = confusion_dataset(tagged, n, k, seed=0), confusion_dataset(tagged, n, k, seed=1)
    assert torch.equal(again.x_train, ds.x_train) and torch.equal(again.y_train, ds.y_train)
    assert not torch.equal(other.x_train[:n], ds.x_train[:n])
    assert not torch.equal(other.y_train[n:], random_labels)
    assert confusion_dataset(tagged, n, 0, seed=0).n_train == n
    with pytest.raises(ValueError, match="cannot draw 301"):
        confusion_dataset(tagged, 200, 101, seed=0)


def test_subset_draws_distinct_samples_per_seed(tagged):
    small = subset(tagged, 50, seed=0)
    idx = small.x_train[:, 0].long()
    assert small.n_train == 50 and len(idx.unique()) == 50
    assert torch.equal(small.y_train, tagged.y_train[idx]) and small.x_test is tagged.x_test
    assert not torch.equal(subset(tagged, 50, seed=1).x_train, small.x_train)
    assert math.isclose(small.mean[0], tagged.mean[0])


def test_validation_holdout_partitions_the_training_split_the_same_way_every_time():
    full = load_dataset("digits")
    a, b = load_dataset("digits", validation=100), load_dataset("digits", validation=100)
    assert (a.n_train, a.n_test) == (full.n_train - 100, 100)
    assert torch.equal(a.x_test, b.x_test) and torch.equal(a.y_train, b.y_train)  # one fixed draw
    rows = lambda x: {tuple(r.tolist()) for r in x.flatten(1)}
    assert rows(a.x_train) | rows(a.x_test) <= rows(full.x_train)  # training images only
    assert not rows(a.x_test) & rows(full.x_test)                  # the test set is not used
    assert len(torch.cat([a.x_train, a.x_test])) == full.n_train and (a.mean, a.std) == (full.mean, full.std)
    with pytest.raises(ValueError, match="validation hold-out"):
        load_dataset("digits", validation=full.n_train)


def test_split_tensors_is_the_loaders_preprocessing():
    from flatlib.data import BatchLoader, load_dataset, split_tensors

    ds = load_dataset("toy")
    x, y = split_tensors(ds, "train", drop_last=10)
    ref_x, ref_y = next(iter(BatchLoader(ds.x_train, ds.y_train, ds.n_train, shuffle=False, mean=ds.mean, std=ds.std)))
    assert torch.equal(x, ref_x[:-10]) and torch.equal(y, ref_y[:-10])
    xt, yt = split_tensors(ds, "test", n=7)
    assert len(yt) == 7 and xt.dtype == torch.float32
    with pytest.raises(ValueError, match="invalid split='val'"):
        split_tensors(ds, "val")
