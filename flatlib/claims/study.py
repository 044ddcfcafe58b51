"""The cross-paper study's population gate: only models that trained enter the rank correlations."""
from __future__ import annotations

import pandas as pd

from flatlib.claims.ff import FIT_BY_CLAIM
from flatlib.claims.rules import Fit
from flatlib.claims.verdict import Claim  # noqa: F401  (the same vocabulary as the claims)

DEFAULT_FIT = Fit(95.0)
# models whose experiment sets a lower fit (softmax regression: FF-F1; All-CNN-C: FF-F3)
FIT_BY_MODEL = {"logreg": FIT_BY_CLAIM["FF-F1"], "allcnnc": FIT_BY_CLAIM["FF-F3"]}


def trained(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kept, excluded): a model is kept when its train accuracy reaches its experiment's "trained" gate
    (≥ 95 %, or the lower fit FF-F1/F3 set for softmax regression and All-CNN-C); ``excluded`` says why."""
    need = frame["model"].map(lambda m: FIT_BY_MODEL.get(m, DEFAULT_FIT).minimum)
    acc = 100 - frame["train_error"]
    ok = acc >= need
    excluded = frame.loc[~ok, ["key", "dataset", "model"]].assign(
        train_accuracy=acc[~ok].round(1), required=need[~ok],
        reason=[f"train accuracy {a:.1f} % < {n:g} %" for a, n in zip(acc[~ok], need[~ok])])
    return frame[ok].reset_index(drop=True), excluded.reset_index(drop=True)
