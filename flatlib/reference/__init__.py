"""The papers' reproduction targets and numbers: the only place where a paper's number lives.

``targets.csv`` has one row per figure/table ID: the paper, what is shown, the claim, the
paper's value as printed, where the paper gives it, and ``numbers``, the same values in
machine-readable ``key=value; key=value`` form for tables (in columns labelled as the paper's)
and for the claims' thresholds.
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

import pandas as pd


@lru_cache(maxsize=1)
def _targets() -> pd.DataFrame:
    with resources.files("flatlib.reference").joinpath("targets.csv").open() as fh:
        return pd.read_csv(fh, keep_default_na=False)


def targets() -> pd.DataFrame:
    """Every reproduction target: id, paper, what, claim, paper_value, source, numbers."""
    return _targets().copy()


def paper_numbers(target: str) -> dict[str, float]:
    """The paper's numbers for one target ID, e.g. ``paper_numbers("FF-F1")["lambda_1:0.0005"] == 15.84``.

    >>> paper_numbers("POF-F5")
    {'peak_ratio': 0.5}
    """
    t = _targets().set_index("id")
    if target not in t.index:
        raise ValueError(f"unknown target {target!r}; choose from: {', '.join(t.index)}")
    out = {}
    for item in filter(None, (s.strip() for s in t.at[target, "numbers"].split(";"))):
        key, value = item.rsplit("=", 1)
        out[key.strip()] = float(value)
    return out


def paper_number(target: str, key: str, default: float | None = None) -> float | None:
    """One number of ``paper_numbers(target)``; ``default`` when the paper gives none for ``key``."""
    return paper_numbers(target).get(key, default)
