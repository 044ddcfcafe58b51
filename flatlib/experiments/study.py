"""Is flatness a false friend? One population of models, every measure, Kendall τ with generalisation.

The population is every training run stored at the profile (the chapters' models when present),
grouped by dataset, plus a factor grid on one embedded dataset (learning rate, batch size, width,
training length, weight decay, seeds, and an Adam arm). Every model gets every measure of
:mod:`flatlib.measures`, cached in the store per model.

Analysis (Jiang et al. 2020, "Fantastic generalization measures and where to find them", Sec. 4):

- overall Kendall τ between a measure and the generalisation gap / test error, per dataset;
- granulated τ per intervention: for each pair of models that differ in exactly the config fields
  S (everything else, the seed included, held fixed), the concordance sign(Δmeasure)·sign(Δtarget);
  pairs are grouped by the values of the other fields, each group's mean is Kendall's τ-a over it,
  and ψ_S is the mean over groups. With one varying field this is Jiang et al.'s granulated τ.
- 95% bootstrap intervals: over models for the overall τ, over groups for ψ_S.

τ is reported signed by each measure's expected direction (``flatlib.measures.MEASURES``), so a
positive value always means "ranks the models the way its proponents say".
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import warnings
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.stats import kendalltau

from flatlib.data import split_tensors
from flatlib.train.config import NOT_HASHED, TrainConfig
from flatlib.train.engine import dataset_for, load_model, train
from flatlib.experiments.common import train_all
from flatlib.fisher.metrics import SingularGramWarning
from flatlib.measures import MEASURES, MeasureConfig, measure_all, rescale_layers, scale_before_batchnorm
from flatlib.models.base import weight_layers
from flatlib.params import Params, bounded, choices, notebook
from flatlib.store import Store

TARGETS = {"gap": "generalisation gap (test − train error, %)", "test_error": "test error (%)"}


# ------------------------------------------------------------------------------------------ parameters
@dataclasses.dataclass
class MeasureParams(Params):
    """The measures' sample sizes, shared by both study notebooks."""

    n_measure: int | None = bounded(lo=8)         # training (and test) points the measures use
    lanczos_iters: int | None = bounded(lo=2)
    trace_matvecs: int | None = bounded(lo=3)
    n_prime: int | None = bounded(lo=2)
    num_subsets: int | None = bounded(lo=1)
    pac_samples: int | None = bounded(lo=1)
    pac_iters: int | None = bounded(lo=1)

    def measure_config(self) -> MeasureConfig:
        return MeasureConfig(lanczos_iters=self.lanczos_iters, trace_matvecs=self.trace_matvecs,
                             frobenius_samples=self.trace_matvecs, n_prime=self.n_prime, num_subsets=self.num_subsets,
                             pac_samples=self.pac_samples, pac_iters=self.pac_iters)


