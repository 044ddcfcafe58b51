"""The Hessian measurements shared by every FF notebook ("Flatness is a false friend", Sec. 4–5, App. A).

Each FF experiment trains settings for several seeds, then measures the Hessian of the
*un-regularised* training loss (FF Sec. 4: "we do not calculate the Hessian on the regularised
loss", since H → H + γI) on a fixed training subset: λ1 by Lanczos, tr H by Hutchinson,
‖H‖²_F = tr H² by Hutchinson on ‖Hz‖², and the spectral density by stochastic Lanczos quadrature.
FF's point is that the better-generalising, regularised solutions have the *larger* λ1; its
remedy is a scale-aware measure, so next to the raw numbers we report λ1·‖w‖² and tr H·‖w‖².
The experiments: `ff_weight_decay` (FF-F1..F5, F8) and `ff_adam` (FF-F6/F7).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
import torch

from flatlib.data import TRAIN_IMAGES
from flatlib.train.config import TrainConfig
from flatlib.train.optim import lr_at
from flatlib.curvature import HessianOperator, frobenius_norm_sq, hutchinson_trace, lanczos, slq
from flatlib.train.engine import dataset_for, load_model, loader, weight_norm
from flatlib.experiments.common import train_all
from flatlib.experiments.evaluation import evaluation
from flatlib.params import Params, bounded, choices
from flatlib.reference import paper_numbers
from flatlib.store import Store

# measured quantities per (run, bn mode); "scaled" = multiplied by ‖w‖², FF's scale-aware alternative
MEASURES = ["train_acc", "test_acc", "lambda_1", "trace", "frobenius_sq", "weight_norm_sq", "lambda_1_scaled",
            "trace_scaled", "decay_integral"]


@dataclasses.dataclass
class CurvatureParams(Params):
    """Hessian-measurement knobs shared by every FF notebook."""

    seeds: list[int] | None = bounded(lo=0)
    epochs: int | None = bounded(lo=1)
    batch_size: int | None = bounded(lo=1)
    hessian_samples: int | None = bounded(lo=1)   # first N images of each run's training set; None: all
    hessian_batch_size: int | None = bounded(lo=1)
    lanczos_iters: int | None = bounded(lo=2)      # max HVPs for λ1 (FF: 100)
    lanczos_tol: float | None = bounded(lo=0.0)
    slq_vectors: int | None = bounded(lo=1)
    slq_iters: int | None = bounded(lo=2)
    trace_samples: int | None = bounded(lo=2)      # Hutchinson vectors, for tr H and for tr H²
    dtype: str | None = choices("float32", "float64")

    def curvature_config(self, bn_mode: str) -> dict[str, Any]:
        """What determines a curvature measurement besides the trained run (the store key)."""
        return {"bn_mode": bn_mode, **{f: getattr(self, f) for f in (
            "hessian_samples", "hessian_batch_size", "lanczos_iters", "lanczos_tol", "slq_vectors", "slq_iters",
            "trace_samples", "dtype")}}


# Hessian-measurement presets shared by the FF notebooks (each notebook adds its data, model and schedule)
SMOKE = dict(seeds=[0], epochs=1, batch_size=128, n_train=256, hessian_samples=128, hessian_batch_size=128,
             lanczos_iters=8, lanczos_tol=1e-3, slq_vectors=1, slq_iters=8, trace_samples=4, dtype="float32",
             weight_decays=[0.0, 5e-4], augment="no-aug")
# default: 3 seeds everywhere (a paired t-test over 2 seeds has a t quantile of 6.3 and resolves nothing)
DEFAULT = dict(seeds=[0, 1, 2], batch_size=128, n_train=None, hessian_samples=1000, hessian_batch_size=500,
               lanczos_iters=60, lanczos_tol=1e-3, slq_vectors=2, slq_iters=60, trace_samples=30, dtype="float32",
               augment="no-aug")
# the small CNNs/ResNets: a 200-image Hessian subset and fewer Lanczos/Hutchinson steps keep the chapter in budget
DEFAULT_CNN = dict(DEFAULT, hessian_samples=200, hessian_batch_size=200, lanczos_iters=20, slq_vectors=1,
                   slq_iters=20, trace_samples=10)
# FF App. A: Lanczos 100 iterations over the whole training set; CIFAR runs augment (crop + flip) as Gadam
PAPER = dict(seeds=[0], batch_size=128, hessian_samples=None, hessian_batch_size=1000, lanczos_iters=100,
             lanczos_tol=1e-4, slq_vectors=1, slq_iters=100, trace_samples=100, dtype="float32",
             weight_decays=[0.0, 1e-4, 5e-4])
CIFAR = dict(augment="4-crop-f", n_train=None)
# FF: 45k training images, accuracy on a 5k validation split (held out of MNIST's 60k training images)
MNIST = dict(dataset="mnist", n_train=45000, validation=5000, augment="no-aug")


# ---------------------------------------------------------------------------------------------
def hessian_data(cfg: TrainConfig, n: int | None, batch_size: int):
    """The fixed Hessian subset: the first ``n`` images of the run's (un-augmented) training set."""
    ds = dataset_for(cfg)
    if n is not None and n < ds.n_train:
        ds = dataclasses.replace(ds, x_train=ds.x_train[:n], y_train=ds.y_train[:n])
    return loader(ds, "train", batch_size, torch.device("cpu"))


