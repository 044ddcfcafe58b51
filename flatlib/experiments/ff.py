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
from flatlib.curvature import HessianOperator, frobenius_norm_sq, hutchinson_trace, lanczos, slq
from flatlib.train.engine import dataset_for, load_model, loader, weight_norm
from flatlib.experiments.common import curves, summaries, train_all
from flatlib.params import ParameterError, Params, bounded, choices, notebook
from flatlib.store import Store

# The paper's numbers per claim and setting (only ever shown in columns labelled as the paper's).
# Keys: weight decay (FF-F1..F5, F8) or optimiser label (FF-F6/F7); values in % for accuracies.
# "frobenius" is the paper's "Frobenius norm" as printed (the text does not say whether squared).
PAPER: dict[str, dict[Any, dict[str, float]]] = {
    "FF-F1": {0.0: {"test_acc": 93.48, "lambda_1": 12.26}, 1e-4: {"test_acc": 94.0, "lambda_1": 14.17},
              5e-4: {"test_acc": 94.08, "lambda_1": 15.84}},
    "FF-F2": {0.0: {"test_acc": 94.4, "gap": 0.48}, 1e-4: {"test_acc": 96.46, "gap": 0.51},
              5e-4: {"test_acc": 96.7, "gap": 0.04}},
    "FF-F3": {0.0: {"train_acc": 86.3, "gap": 32.4}, 1e-4: {"train_acc": 87.9, "gap": 32.5},
              5e-4: {"train_acc": 86.0, "gap": 31.1}},
    "FF-F4": {0.0: {"test_acc": 72.78, "train_acc": 99.987}, 1e-4: {"test_acc": 75.56, "train_acc": 99.985},
              5e-4: {"test_acc": 76.76, "train_acc": 99.87}},
    "FF-F5": {0.0: {"test_acc": 75.2, "train_acc": 99.984}, 1e-4: {"test_acc": 79.5, "train_acc": 99.984},
              5e-4: {"test_acc": 80.6, "train_acc": 99.982}},
    "FF-F8": {0.0: {"test_acc": 75.2, "frobenius": 9.8e-12}, 5e-4: {"test_acc": 80.6, "frobenius": 4.9e-5}},
    "FF-F6": {"SGD": {"test_acc": 73.5, "train_acc": 99.64, "lambda_1": 10.11, "frobenius": 1e-4},
              "Adam+IA": {"test_acc": 75.8, "train_acc": 99.81, "lambda_1": 387.8, "frobenius": 0.02}},
    "FF-F7": {"SGD": {"test_acc": 94.3, "frobenius": 1.43e-5},
              "Adam+IA": {"test_acc": 95.1, "frobenius": 1.55e-3}},
}

# measured quantities per (run, bn mode); "scaled" = multiplied by ‖w‖², FF's scale-aware alternative
MEASURES = ["lambda_1", "trace", "frobenius_sq", "weight_norm", "lambda_1_scaled", "trace_scaled",
            "train_acc", "test_acc", "gap"]


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
                         "train_acc": 100 - s["train_error"], "test_acc": 100 - s["test_error"], "gap": s["gap"]})
            nodes, weights = np.asarray(m["slq_nodes"]), np.asarray(m["slq_weights"])
            for v in range(nodes.shape[0]):
                spectra.append(pd.DataFrame({**labels, "vector": v, "node": nodes[v], "weight": weights[v]}))
    frame = scale_aware(pd.DataFrame(rows))
    return frame, pd.concat(spectra, ignore_index=True)


def scale_aware(frame: pd.DataFrame) -> pd.DataFrame:
    """Add FF's scale-aware alternative: λ1·‖w‖² and tr H·‖w‖² (invariant to rescaling w → αw, H → H/α²
    for a loss that depends on w only through w/‖w‖, which BN makes true layer-wise)."""
    w2 = frame["weight_norm"] ** 2
    return frame.assign(lambda_1_scaled=frame["lambda_1"] * w2, trace_scaled=frame["trace"] * w2)


