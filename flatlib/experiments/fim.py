"""The FIM chapter (Jia & Su, ICML 2020): γ̂ versus three flatness metrics, and the Fisher regularizer.

Scenarios I-III (FIM Sec. 7.1, Fig. 2-4) train several models per configuration (confusion-set
size, augmentation scheme, batch size), then measure on the un-augmented (clean) training set

    γ̂ = (1/T) Σ_t ln|J_t J_tᵀ|,  ‖∇²L‖²_F ≈ ‖F_t‖²_F,  ρ(∇²L) ≈ λmax(F_t),  robustness = mean ‖J_x f_w(x)‖²_F

over the same T subsets of N′ points (``flatlib.fisher.fim_metrics``). The paper's reading is
"smaller is better" for all four, so a metric *tracks generalisation* when it rises with the test
error across models: we use Kendall's τ between metric and test error over all models of the
scenario (τ > 0 and p < 0.05). The regularizer notebook (FIM-T1/T3/TC) trains each model with and
without Algorithm 1 and compares test error and γ̂ under the official protocol (logits rescaled to
norm 25 before γ̂).
"""
from __future__ import annotations

import dataclasses
import glob
import json
import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from scipy import stats

from flatlib.train.config import TrainConfig
from flatlib.train.engine import dataset_for, load_model, loader, resolve_device
from flatlib.experiments.common import mean_std, train_all
from flatlib.params import Params, ParameterError, bounded, choices, notebook
from flatlib.reference import paper_numbers
from flatlib.store import Store, project_root

METRICS = ("log_det", "frobenius", "spectral_radius", "robustness")
"""The four metrics of FIM Sec. 7.1, in the paper's panel order (γ̂ first)."""
EXTRA_METRICS = ("fisher_trace",)
METRIC_LABELS = {
    "test_error": "test error (%)",
    "log_det": "γ̂ = mean ln|J Jᵀ|",
    "frobenius": "Frobenius ‖F‖²_F",
    "spectral_radius": "spectral radius λmax(F)",
    "robustness": "robustness mean ‖J_x f‖²",
    "fisher_trace": "trace tr F",
}
EXPECTED_SIGN = {m: +1 for m in (*METRICS, *EXTRA_METRICS)}
"""FIM Sec. 7.1: "all four metrics go for smaller values indicate better generalization", so each
should rise with test error: Kendall τ(metric, test error) > 0."""

ALPHA_LEVEL = 0.05


# --------------------------------------------------------------------------------------- scenarios
@dataclasses.dataclass
class ScenarioParams(Params):
    """Knobs shared by the three scenario notebooks: the base recipe, seeds and the metric sample sizes."""

    dataset: str | None = None
    model: str | None = None
    model_kwargs: dict[str, Any] | None = None
    n_train: int | None = None            # training subset per seed (None: whole training split)
    augment: str | None = choices("no-aug", "flip-only", "1-crop-f", "4-crop-f")
    batch_size: int | None = bounded(lo=1)
    epochs: int | None = bounded(lo=1)
    lr: float | None = bounded(lo=0.0)
    weight_decay: float | None = bounded(lo=0.0)
    schedule: str | None = choices("multistep", "plateau")
    milestones: list[int] | None = bounded(lo=1)
    seeds: list[int] | None = bounded(lo=0)
    n_prime: int | None = bounded(lo=2)   # N′: points per subset S_t
    num_subsets: int | None = bounded(lo=1)  # T

    SCENARIO: ClassVar[str] = ""
    LEVEL: ClassVar[str] = ""             # the TrainConfig field the scenario varies

    def levels(self) -> list:
        raise NotImplementedError

    def level_label(self, level: Any) -> str:
        return str(level)

    def plan(self) -> list[TrainConfig]:
        return [cfg for _, cfg in scenario_configs(self)]


