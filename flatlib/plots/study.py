"""Figures of the study chapter: the τ heat map, per-intervention bars with intervals, the invariance map."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import seaborn as sns

from flatlib.measures import MEASURES
from flatlib.plots import figure


def _order(columns) -> list[str]:
    return ["overall", *sorted(c for c in columns if c != "overall")]


def _not_enough(what: str):
    """A figure that says why there is nothing to draw (no dataset has enough trained models)."""
    fig, axes = figure(width=6.0, height=1.5)
    axes[0][0].text(0.5, 0.5, f"{what}: not enough models that passed the 'trained' gate", ha="center", va="center")
    axes[0][0].set_axis_off()
    return fig


def tau_heatmap(corr: pd.DataFrame, target: str = "gap"):
    """Signed Kendall τ (measure × intervention) with ``target``, one panel per dataset.

    Signed: multiplied by the measure's expected direction, so red (> 0) means "ranks the models the way its
    proponents say" and blue (< 0) "the wrong way"; a cell whose 95% interval excludes 0 is marked with *.
    """
    if corr.empty:
        return _not_enough(f"Kendall τ with {target}")
    sub = corr[corr["target"] == target]
    datasets = sorted(sub["dataset"].unique())
    widths = [sub[sub["dataset"] == d]["intervention"].nunique() for d in datasets]
    fig, axes = figure(ncols=len(datasets), width=max(3.5, 0.9 * max(widths) + 2.5), height=6.0)
    for ax, d in zip(axes[0], datasets):
        s = sub[sub["dataset"] == d]
        tau = s.pivot(index="measure", columns="intervention", values="signed_tau")
        sig = s.assign(sig=(s["signed_lo"] > 0) | (s["signed_hi"] < 0)).pivot(
            index="measure", columns="intervention", values="sig")
        cols = _order(tau.columns)
        tau, sig = tau.reindex(index=list(MEASURES), columns=cols), sig.reindex(index=list(MEASURES), columns=cols)
        annot = tau.map(lambda v: "" if pd.isna(v) else f"{v:+.2f}") + sig.map(lambda v: "*" if v is True else "")
        sns.heatmap(tau, ax=ax, cmap="RdBu_r", vmin=-1, vmax=1, annot=annot, fmt="", annot_kws={"fontsize": 7},
                    cbar=ax is axes[0][-1], yticklabels=[MEASURES[m][0] for m in tau.index] if ax is axes[0][0] else False)
        ax.set_title(f"{d} ({int(s['models'].iloc[0])} models)", fontsize=10)
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.tick_params(axis="x", rotation=45, labelsize=8)
        for lab in ax.get_xticklabels():
            lab.set_horizontalalignment("right")
    return fig


def factor_bars(corr: pd.DataFrame, dataset: str, target: str = "gap", ncols: int = 4):
    """Signed τ per measure with its 95% bootstrap interval, one panel per intervention (overall first)."""
    s = corr[(corr["dataset"] == dataset) & (corr["target"] == target)] if not corr.empty else corr
    if s.empty:
        return _not_enough(f"{dataset}: τ per intervention")
    interventions = _order(s["intervention"].unique())
    nrows = math.ceil(len(interventions) / ncols)
    fig, axes = figure(ncols=min(ncols, len(interventions)), nrows=nrows, width=3.0, height=4.8, sharex=True, sharey=True)
    flat = axes.ravel()
    y = np.arange(len(MEASURES))
    for ax, iv in zip(flat, interventions):
        g = s[s["intervention"] == iv].set_index("measure").reindex(list(MEASURES))
        colors = ["C2" if lo > 0 else "C3" if hi < 0 else "0.6" for lo, hi in zip(g["signed_lo"], g["signed_hi"])]
        ax.barh(y, g["signed_tau"], color=colors)
        ax.errorbar(g["signed_tau"], y, xerr=[g["signed_tau"] - g["signed_lo"], g["signed_hi"] - g["signed_tau"]],
                    fmt="none", ecolor="k", elinewidth=0.8, capsize=2)
        ax.axvline(0, color="k", lw=0.8)
        groups = g["groups"].dropna()
        ax.set_title(iv + (f"\n({groups.iloc[0]:.0f} groups)" if len(groups) else f"\n({int(g['models'].iloc[0])} models)"),
                     fontsize=9)
        ax.set_xlim(-1.05, 1.05)
    for ax in flat[len(interventions):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_yticks(y, [MEASURES[m][0] for m in MEASURES], fontsize=8)
    flat[0].invert_yaxis()  # the y axis is shared: first measure on top
    for ax in axes[-1]:
        ax.set_xlabel(f"signed τ with {target}")
    return fig


def invariance(frame: pd.DataFrame):
    """log₁₀ relative change of each measure under each function-preserving transform (white: below 1e-12)."""
    f = frame.assign(column=frame["model"] + "\n" + frame["transform"],
                     log_change=np.log10(frame["relative_change"].clip(lower=1e-12)))
    table = f.pivot(index="label", columns="column", values="log_change").reindex([MEASURES[m][0] for m in MEASURES])
    fig, axes = figure(width=1.6 * table.shape[1] + 3.0, height=6.0)
    ax = axes[0][0]
    sns.heatmap(table, ax=ax, cmap="mako_r", vmin=-12, vmax=1, annot=True, fmt=".0f", annot_kws={"fontsize": 7},
                cbar_kws={"label": "log₁₀ relative change"})
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.tick_params(axis="x", labelsize=7)
    return fig