def measure_curvature(cfg: TrainConfig, p: CurvatureParams, bn_mode: str, store: Store) -> dict[str, Any]:
    """λ1 (Lanczos), tr H and tr H² (Hutchinson, with standard errors), SLQ nodes/weights and ‖w‖
    of the run's final weights; H is the un-regularised mean cross-entropy's Hessian. Cached."""
    def compute() -> dict[str, Any]:
        model = load_model(cfg, store)
        dtype = getattr(torch, p.dtype)
        H = HessianOperator(model, hessian_data(cfg, p.hessian_samples, p.hessian_batch_size), bn_mode=bn_mode,
                            dtype=dtype)
        top = lanczos(H, k=1, num_iters=p.lanczos_iters, tol=p.lanczos_tol, seed=cfg.seed)
        tr = hutchinson_trace(H, p.trace_samples, seed=cfg.seed)
        fro = frobenius_norm_sq(H, p.trace_samples, seed=cfg.seed + 1)
        dens = slq(H, p.slq_vectors, p.slq_iters, seed=cfg.seed + 2)
        return {"lambda_1": float(top.eigenvalues[0]), "lanczos_matvecs": top.num_matvecs,
                "lanczos_converged": top.converged, "trace": tr.value, "trace_stderr": tr.stderr,
                "frobenius_sq": fro.value, "frobenius_sq_stderr": fro.stderr, "num_params": H.dim,
                "hessian_samples": H.num_samples, "weight_norm": weight_norm(model),
                "slq_nodes": dens.nodes.tolist(), "slq_weights": dens.weights.tolist()}

    return store.cached("ff_curvature", {"train": cfg.to_dict(hashed_only=True), **p.curvature_config(bn_mode)},
                        compute)


def measure_all(configs: list[TrainConfig], p: CurvatureParams, bn_modes: list[str], store: Store,
                **labels_by_run) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train every config, measure each in every BN mode; (per-run table, SLQ nodes/weights in long form).

    ``test_correct``: which test images the run gets right (`evaluation.correct_vector`), for the paired
    accuracy comparisons."""
    results = train_all(configs, store, desc="FF runs")
    rows, spectra = [], []
    for i, (cfg, res) in enumerate(zip(configs, results)):
        for mode in bn_modes:
            m = measure_curvature(cfg, p, mode, store)
            correct = evaluation(cfg, store)["test_correct"]
            labels = {"bn_mode": mode, "seed": cfg.seed, **{k: v[i] for k, v in labels_by_run.items()}}
            s = res.summary
            rows.append({**labels, **{k: v for k, v in m.items() if not k.startswith("slq")},
                         "train_acc": 100 - s["train_error"], "test_acc": 100 - s["test_error"], "gap": s["gap"],
                         "train_loss": s["train_loss"], "n_test": s["n_test"], "test_correct": correct,
                         "decay_integral": integrated_decay(cfg, s["n_train"])})
            nodes, weights = np.asarray(m["slq_nodes"]), np.asarray(m["slq_weights"])
            for v in range(nodes.shape[0]):
                spectra.append(pd.DataFrame({**labels, "vector": v, "node": nodes[v], "weight": weights[v]}))
    frame = scale_aware(pd.DataFrame(rows))
    return frame, pd.concat(spectra, ignore_index=True)


def scale_aware(frame: pd.DataFrame) -> pd.DataFrame:
    """Add FF's scale-aware alternative: λ1·‖w‖² and tr H·‖w‖² (invariant to rescaling w → αw, H → H/α²
    for a loss that depends on w only through w/‖w‖, which BN makes true layer-wise)."""
    w2 = frame["weight_norm"] ** 2
    return frame.assign(weight_norm_sq=w2, lambda_1_scaled=frame["lambda_1"] * w2, trace_scaled=frame["trace"] * w2)


def integrated_decay(cfg: TrainConfig, n_train: int) -> float:
    """Σ_t lr_t·wd over every optimizer step of the run: how far weight decay shrinks the weights in all.

    Each SGD (L2) or AdamW (decoupled) step multiplies the weights by (1 − lr_t·wd) besides the
    gradient step, so Σ lr_t·wd is the log-shrinkage weight decay alone would cause; it compares
    regularisation strength across schedules (FF Eq. 14) and dataset sizes.
    """
    steps = -(-n_train // cfg.batch_size)
    return float(cfg.weight_decay * steps * sum(lr_at(cfg, e) for e in range(cfg.epochs)))


def paper_decay_integral(p: Params) -> float:
    """Σ lr·wd of the paper-profile run with the largest weight decay of this notebook (its paper preset)."""
    paper = type(p).resolve(profile="paper")
    cfgs = paper.plan()
    cfg = max(cfgs, key=lambda c: c.weight_decay)
    return integrated_decay(cfg, cfg.n_train or TRAIN_IMAGES[cfg.dataset])


# ---------------------------------------------------------------------------------------------
def summary_table(frame: pd.DataFrame, by: str, claim: str, order: list | None = None) -> pd.DataFrame:
    """Mean ± std over seeds of every measure, one row per setting, the paper's numbers in their own columns."""
    cols = [c for c in MEASURES if c in frame]
    g = frame.groupby(by, sort=False)[cols]
    mean, std, n = g.mean(), g.std(), g.size()
    if order is not None:
        mean, std, n = mean.loc[order], std.loc[order], n.loc[order]
    out = pd.DataFrame(index=mean.index)
    out["seeds"] = n
    for col in cols:
        out[col] = [_pm(m, s) for m, s in zip(mean[col], std[col])]
    paper = paper_numbers(claim)
    for key in sorted({k.split(":")[0] for k in paper if ":" in k}):
        out[f"paper's {key}"] = [f"{paper[f'{key}:{i:g}' if isinstance(i, float) else f'{key}:{i}']:.4g}"
                                 if (f"{key}:{i:g}" if isinstance(i, float) else f"{key}:{i}") in paper else "—"
                                 for i in out.index]
    return out


def _pm(m: float, s: float) -> str:
    return f"{m:.4g}" if not np.isfinite(s) else f"{m:.4g} ± {s:.2g}"
