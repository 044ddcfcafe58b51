"""Helpers shared by the experiment modules: run many configs, gather tidy frames."""
from __future__ import annotations

from typing import Iterable

import pandas as pd
from tqdm.auto import tqdm

from flatlib.train.config import TrainConfig
from flatlib.train.engine import TrainResult, quiet, train
from flatlib.store import Store

SEED_COLUMN = "seed"


def train_all(configs: Iterable[TrainConfig], store: Store, desc: str = "runs") -> list[TrainResult]:
    """Train (or reuse) every config in order, with one progress bar over runs."""
    configs = list(configs)
    return [train(c, store) for c in tqdm(configs, desc=desc, disable=quiet(), leave=False)]


def curves(results: Iterable[TrainResult], **labels_by_run) -> pd.DataFrame:
    """Per-epoch records of many runs, each row tagged with the run's label columns."""
    frames = []
    for i, r in enumerate(results):
        f = r.frame.copy()
        for name, values in labels_by_run.items():
            f[name] = values[i]
        frames.append(f)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def summaries(results: Iterable[TrainResult], **labels_by_run) -> pd.DataFrame:
    """One row per run: the final summary (train/test error, gap, weight norm) plus labels."""
    rows = []
    for i, r in enumerate(results):
        rows.append({**{k: v[i] for k, v in labels_by_run.items()}, **r.summary})
    return pd.DataFrame(rows)


def mean_std(frame: pd.DataFrame, by: list[str], cols: list[str]) -> pd.DataFrame:
    """Mean ± std over seeds, as a frame with ``<col>_mean``/``<col>_std`` columns."""
    g = frame.groupby(by, sort=False)[cols].agg(["mean", "std", "count"])
    g.columns = [f"{c}_{s}" for c, s in g.columns]
    return g.reset_index()
