"""FF-G: the deep linear model with exponential loss (FF Sec. 2, Eq. 3-4).

L(w) = exp(w1 w2 w3 X) for three scalar weights and one datum X. FF states that the
Hessian's trace and top eigenvalue equal (w2²w3² + w1²w2² + w1²w3²) X exp(w1 w2 w3 X) and so
vanish as L -> 0. Here the exact Hessian comes from autograd; the notebook compares it with
the paper's formula along a gradient-descent trajectory with and without weight decay.
"""
from __future__ import annotations

import dataclasses

import pandas as pd
import torch

from flatlib.params import Params, bounded, notebook


def loss(w: torch.Tensor, x: float) -> torch.Tensor:
    return torch.exp(w.prod() * x)


def exact_hessian(w: torch.Tensor, x: float) -> torch.Tensor:
    """3×3 Hessian of L at w by autograd (float64)."""
    return torch.autograd.functional.hessian(lambda v: loss(v, x), w.double())


def paper_trace(w: torch.Tensor, x: float) -> float:
    """FF Eq. 4 as printed: (w2²w3² + w1²w2² + w1²w3²) · X · exp(w1w2w3X); the paper also calls this λ1."""
    w1, w2, w3 = (float(v) for v in w)
    return (w2**2 * w3**2 + w1**2 * w2**2 + w1**2 * w3**2) * x * float(loss(w.double(), x))


def trajectory(w0: tuple[float, float, float], x: float, lr: float, steps: int, weight_decay: float,
               record_every: int = 1) -> pd.DataFrame:
    """Gradient descent on L + (wd/2)‖w‖²; exact Hessian measures vs Eq. 4 along the way."""
    w = torch.tensor(w0, dtype=torch.float64, requires_grad=True)
    rows = []
    for t in range(steps + 1):
        if t % record_every == 0 or t == steps:
            with torch.no_grad():
                wd = w.detach()
            h = exact_hessian(wd, x)
            ev = torch.linalg.eigvalsh(h)
            rows.append({"step": t, "weight_decay": weight_decay, "loss": float(loss(wd, x)),
                         "trace": float(torch.trace(h)), "lambda_1": float(ev[-1]),
                         "lambda_min": float(ev[0]), "paper_eq4": paper_trace(wd, x),
                         "weight_norm": float(wd.norm())})
        obj = loss(w, x) + 0.5 * weight_decay * (w ** 2).sum()
        (g,) = torch.autograd.grad(obj, w)
        with torch.no_grad():
            w -= lr * g
    return pd.DataFrame(rows)


@notebook("ff_gedanken")
@dataclasses.dataclass
class GedankenParams(Params):
    """Knobs of the FF-G notebook (all profiles are cheap: this is analytic)."""

    x: float | None = None
    w0: list[float] | None = None
    lr: float | None = bounded(lo=0.0)
    steps: int | None = bounded(lo=1)
    weight_decays: list[float] | None = bounded(lo=0.0)

    PRESETS = {
        "smoke": dict(x=-1.0, w0=[0.5, 0.6, 0.7], lr=0.1, steps=200, weight_decays=[0.0, 0.01]),
        "default": dict(x=-1.0, w0=[0.5, 0.6, 0.7], lr=0.1, steps=5000, weight_decays=[0.0, 1e-3, 1e-2]),
        "paper": dict(x=-1.0, w0=[0.5, 0.6, 0.7], lr=0.1, steps=20000, weight_decays=[0.0, 1e-4, 1e-3, 1e-2]),
    }


def run(p: GedankenParams) -> pd.DataFrame:
    """One trajectory per weight decay, recorded on a log-spaced set of steps."""
    if len(p.w0) != 3:
        from flatlib.params import ParameterError

        raise ParameterError(f"invalid w0={p.w0!r} for ff_gedanken: needs exactly 3 weights")
    every = max(1, p.steps // 200)
    return pd.concat([trajectory(tuple(p.w0), p.x, p.lr, p.steps, wd, every) for wd in p.weight_decays],
                     ignore_index=True)


def final_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Last recorded point of each trajectory: loss, trace, λ1, Eq. 4 and ‖w‖."""
    last = frame.sort_values("step").groupby("weight_decay").tail(1)
    return last[["weight_decay", "step", "loss", "trace", "lambda_1", "paper_eq4", "weight_norm"]].reset_index(drop=True)