# Shared recipes. smoke: seconds. default: scikit-learn's 8×8 digits (embedded), a BN CNN of a quarter
# width, 3 models per configuration, N′ = 50, T = 25, un-augmented training (4-crop-f, the paper's default,
# shifts an 8×8 digit by half its size), a few minutes per notebook on 2 CPU cores. paper: FIM Sec. 7.1 --
# ResNet-20 on CIFAR-10, 200 epochs, lr 0.1 divided by 10 when the training loss plateaus, 5 models per
# configuration, N′ = T = 100, 4-crop-f by default; weight decay 1e-4 as in ResNet-20's own recipe.
_SMOKE = dict(dataset="digits", model="cnn6", model_kwargs={"width": 0.125, "batch_norm": True}, n_train=300,
              augment="no-aug", batch_size=32, epochs=1, lr=0.05, weight_decay=5e-4, schedule="multistep",
              milestones=[1], seeds=[0, 1], n_prime=10, num_subsets=2)
_DEFAULT = dict(dataset="digits", model="cnn6", model_kwargs={"width": 0.25, "batch_norm": True}, n_train=900,
                augment="no-aug", batch_size=32, epochs=30, lr=0.05, weight_decay=5e-4, schedule="multistep",
                milestones=[15, 23], seeds=[0, 1, 2], n_prime=50, num_subsets=25)
_PAPER = dict(dataset="cifar10", model="resnet20", model_kwargs={}, n_train=None, augment="4-crop-f",
              batch_size=128, epochs=200, lr=0.1, weight_decay=1e-4, schedule="plateau", milestones=[],
              seeds=[0, 1, 2, 3, 4], n_prime=100, num_subsets=100)


@notebook("fim_confusion")
@dataclasses.dataclass
class ConfusionParams(ScenarioParams):
    """FIM-S1: ``n_train`` clean images plus a confusion set of ``confusion`` randomly labelled ones."""

    confusion: list[int] | None = bounded(lo=0)

    SCENARIO: ClassVar[str] = "FIM-S1"
    LEVEL: ClassVar[str] = "confusion"
    PRESETS = {
        "smoke": {**_SMOKE, "confusion": [0, 60]},
        "default": {**_DEFAULT, "confusion": [0, 90, 180, 270, 360, 450]},
        "paper": {**_PAPER, "n_train": 10_000, "confusion": [0, 1000, 2000, 3000, 4000, 5000]},
    }

    def levels(self) -> list[int]:
        return list(self.confusion)


@notebook("fim_augmentation")
@dataclasses.dataclass
class AugmentationParams(ScenarioParams):
    """FIM-S2: the augmentation schemes no-aug, flip-only, 1-crop-f, 4-crop-f."""

    schemes: list[str] | None = None

    SCENARIO: ClassVar[str] = "FIM-S2"
    LEVEL: ClassVar[str] = "augment"
    PRESETS = {
        "smoke": {**_SMOKE, "schemes": ["no-aug", "4-crop-f"]},
        "default": {**_DEFAULT, "schemes": ["no-aug", "flip-only", "1-crop-f", "4-crop-f"]},
        "paper": {**_PAPER, "schemes": ["no-aug", "flip-only", "1-crop-f", "4-crop-f"]},
    }

    def __post_init__(self) -> None:
        from flatlib.data import AUGMENTATIONS

        bad = [s for s in (self.schemes or []) if s not in AUGMENTATIONS]
        if bad:
            raise ParameterError(f"invalid schemes={bad!r} for fim_augmentation; choose from: {', '.join(AUGMENTATIONS)}")

    def levels(self) -> list[str]:
        return list(self.schemes)


@notebook("fim_batch_size")
@dataclasses.dataclass
class BatchSizeParams(ScenarioParams):
    """FIM-S3: batch sizes (paper 128/256/512/1024); the default profile scales them with its smaller training set."""

    batch_sizes: list[int] | None = bounded(lo=1)

    SCENARIO: ClassVar[str] = "FIM-S3"
    LEVEL: ClassVar[str] = "batch_size"
    PRESETS = {
        "smoke": {**_SMOKE, "batch_sizes": [16, 64]},
        "default": {**_DEFAULT, "batch_sizes": [16, 32, 64, 128]},
        "paper": {**_PAPER, "batch_sizes": [128, 256, 512, 1024]},
    }

    def levels(self) -> list[int]:
        return list(self.batch_sizes)


