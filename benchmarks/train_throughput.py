"""Training throughput: flatlib's engine vs a plain PyTorch loop, images/s and seconds per 50k epoch.

Both loops train the same model on the same CIFAR-shaped random images (uint8, 3×32×32, 10
classes) with the same augmentation (4-pixel pad-and-crop, horizontal flip, 16×16 cutout) and the
same optimizer (SGD, Nesterov momentum 0.9, weight decay 5e-4), on the same device.

``engine`` is ``flatlib.train.engine.train`` itself, not a copy of its loop: the random images are
registered as the dataset ``synthetic_cifar`` (``flatlib.data`` keeps its datasets in a name →
loader table) and a ``TrainConfig`` trains on them; the time is the engine's own per-epoch
``seconds`` record (shuffle, on-device augmentation, forward, backward, optimizer step; no
evaluation; the engine reads the losses on the host once every 50 steps and at the epoch's end,
then synchronises and reads its clock), for ``--repeats`` (≥ 3) epochs of ≥ 50 steps after a first,
untimed epoch that holds compilation, CUDA-graph capture and cuDNN autotuning. The rows give the
median over those epochs and ``min``/``max``. Variants are not interleaved: each is one engine
run with its own compilation, and compiling every variant ``repeats`` times would not fit a GPU
session; the per-epoch spread is stored instead. Variants on CUDA: ``engine-fp32`` (no autocast, NCHW, eager), ``engine``
(bf16 autocast, channels_last, eager), ``engine-compile`` (plus ``torch.compile``),
``engine-cudagraphs`` (``compile="reduce-overhead"``: compiled and replayed as CUDA graphs; what
the engine's default ``compile="auto"`` picks for plain SGD on one GPU). A
variant that fails is named with its error under ``failures`` in the file; the others still run.
On the CPU the engine ignores ``amp`` and ``channels_last``, so only ``engine`` is measured.

``reference`` is the loop a typical user writes (the PyTorch CIFAR tutorial with the usual
augmentation): a ``Dataset`` of PIL images, torchvision transforms (``RandomCrop(32, padding=4)``,
``RandomHorizontalFlip``, ``ToTensor``, ``Normalize``) plus a DeVries-Taylor cutout on the tensor,
a ``DataLoader`` with worker processes, float32 eager, the default (foreach) SGD and a
``loss.item()`` per step. Its time is the wall time of each of ``--repeats`` epochs after a warm-up epoch.

Ratios are to ``reference`` on the same device: images/s above 1 and s/epoch below 1 mean the
engine is faster. ``--quick`` (CPU-sized) uses a few batches and narrower versions of the
networks; the width is part of each row's name, e.g. ``wrn28_10[width=1]``.

    python -m benchmarks.train_throughput [--quick] [--device cuda] [--models wrn28_10 resnet20]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from benchmarks.common import FAST_PATH, failure, result, write_results
from flatlib.train.config import TrainConfig
from flatlib.data import ArrayDataset, DATASETS, EMBEDDED
from flatlib.train.engine import train
from flatlib.models import build_model

EPOCH_IMAGES = 50_000  # one CIFAR-10 training epoch
CUTOUT = 16
MODELS = ("wrn28_10", "resnet20", "vgg16bn", "allcnnc")
# --quick: narrower networks of the same depth, so that four of them run in a minute or two on 2 cores
QUICK_WIDTH = {"wrn28_10": 0.25, "resnet20": 0.5, "vgg16bn": 0.125, "allcnnc": 0.125}
SGD = dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)


def synthetic_cifar(*, seed: int = 0, n_train: int = 50_000, n_test: int = 1_000) -> ArrayDataset:
    """Uniform random uint8 images (N, 3, 32, 32) with uniform random labels of 10 classes."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n_train + n_test, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (n_train + n_test,), generator=g)
    return ArrayDataset.from_tensors("synthetic_cifar", x[:n_train], y[:n_train], x[n_train:], y[n_train:], 10)


def register_synthetic() -> None:
    """Make ``synthetic_cifar`` a dataset name that ``TrainConfig`` and ``load_dataset`` accept."""
    EMBEDDED["synthetic_cifar"] = DATASETS["synthetic_cifar"] = synthetic_cifar


# -- flatlib's engine ------------------------------------------------------------------------
def engine_seconds(model: str, model_kwargs: dict, n_train: int, batch_size: int, epochs: int,
                   device: torch.device, *, amp: bool, channels_last: bool, compile: bool) -> list[float]:
    """Per-epoch training seconds of ``flatlib.train.engine.train`` for epochs 2..``epochs`` (the first is warm-up)."""
    cfg = TrainConfig(dataset="synthetic_cifar", dataset_kwargs={"n_train": n_train, "n_test": 64},
                      model=model, model_kwargs=model_kwargs, augment="4-crop-f", cutout=CUTOUT,
                      batch_size=batch_size, epochs=epochs, optimizer="sgd", device=str(device),
                      amp=amp, channels_last=channels_last, compile=compile, progress=False, **SGD)
    records = train(cfg).records
    return [r["seconds"] for r in records[1:]]