@notebook("study_population")
@dataclasses.dataclass
class PopulationParams(MeasureParams):
    """The factor grid (on ``grid_dataset``), the measures' sample sizes and the analysis settings."""

    grid_dataset: str | None = None
    grid_n_train: int | None = bounded(lo=10)
    lrs: list[float] | None = bounded(lo=0.0)
    batch_sizes: list[int] | None = bounded(lo=1)
    widths: list[int] | None = bounded(lo=1)
    epochs: list[int] | None = bounded(lo=1)
    weight_decays: list[float] | None = bounded(lo=0.0)
    seeds: list[int] | None = bounded(lo=0)
    adam_lr: float | None = bounded(lo=0.0)       # 0: no Adam arm
    include_stored: bool | None = None           # add every other stored run of the profile
    precision: str | None = choices("float32", "float64")
    bootstrap: int | None = bounded(lo=10)
    min_groups: int | None = bounded(lo=1)        # an intervention needs this many groups to be reported

    PRESETS = {
        "smoke": dict(grid_dataset="toy", grid_n_train=200, lrs=[0.02, 0.1], batch_sizes=[64], widths=[16],
                      epochs=[2, 4], weight_decays=[0.0, 1e-3], seeds=[0], adam_lr=0.0, include_stored=False,
                      n_measure=128, precision="float32", lanczos_iters=5, trace_matvecs=6, n_prime=10, num_subsets=1,
                      pac_samples=2, pac_iters=6, bootstrap=50, min_groups=1),
        # default: the factor grid alone; the chapters' 175 trained models would add ~40 CPU-minutes of measures
        # to a from-scratch build (set include_stored=True to add them; the paper profile does)
        "default": dict(grid_dataset="toy", grid_n_train=500, lrs=[0.02, 0.1], batch_sizes=[32, 128],
                        widths=[32, 128], epochs=[10, 40], weight_decays=[0.0, 1e-3], seeds=[0, 1], adam_lr=1e-3,
                        include_stored=False, n_measure=256, precision="float32", lanczos_iters=15, trace_matvecs=15,
                        n_prime=50, num_subsets=4, pac_samples=6, pac_iters=8, bootstrap=500, min_groups=3),
        "paper": dict(grid_dataset="toy", grid_n_train=2000, lrs=[0.01, 0.03, 0.1], batch_sizes=[32, 128, 512],
                      widths=[32, 128, 512], epochs=[20, 80], weight_decays=[0.0, 1e-4, 1e-3], seeds=[0, 1, 2],
                      adam_lr=1e-3, include_stored=True, n_measure=2000, precision="float64", lanczos_iters=50,
                      trace_matvecs=99, n_prime=100, num_subsets=20, pac_samples=32, pac_iters=12, bootstrap=2000,
                      min_groups=3),
    }

    def plan(self) -> list[TrainConfig]:
        return grid_configs(self)


@notebook("study_invariance")
@dataclasses.dataclass
class InvarianceParams(MeasureParams):
    """Which reparameterisations (α values) to apply, to which two models, and the tolerance."""

    alphas: list[float] | None = bounded(lo=0.0)
    tolerance: float | None = bounded(lo=0.0)     # relative change below which a measure counts as invariant
    epochs: int | None = bounded(lo=1)

    PRESETS = {
        "smoke": dict(alphas=[4.0], tolerance=1e-6, epochs=2, n_measure=128, lanczos_iters=5, trace_matvecs=6,
                      n_prime=10, num_subsets=1, pac_samples=2, pac_iters=6),
        "default": dict(alphas=[0.25, 3.0], tolerance=1e-4, epochs=20, n_measure=256, lanczos_iters=15,
                        trace_matvecs=15, n_prime=50, num_subsets=4, pac_samples=6, pac_iters=8),
        "paper": dict(alphas=[0.1, 0.5, 3.0, 10.0], tolerance=1e-4, epochs=60, n_measure=2000, lanczos_iters=50,
                      trace_matvecs=99, n_prime=100, num_subsets=20, pac_samples=32, pac_iters=12),
    }

    def plan(self) -> list[TrainConfig]:
        return list(invariance_configs(self).values())


# ------------------------------------------------------------------------------------------ population
def grid_configs(p: PopulationParams) -> list[TrainConfig]:
    """The factor grid: a 2-hidden-layer ReLU MLP, SGD with momentum 0.9 and a constant learning rate,
    over lrs × batch sizes × widths × epochs × weight decays × seeds, plus (``adam_lr`` > 0) an Adam arm
    at that learning rate for every other combination with the first seed."""
    out = []
    for lr, bs, w, ep, wd, seed in itertools.product(p.lrs, p.batch_sizes, p.widths, p.epochs, p.weight_decays,
                                                     p.seeds):
        out.append(TrainConfig(dataset=p.grid_dataset, n_train=p.grid_n_train, model="mlp",
                               model_kwargs={"widths": [w, w]}, batch_size=bs, epochs=ep, optimizer="sgd", lr=lr,
                               momentum=0.9, weight_decay=wd, seed=seed, progress=False))
    if p.adam_lr > 0:
        for bs, w, ep, wd in itertools.product(p.batch_sizes, p.widths, p.epochs, p.weight_decays):
            out.append(TrainConfig(dataset=p.grid_dataset, n_train=p.grid_n_train, model="mlp",
                                   model_kwargs={"widths": [w, w]}, batch_size=bs, epochs=ep, optimizer="adam",
                                   lr=p.adam_lr, weight_decay=wd, seed=p.seeds[0], progress=False))
    return out