def base_config(p: ScenarioParams) -> TrainConfig:
    """The scenario's shared recipe: SGD with momentum 0.9, lr divided by 10 at the milestones (or on plateau)."""
    return TrainConfig(dataset=p.dataset, model=p.model, model_kwargs=dict(p.model_kwargs), n_train=p.n_train,
                       augment=p.augment, batch_size=p.batch_size, epochs=p.epochs, optimizer="sgd", lr=p.lr,
                       momentum=0.9, weight_decay=p.weight_decay, schedule=p.schedule,
                       milestones=tuple(p.milestones) if p.schedule == "multistep" else (), lr_factor=0.1)


def scenario_configs(p: ScenarioParams) -> list[tuple[Any, TrainConfig]]:
    """(level, config) for every configuration × seed; S1 draws a new subset and confusion set per seed."""
    base = base_config(p)
    return [(level, base.replace(**{p.LEVEL: level}, seed=seed)) for level in p.levels() for seed in p.seeds]


def clean_training_set(cfg: TrainConfig, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The run's un-augmented, normalised training inputs without its confusion set (FIM Sec. 7.1:
    "all metrics are computed on the un-augmented training set" / "on the sampled 10000 images")."""
    ds = dataset_for(cfg)
    x, y = next(iter(loader(ds, "train", ds.n_train, torch.device(device))))
    n_clean = ds.n_train - cfg.confusion
    return x[:n_clean], y[:n_clean]


def measure(cfg: TrainConfig, store: Store, *, n_prime: int, num_subsets: int, logit_norm: float | None = None,
            bn_mode: str = "eval", sampling: str = "random", convention: str = "paper",
            metrics: tuple[str, ...] = (*METRICS, *EXTRA_METRICS)) -> dict[str, dict[str, float]]:
    """The FIM metrics of the trained run ``cfg`` on its clean training set, cached in the store.

    Subsets are drawn with the run's seed. Returns ``{metric: {"value", "stderr"}}`` (stderr over
    the T subsets); a singular subset makes γ̂ = −inf (``fim_metrics`` warns).
    """
    from flatlib.fisher import fim_metrics

    spec = {"run": cfg.key(), "n_prime": n_prime, "num_subsets": num_subsets, "logit_norm": logit_norm,
            "bn_mode": bn_mode, "sampling": sampling, "convention": convention, "metrics": list(metrics)}

    def compute() -> dict[str, dict[str, float]]:
        device = resolve_device(cfg.device)
        model = load_model(cfg, store, device=device)
        x, y = clean_training_set(cfg, device)
        est = fim_metrics(model, x, y, n_prime=n_prime, num_subsets=num_subsets, seed=cfg.seed,
                          logit_norm=logit_norm, bn_mode=bn_mode, sampling=sampling, convention=convention,
                          metrics=metrics)
        return {m: {"value": e.value, "stderr": e.stderr} for m, e in est.items()}

    return store.cached("fim_metrics", spec, compute)


def run_scenario(p: ScenarioParams) -> pd.DataFrame:
    """Train every model of the scenario and measure it: one row per model (level, seed, errors, metrics)."""
    store = Store(p.profile)
    pairs = scenario_configs(p)
    results = train_all([c for _, c in pairs], store, desc=p.SCENARIO)
    labels = [p.level_label(lv) for lv in p.levels()]
    rows = []
    for (level, cfg), res in zip(pairs, results):
        m = measure(cfg, store, n_prime=p.n_prime, num_subsets=p.num_subsets)
        rows.append({"scenario": p.SCENARIO, "level": p.level_label(level), "level_index": labels.index(p.level_label(level)),
                     "seed": cfg.seed, "train_loss": res.summary["train_loss"], "train_error": res.summary["train_error"],
                     "test_error": res.summary["test_error"], "n_test": res.summary["n_test"],
                     **{k: v["value"] for k, v in m.items()}, **{f"{k}_se": v["stderr"] for k, v in m.items()}})
    return pd.DataFrame(rows)


def level_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per configuration of test error, training loss/error and every metric."""
    cols = ["test_error", "train_error", "train_loss", *[m for m in (*METRICS, *EXTRA_METRICS) if m in frame]]
    return mean_std(frame.sort_values("level_index"), ["level_index", "level"], cols)