# -- the plain reference loop ------------------------------------------------------------------
class PILImages(Dataset):
    """uint8 images served as PIL images, as ``torchvision.datasets.CIFAR10`` does."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform) -> None:
        self.x, self.y, self.transform = x.permute(0, 2, 3, 1).numpy(), y.tolist(), transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.x[i])), self.y[i]


class Cutout:
    """DeVries & Taylor's cutout on a (C, H, W) tensor: zero a square at a random centre, clipped."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[1:]
        cy, cx = np.random.randint(h), np.random.randint(w)
        y0, y1 = max(cy - self.size // 2, 0), min(cy + self.size // 2, h)
        x0, x1 = max(cx - self.size // 2, 0), min(cx + self.size // 2, w)
        img[:, y0:y1, x0:x1] = 0
        return img


def reference_seconds(model_name: str, model_kwargs: dict, ds: ArrayDataset, batch_size: int,
                      workers: int, device: torch.device, repeats: int) -> list[float]:
    """Wall time of each of ``repeats`` epochs of the typical user's loop, after one warm-up epoch."""
    import torchvision.transforms as T

    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize(ds.mean, ds.std), Cutout(CUTOUT)])
    batches = DataLoader(PILImages(ds.x_train, ds.y_train, transform), batch_size=batch_size, shuffle=True,
                         num_workers=workers, pin_memory=device.type == "cuda")
    torch.manual_seed(0)
    model = build_model(model_name, in_channels=3, num_classes=10, input_size=32, **model_kwargs).to(device)
    optimizer = torch.optim.SGD(model.parameters(), **SGD)

    def epoch() -> float:
        running_loss = 0.0
        for x, y in batches:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
        return running_loss

    model.train()
    epoch()
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        epoch()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - t0)
    return seconds


# ----------------------------------------------------------------------------------------------
def rows_for(label: str, seconds: dict[str, list[float]], n_train: int) -> list[dict]:
    """images/s and s per 50k epoch of every candidate (median over timed epochs, min/max the spread),
    with ratios to the reference loop."""
    rows = []
    ref = statistics.median(seconds["reference"])
    for cand, s in seconds.items():
        med = statistics.median(s)
        rate = n_train / med
        rows.append({**result(f"{label}/{cand}", "images_per_s", rate, "img/s", baseline=f"{label}/reference",
                              baseline_value=n_train / ref),
                     "min": n_train / max(s), "max": n_train / min(s), "repeats": len(s)})
        rows.append({**result(f"{label}/{cand}", "seconds_per_epoch", EPOCH_IMAGES * med / n_train, "s",
                              baseline=f"{label}/reference", baseline_value=EPOCH_IMAGES * ref / n_train),
                     "min": EPOCH_IMAGES * min(s) / n_train, "max": EPOCH_IMAGES * max(s) / n_train,
                     "repeats": len(s)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="CPU-sized: narrow networks, a few batches")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--batch-size", type=int, default=None, help="default 256 (16 with --quick)")
    parser.add_argument("--variants", nargs="+", default=None,
                        help="engine variants to time (CUDA: engine-fp32 engine engine-compile engine-cudagraphs)")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per variant (after one warm-up epoch)")
    parser.add_argument("--steps", type=int, default=None, help="steps per timed epoch (default 80; quick 50)")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                        help="DataLoader workers of the reference loop")
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    batch = args.batch_size or (16 if args.quick else 256)
    n_train = (args.steps or (50 if args.quick else 80)) * batch  # ≥ 50 steps per timed epoch
    epochs = 1 + args.repeats                        # the engine's first epoch is warm-up (compile, autotune)
    variants = {"engine": FAST_PATH["bf16"]}
    if cuda:
        variants = {"engine-fp32": FAST_PATH["fp32"], **variants, "engine-compile": FAST_PATH["compile"],
                    "engine-cudagraphs": FAST_PATH["cudagraphs"]}
    if args.variants:
        variants = {k: v for k, v in variants.items() if k in args.variants}
    register_synthetic()
    ds = synthetic_cifar(n_train=n_train, n_test=64)
    rows, failures = [], {}
    for name in args.models:
        kwargs = {"width": QUICK_WIDTH[name]} if args.quick else {}
        label = name + "".join(f"[{k}={v}]" for k, v in kwargs.items())
        seconds = {"reference": reference_seconds(name, kwargs, ds, batch, args.workers, device, args.repeats)}
        for cand, flags in variants.items():
            try:
                seconds[cand] = engine_seconds(name, kwargs, n_train, batch, epochs, device, **flags)
            except Exception as err:  # a failing variant is reported in the file, the others still run
                failures[f"{label}/{cand}"] = failure(err)
                print(f"{label:24s} {cand:15s} FAILED {failures[f'{label}/{cand}']}", flush=True)
            if cuda:
                torch.cuda.empty_cache()
        for cand, s in seconds.items():
            med = statistics.median(s)
            print(f"{label:24s} {cand:17s} {n_train / med:10.0f} img/s [{n_train / max(s):.0f}–{n_train / min(s):.0f}]"
                  f"  {EPOCH_IMAGES * med / n_train:9.1f} s/50k-epoch", flush=True)
        rows += rows_for(label, seconds, n_train)
        # rewritten after every network, so an interrupted run keeps the networks it finished
        path = write_results("train_throughput", device, rows, extra={
            "batch_size": batch, "images_per_timed_epoch": n_train, "steps_per_timed_epoch": n_train // batch,
            "repeats": args.repeats, "reference_workers": args.workers,
            "timing": "each variant is one engine run: epoch 1 untimed (compile, CUDA-graph capture, cuDNN "
                      "autotuning), then `repeats` timed epochs of ≥ 50 steps, each the engine's own epoch time "
                      "(perf_counter, one synchronize at the epoch's end); median, min-max over epochs",
            "threads": torch.get_num_threads(), "load_average": os.getloadavg()[0], "quick": args.quick,
            "failures": failures})
        print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    main()