def run_weight_decay(p: WeightDecayParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The weight-decay sweep of one notebook: (per-run measures, SLQ spectra)."""
    cfgs = weight_decay_configs(p)
    return measure_all(cfgs, p, p.bn_modes, Store(p.profile), weight_decay=[c.weight_decay for c in cfgs])


# ---------------------------------------------------------------------------------------------
def summary_table(frame: pd.DataFrame, by: str, claim: str, order: list | None = None) -> pd.DataFrame:
    """Mean ± std over seeds of every measure, one row per setting, the paper's numbers in their own columns."""
    g = frame.groupby(by, sort=False)[MEASURES]
    mean, std, n = g.mean(), g.std(), g.size()
    if order is not None:
        mean, std, n = mean.loc[order], std.loc[order], n.loc[order]
    out = pd.DataFrame(index=mean.index)
    out["seeds"] = n
    for col in MEASURES:
        out[col] = [_pm(m, s) for m, s in zip(mean[col], std[col])]
    for key in sorted({k for v in PAPER.get(claim, {}).values() for k in v}):
        out[f"paper's {key}"] = [f"{PAPER[claim][i][key]:.4g}" if key in PAPER[claim].get(i, {}) else "—"
                                 for i in out.index]
    return out


def _pm(m: float, s: float) -> str:
    return f"{m:.4g}" if not np.isfinite(s) else f"{m:.4g} ± {s:.2g}"


def ordered(frame: pd.DataFrame, by: str, order: list, columns: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    """FF's verdict rule: every column's seed mean rises along ``order`` ("held" if, for each consecutive
    pair, the ±1 std intervals also separate; "partly held" if ordered but overlapping; else "did not hold")."""
    g = frame.groupby(by)[list(columns)]
    mean, std = g.mean().loc[order], g.std().fillna(0.0).loc[order]
    rising = separated = True
    for a, b in zip(order[:-1], order[1:]):
        for c in columns:
            rising &= bool(mean.at[b, c] > mean.at[a, c])
            separated &= bool(mean.at[b, c] - std.at[b, c] > mean.at[a, c] + std.at[a, c])
    verdict = "held" if rising and separated else "partly held" if rising else "did not hold"
    values = {f"{c}_mean": [float(mean.at[k, c]) for k in order] for c in columns}
    values.update({f"{c}_std": [float(std.at[k, c]) for k in order] for c in columns})
    return verdict, values


def paired_rises(frame: pd.DataFrame, by: str, order: list, column: str) -> tuple[int, int]:
    """(rises, pairs): over seeds and consecutive settings, how often ``column`` rose. Runs of one seed
    share the initialisation and data order, so this paired count isolates the setting's effect."""
    table = frame.pivot_table(index="seed", columns=by, values=column).reindex(columns=order).dropna()
    diffs = np.diff(table.to_numpy(), axis=1)
    return int((diffs > 0).sum()), int(diffs.size)


_NAMES = {"lambda_1": "λ1", "test_acc": "test accuracy", "train_acc": "train accuracy",
          "lambda_1_scaled": "λ1·‖w‖²", "trace_scaled": "tr H·‖w‖²"}


def _series(frame: pd.DataFrame, by: str, order: list, col: str) -> str:
    g = frame.groupby(by)[col]
    return " / ".join(_pm(m, s) for m, s in zip(g.mean().loc[order], g.std().loc[order]))


def weight_decay_verdicts(frame: pd.DataFrame, p: WeightDecayParams):
    """Record one verdict per claim of this notebook (per BN mode) and return them as Markdown."""
    from IPython.display import Markdown

    from flatlib.status import record_claim

    order = sorted(p.weight_decays)
    lines = []
    for mode in p.bn_modes:
        claim, columns = p.CLAIMS[mode]
        f = frame[frame["bn_mode"] == mode]
        verdict, values = ordered(f, "weight_decay", order, columns)
        scaled, _ = ordered(f, "weight_decay", order, ("lambda_1_scaled",))
        up, pairs = paired_rises(f, "weight_decay", order, "lambda_1")
        wds = " / ".join(f"{w:g}" for w in order)
        ours = (f"wd {wds} (BN {mode} mode, {f['seed'].nunique()} seeds, mean ± std): "
                + "; ".join(f"{_NAMES.get(c, c)} {_series(f, 'weight_decay', order, c)}"
                            for c in (*dict.fromkeys((*columns, "test_acc", "train_acc")), "lambda_1_scaled"))
                + f"; paired by seed, λ1 rose in {up} of {pairs} steps up in weight decay")
        rule = (f"held if the seed means of {' and '.join(_NAMES.get(c, c) for c in columns)} rise with weight decay "
                "and the ±1 std intervals of consecutive settings separate; partly held if the means rise but "
                "the intervals overlap; did not hold otherwise")
        record_claim(Store(p.profile), claim, ours=ours, verdict=verdict, rule=rule,
                     values={**values, "lambda_1_scaled_rises": scaled, "lambda_1_paired_rises": [up, pairs]})
        lines.append(f"**{claim} ({p.profile} profile, BN {mode} mode): {verdict}.** {ours}. Rule: {rule}. "
                     f"The scale-aware λ1·‖w‖² by the same rule: *{scaled}*.")
    return Markdown("\n\n".join(lines))


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


def adam_verdicts(frame: pd.DataFrame, p: AdamParams):
    """FF-F6/F7: Adam+IA generalises better yet is sharper — test accuracy and λ1 both higher than SGD's."""
    from IPython.display import Markdown

    from flatlib.status import record_claim

    lines = []
    for claim in p.CLAIMS:
        f = frame[frame["claim"] == claim]
        verdict, values = ordered(f, "optimizer", p.ORDER, ("lambda_1", "test_acc"))
        scaled, _ = ordered(f, "optimizer", p.ORDER, ("lambda_1_scaled",))
        ratio = float(f.groupby("optimizer")["lambda_1"].mean().loc["Adam+IA"]
                      / f.groupby("optimizer")["lambda_1"].mean().loc["SGD"])
        ours = (f"{f['dataset'].iloc[0]}, SGD / Adam+IA ({f['seed'].nunique()} seeds, mean ± std): "
                + "; ".join(f"{_NAMES.get(c, c)} {_series(f, 'optimizer', p.ORDER, c)}"
                            for c in ("test_acc", "lambda_1", "frobenius_sq", "weight_norm", "lambda_1_scaled"))
                + f"; λ1 ratio Adam+IA/SGD {ratio:.3g}")
        rule = ("held if Adam+IA's seed means of λ1 and test accuracy both exceed SGD's and the ±1 std intervals "
                "separate; partly held if both means are higher but the intervals overlap; did not hold otherwise")
        record_claim(Store(p.profile), claim, ours=ours, verdict=verdict, rule=rule,
                     values={**values, "lambda_1_ratio": ratio, "lambda_1_scaled_rises": scaled})
        lines.append(f"**{claim} ({p.profile} profile): {verdict}.** {ours}. Rule: {rule}. "
                     f"The scale-aware λ1·‖w‖² by the same rule: *{scaled}*.")
    return Markdown("\n\n".join(lines))