def level_table(frame: pd.DataFrame) -> pd.DataFrame:
    """``level_summary`` as a readable table: one row per configuration, "mean ± std" per column."""
    summ = level_summary(frame)
    cols = [c[:-5] for c in summ.columns if c.endswith("_mean")]
    out = pd.DataFrame({"configuration": summ["level"], "models": summ["test_error_count"]})
    for c in cols:
        digits = 2 if c in ("test_error", "train_error", "log_det") else 4  # 2: fixed decimals, 4: significant
        out[METRIC_SHORT.get(c, c.replace("_", " "))] = [
            f"{m:.{digits}g} ± {sd:.2g}" if digits == 4 else f"{m:.2f} ± {sd:.2f}"
            for m, sd in zip(summ[f"{c}_mean"], summ[f"{c}_std"])]
    return out


def rank_table(frame: pd.DataFrame, scenario: str | None = None, target: str = "test_error") -> pd.DataFrame:
    """Kendall τ between each metric and the test error over all models, and whether the metric tracks it.

    A metric *tracks* generalisation when τ has the expected sign (+: larger metric, larger test
    error) and the two-sided p-value is below 0.05. ``τ (config means)`` is the same over the
    per-configuration means. With ``scenario``, the paper's verdict for that scenario is added.
    """
    means = frame.groupby("level_index")[[target, *[m for m in (*METRICS, *EXTRA_METRICS) if m in frame]]].mean()
    rows = []
    for m in (*METRICS, *EXTRA_METRICS):
        if m not in frame:
            continue
        tau, pval = kendall(frame[m].to_numpy(), frame[target].to_numpy())
        tau_means, _ = kendall(means[m].to_numpy(), means[target].to_numpy())
        sign = EXPECTED_SIGN[m]
        row = {"metric": m, "expected sign": "+" if sign > 0 else "−", "Kendall τ (all models)": tau, "p-value": pval,
               "τ (config means)": tau_means, "tracks (ours)": bool(np.isfinite(tau) and sign * tau > 0 and pval < ALPHA_LEVEL)}
        paper = {k.split(":", 1)[1]: bool(v) for k, v in paper_numbers(scenario).items()} if scenario else {}
        if m in paper:
            row["paper: tracks"] = paper[m]
        rows.append(row)
    return pd.DataFrame(rows)


