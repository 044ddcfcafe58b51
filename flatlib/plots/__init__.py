"""Figures for the book: one module per chapter, seaborn on matplotlib, one function per figure.

Each function takes the tidy DataFrame an experiment returned and returns the matplotlib Figure.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns

sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")


def figure(ncols: int = 1, nrows: int = 1, width: float = 4.2, height: float = 3.2, **kw):
    """A figure with a grid of axes sized per panel."""
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False,
                        constrained_layout=True, **kw)
