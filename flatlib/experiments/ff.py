"""FF-F1..F8: Hessian spectra of weight-decay and optimiser sweeps ("Flatness is a false friend", Sec. 4–5).

One experiment serves every figure: train each setting (weight decay, or SGD vs Adam + iterate
averaging) for several seeds, then measure the Hessian of the *un-regularised* training loss
(FF Sec. 4: "we do not calculate the Hessian on the regularised loss", since H → H + γI) on a
fixed training subset: λ1 by Lanczos, tr H by Hutchinson, ‖H‖²_F = tr H² by Hutchinson on
‖Hz‖², and the spectral density by stochastic Lanczos quadrature (FF App. A). FF's point is that
the better-generalising, regularised solutions have the *larger* λ1; its remedy is a
scale-aware measure, so next to the raw numbers we report λ1·‖w‖² and tr H·‖w‖².

The notebooks differ only in their ``Params`` presets (model, data, schedule per profile).
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from flatlib.train.config import TrainConfig
from flatlib.train.optim import lr_at
from flatlib.curvature import HessianOperator, frobenius_norm_sq, hutchinson_trace, lanczos, slq
from flatlib.train.engine import dataset_for, load_model, loader, weight_norm
from flatlib.experiments.common import curves, summaries, train_all
from flatlib.params import ParameterError, Params, bounded, choices, notebook
from flatlib.reference import paper_numbers
from flatlib.store import Store

# measured quantities per (run, bn mode); "scaled" = multiplied by ‖w‖², FF's scale-aware alternative
MEASURES = ["train_acc", "test_acc", "lambda_1", "trace", "frobenius_sq", "weight_norm_sq", "lambda_1_scaled",
            "trace_scaled", "decay_integral"]
# training images of the paper datasets whose presets use the whole split (for the paper's Σ lr·wd)
TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000}


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


@dataclasses.dataclass
class WeightDecayParams(CurvatureParams):
    """A weight-decay sweep (FF Sec. 4): SGD, momentum 0.9, Eq. 14 linear decay, wd 0 / 1e-4 / 5e-4."""

    dataset: str | None = None
    validation: int | None = bounded(lo=0)        # training images held out as the evaluation set; 0: test set
    n_train: int | None = bounded(lo=1)           # random training subset per seed; None: whole split
    model: str | None = None
    model_kwargs: dict[str, Any] | None = None
    augment: str | None = None
    lr: float | None = bounded(lo=0.0)
    weight_decays: list[float] | None = bounded(lo=0.0)
    bn_modes: list[str] | None = None

    # bn mode → (claim ID, the columns that must rise with weight decay for the claim to hold)
    CLAIMS: ClassVar[dict[str, tuple[str, tuple[str, ...]]]] = {}

    def __post_init__(self) -> None:
        bad = [m for m in (self.bn_modes or []) if m not in self.CLAIMS]
        if bad:
            raise ParameterError(f"invalid bn_modes={bad!r} for {self.NOTEBOOK}; choose from: {', '.join(self.CLAIMS)}")

    def plan(self) -> list[TrainConfig]:
        return weight_decay_configs(self)


def weight_decay_configs(p: WeightDecayParams) -> list[TrainConfig]:
    """One SGD run per (weight decay, seed), FF Eq. 14 schedule (r = 0.01)."""
    held = {"validation": p.validation} if p.validation else {}
    return [TrainConfig(dataset=p.dataset, dataset_kwargs=held, model=p.model, model_kwargs=dict(p.model_kwargs or {}), n_train=p.n_train,
                        augment=p.augment, batch_size=p.batch_size, epochs=p.epochs, optimizer="sgd", lr=p.lr,
                        momentum=0.9, weight_decay=wd, schedule="linear_decay", final_lr_ratio=0.01, seed=seed)
            for wd in p.weight_decays for seed in p.seeds]


_SMOKE = dict(seeds=[0], epochs=1, batch_size=128, n_train=256, hessian_samples=128, hessian_batch_size=128,
              lanczos_iters=8, lanczos_tol=1e-3, slq_vectors=1, slq_iters=8, trace_samples=4, dtype="float32",
              weight_decays=[0.0, 5e-4], augment="no-aug")
_DEFAULT = dict(seeds=[0, 1, 2], batch_size=128, n_train=None, hessian_samples=1000, hessian_batch_size=500,
                lanczos_iters=60, lanczos_tol=1e-3, slq_vectors=2, slq_iters=60, trace_samples=30, dtype="float32",
                weight_decays=[0.0, 1e-4, 5e-4], augment="no-aug")
# the small CNNs/ResNets: 2 seeds and a 200-image Hessian subset keep a notebook near 5 CPU-minutes
_DEFAULT_CNN = dict(_DEFAULT, seeds=[0, 1], n_train=1000, hessian_samples=200, hessian_batch_size=200,
                    lanczos_iters=20, slq_vectors=1, slq_iters=20, trace_samples=10)
# FF App. A: Lanczos 100 iterations over the whole training set; CIFAR runs augment (crop + flip) as Gadam
_PAPER = dict(seeds=[0], batch_size=128, hessian_samples=None, hessian_batch_size=1000, lanczos_iters=100,
              lanczos_tol=1e-4, slq_vectors=1, slq_iters=100, trace_samples=100, dtype="float32",
              weight_decays=[0.0, 1e-4, 5e-4])
_CIFAR = dict(augment="4-crop-f", n_train=None)
# FF: 45k training images, accuracy on a 5k validation split (held out of MNIST's 60k training images)
_MNIST = dict(dataset="mnist", n_train=45000, validation=5000, augment="no-aug")


@notebook("ff_softmax")
@dataclasses.dataclass
class SoftmaxParams(WeightDecayParams):
    """FF-F1: softmax regression on MNIST (7,850 parameters)."""

    CLAIMS = {"eval": ("FF-F1", ("lambda_1", "test_acc"))}
    PRESETS = {
        "smoke": dict(_SMOKE, dataset="mnist5k", model="logreg", model_kwargs={}, lr=0.01, bn_modes=["eval"]),
        "default": dict(_DEFAULT, dataset="mnist5k", model="logreg", model_kwargs={}, epochs=200, lr=0.01,
                        bn_modes=["eval"]),
        "paper": dict(_PAPER, **_MNIST, model="logreg", model_kwargs={}, epochs=1000, lr=0.01, bn_modes=["eval"]),
    }


@notebook("ff_mlp")
@dataclasses.dataclass
class MLPParams(WeightDecayParams):
    """FF-F2: one hidden layer of 100 ReLU units on MNIST."""

    CLAIMS = {"eval": ("FF-F2", ("lambda_1", "test_acc"))}
    PRESETS = {
        "smoke": dict(_SMOKE, dataset="mnist5k", model="mlp100", model_kwargs={}, lr=0.01, bn_modes=["eval"]),
        "default": dict(_DEFAULT, dataset="mnist5k", model="mlp100", model_kwargs={}, epochs=30, lr=0.01,
                        bn_modes=["eval"]),
        "paper": dict(_PAPER, **_MNIST, model="mlp100", model_kwargs={}, epochs=50, lr=0.01, bn_modes=["eval"]),
    }


@notebook("ff_allcnnc")
@dataclasses.dataclass
class AllCNNCParams(WeightDecayParams):
    """FF-F3: All-CNN-C (DeepOBS) on CIFAR-100; the paper claims only that λ1 rises with weight decay."""

    CLAIMS = {"eval": ("FF-F3", ("lambda_1",))}
    PRESETS = {
        "smoke": dict(_SMOKE, dataset="mnist5k", model="allcnnc", model_kwargs={"width": 0.05}, lr=0.01,
                      bn_modes=["eval"]),
        "default": dict(_DEFAULT_CNN, dataset="mnist5k", model="allcnnc", model_kwargs={"width": 0.125},
                        epochs=6, lr=0.05, bn_modes=["eval"]),
        "paper": dict(_PAPER, **_CIFAR, dataset="cifar100", model="allcnnc", model_kwargs={}, epochs=300, lr=0.01,
                      bn_modes=["eval"]),
    }


@notebook("ff_preresnet")
@dataclasses.dataclass
class PreResNetParams(WeightDecayParams):
    """FF-F4: PreResNet-164 on CIFAR-100 (lr 0.1, FF Sec. 4 'ResNet experiments')."""

    CLAIMS = {"train": ("FF-F4", ("lambda_1", "test_acc"))}
    PRESETS = {
        "smoke": dict(_SMOKE, dataset="digits", model="preresnet164", model_kwargs={"depth": 11, "width": 0.25},
                      lr=0.1, bn_modes=["train"]),
        "default": dict(_DEFAULT_CNN, dataset="digits", model="preresnet164", model_kwargs={"depth": 11, "width": 0.5},
                        epochs=8, lr=0.1, bn_modes=["train"]),
        "paper": dict(_PAPER, **_CIFAR, dataset="cifar100", model="preresnet164", model_kwargs={}, epochs=300,
                      lr=0.1, bn_modes=["train"]),
    }


@notebook("ff_wrn")
@dataclasses.dataclass
class WRNParams(WeightDecayParams):
    """FF-F5 (BN in train mode) and FF-F8 (BN in eval mode): WRN-28-10 on CIFAR-100, the same runs."""

    CLAIMS = {"train": ("FF-F5", ("lambda_1", "test_acc")), "eval": ("FF-F8", ("lambda_1", "test_acc"))}
    PRESETS = {
        "smoke": dict(_SMOKE, dataset="digits", model="wrn", model_kwargs={"depth": 10, "width": 1},
                      lr=0.1, bn_modes=["train", "eval"]),
        "default": dict(_DEFAULT_CNN, dataset="digits", model="wrn", model_kwargs={"depth": 10, "width": 1},
                        epochs=8, lr=0.1, bn_modes=["train", "eval"]),
        "paper": dict(_PAPER, **_CIFAR, dataset="cifar100", model="wrn28_10", model_kwargs={}, epochs=300,
                      lr=0.1, bn_modes=["train", "eval"]),
    }


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
    """Train every config, measure each in every BN mode; (per-run table, SLQ nodes/weights in long form)."""
    results = train_all(configs, store, desc="FF runs")
    rows, spectra = [], []
    for i, (cfg, res) in enumerate(zip(configs, results)):
        for mode in bn_modes:
            m = measure_curvature(cfg, p, mode, store)
            labels = {"bn_mode": mode, "seed": cfg.seed, **{k: v[i] for k, v in labels_by_run.items()}}
            s = res.summary
            rows.append({**labels, **{k: v for k, v in m.items() if not k.startswith("slq")},
                         "train_acc": 100 - s["train_error"], "test_acc": 100 - s["test_error"], "gap": s["gap"],
                         "train_loss": s["train_loss"], "n_test": s["n_test"],
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


def run_weight_decay(p: WeightDecayParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The weight-decay sweep of one notebook: (per-run measures, SLQ spectra)."""
    cfgs = weight_decay_configs(p)
    return measure_all(cfgs, p, p.bn_modes, Store(p.profile), weight_decay=[c.weight_decay for c in cfgs])


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


