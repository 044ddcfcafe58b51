"""Figures of the FIM chapter: metric vs configuration (FIM Fig. 2-4) and the regularizer comparison."""
from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns

from flatlib.experiments.fim_scenarios import METRIC_LABELS, METRICS
from flatlib.plots import figure


def scenario(frame: pd.DataFrame, xlabel: str):
    """Five panels, test error then γ̂, Frobenius, spectral radius, robustness, against the configuration:
    mean over models (line) ± 1 std (band), every model as a dot, as in FIM Fig. 2-4.

    Singular subsets (γ̂ = −inf) are left out of the band and reported in the panel title.
    """
    cols = ["test_error", *METRICS]
    order = frame.sort_values("level_index").drop_duplicates("level_index")
    fig, axes = figure(ncols=len(cols), width=3.0, height=2.8)
    for ax, col in zip(axes[0], cols):
        vals = frame[col].replace(-np.inf, np.nan)
        g = frame.assign(v=vals).groupby("level_index")["v"]
        mean, std = g.mean(), g.std().fillna(0.0)
        ax.plot(mean.index, mean.to_numpy(), marker="o", color="C0")
        ax.fill_between(mean.index, (mean - std).to_numpy(), (mean + std).to_numpy(), alpha=0.25, color="C0")
        ax.scatter(frame["level_index"], vals, s=8, color="C0", alpha=0.5)
        n_inf = int(np.isneginf(frame[col]).sum()) if col in METRICS else 0
        ax.set_title(METRIC_LABELS[col] + (f"\n({n_inf} models −inf)" if n_inf else ""), fontsize=9)
        ax.set_xticks(order["level_index"], order["level"], rotation=30 if order["level"].str.len().max() > 4 else 0)
        ax.set_xlabel(xlabel)
        if col in ("frobenius", "spectral_radius", "robustness") and (vals > 0).all():
            ax.set_yscale("log")
    return fig


def regularizer(frame: pd.DataFrame):
    """Test error and γ̂ (normalised logits) per model, without and with the regularizer; one dot per seed."""
    frame = frame.assign(pair=frame["dataset"] + ":" + frame["model"])
    fig, axes = figure(ncols=2, width=4.2, height=3.0)
    for ax, col, label in ((axes[0][0], "test_error", "test error (%)"), (axes[0][1], "log_det", "γ̂ (logits at norm 25)")):
        sns.pointplot(frame, x="pair", y=col, hue="regularizer", hue_order=["without", "with"], errorbar="sd",
                      dodge=0.3, linestyle="none", ax=ax, marker="o")
        sns.stripplot(frame, x="pair", y=col, hue="regularizer", hue_order=["without", "with"], dodge=True,
                      alpha=0.4, size=3, ax=ax, legend=False)
        ax.set_ylabel(label)
        ax.set_xlabel("")
    return fig