def population_configs(p: PopulationParams, store: Store) -> list[TrainConfig]:
    """The grid plus (``include_stored``) every finished training run in the store, without duplicates."""
    configs = {c.key(): c for c in grid_configs(p)}
    if p.include_stored:
        for e in store.entries("train"):
            cfg = TrainConfig.from_dict(e.config).replace(progress=False)
            configs.setdefault(cfg.key(), cfg)
    return list(configs.values())


def measurement_data(cfg: TrainConfig, n: int) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """(train, test) subsets of ``n`` points each, fixed per dataset: un-augmented, normalised as in training,
    the training subset drawn from the clean training set (without a confusion set)."""
    ds = dataset_for(cfg)
    x, y = split_tensors(ds, "train", drop_last=cfg.confusion)
    xt, yt = split_tensors(ds, "test")
    g = torch.Generator().manual_seed(0)
    i, j = torch.randperm(len(y), generator=g)[:n], torch.randperm(len(yt), generator=g)[:n]
    return (x[i], y[i]), (xt[j], yt[j])


def measure_run(cfg: TrainConfig, store: Store, mcfg: MeasureConfig, n_measure: int,
                precision: str = "float64") -> dict[str, float]:
    """Every measure at the run's final weights in ``precision``, cached in the store (kind ``measures``)."""
    spec = {"run": cfg.key(), "n_measure": n_measure, "precision": precision, **mcfg.to_dict()}

    def compute() -> dict[str, float]:
        model = load_model(cfg, store)
        train_data, test_data = measurement_data(cfg, n_measure)
        with warnings.catch_warnings():  # a singular subset gives γ̂ = −∞, which the study's tables report
            warnings.simplefilter("ignore", SingularGramWarning)
            return measure_all(model, train_data, test_data, mcfg, dtype=getattr(torch, precision))

    return store.cached("measures", spec, compute)


def config_columns(cfg: TrainConfig) -> dict[str, Any]:
    """The run's config as flat, hashable columns (dicts and lists as JSON, a parent as its key)."""
    out = {}
    for k, v in cfg.to_dict(hashed_only=True).items():  # how a run executes is not a population column
        if k == "parent":
            v = cfg.parent.key() if cfg.parent is not None else None
        elif isinstance(v, (dict, list)):
            v = json.dumps(v, sort_keys=True)
        out[k] = v
    return out


def population_runs(p: PopulationParams) -> pd.DataFrame:
    """Train (or reuse) the population: one row per model with its config columns and train/test errors.

    Measuring comes after the "trained" gate (``flatlib.claims.study.trained``), so models that never
    trained are neither measured nor ranked."""
    store = Store(p.profile)
    configs = population_configs(p, store)
    results = train_all(configs, store, desc="population")
    rows = []
    for cfg, res in zip(configs, results):
        s = res.summary
        rows.append({"key": cfg.key(), **config_columns(cfg), "parent_rule": cfg.parent.rule if cfg.parent else None,
                     "train_error": s["train_error"], "test_error": s["test_error"], "gap": s["gap"],
                     "source": "grid" if cfg.dataset == p.grid_dataset and cfg.n_train == p.grid_n_train
                     and cfg.model == "mlp" else "stored"})
    return pd.DataFrame(rows)