# ---------------------------------------------------------------------------------------------
@notebook("ff_adam")
@dataclasses.dataclass
class AdamParams(CurvatureParams):
    """FF-F6 (CIFAR-100) and FF-F7 (CIFAR-10): VGG-16-BN, SGD vs Adam + decoupled wd + iterate averaging."""

    datasets: list[str] | None = None               # [FF-F6's, FF-F7's]
    n_train: int | None = bounded(lo=1)
    model: str | None = None
    model_kwargs: dict[str, Any] | None = None
    augment: str | None = None
    sgd_lr: float | None = bounded(lo=0.0)
    sgd_weight_decays: list[float] | None = bounded(lo=0.0)   # per dataset (L2 in the gradient)
    adam_lr: float | None = bounded(lo=0.0)
    adam_weight_decays: list[float] | None = bounded(lo=0.0)  # per dataset (decoupled, AdamW)
    averaging_start: int | None = bounded(lo=1)     # 1-based epoch; FF: 161 of 300
    bn_mode: str | None = choices("train", "eval")

    CLAIMS: ClassVar[tuple[str, str]] = ("FF-F6", "FF-F7")
    ORDER: ClassVar[list[str]] = ["SGD", "Adam+IA"]
    PRESETS = {
        "smoke": dict(_SMOKE, datasets=["digits", "digits"], n_train=None, model="vgg16bn",
                      model_kwargs={"width": 0.0625}, epochs=2, sgd_lr=0.05, sgd_weight_decays=[5e-4, 3e-4],
                      adam_lr=5e-4, adam_weight_decays=[0.25, 0.35], averaging_start=2, bn_mode="train"),
        "default": dict(_DEFAULT_CNN, datasets=["mnist5k", "digits"], model="vgg16bn", model_kwargs={"width": 0.0625},
                        batch_size=32, epochs=30, sgd_lr=0.05, sgd_weight_decays=[5e-4, 3e-4], adam_lr=5e-4,
                        adam_weight_decays=[0.25, 0.35], averaging_start=16, bn_mode="train"),
        "paper": dict(_PAPER, **_CIFAR, datasets=["cifar100", "cifar10"], model="vgg16bn", model_kwargs={},
                      epochs=300, sgd_lr=0.1, sgd_weight_decays=[5e-4, 3e-4], adam_lr=5e-4,
                      adam_weight_decays=[0.25, 0.35], averaging_start=161, bn_mode="train"),
    }

    def __post_init__(self) -> None:
        for name in ("datasets", "sgd_weight_decays", "adam_weight_decays"):
            if getattr(self, name) is not None and len(getattr(self, name)) != 2:
                raise ParameterError(f"invalid {name}={getattr(self, name)!r} for ff_adam: needs 2 entries "
                                     "(FF-F6's, FF-F7's)")
        if self.averaging_start is not None and self.epochs is not None and self.averaging_start > self.epochs:
            raise ParameterError(f"invalid averaging_start={self.averaging_start} for ff_adam: must be <= epochs")

    def plan(self) -> list[TrainConfig]:
        return [c for cfgs in adam_configs(self).values() for c in cfgs]