def kendall(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Kendall τ-b and its two-sided p-value; NaN when fewer than 3 finite pairs or a constant input.

    −inf (a singular Gram matrix) is a valid rank (smallest) and is kept.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = ~(np.isnan(a) | np.isnan(b))
    a, b = a[ok], b[ok]
    if len(a) < 3 or len(np.unique(a)) < 2 or len(np.unique(b)) < 2:
        return float("nan"), float("nan")
    res = stats.kendalltau(stats.rankdata(a), stats.rankdata(b))
    return float(res.statistic), float(res.pvalue)


METRIC_SHORT = {"log_det": "γ̂", "frobenius": "Frobenius", "spectral_radius": "spectral radius",
                "robustness": "robustness", "fisher_trace": "trace"}


def _sd(x: float) -> float:
    return 0.0 if x is None or (isinstance(x, float) and math.isnan(x)) else x


# ------------------------------------------------------------------------------------ regularizer
ORIGINAL_RECIPES: dict[str, dict[str, Any]] = {
    # FIM keeps each architecture's original recipe (App. E); SGD, momentum 0.9, 4-crop-f augmentation.
    "cnn6": dict(batch_size=128, epochs=200, lr=0.01, milestones=(100, 150), lr_factor=0.1, weight_decay=1e-4,
                 nesterov=True),                      # FIM App. E (ICLR draft)
    "resnet20": dict(batch_size=128, epochs=164, lr=0.1, milestones=(82, 123), lr_factor=0.1, weight_decay=1e-4,
                     nesterov=False),                 # He et al. 2016: 32k/48k/64k iterations at 391 steps/epoch
    "wrn28_2": dict(batch_size=128, epochs=200, lr=0.1, milestones=(60, 120, 160), lr_factor=0.2,
                    weight_decay=5e-4, nesterov=True),  # Zagoruyko & Komodakis 2016
    "densenet_bc": dict(batch_size=64, epochs=300, lr=0.1, milestones=(150, 225), lr_factor=0.1,
                        weight_decay=1e-4, nesterov=True),  # Huang et al. 2017
}

@notebook("fim_regularizer")
@dataclasses.dataclass
class RegularizerParams(Params):
    """FIM-T1/T3/TC: each (dataset, model) pair trained with and without Algorithm 1.

    ``recipe="paper"`` takes each model's original recipe (``ORIGINAL_RECIPES``); ``"scaled"`` uses
    the fields below for every model. The regularizer starts at the first lr drop (paper).
    β: the paper picks it per pair from {1,5,10,20,30,40,50,75,100} on a 45k/5k split. With a
    non-empty ``beta_grid`` each pair's regularized arm (seed ``seeds[0]``) is trained once per β on
    the training set minus ``validation`` held-out images and the β with the lowest validation error
    is used (ties: the first in the grid); with an empty grid β is ``beta`` (the official code's 10).
    """

    pairs: list[str] | None = None                    # "dataset:model"
    model_kwargs: dict[str, Any] | None = None        # {model: options}
    recipe: str | None = choices("paper", "scaled")
    n_train: int | None = None
    augment: str | None = choices("no-aug", "flip-only", "1-crop-f", "4-crop-f")
    batch_size: int | None = bounded(lo=1)
    epochs: int | None = bounded(lo=1)
    lr: float | None = bounded(lo=0.0)
    milestones: list[int] | None = bounded(lo=1)
    weight_decay: float | None = bounded(lo=0.0)
    seeds: list[int] | None = bounded(lo=0)
    alpha: float | None = bounded(lo=0.0)
    beta: float | None = bounded(lo=0.0)
    beta_grid: list[float] | None = bounded(lo=0.0)
    validation: int | None = bounded(lo=1)
    num_subbatches: int | None = bounded(lo=1)
    n_prime: int | None = bounded(lo=2)
    num_subsets: int | None = bounded(lo=1)
    logit_norm: float | None = bounded(lo=0.0)
    sampling: str | None = choices("random", "sequential")

    PRESETS = {
        "smoke": dict(pairs=["digits:cnn6"], model_kwargs={"cnn6": {"width": 0.125}}, recipe="scaled", n_train=256,
                      augment="no-aug", batch_size=32, epochs=2, lr=0.05, milestones=[1], weight_decay=5e-4,
                      seeds=[0, 1], alpha=1e-4, beta=10.0, beta_grid=[1.0, 10.0], validation=64, num_subbatches=8,
                      n_prime=10, num_subsets=2, logit_norm=25.0, sampling="sequential"),
        "default": dict(pairs=["digits:cnn6", "digits:resnet20"],
                        model_kwargs={"cnn6": {"width": 0.25}, "resnet20": {"width": 0.5}}, recipe="scaled",
                        n_train=1024, augment="1-crop-f", batch_size=64, epochs=30, lr=0.05, milestones=[15, 23],
                        weight_decay=5e-4, seeds=[0, 1, 2], alpha=1e-4, beta=10.0, beta_grid=[], validation=256,
                        num_subbatches=8, n_prime=50, num_subsets=20, logit_norm=25.0, sampling="sequential"),
        "paper": dict(pairs=["cifar10:cnn6", "cifar10:wrn28_2", "cifar10:densenet_bc", "cifar10:resnet20",
                             "cifar100:cnn6", "cifar100:wrn28_2", "cifar100:densenet_bc"],
                      model_kwargs={}, recipe="paper", n_train=None, augment="4-crop-f", batch_size=128, epochs=200,
                      lr=0.1, milestones=[100, 150], weight_decay=1e-4, seeds=[0, 1, 2, 3, 4], alpha=1e-4,
                      beta=10.0, beta_grid=[1.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 75.0, 100.0], validation=5000,
                      num_subbatches=8, n_prime=100, num_subsets=100, logit_norm=25.0, sampling="sequential"),
    }

    def __post_init__(self) -> None:
        for pair in self.pairs or []:
            if pair.count(":") != 1:
                raise ParameterError(f"invalid pairs entry {pair!r} for fim_regularizer: write 'dataset:model'")
            if self.recipe == "paper" and pair.split(":")[1] not in ORIGINAL_RECIPES:
                raise ParameterError(f"invalid pairs entry {pair!r} for fim_regularizer: recipe='paper' knows "
                                     f"{', '.join(ORIGINAL_RECIPES)}")

    def plan(self) -> list[TrainConfig]:
        """The β-search runs and both arms; the regularized arm only once the search's results are stored."""
        search = [cfg for *_, cfg in beta_search_configs(self)]
        betas = chosen_betas(beta_search(self, Store(self.profile), train=False)) if search else {}
        if betas is None:
            return search + [cfg for *_, reg, cfg in regularizer_configs(self) if not reg]
        return search + [cfg for *_, cfg in regularizer_configs(self, betas)]


def check_subbatches(cfg: TrainConfig, n_train: int, num_subbatches: int) -> None:
    """Algorithm 1 splits every batch, the epoch's last one included, into M equal sub-batches."""
    sizes = {cfg.batch_size, n_train % cfg.batch_size} - {0}
    if any(b % num_subbatches for b in sizes):
        raise ParameterError(f"batch sizes {sorted(sizes)} of {cfg.model} on {n_train} training images are not all "
                             f"divisible by num_subbatches={num_subbatches}; change n_train or batch_size")


def _plain_config(p: RegularizerParams, pair: str) -> TrainConfig:
    """The pair's unregularized recipe (seed 0)."""
    dataset, model = pair.split(":")
    if p.recipe == "paper":
        r = ORIGINAL_RECIPES[model]
        recipe = dict(batch_size=r["batch_size"], epochs=r["epochs"], lr=r["lr"], milestones=tuple(r["milestones"]),
                      lr_factor=r["lr_factor"], weight_decay=r["weight_decay"], nesterov=r["nesterov"])
    else:
        recipe = dict(batch_size=p.batch_size, epochs=p.epochs, lr=p.lr, milestones=tuple(p.milestones),
                      lr_factor=0.1, weight_decay=p.weight_decay, nesterov=True)
    plain = TrainConfig(dataset=dataset, model=model, model_kwargs=dict(p.model_kwargs.get(model, {})),
                        n_train=p.n_train, augment=p.augment, optimizer="sgd", momentum=0.9,
                        schedule="multistep", **recipe)
    if p.n_train is not None:
        check_subbatches(plain, p.n_train, p.num_subbatches)
    return plain


def _regularized(p: RegularizerParams, plain: TrainConfig, beta: float) -> TrainConfig:
    """Algorithm 1 (α, β, M) switched on at the first lr milestone (FIM Sec. 7.2.1; official code:
    epoch 60 of WRN's schedule)."""
    return plain.replace(rule="fisher", rule_kwargs={"alpha": p.alpha, "beta": beta, "num_subbatches": p.num_subbatches,
                                                     "start_epoch": min(plain.milestones)})


def regularizer_configs(p: RegularizerParams, betas: dict[str, float] | None = None
                        ) -> list[tuple[str, str, bool, TrainConfig]]:
    """(dataset, model, regularized, config) for every pair × arm × seed; β per pair from ``betas``
    (the search's choice), else ``p.beta``."""
    out = []
    for pair in p.pairs:
        dataset, model = pair.split(":")
        plain = _plain_config(p, pair)
        reg = _regularized(p, plain, (betas or {}).get(pair, p.beta))
        for seed in p.seeds:
            out.append((dataset, model, False, plain.replace(seed=seed)))
            out.append((dataset, model, True, reg.replace(seed=seed)))
    return out


def beta_search_configs(p: RegularizerParams) -> list[tuple[str, float, TrainConfig]]:
    """(pair, β, config) of the β search: the regularized arm, seed ``seeds[0]``, on the training set
    minus ``validation`` held-out images (``dataset_kwargs["validation"]``); empty without a grid."""
    out = []
    for pair in p.pairs if p.beta_grid else []:
        plain = _plain_config(p, pair)
        held = plain.replace(dataset_kwargs={**plain.dataset_kwargs, "validation": p.validation}, seed=p.seeds[0])
        out += [(pair, float(beta), _regularized(p, held, float(beta))) for beta in p.beta_grid]
    return out


def beta_search(p: RegularizerParams, store: Store | None = None, train: bool = True) -> pd.DataFrame | None:
    """Validation error (%) of every β-search run, with the chosen β per pair marked.

    ``train=False`` only reads the store and returns None while any search run is missing.
    An empty frame when there is no grid.
    """
    runs, store = beta_search_configs(p), store or Store(p.profile)
    if train:
        summaries = [r.summary for r in train_all([c for *_, c in runs], store, desc="FIM β search")]
    else:
        entries = [store.get("train", c.to_dict(hashed_only=True)) for *_, c in runs]
        if any(e is None for e in entries):
            return None
        summaries = [e.data["summary"] for e in entries]
    frame = pd.DataFrame([{"pair": pair, "beta": beta, "validation_error": s["test_error"]}
                          for (pair, beta, _), s in zip(runs, summaries)],
                         columns=["pair", "beta", "validation_error"])
    best = frame.loc[frame.groupby("pair", sort=False)["validation_error"].idxmin()] if len(frame) else frame
    frame["chosen"] = frame.index.isin(best.index)
    return frame


def chosen_betas(search: pd.DataFrame | None) -> dict[str, float] | None:
    """pair → chosen β from a `beta_search` frame (None passes through: results missing)."""
    if search is None:
        return None
    return {r["pair"]: r["beta"] for _, r in search[search["chosen"]].iterrows()}


def run_regularizer(p: RegularizerParams) -> pd.DataFrame:
    """Train both arms of every pair; one row per model with test error and γ̂ (official protocol, FIM-T3)."""
    store = Store(p.profile)
    runs = regularizer_configs(p, chosen_betas(beta_search(p, store)))
    results = train_all([c for *_, c in runs], store, desc="FIM-T1")
    rows = []
    for (dataset, model, reg, cfg), res in zip(runs, results):
        m = measure(cfg, store, n_prime=p.n_prime, num_subsets=p.num_subsets, logit_norm=p.logit_norm,
                    bn_mode="train-chunks", sampling=p.sampling, convention="official", metrics=("log_det",))
        rows.append({"dataset": dataset, "model": model, "regularizer": "with" if reg else "without", "seed": cfg.seed,
                     "beta": cfg.rule_kwargs["beta"] if reg else None,
                     "test_error": res.summary["test_error"], "train_error": res.summary["train_error"],
                     "n_test": res.summary["n_test"],
                     "train_loss": res.summary["train_loss"], "log_det": m["log_det"]["value"],
                     "log_det_se": m["log_det"]["stderr"]})
    return pd.DataFrame(rows)


def _fmt(mean: float, std: float) -> str:
    return f"{mean:.2f} ± {_sd(std):.2f}"


def comparison(frame: pd.DataFrame, col: str) -> pd.DataFrame:
    """Per (dataset, model): ``col`` without and with the regularizer (mean ± std), the difference and
    its standard error √(s₁²/n₁ + s₂²/n₂), and whether it is lower with the regularizer by more than that."""
    rows = []
    for (dataset, model), g in frame.groupby(["dataset", "model"], sort=False):
        a = g.loc[g["regularizer"] == "without", col].to_numpy(dtype=float)
        b = g.loc[g["regularizer"] == "with", col].to_numpy(dtype=float)
        diff = b.mean() - a.mean()
        se = math.sqrt((a.var(ddof=1) / len(a) if len(a) > 1 else 0.0) + (b.var(ddof=1) / len(b) if len(b) > 1 else 0.0))
        rows.append({"dataset": dataset, "model": model, "without": _fmt(a.mean(), a.std(ddof=1) if len(a) > 1 else 0.0),
                     "with": _fmt(b.mean(), b.std(ddof=1) if len(b) > 1 else 0.0), "Δ (with − without)": diff,
                     "s.e. of Δ": se, "lower with reg.": bool(diff < 0 and -diff > se)})
    return pd.DataFrame(rows)


def t1_table(frame: pd.DataFrame) -> pd.DataFrame:
    """FIM-T1: our test errors next to the paper's (Table 1) where the pair exists there."""
    tab = comparison(frame, "test_error")
    tab["paper: without"] = [_paper_pm("FIM-T1", f"{d}:{m}:without") for d, m in zip(tab["dataset"], tab["model"])]
    tab["paper: with"] = [_paper_pm("FIM-T1", f"{d}:{m}:with") for d, m in zip(tab["dataset"], tab["model"])]
    return tab


def t3_table(frame: pd.DataFrame) -> pd.DataFrame:
    """FIM-T3: γ̂ (logits rescaled to a fixed norm) without and with the regularizer, next to Table 3."""
    tab = comparison(frame, "log_det")
    tab["paper: without"] = [_paper_pm("FIM-T3", f"{m}:without", 1) if d == "cifar10" else "—"
                             for d, m in zip(tab["dataset"], tab["model"])]
    tab["paper: with"] = [_paper_pm("FIM-T3", f"{m}:with", 1) if d == "cifar10" else "—"
                          for d, m in zip(tab["dataset"], tab["model"])]
    return tab


def _paper_pm(target: str, key: str, digits: int = 2) -> str:
    """The paper's "mean ± std" for ``key`` of ``target`` (e.g. FIM-T1 ``cifar10:resnet20:with``) as printed, or "—"."""
    n = paper_numbers(target)
    return f"{n[key]:.{digits}f} ± {n[key + '_std']:.{digits}f}".replace("-", "−") if key in n else "—"


def paper_timing() -> pd.DataFrame:
    """FIM-TC as the paper reports it (Sec. 8: WRN-18, down-sampled ImageNet, 2× RTX 2080 Ti, batch 128)."""
    n = paper_numbers("FIM-TC")
    return pd.DataFrame([{"paper: without (ms)": n["without_ms"], "paper: with (ms)": n["with_ms"],
                          "paper: ratio": round(n["with_ms"] / n["without_ms"], 2)}])


# ----------------------------------------------------------------------------------- timing (TC)
def benchmark_results(pattern: str = "benchmarks/results/fisher_reg-*.json") -> pd.DataFrame:
    """Rows of every stored ``benchmarks/fisher_reg.py`` result file: device, model, candidate, ms/step, ratio."""
    rows = []
    for path in sorted(glob.glob(str(project_root() / pattern))):
        blob = json.loads(Path(path).read_text())
        for r in blob["results"]:
            model, cand = r["name"].split("/", 1)
            rows.append({"file": Path(path).name, "device": blob["device"], "batch": blob.get("batch_size"),
                         "quick": blob.get("quick", False), "model": model, "candidate": cand,
                         "ms/step": r["value"], "ratio to plain": r["ratio"]})
    return pd.DataFrame(rows)


def is_gpu(device: str) -> bool:
    """Whether a benchmark's device string names a GPU (the paper's claim is about GPUs)."""
    return not device.lower().startswith(("cpu", "intel", "amd", "arm")) and "cpu" not in device.lower()


# ------------------------------------------------------------------------------------- ImageNet (T2)
@notebook("fim_imagenet")
@dataclasses.dataclass
class ImageNetParams(Params):
    """FIM-T2: WRN-18-1.5 on 128×128 down-sampled ImageNet, with and without the regularizer (3 models each)."""

    data_dir: str | None = None   # torchvision ImageFolder root with train/ and val/; None: $FLATLIB_DATA/imagenet128
    seeds: list[int] | None = bounded(lo=0)

    PRESETS = {"smoke": dict(seeds=[0]), "default": dict(seeds=[0]), "paper": dict(seeds=[0, 1, 2])}


def imagenet_folder(p: ImageNetParams) -> Path:
    from flatlib.data.paper import data_root

    return Path(p.data_dir).expanduser() if p.data_dir else data_root() / "imagenet128"


def imagenet_skip_reason(p: ImageNetParams) -> str:
    """Why FIM-T2 cannot run here: it needs the paper profile, the data, and two things flatlib lacks."""
    folder = imagenet_folder(p)
    if p.profile != "paper":
        return (f"FIM-T2 runs only at the paper profile (this is '{p.profile}'): it needs the 1.28M-image "
                "ImageNet training set, for which no embedded dataset stands in")
    if not (folder / "train").is_dir() or not (folder / "val").is_dir():
        return f"no ImageNet (128×128) ImageFolder tree with train/ and val/ at {folder}"
    return (f"ImageNet was found at {folder}, but flatlib cannot train on it yet: the engine keeps a dataset "
            "device-resident (128×128 ImageNet is ~63 GB as uint8) and the model registry has no WRN-18-1.5")
