"""`load_dataset`: one entry point for every dataset, by name."""
from __future__ import annotations

from pathlib import Path

from .confusion import holdout
from .dataset import ArrayDataset
from .embedded import EMBEDDED
from .paper import PAPER_DATASETS, data_root

DATASETS = {**EMBEDDED, **PAPER_DATASETS}
# training images of each dataset's official training split at its default size (what a run with
# n_train=None sees), known without loading the data: for cost plans and schedule integrals
TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000, "svhn": 73_257, "mnist": 60_000, "fashion_mnist": 60_000,
                "toy": 2_000, "mnist1d": 4_000, "digits": 1_437, "mnist5k": 4_000, "mnist5k14": 4_000}


def load_dataset(name: str, *, root: str | Path | None = None, download: bool = False, seed: int = 0,
                 validation: int = 0, **kwargs) -> ArrayDataset:
    """Load dataset ``name`` as an `ArrayDataset` (on the CPU).

    Embedded datasets (``EMBEDDED``) need no files; ``seed`` selects the generated instance or the
    split, and ``root``/``download`` are ignored. Paper datasets (``PAPER_DATASETS``) are read from
    ``root`` (else ``$FLATLIB_DATA``, else ``~/.cache/flatlib/data``) with their official splits;
    they raise `MissingDataError` when absent. ``kwargs`` go to the dataset's loader
    (e.g. ``n_train`` for ``toy``, ``extra`` for ``svhn``). ``validation`` > 0 holds that many
    training images out as the evaluation split in place of the test set (`holdout`).
    """
    if name in EMBEDDED:
        ds = EMBEDDED[name](seed=seed, **kwargs)
    elif name in PAPER_DATASETS:
        ds = PAPER_DATASETS[name](data_root(root), download=download, **kwargs)
    else:
        raise ValueError(f"unknown dataset {name!r}; choose from: {', '.join(DATASETS)}")
    return holdout(ds, validation) if validation else ds