def measure_population(runs: pd.DataFrame, p: PopulationParams) -> pd.DataFrame:
    """Every measure of every model in ``runs`` (rows of ``population_runs``), cached per model."""
    store = Store(p.profile)
    by_key = {c.key(): c for c in population_configs(p, store)}
    mcfg = p.measure_config()
    measured = [measure_run(by_key[k], store, mcfg, p.n_measure, p.precision) for k in runs["key"]]
    return pd.concat([runs.reset_index(drop=True), pd.DataFrame(measured)], axis=1)


def varying_fields(frame: pd.DataFrame) -> list[str]:
    """The config fields that take more than one value in ``frame``."""
    fields = [k for k in TrainConfig.__dataclass_fields__ if k not in NOT_HASHED and k in frame]
    return [k for k in fields if frame[k].map(str).nunique() > 1]


# ------------------------------------------------------------------------------------------ Kendall τ
def _ranks(v: pd.Series) -> np.ndarray:
    """Average ranks (±inf rank at the ends; NaN stays NaN)."""
    return v.astype(float).rank(method="average").to_numpy()


def overall_tau(frame: pd.DataFrame, measure: str, target: str, bootstrap: int, seed: int = 0) -> tuple[float, float, float]:
    """Kendall τ-b between a measure and a target over the models of ``frame``, with a 95% bootstrap interval."""
    m, t = _ranks(frame[measure]), _ranks(frame[target])
    ok = ~(np.isnan(m) | np.isnan(t))
    m, t = m[ok], t[ok]
    if len(m) < 3:
        return np.nan, np.nan, np.nan
    tau = kendalltau(m, t).statistic
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(bootstrap):
        i = rng.integers(0, len(m), len(m))
        boots.append(kendalltau(m[i], t[i]).statistic)
    lo, hi = np.nanpercentile(boots, [2.5, 97.5])
    return float(tau), float(lo), float(hi)


def intervention_pairs(frame: pd.DataFrame, fields: list[str], max_joint: int = 3) -> pd.DataFrame:
    """Pairs of models (row positions i < j) that differ in a set S of config fields (``intervention``, joined
    by "+"), with the values of the other fields (``group``).

    A pair that differs in one field is always kept. A pair that differs in 2 ≤ |S| ≤ ``max_joint`` fields
    is kept only if it is a single step: no third model of the population agrees with both outside S and
    lies between them (takes the value of i in some fields of S and of j in the others). So in a grid the
    joint changes of two factors drop out, while SGD → Adam-with-its-own-learning-rate stays.
    """
    values = frame[fields].map(str).to_numpy()
    rows = []
    for i, j in itertools.combinations(range(len(frame)), 2):
        diff = values[i] != values[j]
        size = int(diff.sum())
        if size == 0 or size > max_joint:
            continue
        if size > 1:
            same = (values[:, ~diff] == values[i, ~diff]).all(1)
            between = ((values[:, diff] == values[i, diff]) | (values[:, diff] == values[j, diff])).all(1)
            if (same & between).sum() > 2:  # i and j themselves always qualify
                continue
        rows.append({"i": i, "j": j, "intervention": "+".join(f for f, d in zip(fields, diff) if d),
                     "group": "|".join(v for v, d in zip(values[i], diff) if not d)})
    return pd.DataFrame(rows, columns=["i", "j", "intervention", "group"])


def granulated_tau(frame: pd.DataFrame, pairs: pd.DataFrame, measure: str, target: str, bootstrap: int,
                   min_groups: int, seed: int = 0) -> pd.DataFrame:
    """ψ_S per intervention S (pairs from ``intervention_pairs``): the mean over groups of the group's τ-a,
    with a 95% bootstrap interval over groups; interventions with fewer than ``min_groups`` groups are left out."""
    m, t = _ranks(frame[measure]), _ranks(frame[target])
    i, j = pairs["i"].to_numpy(), pairs["j"].to_numpy()
    conc = np.sign(m[i] - m[j]) * np.sign(t[i] - t[j])
    per_group = pairs.assign(c=conc).dropna(subset=["c"]).groupby(["intervention", "group"])["c"].mean()
    rng = np.random.default_rng(seed)
    rows = []
    for s, taus in per_group.groupby(level="intervention"):
        v = taus.to_numpy()
        if len(v) < min_groups:
            continue
        boots = v[rng.integers(0, len(v), (bootstrap, len(v)))].mean(1)
        lo, hi = np.percentile(boots, [2.5, 97.5])
        rows.append({"intervention": s, "tau": float(v.mean()), "lo": float(lo), "hi": float(hi), "groups": len(v)})
    return pd.DataFrame(rows, columns=["intervention", "tau", "lo", "hi", "groups"])


