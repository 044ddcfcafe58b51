"""Data and baselines: what each embedded dataset looks like and how a plain model does on it."""
from __future__ import annotations

import dataclasses

import pandas as pd

from flatlib.train.config import TrainConfig
from flatlib.data import EMBEDDED
from flatlib.experiments.common import curves, summaries, train_all
from flatlib.params import Params, bounded, notebook
from flatlib.store import Store

# the baseline model and recipe for each embedded dataset (SGD, momentum 0.9, multistep)
BASELINE_MODELS: dict[str, tuple[str, dict]] = {
    "toy": ("mlp5", {}),
    "mnist1d": ("mlp", {"widths": [256, 256]}),
    "digits": ("cnn6", {"width": 0.25}),
    "mnist5k": ("mlp100", {}),
}


@notebook("data_and_baselines")
@dataclasses.dataclass
class BaselineParams(Params):
    """Knobs of the data-and-baselines notebook."""

    datasets: list[str] | None = None
    seeds: list[int] | None = bounded(lo=0)
    epochs: int | None = bounded(lo=1)
    batch_size: int | None = bounded(lo=1)
    lr: float | None = bounded(lo=0.0)

    PRESETS = {
        "smoke": dict(datasets=list(EMBEDDED), seeds=[0], epochs=1, batch_size=128, lr=0.05),
        "default": dict(datasets=list(EMBEDDED), seeds=[0, 1, 2], epochs=30, batch_size=128, lr=0.05),
        "paper": dict(datasets=list(EMBEDDED), seeds=[0, 1, 2, 3, 4], epochs=100, batch_size=128, lr=0.05),
    }

    def __post_init__(self) -> None:
        bad = [d for d in (self.datasets or []) if d not in EMBEDDED]
        if bad:
            from flatlib.params import ParameterError

            raise ParameterError(f"invalid datasets={bad!r} for data_and_baselines; choose from: {', '.join(EMBEDDED)}")

    def plan(self) -> list[TrainConfig]:
        return configs(self)


def configs(p: BaselineParams) -> list[TrainConfig]:
    out = []
    for name in p.datasets:
        model, kw = BASELINE_MODELS[name]
        for seed in p.seeds:
            out.append(TrainConfig(dataset=name, model=model, model_kwargs=kw, epochs=p.epochs,
                                   batch_size=p.batch_size, lr=p.lr, momentum=0.9, weight_decay=5e-4,
                                   schedule="multistep", milestones=(p.epochs // 2, 3 * p.epochs // 4),
                                   lr_factor=0.1, seed=seed))
    return out


def run(p: BaselineParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train every baseline; return (per-epoch curves, per-run summary)."""
    cfgs = configs(p)
    results = train_all(cfgs, Store(p.profile), desc="baselines")
    labels = dict(dataset=[c.dataset for c in cfgs], model=[c.model for c in cfgs], seed=[c.seed for c in cfgs])
    return curves(results, **labels), summaries(results, **labels)
