"""Figures of the PoF chapter: toy landscape studies (F1c, F1d, F2a, F2b) and image pipeline (F4, F5, F6)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns

from flatlib.plots import figure

METHOD_COLORS = {"SGD": "C0", "SAM": "C2", "PoF": "C1"}


def delta_l(f1c: pd.DataFrame):
    """POF-F1c: ΔL per weight layer (1 = input layer), SGD vs PoF, mean ± sd over seeds."""
    fig, axes = figure(ncols=2, width=4.4)
    sns.barplot(f1c, x="layer", y="delta_l", hue="method", errorbar="sd", ax=axes[0][0], palette=METHOD_COLORS)
    axes[0][0].set_ylabel("ΔL (test-loss decrease along v₁)")
    axes[0][0].set_xlabel("weight layer (5 = classifier)")
    sns.barplot(f1c, x="layer", y="lambda_1", hue="method", errorbar="sd", ax=axes[0][1], palette=METHOD_COLORS)
    axes[0][1].set_yscale("log")
    axes[0][1].set_ylabel("λ₁ of the layer's Hessian block")
    axes[0][1].set_xlabel("weight layer (5 = classifier)")
    return fig


def final_layer_slices(f1d: pd.DataFrame):
    """POF-F1d: training loss along the final-layer block's top eigenvectors v₁, v₂ (one line per seed)."""
    ks = sorted(f1d["eigenvector"].unique())
    fig, axes = figure(ncols=len(ks), width=4.2)
    for ax, k in zip(axes[0], ks):
        s = f1d[f1d["eigenvector"] == k]
        sns.lineplot(s, x="alpha", y="loss", hue="method", units="seed", estimator=None, ax=ax, palette=METHOD_COLORS,
                     lw=1.2)
        ax.set_yscale("log")
        ax.set_xlabel(f"α along v{k} (unit eigenvector)")
        ax.set_ylabel("training loss")
    return fig


def gradient_alignment(f2a: pd.DataFrame, max_rank: int = 20):
    """POF-F2a: counts of mini-batches by argmax_i |v_iᵀ ∂L_B/∂θ| (i = 1 largest eigenvalue), all seeds."""
    counts = f2a["rank"].clip(upper=max_rank).value_counts().reindex(range(1, max_rank + 1), fill_value=0)
    fig, axes = figure(width=6.0)
    ax = axes[0][0]
    ax.bar(counts.index, counts.to_numpy(), color="C0")
    ax.set_xlabel(f"eigenvector index i (i ≥ {max_rank} pooled)")
    ax.set_ylabel("mini-batches")
    return fig


def xi_distributions(f2b: pd.DataFrame):
    """POF-F2b: distributions of ξ*_B on train and test mini-batches after SGD (log x-axis, KDE per split)."""
    d = f2b[~f2b["rejected"] & (f2b["xi"] > 0)]
    fig, axes = figure(width=5.5)
    sns.histplot(d, x="xi", hue="split", log_scale=True, stat="density", common_norm=False, element="step",
                 kde=True, ax=axes[0][0])
    axes[0][0].set_xlabel("ξ*_B (distance to the mini-batch loss minimum along −ĝ)")
    return fig


def error_curves(curves: pd.DataFrame, pretrain_epochs: int, zoom: int | None = None):
    """POF-F4: test error vs epoch, SGD, SAM (continued after E) and PoF from SAM@E, mean ± sd over seeds."""
    c = curves[curves["method"].isin(["SGD", "SAM", "PoF"])]
    # PoF continues from SAM@E: prepend that point so the curve starts where PoF was activated
    start = c[(c["method"] == "SAM") & (c["epoch"] == pretrain_epochs)].assign(method="PoF")
    c = pd.concat([c, start], ignore_index=True)
    fig, axes = figure(ncols=2, width=4.6)
    lo = max(1, pretrain_epochs - (zoom or pretrain_epochs // 5))
    for ax, sub in ((axes[0][0], c), (axes[0][1], c[c["epoch"] >= lo])):
        sns.lineplot(sub, x="epoch", y="test_error", hue="method", errorbar="sd", ax=ax, palette=METHOD_COLORS)
        ax.axvline(pretrain_epochs, color="grey", ls=":", lw=1)
        ax.set_ylabel("test error (%)")
    axes[0][0].set_title("whole run")
    axes[0][1].set_title("zoom after PoF starts")
    return fig


def hessian_histograms(f5: pd.DataFrame):
    """POF-F5: histograms of the per-mini-batch top-Hessian-component estimate, train and test, SAM@E vs PoF@E+Δ₁."""
    fig, axes = figure(ncols=2, width=4.4)
    for ax, split in zip(axes[0], ("train", "test")):
        sns.histplot(f5[(f5["split"] == split) & (f5["value"] > 0)], x="value", hue="method", log_scale=True,
                     element="step", stat="count", ax=ax)
        ax.set_title(f"{split} mini-batches")
        ax.set_xlabel("gᵀH_B g / ‖g‖² (classifier block)")
    return fig


def perturbation_histograms(f6: pd.DataFrame):
    """POF-F6: histograms of classifier-space perturbation sizes ‖δθ‖₂ (log x-axis)."""
    d = f6[f6["size"] > 0]
    fig, axes = figure(width=6.0)
    sns.histplot(d, x="size", hue="method", log_scale=True, element="step", stat="density", common_norm=False,
                 bins=np.linspace(np.log10(d["size"].min()), np.log10(d["size"].max()), 60), ax=axes[0][0])
    axes[0][0].set_xlabel("‖δθ‖₂ in classifier space")
    return fig