def correlations(frame: pd.DataFrame, p: PopulationParams, min_models: int = 8) -> pd.DataFrame:
    """τ of every measure with every target, per dataset: overall and per intervention, raw and signed.

    Columns: dataset, measure, target, intervention ("overall" or the field set), tau, lo, hi (raw τ and
    interval), signed_tau / signed_lo / signed_hi (times the measure's expected sign), groups, models.
    """
    rows = []
    for dataset, sub in frame.groupby("dataset"):
        sub = sub.reset_index(drop=True)
        if len(sub) < min_models:
            continue
        pairs = intervention_pairs(sub, varying_fields(sub))
        for measure, (_, sign) in MEASURES.items():
            for target in TARGETS:
                tau, lo, hi = overall_tau(sub, measure, target, p.bootstrap)
                parts = [pd.DataFrame([{"intervention": "overall", "tau": tau, "lo": lo, "hi": hi,
                                        "groups": np.nan}]),
                         granulated_tau(sub, pairs, measure, target, p.bootstrap, p.min_groups)]
                g = pd.concat([x for x in parts if len(x)], ignore_index=True)
                g = g.assign(dataset=dataset, measure=measure, target=target, models=len(sub), sign=sign)
                rows.append(g)
    if not rows:  # no dataset has min_models trained models: nothing to correlate
        return pd.DataFrame(columns=["intervention", "tau", "lo", "hi", "groups", "dataset", "measure", "target",
                                     "models", "sign", "signed_tau", "signed_lo", "signed_hi"])
    out = pd.concat(rows, ignore_index=True)
    out["signed_tau"] = out["tau"] * out["sign"]
    lo, hi = out["lo"] * out["sign"], out["hi"] * out["sign"]
    out["signed_lo"], out["signed_hi"] = np.minimum(lo, hi), np.maximum(lo, hi)
    return out


def verdict_symbol(lo: float, hi: float) -> str:
    """✓: the interval lies above 0 (tracks as claimed); ✗: below 0 (ranks the wrong way); ·: inconclusive."""
    if np.isnan(lo):
        return "–"
    return "✓" if lo > 0 else "✗" if hi < 0 else "·"


def tracking_table(corr: pd.DataFrame, dataset: str, target: str = "gap") -> pd.DataFrame:
    """"Which measure tracks generalisation under which intervention": signed τ with ✓/✗/· per cell."""
    sub = corr[(corr["dataset"] == dataset) & (corr["target"] == target)]
    cells = sub.assign(cell=[f"{verdict_symbol(lo, hi)} {t:+.2f}" for t, lo, hi in
                             zip(sub["signed_tau"], sub["signed_lo"], sub["signed_hi"])])
    table = cells.pivot(index="measure", columns="intervention", values="cell")
    cols = ["overall", *sorted(c for c in table.columns if c != "overall")]
    table = table.reindex(index=list(MEASURES), columns=cols)
    table.index = [MEASURES[m][0] for m in table.index]
    return table


