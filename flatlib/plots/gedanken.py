"""Figure of the FF-G gedanken notebook."""
from __future__ import annotations

import pandas as pd
import seaborn as sns

from flatlib.plots import figure


def trajectories(frame: pd.DataFrame):
    """Loss, exact trace and λ1, and FF Eq. 4 against the loss, one line per weight decay (log-log)."""
    fig, axes = figure(ncols=3, width=4.0, height=3.3)
    f = frame.assign(weight_decay=frame["weight_decay"].map(lambda v: f"wd={v:g}"))
    sns.lineplot(f, x="step", y="loss", hue="weight_decay", ax=axes[0][0])
    axes[0][0].set(yscale="log", title="training loss")
    sns.lineplot(f, x="loss", y="lambda_1", hue="weight_decay", ax=axes[0][1], legend=False)
    axes[0][1].set(xscale="log", yscale="log", title="exact λ1 vs loss", ylabel="λ1")
    g = f.melt(id_vars=["loss", "weight_decay"], value_vars=["trace", "lambda_1", "paper_eq4"],
               var_name="quantity").query("weight_decay == 'wd=0'")
    g["value"] = g["value"].abs()
    sns.lineplot(g, x="loss", y="value", hue="quantity", style="quantity", ax=axes[0][2])
    axes[0][2].set(xscale="log", yscale="log", title="wd=0: trace, λ1, |Eq. 4|", ylabel="")
    return fig
