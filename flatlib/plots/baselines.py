"""Figures of the data-and-baselines notebook."""
from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
import torch

from flatlib.data import ArrayDataset
from flatlib.plots import figure


def samples(datasets: list[ArrayDataset], per_class: int = 2):
    """A few training examples of each dataset: images as pictures, 1-D signals as curves, tabular as a scatter."""
    fig, axes = figure(ncols=len(datasets), width=3.4, height=3.2)
    for ax, ds in zip(axes[0], datasets):
        x, y = ds.x_train.float(), ds.y_train
        if ds.x_train.dtype == torch.uint8:
            x = x / 255.0
        idx = np.concatenate([np.flatnonzero(y.numpy() == c)[:per_class] for c in range(min(ds.num_classes, 8))])
        if x.dim() == 4:
            tiles = x[idx][:, 0].numpy()
            cols = per_class
            rows = len(tiles) // cols
            h, w = tiles.shape[1:]
            grid = np.ones(((h + 1) * rows, (w + 1) * cols))
            for k, t in enumerate(tiles):
                r, c = divmod(k, cols)
                grid[r * (h + 1): r * (h + 1) + h, c * (w + 1): c * (w + 1) + w] = t
            ax.imshow(grid, cmap="gray_r")
            ax.axis("off")
        elif ds.x_train.shape[1] > 3:
            for k, i in enumerate(idx[:: per_class][:6]):
                ax.plot(x[i].numpy() + 2.5 * k, lw=1)
            ax.set_yticks([])
            ax.set_xlabel("position")
        else:
            ax.scatter(x[:400, 0], x[:400, 1], c=y[:400], s=6, cmap="tab10")
        ax.set_title(f"{ds.name}: {ds.n_train} train / {ds.n_test} test, {ds.num_classes} classes", fontsize=9)
    return fig


def curves(frame: pd.DataFrame):
    """Training loss and test error per epoch, one panel per dataset, mean ± std over seeds."""
    names = list(dict.fromkeys(frame["dataset"]))
    fig, axes = figure(ncols=len(names), nrows=2, width=3.4, height=2.8)
    for j, name in enumerate(names):
        f = frame[frame["dataset"] == name]
        sns.lineplot(f, x="epoch", y="train_loss", ax=axes[0][j], errorbar="sd")
        axes[0][j].set_yscale("log")
        axes[0][j].set_title(f"{name} ({f['model'].iloc[0]})", fontsize=10)
        sns.lineplot(f, x="epoch", y="test_error", ax=axes[1][j], errorbar="sd", color="C1")
        axes[1][j].set_ylabel("test error (%)")
    return fig