def population_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Models per dataset and the spread of their errors."""
    return frame.groupby("dataset").agg(models=("key", "size"), grid=("source", lambda s: int((s == "grid").sum())),
                                        test_error_min=("test_error", "min"), test_error_max=("test_error", "max"),
                                        gap_min=("gap", "min"), gap_max=("gap", "max")).reset_index()


def conclusion(frame: pd.DataFrame, corr: pd.DataFrame, claims: pd.DataFrame, p: PopulationParams):
    """The plain-language verdict of the chapter, written from the numbers (Markdown)."""
    from IPython.display import Markdown

    store = Store(p.profile)
    lines = [f"**What we found ({p.profile} profile, {len(frame)} models on "
             f"{frame['dataset'].nunique()} dataset(s)).**"]
    for dataset, sub in corr[(corr["target"] == "gap")].groupby("dataset"):
        overall = sub[sub["intervention"] == "overall"].set_index("measure")
        best = overall["signed_tau"].idxmax()
        tracks = [MEASURES[m][0] for m, r in overall.iterrows() if r["signed_lo"] > 0]
        wrong = [MEASURES[m][0] for m, r in overall.iterrows() if r["signed_hi"] < 0]
        gran = sub[sub["intervention"] != "overall"]
        robust = [MEASURES[m][0] for m, g in gran.groupby("measure")
                  if len(g) and (g["signed_lo"] > 0).sum() >= max(1, len(g) - 1) and (g["signed_hi"] < 0).sum() == 0]
        lines.append(
            f"*{dataset}* ({int(sub['models'].iloc[0])} models): over the whole population the measure that best ranks "
            f"the generalisation gap is {MEASURES[best][0]} (signed τ = {overall.loc[best, 'signed_tau']:+.2f}). "
            + (f"Measures whose interval lies above 0: {', '.join(tracks)}. " if tracks else
               "No measure's interval lies above 0. ")
            + (f"Measures that rank the gap the *wrong* way: {', '.join(wrong)}. " if wrong else "")
            + (f"Under the single interventions ({', '.join(sorted(gran['intervention'].unique()))}) the measures "
               f"that track the gap in all or all but one, and never the wrong way: {', '.join(robust) or 'none'}."
               if len(gran) else "No single intervention has enough groups for a granulated τ."))
    for r in claims.itertuples():
        lines.append(f"{r.paper}: *{r.claim}* — **{r.verdict}**"
                     + (f" on {r.dataset} ({r.evidence})." if r.dataset != "—" else "."))
    store.put("study", {"notebook": "study_population"},
              {"models": len(frame), "claims": claims.to_dict(orient="records"),
               "overall": corr[corr["intervention"] == "overall"][["dataset", "measure", "target", "tau", "lo", "hi"]]
               .to_dict(orient="records")})
    return Markdown("\n\n".join(lines))


# ------------------------------------------------------------------------------------------ invariance
def invariance_configs(p: InvarianceParams) -> dict[str, TrainConfig]:
    """Two small trained networks: a ReLU MLP without BN (toy data) and a BN CNN (digits)."""
    return {
        "MLP (no BN)": TrainConfig(dataset="toy", n_train=500, model="mlp", model_kwargs={"widths": [32, 32]},
                                   batch_size=32, epochs=p.epochs, lr=0.05, momentum=0.9, seed=0, progress=False),
        "CNN (BN)": TrainConfig(dataset="digits", n_train=500, model="cnn6",
                                model_kwargs={"width": 0.125, "batch_norm": True}, batch_size=32, epochs=p.epochs,
                                lr=0.05, momentum=0.9, seed=0, progress=False),
    }


def reparameterisations(name: str, model: torch.nn.Module, alphas: list[float]) -> dict[str, torch.nn.Module]:
    """Function-preserving copies: for a BN net, every weight layer before a BN scaled by α; otherwise
    hidden layer 1 scaled by α and layer 2 by 1/α, and the last hidden layer by α with the classifier by 1/α."""
    has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    out = {}
    last = len(weight_layers(model)) - 2
    for a in alphas:
        if has_bn:
            out[f"BN-input weights ×{a:g}"] = scale_before_batchnorm(model, a)
        else:
            out[f"layer 1 ×{a:g}, layer 2 ×1/{a:g}"] = rescale_layers(model, 0, a)
            out[f"layer {last + 1} ×{a:g}, classifier ×1/{a:g}"] = rescale_layers(model, last, a)
    return out


def run_invariance(p: InvarianceParams) -> pd.DataFrame:
    """Each measure before and after each reparameterisation: one row per (model, transform, measure)."""
    store = Store(p.profile)
    mcfg = p.measure_config()
    rows = []
    for name, cfg in invariance_configs(p).items():
        train(cfg, store)
        base = measure_run(cfg, store, mcfg, p.n_measure)

        def measure_transforms(name: str = name, cfg: TrainConfig = cfg) -> dict[str, dict[str, float]]:
            model = load_model(cfg, store)
            train_data, test_data = measurement_data(cfg, p.n_measure)
            return {transform: _checked_measures(model, copy_, train_data, test_data, mcfg)
                    for transform, copy_ in reparameterisations(name, model, p.alphas).items()}

        spec = {"run": cfg.key(), "alphas": list(p.alphas), "n_measure": p.n_measure, **mcfg.to_dict()}
        for transform, after in store.cached("invariance", spec, measure_transforms).items():
            for m in MEASURES:
                rows.append({"model": name, "transform": transform, "measure": m, "label": MEASURES[m][0],
                             "before": base[m], "after": after[m]})
    frame = pd.DataFrame(rows)
    frame["relative_change"] = (frame["after"] - frame["before"]).abs() / frame["before"].abs().clip(lower=1e-12)
    frame["invariant"] = frame["relative_change"] <= p.tolerance
    return frame


def _checked_measures(model: torch.nn.Module, copy_: torch.nn.Module, train_data, test_data, mcfg) -> dict[str, float]:
    """The measures of a reparameterised copy, after checking that it computes the same function."""
    with torch.no_grad():
        a, b = model(train_data[0]), copy_(train_data[0])
    if not torch.allclose(a, b, rtol=1e-4, atol=1e-5):
        raise RuntimeError("the reparameterisation changed the network's outputs")
    return measure_all(copy_, train_data, test_data, mcfg)


def invariance_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Measure × (model, transform): relative change, marked ✓ where within tolerance."""
    cells = frame.assign(cell=[f"{'✓' if ok else '✗'} {c:.1e}" for ok, c in zip(frame["invariant"], frame["relative_change"])])
    table = cells.pivot(index="label", columns=["model", "transform"], values="cell")
    return table.reindex([MEASURES[m][0] for m in MEASURES])


