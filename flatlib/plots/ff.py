"""Figures of the FF chapter: SLQ spectral densities (log y, as FF's figures), raw vs scale-aware
sharpness per setting, and the test-error / L2-norm curves of FF-F6/F7."""
from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
import torch

from flatlib.curvature import SpectralDensity
from flatlib.plots import figure


def _label(value) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def spectra(frame: pd.DataFrame, by: str, order: list, rows: str = "bn_mode", points: int = 400):
    """Smoothed SLQ density (log10, Gaussian of width 1/100 of the node range) per setting (columns)
    and ``rows`` value (rows), one line per seed; the dotted line is the largest Ritz value."""
    row_values = list(dict.fromkeys(frame[rows]))
    fig, axes = figure(ncols=len(order), nrows=len(row_values), width=3.6, height=3.0, sharex="row")
    for i, r in enumerate(row_values):
        part = frame[frame[rows] == r]
        lo, hi = float(part["node"].min()), float(part["node"].max())
        pad = 0.05 * (hi - lo) + 1e-12
        grid = torch.linspace(lo - pad, hi + pad, points, dtype=torch.float64)
        sigma = max((hi - lo) / 100, 1e-12)
        for j, setting in enumerate(order):
            ax = axes[i][j]
            for seed, g in part[part[by] == setting].groupby("seed"):
                nodes = torch.tensor(np.stack([v["node"].to_numpy() for _, v in g.groupby("vector")]))
                weights = torch.tensor(np.stack([v["weight"].to_numpy() for _, v in g.groupby("vector")]))
                dens = SpectralDensity(nodes, weights, int(nodes.numel())).smooth(grid, sigma, log=True)
                ax.plot(grid.numpy(), dens.numpy(), lw=1.2, label=f"seed {seed}")
                ax.axvline(float(nodes.max()), ls=":", lw=0.8, color=ax.lines[-1].get_color())
            name = f"wd={setting:g}" if isinstance(setting, (int, float)) else str(setting)
            ax.set(title=f"{name} ({rows.replace('_', ' ')} {r})", xlabel="eigenvalue λ",
                   ylabel="log10 density" if j == 0 else "")
            if ax.lines:  # ten decades below the highest peak: the tails far from every node are -inf-like
                top = max(float(np.nanmax(line.get_ydata())) for line in ax.lines if len(line.get_ydata()) > 2)
                ax.set_ylim(top - 10, top + 0.5)
        axes[i][0].legend(fontsize="small")
    return fig


def sharpness(frame: pd.DataFrame, by: str, order: list, hue: str | None = None):
    """Raw (λ1, tr H, ‖H‖²_F) and scale-aware (λ1·‖w‖², tr H·‖w‖²) sharpness, ‖w‖ and test accuracy per
    setting: mean ± std over seeds; a ranking that flips between the rows of panels is FF's point."""
    cols = [("lambda_1", "λ1"), ("trace", "tr H"), ("frobenius_sq", "‖H‖²_F"), ("test_acc", "test accuracy (%)"),
            ("lambda_1_scaled", "λ1·‖w‖²"), ("trace_scaled", "tr H·‖w‖²"), ("weight_norm", "‖w‖"),
            ("gap", "test − train error (%)")]
    fig, axes = figure(ncols=4, nrows=2, width=3.2, height=2.8)
    f = frame.assign(setting=frame[by].map(_label))
    labels = [_label(v) for v in order]
    for ax, (col, name) in zip(axes.ravel(), cols):
        sns.pointplot(f, x="setting", y=col, order=labels, hue=hue, errorbar="sd", dodge=0.2 if hue else False,
                      ax=ax, markersize=5, linestyle="none" if hue is None else "-")
        ax.set(title=name, xlabel=by.replace("_", " ") if ax in axes[-1] else "", ylabel="")
        if col not in ("test_acc", "gap", "weight_norm") and (f[col] > 0).all():
            ax.set_yscale("log")
        if hue and ax is not axes[0][0] and ax.get_legend():
            ax.get_legend().remove()
    return fig


def training_curves(frame: pd.DataFrame):
    """Test error and L2 norm ‖w‖ per epoch (of the iterate average once it starts) per claim, by optimiser."""
    claims = list(dict.fromkeys(frame["claim"]))
    fig, axes = figure(ncols=len(claims), nrows=2, width=4.0, height=2.8)
    for j, claim in enumerate(claims):
        f = frame[frame["claim"] == claim]
        sns.lineplot(f, x="epoch", y="test_error", hue="optimizer", errorbar="sd", ax=axes[0][j])
        axes[0][j].set(title=f"{claim} ({f['dataset'].iloc[0]}): test error", ylabel="test error (%)")
        sns.lineplot(f, x="epoch", y="weight_norm", hue="optimizer", errorbar="sd", ax=axes[1][j], legend=False)
        axes[1][j].set(title="L2 norm ‖w‖", ylabel="‖w‖")
    return fig
