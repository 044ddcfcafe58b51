"""Datasets as device-resident tensors, and the loaders and augmentations the experiments use."""
# The container: four tensors plus normalisation statistics.
from .dataset import ArrayDataset
# Loading by name: embedded (no files) and the papers' datasets (torchvision on-disk formats).
from .embedded import EMBEDDED
from .paper import PAPER_DATASETS, MissingDataError
from .registry import DATASETS, TRAIN_IMAGES, load_dataset
# Training-set surgery: random subsets and FIM Scenario I confusion sets.
from .confusion import confusion_dataset, holdout, subset
# Mini-batches on the device, with the FIM Scenario II augmentations.
from .augment import AUGMENTATIONS, augment_batch
from .loader import BatchLoader, split_tensors

__all__ = [
    "ArrayDataset", "load_dataset", "DATASETS", "TRAIN_IMAGES", "EMBEDDED", "PAPER_DATASETS", "MissingDataError",
    "BatchLoader", "split_tensors", "augment_batch", "AUGMENTATIONS", "confusion_dataset", "holdout", "subset",
]
