"""FIM-T2 (Jia & Su, ICML 2020, Sec. 7.2.2): WRN-18-1.5 on 128×128 down-sampled ImageNet with and without
the regularizer; notebook ``fim_imagenet``. Recorded as not run, with the reason, where it cannot run."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from flatlib.params import Params, bounded, notebook

@notebook("fim_imagenet")
@dataclasses.dataclass
class ImageNetParams(Params):
    """FIM-T2: WRN-18-1.5 on 128×128 down-sampled ImageNet, with and without the regularizer (3 models each)."""

    data_dir: str | None = None   # torchvision ImageFolder root with train/ and val/; None: $FLATLIB_DATA/imagenet128
    seeds: list[int] | None = bounded(lo=0)

    PRESETS = {"smoke": dict(seeds=[0]), "default": dict(seeds=[0]), "paper": dict(seeds=[0, 1, 2])}


def imagenet_folder(p: ImageNetParams) -> Path:
    from flatlib.data.paper import data_root

    return Path(p.data_dir).expanduser() if p.data_dir else data_root() / "imagenet128"


def imagenet_skip_reason(p: ImageNetParams) -> str:
    """Why FIM-T2 cannot run here: it needs the paper profile, the data, and two things flatlib lacks."""
    folder = imagenet_folder(p)
    if p.profile != "paper":
        return (f"FIM-T2 runs only at the paper profile (this is '{p.profile}'): it needs the 1.28M-image "
                "ImageNet training set, for which no embedded dataset stands in")
    if not (folder / "train").is_dir() or not (folder / "val").is_dir():
        return f"no ImageNet (128×128) ImageFolder tree with train/ and val/ at {folder}"
    return (f"ImageNet was found at {folder}, but flatlib cannot train on it yet: the engine keeps a dataset "
            "device-resident (128×128 ImageNet is ~63 GB as uint8) and the model registry has no WRN-18-1.5")