def adam_configs(p: AdamParams) -> dict[str, list[TrainConfig]]:
    """Per claim: SGD (L2, Eq. 14) and AdamW (decoupled wd, Eq. 15 with iterate averaging) runs per seed."""
    out = {}
    for claim, ds, sgd_wd, adam_wd in zip(p.CLAIMS, p.datasets, p.sgd_weight_decays, p.adam_weight_decays):
        base = TrainConfig(dataset=ds, model=p.model, model_kwargs=dict(p.model_kwargs or {}), n_train=p.n_train,
                           augment=p.augment, batch_size=p.batch_size, epochs=p.epochs, schedule="linear_decay",
                           final_lr_ratio=0.01)
        out[claim] = ([base.replace(optimizer="sgd", lr=p.sgd_lr, momentum=0.9, weight_decay=sgd_wd, seed=s)
                       for s in p.seeds]
                      + [base.replace(optimizer="adamw", lr=p.adam_lr, weight_decay=adam_wd,
                                      averaging_start=p.averaging_start, seed=s) for s in p.seeds])
    return out


def run_adam(p: AdamParams) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(per-run measures, SLQ spectra, per-epoch curves) for both claims, labelled by claim and optimiser."""
    store = Store(p.profile)
    frames, spectra, curve_frames = [], [], []
    for claim, cfgs in adam_configs(p).items():
        labels = dict(claim=[claim] * len(cfgs), optimizer=["SGD" if c.optimizer == "sgd" else "Adam+IA" for c in cfgs],
                      dataset=[c.dataset for c in cfgs])
        f, s = measure_all(cfgs, p, [p.bn_mode], store, **labels)
        frames.append(f)
        spectra.append(s)
        curve_frames.append(curves(train_all(cfgs, store), seed=[c.seed for c in cfgs], **labels))
    return (pd.concat(frames, ignore_index=True), pd.concat(spectra, ignore_index=True),
            averaged_curves(pd.concat(curve_frames, ignore_index=True)))


def averaged_curves(frame: pd.DataFrame) -> pd.DataFrame:
    """Test error and ‖w‖ per epoch of the model that is evaluated: the iterate average once it exists."""
    out = frame.copy()
    if "avg_test_error" in out:
        has = out["avg_test_error"].notna()
        out.loc[has, "test_error"] = out.loc[has, "avg_test_error"]
        out.loc[has, "weight_norm"] = out.loc[has, "avg_weight_norm"]
    return out[["claim", "optimizer", "dataset", "seed", "epoch", "lr", "test_error", "weight_norm"]]
