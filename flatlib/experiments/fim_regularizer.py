"""FIM regularizer (Jia & Su, ICML 2020, Sec. 6-7.2, Algorithm 1, Tables 1 and 3): notebook ``fim_regularizer``
(FIM-T1 test error, FIM-T3 γ̂ of the minima, FIM-TC time per step).

Every (dataset, model) pair is trained with and without the regularizer from the same seeds. The
paper's protocol: β per pair from {1, 5, 10, 20, 30, 40, 50, 75, 100} on a validation hold-out
(``beta_search``), the regularizer switched on at the first lr drop, each model's own recipe with
4-crop-f augmentation. γ̂ of the minima follows the official code (logits rescaled to norm 25,
BN in train mode over chunks of 10, consecutive subsets, ½ ln det). Each model is also evaluated
from its checkpoint (``evaluation``): per-image test correctness (McNemar) and R_α on the
training set at the end of training (did the regularizer act?).
"""
from __future__ import annotations

import dataclasses
import glob
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from flatlib.train.config import TrainConfig
from flatlib.data import split_tensors
from flatlib.train.engine import dataset_for
from flatlib.experiments.common import train_all
from flatlib.experiments.evaluation import evaluation
from flatlib.experiments.fim_scenarios import _sd, measure
from flatlib.params import Params, ParameterError, bounded, choices, notebook
from flatlib.reference import paper_numbers
from flatlib.store import Store, project_root

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
    dataset_kwargs: dict[str, Any] | None = None      # for every pair, e.g. {"test_fraction": 0.75}
    n_train: int | None = None
    augment: str | None = choices("no-aug", "flip-only", "1-crop-f", "4-crop-f", "rot-only", "1-shift-rot",
                                  "4-shift-rot")
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

    # default: 8×8 digits split 25/75 (1348 test images for McNemar and the MDE), the paper's plain CNN at a
    # quarter width (the Table 1 model that trains in seconds on a CPU), 448 training images, batch 64 split
    # into M = 8 sub-batches, 60 epochs with lr 0.05 divided by 10 at 30 and 45 (regularizer from epoch 30),
    # 4-shift-rot: the label-preserving analogue on 8×8 digits of the paper's 4-crop-f (flatlib.data.augment;
    # without augmentation the training loss is ~0 by the first lr drop and R_α ≈ 0, so there is nothing to
    # regularize), the paper's β grid on a 64-image hold-out, 5 seeds; γ̂ on N′ = 32 × T = 14 consecutive
    # training images (all 448).
    PRESETS = {
        "smoke": dict(pairs=["digits:cnn6"], model_kwargs={"cnn6": {"width": 0.125}},
                      dataset_kwargs={"test_fraction": 0.75}, recipe="scaled", n_train=256, augment="4-shift-rot",
                      batch_size=32, epochs=2, lr=0.05, milestones=[1], weight_decay=5e-4, seeds=[0, 1], alpha=1e-4,
                      beta=10.0, beta_grid=[1.0, 10.0], validation=64, num_subbatches=8, n_prime=10, num_subsets=2,
                      logit_norm=25.0, sampling="sequential"),
        "default": dict(pairs=["digits:cnn6"], model_kwargs={"cnn6": {"width": 0.25}},
                        dataset_kwargs={"test_fraction": 0.75}, recipe="scaled", n_train=448, augment="4-shift-rot",
                        batch_size=64, epochs=60, lr=0.05, milestones=[30, 45], weight_decay=5e-4,
                        seeds=[0, 1, 2, 3, 4], alpha=1e-4, beta=10.0,
                        beta_grid=[1.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 75.0, 100.0], validation=64,
                        num_subbatches=8, n_prime=32, num_subsets=14, logit_norm=25.0, sampling="sequential"),
        "paper": dict(pairs=["cifar10:cnn6", "cifar10:wrn28_2", "cifar10:densenet_bc", "cifar10:resnet20",
                             "cifar100:cnn6", "cifar100:wrn28_2", "cifar100:densenet_bc"],
                      model_kwargs={}, dataset_kwargs={}, recipe="paper", n_train=None, augment="4-crop-f",
                      batch_size=128, epochs=200, lr=0.1, milestones=[100, 150], weight_decay=1e-4,
                      seeds=[0, 1, 2, 3, 4], alpha=1e-4, beta=10.0,
                      beta_grid=[1.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 75.0, 100.0], validation=5000,
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
    plain = TrainConfig(dataset=dataset, dataset_kwargs=dict(p.dataset_kwargs or {}), model=model,
                        model_kwargs=dict(p.model_kwargs.get(model, {})), n_train=p.n_train, augment=p.augment, optimizer="sgd", momentum=0.9,
                        schedule="multistep", **recipe)
    if p.n_train is not None:
        check_subbatches(plain, p.n_train, p.num_subbatches)
    return plain


def _regularized(p: RegularizerParams, plain: TrainConfig, beta: float) -> TrainConfig:
    """Algorithm 1 (α, β, M) switched on at the first lr milestone (FIM Sec. 7.2.1; official code:
    epoch 60 of WRN's schedule)."""
    return plain.replace(rule="fisher", rule_kwargs={"alpha": p.alpha, "beta": beta, "num_subbatches": p.num_subbatches,
                                                     "start_epoch": min(plain.milestones)})


def regularized_phase(cfg: TrainConfig) -> list[tuple[float, int]]:
    """(lr, SGD steps) of each constant-lr stretch during which ``cfg``'s regularizer is on (from
    ``rule_kwargs["start_epoch"]`` to the end; multistep schedule, every batch of an epoch one step):
    how long Algorithm 1 acts, and at which step sizes."""
    steps_per_epoch = math.ceil(dataset_for(cfg).n_train / cfg.batch_size)
    start = cfg.rule_kwargs.get("start_epoch", 0)
    edges = [start, *[m for m in sorted(cfg.milestones) if start < m < cfg.epochs], cfg.epochs]
    return [(cfg.lr * cfg.lr_factor ** sum(m <= a for m in cfg.milestones), (b - a) * steps_per_epoch)
            for a, b in zip(edges, edges[1:]) if b > a]


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
    minus ``validation`` held-out images (``dataset_kwargs["validation"]``; with ``n_train``, a subset of
    ``n_train − validation`` of the rest); empty without a grid."""
    out = []
    for pair in p.pairs if p.beta_grid else []:
        plain = _plain_config(p, pair)
        n = p.n_train - p.validation if p.n_train is not None else None
        if n is not None:
            check_subbatches(plain, n, p.num_subbatches)
        held = plain.replace(dataset_kwargs={**plain.dataset_kwargs, "validation": p.validation}, seed=p.seeds[0],
                             n_train=n)
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


def _training_batches(model: torch.nn.Module, cfg: TrainConfig, num_subbatches: int, batch_size: int):
    """Consecutive batches of ``batch_size`` of the run's un-augmented training set on the model's device (a short
    last batch dropped; a set smaller than one batch is one batch of the largest multiple of M that fits), with
    the model in eval mode meanwhile."""
    x, y = split_tensors(dataset_for(cfg), "train", device=next(model.parameters()).device)
    batch_size = min(batch_size, len(x) - len(x) % num_subbatches)
    if batch_size < num_subbatches:
        raise ValueError(f"R_α needs at least num_subbatches={num_subbatches} training images; {cfg.key()} has {len(x)}")
    was = model.training
    model.eval()
    try:
        yield from ((x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(x) - batch_size + 1, batch_size))
    finally:
        model.train(was)


def final_fisher_reg(model: torch.nn.Module, cfg: TrainConfig, *, alpha: float, num_subbatches: int,
                     batch_size: int) -> float:
    """R_α(w) (FIM Eq. 7) of the final weights, averaged over the un-augmented training set in
    consecutive batches of ``batch_size`` (M sub-batches each, eval mode: `_training_batches`)."""
    from flatlib.train.rules.fisher import fisher_regularizer

    vals = [float(fisher_regularizer(model, F.cross_entropy, x, y, alpha=alpha, num_subbatches=num_subbatches))
            for x, y in _training_batches(model, cfg, num_subbatches, batch_size)]
    return sum(vals) / len(vals)


def _tree_norm(tree: dict[str, torch.Tensor]) -> float:
    return float(torch.sqrt(sum(v.double().pow(2).sum() for v in tree.values())))


def final_gradient_ratio(model: torch.nn.Module, cfg: TrainConfig, *, alpha: float, beta: float, num_subbatches: int,
                         batch_size: int) -> float:
    """β‖∇R_α(w)‖ / ‖∇L(B, w)‖ at the final weights (``flatlib.train.rules.fisher.fisher_gradients``, the
    first-order gradient Algorithm 1 steps on), the median over the batches of `_training_batches`: how
    strongly the regularizer pulls against the loss at the end of training."""
    from flatlib.train.rules.fisher import fisher_gradients

    ratios = []
    for x, y in _training_batches(model, cfg, num_subbatches, batch_size):
        gl, gr = fisher_gradients(model, F.cross_entropy, x, y, alpha=alpha, num_subbatches=num_subbatches)
        ratios.append(beta * _tree_norm(gr) / _tree_norm(gl))
    return float(np.median(ratios))


def run_regularizer(p: RegularizerParams) -> pd.DataFrame:
    """Train both arms of every pair; one row per model with test error, γ̂ (official protocol, FIM-T3),
    R_α of the final weights and β‖∇R_α‖/‖∇L‖ there (the pair's β for both arms), and the per-image test
    correctness."""
    store = Store(p.profile)
    runs = regularizer_configs(p, chosen_betas(beta_search(p, store)))
    results = train_all([c for *_, c in runs], store, desc="FIM-T1")
    beta = {(d, m): cfg.rule_kwargs["beta"] for d, m, reg, cfg in runs if reg}
    rows = []
    for (dataset, model, reg, cfg), res in zip(runs, results):
        m = measure(cfg, store, n_prime=p.n_prime, num_subsets=p.num_subsets, logit_norm=p.logit_norm,
                    bn_mode="train-chunks", sampling=p.sampling, convention="official", metrics=("log_det",))
        spec = {"alpha": p.alpha, "num_subbatches": p.num_subbatches, "batch_size": cfg.batch_size}
        pull = {**spec, "beta": beta[dataset, model]}
        ev = evaluation(cfg, store, extra={
            "fisher_reg": (spec, lambda mdl, c: final_fisher_reg(mdl, c, **spec)),
            "grad_ratio": ({**pull, "what": "beta |grad R| / |grad L|"},
                           lambda mdl, c: final_gradient_ratio(mdl, c, **pull))})
        rows.append({"dataset": dataset, "model": model, "regularizer": "with" if reg else "without", "seed": cfg.seed,
                     "beta": cfg.rule_kwargs["beta"] if reg else None,
                     "test_error": res.summary["test_error"], "train_error": res.summary["train_error"],
                     "n_test": res.summary["n_test"], "train_loss": res.summary["train_loss"],
                     "fisher_reg": ev["fisher_reg"], "grad_ratio": ev["grad_ratio"], "test_correct": ev["test_correct"],
                     "log_det": m["log_det"]["value"], "log_det_se": m["log_det"]["stderr"]})
    return pd.DataFrame(rows)


def _fmt(mean: float, std: float) -> str:
    return f"{mean:.2f} ± {_sd(std):.2f}"


def comparison(frame: pd.DataFrame, col: str) -> pd.DataFrame:
    """Per (dataset, model): ``col`` without and with the regularizer (mean ± std over seeds), the mean of the
    per-seed differences with − without (the arms share seeds), its standard error s_d/√k over the k seed
    pairs, and whether it is lower with the regularizer by more than that."""
    rows = []
    for (dataset, model), g in frame.groupby(["dataset", "model"], sort=False):
        arms = g.pivot_table(index="seed", columns="regularizer", values=col)
        a, b = arms["without"].dropna().to_numpy(float), arms["with"].dropna().to_numpy(float)
        d = (arms["with"] - arms["without"]).dropna().to_numpy(float)
        diff, se = float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else 0.0
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
