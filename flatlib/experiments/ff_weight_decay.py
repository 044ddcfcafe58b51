"""FF-F1..F5 and FF-F8: weight-decay sweeps and their Hessians ("Flatness is a false friend", Sec. 4).

Notebooks ``ff_softmax`` (F1), ``ff_mlp`` (F2), ``ff_allcnnc`` (F3), ``ff_preresnet`` (F4) and
``ff_wrn`` (F5, F8) share one experiment and differ only in their ``Params`` presets: train SGD
(momentum 0.9, FF Eq. 14 schedule, L2 weight decay) for each weight decay and seed, then measure
the un-regularised Hessian (`ff_curvature`).

Weight decay at the ``default`` profile acts at the paper's strength. What weight decay does in a
run is set by the integrated decay Σ_t lr_t·wd (`integrated_decay`: the log-shrinkage it alone
would cause). The stand-ins train far fewer steps than the paper's runs, so the paper's
coefficients would barely act (Σ lr·wd 0.001–0.02 against the paper's 0.06–4). `decay_matched`
scales the paper's coefficients {0, 1e-4, 5e-4} by one factor per notebook so that Σ lr·wd at the
largest is `DECAY_FRACTION` (0.6) × the paper's run's, computed from both presets with the same
schedule code. The claim is about regularisation strength, not the literal coefficient; the
``paper`` profile keeps the paper's coefficients.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import pandas as pd

from flatlib.train.config import TrainConfig
from flatlib.experiments.ff_curvature import (  # noqa: F401  (re-exported for the notebooks)
    CIFAR, DEFAULT, DEFAULT_CNN, MEASURES, MNIST, PAPER, SMOKE, CurvatureParams, hessian_data, integrated_decay,
    measure_all, measure_curvature, paper_decay_integral, scale_aware, summary_table)
from flatlib.params import ParameterError, bounded, notebook
from flatlib.store import Store


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
    return [TrainConfig(dataset=p.dataset, dataset_kwargs=held, model=p.model, model_kwargs=dict(p.model_kwargs or {}),
                        n_train=p.n_train, augment=p.augment, batch_size=p.batch_size, epochs=p.epochs,
                        optimizer="sgd", lr=p.lr, momentum=0.9, weight_decay=wd, schedule="linear_decay",
                        final_lr_ratio=0.01, seed=seed)
            for wd in p.weight_decays for seed in p.seeds]


# Σ lr·wd at the largest default weight decay, as a fraction of the paper run's. The window is a
# factor of 2 either way; we take its low end (with a margin for rounding the coefficient) because the
# coefficient is then distorted least: in a few hundred steps a large coefficient shrinks the layers that
# batch norm does not rescale (BN γ, the classifier) until the network collapses. PreResNet at the full
# strength in 15 epochs (wd 0.087) ended at 21 % train accuracy; at 0.52× (wd 0.045) it trained in 3 seeds,
# but at 0.6× (wd 0.05) one seed of 10 stayed at 91 % (see `PreResNetParams`).
DECAY_FRACTION = 0.6


def decay_matched(cls: type[WeightDecayParams], profile: str = "default", fraction: float = DECAY_FRACTION,
                  ends_only: bool = False) -> list[float]:
    """The paper's weight decays times one factor, so that Σ lr·wd at the largest is ``fraction`` × the paper run's.

    Σ lr·wd per unit weight decay of ``profile``'s run comes from its preset (``n_train`` must be
    the training-set size) with the same code as the paper's (`integrated_decay`); coefficients are
    rounded to 3 significant digits. ``ends_only`` keeps only 0 and the largest (the claims compare
    those two; the middle arm costs a third of a notebook's runs).
    """
    paper = cls.resolve(profile="paper")
    preset = cls.PRESETS[profile]
    probe = TrainConfig(dataset=preset["dataset"], model=preset["model"], batch_size=preset["batch_size"],
                        epochs=preset["epochs"], optimizer="sgd", lr=preset["lr"], momentum=0.9, weight_decay=1.0,
                        schedule="linear_decay", final_lr_ratio=0.01)
    per_unit = integrated_decay(probe, preset["n_train"])
    top = max(paper.weight_decays)
    scale = fraction * paper_decay_integral(paper) / (per_unit * top)
    wds = [min(paper.weight_decays), top] if ends_only else paper.weight_decays
    return [float(f"{w * scale:.3g}") for w in wds]


def matched_default(ends_only: bool = False):
    """Class decorator: the ``default`` preset's weight decays are `decay_matched` to the paper's run."""
    def apply(cls: type[WeightDecayParams]) -> type[WeightDecayParams]:
        cls.PRESETS["default"]["weight_decays"] = decay_matched(cls, ends_only=ends_only)
        return cls
    return apply


# default data, each for a reason (see each preset's comment): blobs has a 10,000-point test set;
# digits has 1,437 training images (test_fraction 0.2 of 1,797), mnist5k(14) 4,000 (1,000 held out)
_BLOBS = dict(dataset="blobs", n_train=4000)
# F4/F5 on digits compare test errors on 360 shared test images: with 3 seeds the non-inferiority bound's
# half-width was 1.5 and 1.2 points (SE 0.93 / 0.74), above the 1-point margin; the image part of that
# error averages down over seeds as far as the seeds err on different images, the seed part as 1/√k.
# F3 needs 10 seeds for its "trained" gate (its docstring); the ResNets (6–12 CPU-s a run) get as many.
TEN_SEEDS = list(range(10))


@notebook("ff_softmax")
@matched_default()
@dataclasses.dataclass
class SoftmaxParams(WeightDecayParams):
    """FF-F1: softmax regression on MNIST (7,850 parameters); default: on ``blobs`` (a linear Bayes rule)."""

    CLAIMS = {"eval": ("FF-F1", ("lambda_1", "test_acc"))}
    PRESETS = {
        "smoke": dict(SMOKE, dataset="mnist5k", model="logreg", model_kwargs={}, lr=0.01, bn_modes=["eval"]),
        "default": dict(DEFAULT, **_BLOBS, model="logreg", model_kwargs={}, epochs=150, lr=0.1, bn_modes=["eval"]),
        "paper": dict(PAPER, **MNIST, model="logreg", model_kwargs={}, epochs=1000, lr=0.01, bn_modes=["eval"]),
    }


@notebook("ff_mlp")
@matched_default()
@dataclasses.dataclass
class MLPParams(WeightDecayParams):
    """FF-F2: one hidden layer of 100 ReLU units on MNIST; default: on ``blobs``."""

    CLAIMS = {"eval": ("FF-F2", ("lambda_1", "test_acc"))}
    PRESETS = {
        "smoke": dict(SMOKE, dataset="mnist5k", model="mlp100", model_kwargs={}, lr=0.01, bn_modes=["eval"]),
        "default": dict(DEFAULT, **_BLOBS, model="mlp100", model_kwargs={}, epochs=50, lr=0.1, bn_modes=["eval"]),
        "paper": dict(PAPER, **MNIST, model="mlp100", model_kwargs={}, epochs=50, lr=0.01, bn_modes=["eval"]),
    }


@notebook("ff_allcnnc")
@matched_default(ends_only=True)
@dataclasses.dataclass
class AllCNNCParams(WeightDecayParams):
    """FF-F3: All-CNN-C (DeepOBS) on CIFAR-100; the paper claims only that λ1 rises with weight decay.

    Default stand-in: width 1/8 (12/24 channels), He-normal init, no dropout and no ReLU on the class
    maps (DeepOBS' Xavier init starves nine BN-free ReLU layers and its dropout rates starve 12-channel
    layers: that stand-in stayed at chance; with the logit ReLU, seeds whose class units died early
    stayed at chance for good: seeds 6 and 23 of a 29-seed run, and 9 more at 10–80 % train error), on
    2,000 ``mnist5k14`` images (MNIST pooled to 14×14, which keeps the shape: 14 → 7 → 4 by the strided
    convolutions, 2×2 after the 'valid' one, global pooling). The coefficient that matches Σ lr·wd must
    stay moderate: wd is a stationary-point property (∇L + wd·w = 0), and a BN-free 9-layer net
    collapses to w = 0 at wd ≳ 0.03 (on 28×28 inputs in 384 steps it did at 0.03, 0.08, 0.15). So the
    run is long (1,890 steps of batch 32, ~15 CPU-s on 14×14 inputs) at twice the paper's lr, and the
    matched wd is ~0.009. 10 seeds: the "trained" gate must hold in every seed, and the old stand-in
    failed it in 11 of 29; 10 seeds would have shown that with probability 1 − (18/29)¹⁰ > 99 %.
    """

    CLAIMS = {"eval": ("FF-F3", ("lambda_1",))}
    PRESETS = {
        "smoke": dict(SMOKE, dataset="mnist5k14", model="allcnnc",
                      model_kwargs={"width": 0.05, "init": "he", "dropout": 0.0, "logit_relu": False}, lr=0.01,
                      bn_modes=["eval"]),
        "default": dict(DEFAULT_CNN, seeds=TEN_SEEDS, dataset="mnist5k14", n_train=2000, model="allcnnc",
                        model_kwargs={"width": 0.125, "init": "he", "dropout": 0.0, "logit_relu": False},
                        batch_size=32, epochs=30, lr=0.02, bn_modes=["eval"]),
        "paper": dict(PAPER, **CIFAR, dataset="cifar100", model="allcnnc", model_kwargs={}, epochs=300, lr=0.01,
                      bn_modes=["eval"]),
    }


@notebook("ff_preresnet")
@matched_default(ends_only=True)
@dataclasses.dataclass
class PreResNetParams(WeightDecayParams):
    """FF-F4: PreResNet-164 on CIFAR-100 (lr 0.1, FF Sec. 4 'ResNet experiments').

    Default: 30 epochs, so the matched coefficient is half that of 15 epochs (0.025, not 0.05): over 10
    seeds, 15 epochs at wd 0.05 left one seed's regularised arm at 91.4 % train accuracy.
    """

    CLAIMS = {"train": ("FF-F4", ("lambda_1", "test_acc"))}
    PRESETS = {
        "smoke": dict(SMOKE, dataset="digits", model="preresnet164", model_kwargs={"depth": 11, "width": 0.25},
                      lr=0.1, bn_modes=["train"]),
        "default": dict(DEFAULT_CNN, seeds=TEN_SEEDS, dataset="digits", n_train=1437, model="preresnet164",
                        model_kwargs={"depth": 11, "width": 0.5}, batch_size=32, epochs=30, lr=0.1,
                        bn_modes=["train"]),
        "paper": dict(PAPER, **CIFAR, dataset="cifar100", model="preresnet164", model_kwargs={}, epochs=300,
                      lr=0.1, bn_modes=["train"]),
    }


@notebook("ff_wrn")
@matched_default(ends_only=True)
@dataclasses.dataclass
class WRNParams(WeightDecayParams):
    """FF-F5 (BN in train mode) and FF-F8 (BN in eval mode): WRN-28-10 on CIFAR-100, the same runs."""

    CLAIMS = {"train": ("FF-F5", ("lambda_1", "test_acc")), "eval": ("FF-F8", ("lambda_1", "test_acc"))}
    PRESETS = {
        "smoke": dict(SMOKE, dataset="digits", model="wrn", model_kwargs={"depth": 10, "width": 1},
                      lr=0.1, bn_modes=["train", "eval"]),
        "default": dict(DEFAULT_CNN, seeds=TEN_SEEDS, dataset="digits", n_train=1437, model="wrn",
                        model_kwargs={"depth": 10, "width": 1},
                        batch_size=32, epochs=15, lr=0.1, bn_modes=["train", "eval"]),
        "paper": dict(PAPER, **CIFAR, dataset="cifar100", model="wrn28_10", model_kwargs={}, epochs=300,
                      lr=0.1, bn_modes=["train", "eval"]),
    }


def run_weight_decay(p: WeightDecayParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The weight-decay sweep of one notebook: (per-run measures, SLQ spectra)."""
    cfgs = weight_decay_configs(p)
    return measure_all(cfgs, p, p.bn_modes, Store(p.profile), weight_decay=[c.weight_decay for c in cfgs])