def invariance_findings(frame: pd.DataFrame, p: InvarianceParams):
    """Which measures are invariant under every function-preserving reparameterisation tried (Markdown)."""
    from IPython.display import Markdown

    per = frame.groupby("measure")["invariant"].agg(["all", "any"])
    always = [MEASURES[m][0] for m in MEASURES if per.loc[m, "all"]]
    never = [MEASURES[m][0] for m in MEASURES if not per.loc[m, "any"]]
    some = [MEASURES[m][0] for m in MEASURES if per.loc[m, "any"] and not per.loc[m, "all"]]
    l1 = frame[frame["measure"] == "lambda1"]
    lines = [f"**What we found ({p.profile} profile, relative tolerance {p.tolerance:g}).** "
             f"Every transform leaves the network's outputs unchanged, yet λ1 changes by a factor between "
             f"{(l1['after'] / l1['before']).min():.3g} and {(l1['after'] / l1['before']).max():.3g}.",
             f"Invariant under every transform: {', '.join(always) or 'none'}.",
             f"Invariant under some transforms only: {', '.join(some) or 'none'}.",
             f"Changed by every transform: {', '.join(never) or 'none'}."]
    Store(p.profile).put("study", {"notebook": "study_invariance"},
                         {"always": always, "some": some, "never": never})
    return Markdown("\n\n".join(lines))
