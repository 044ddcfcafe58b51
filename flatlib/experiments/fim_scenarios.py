"""FIM Scenarios I-III (Jia & Su, ICML 2020, Sec. 7.1, Fig. 2-4): notebooks ``fim_confusion``,
``fim_augmentation`` and ``fim_batch_size``.

Each scenario trains several models per configuration (confusion-set size, augmentation scheme,
batch size), then measures, on the un-augmented clean training set, over the same T subsets S_t
of N′ points (``flatlib.fisher.fim_metrics``; definitions and equations there):

    γ̂ = (1/T) Σ_t ln|J_t J_tᵀ|                                  (FIM Eq. 5-6)
    Frobenius ‖∇²L‖²_F ≈ (1/T) Σ_t (1/N′) Σ_{x∈S_t} ‖g_x‖⁴         (ICLR draft, App. D)
    spectral radius ρ(∇²L) ≈ (1/T) Σ_t ‖J_t‖²₂ / N′                (App. D)
    robustness (1/N) Σ_x ‖J_x f_w(x)‖²₂, f_w the softmax output     (Sec. 7.1)

The paper's reading is "smaller is better" for all four, so a metric *tracks generalisation* when
it rises with the test error across models: Kendall's τ between metric and test error over all
models of the scenario (τ > 0 and p < 0.05).

Every model is also evaluated once more from its checkpoint (``evaluation``, cached): loss and
error on the *clean* training rows (for Scenario I the rows without the confusion set, the fit the
paper requires) and the per-image correctness on the test set.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy import stats

from flatlib.train.config import TrainConfig
from flatlib.train.engine import load_model, resolve_device
from flatlib.experiments.common import mean_std, train_all
from flatlib.experiments.evaluation import clean_training_set, evaluation
from flatlib.params import Params, ParameterError, bounded, choices, notebook
from flatlib.reference import paper_numbers
from flatlib.store import Store

METRICS = ("log_det", "frobenius", "spectral_radius", "robustness")
"""The four metrics of FIM Sec. 7.1, in the paper's panel order (γ̂ first)."""
EXTRA_METRICS = ("fisher_trace", "frobenius_gram")
"""Also measured and tabulated, not part of the paper's comparison: tr F and the Gram variant of Frobenius."""
METRIC_LABELS = {
    "test_error": "test error (%)",
    "log_det": "γ̂ = mean ln|J Jᵀ|",
    "frobenius": "Frobenius (1/N′) Σ ‖g‖⁴",
    "spectral_radius": "spectral radius λmax(F)",
    "robustness": "robustness mean ‖J_x softmax‖²₂",
    "fisher_trace": "trace tr F",
    "frobenius_gram": "Gram ‖F_t‖²_F",
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
    dataset_kwargs: dict[str, Any] | None = None  # e.g. {"test_fraction": 0.75} for digits
    model: str | None = None
    model_kwargs: dict[str, Any] | None = None
    n_train: int | None = None            # training subset per seed (None: whole training split)
    augment: str | None = choices("no-aug", "flip-only", "1-crop-f", "4-crop-f", "rot-only", "1-shift-rot",
                                  "4-shift-rot")
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


# Shared recipes. paper: FIM Sec. 7.1 -- ResNet-20 on CIFAR-10, 200 epochs, lr 0.1 divided by 10 when the
# training loss plateaus, 5 models per configuration, N′ = T = 100, 4-crop-f by default; weight decay 1e-4 as
# in ResNet-20's own recipe.
# default: scikit-learn's 8×8 digits split 25/75 (449 training, 1348 test images: the largest test set that
# still leaves a training set every model fits; the scenario gates need the test error resolved), a
# two-hidden-layer ReLU MLP (256, 256) that fits the training set in seconds on a CPU, 120 epochs with lr 0.05
# divided by 10 at epochs 60 and 90, 5 models per configuration as in the paper, N′ = 50, T = 25. Every
# configuration is trained to the fit criterion (≤ 1 % clean training error): S3 with the paper's equal epochs
# (batch 128, the fewest steps, ends at 0 % training error); S2 for 180 epochs (lr drops at 90 and 135), the
# epochs its hardest arm, 4-shift-rot, needs (at 120 epochs two of five seeds ended at 1.1 %; 240 fit no better).
# smoke: the same, tiny.
_SMOKE = dict(dataset="digits", dataset_kwargs={"test_fraction": 0.75}, model="mlp", model_kwargs={"widths": [32]},
              n_train=None, augment="no-aug", batch_size=32, epochs=2, lr=0.05, weight_decay=5e-4,
              schedule="multistep", milestones=[1], seeds=[0, 1], n_prime=10, num_subsets=2)
_DEFAULT = dict(dataset="digits", dataset_kwargs={"test_fraction": 0.75}, model="mlp",
                model_kwargs={"widths": [256, 256]}, n_train=None, augment="no-aug", batch_size=32, epochs=120,
                lr=0.05, weight_decay=5e-4, schedule="multistep", milestones=[60, 90], seeds=[0, 1, 2, 3, 4],
                n_prime=50, num_subsets=25)
_PAPER = dict(dataset="cifar10", dataset_kwargs={}, model="resnet20", model_kwargs={}, n_train=None,
              augment="4-crop-f", batch_size=128, epochs=200, lr=0.1, weight_decay=1e-4, schedule="plateau",
              milestones=[], seeds=[0, 1, 2, 3, 4], n_prime=100, num_subsets=100)


@notebook("fim_confusion")
@dataclasses.dataclass
class ConfusionParams(ScenarioParams):
    """FIM-S1: ``n_train`` clean images plus a confusion set of ``confusion`` randomly labelled ones
    (0-50 % of the clean size in steps of 10 %, as the paper's 0-5k on 10k)."""

    confusion: list[int] | None = bounded(lo=0)

    SCENARIO: ClassVar[str] = "FIM-S1"
    LEVEL: ClassVar[str] = "confusion"
    PRESETS = {
        "smoke": {**_SMOKE, "n_train": 200, "confusion": [0, 100]},
        "default": {**_DEFAULT, "n_train": 290, "confusion": [0, 29, 58, 87, 116, 145]},
        "paper": {**_PAPER, "n_train": 10_000, "confusion": [0, 1000, 2000, 3000, 4000, 5000]},
    }

    def levels(self) -> list[int]:
        return list(self.confusion)


@notebook("fim_augmentation")
@dataclasses.dataclass
class AugmentationParams(ScenarioParams):
    """FIM-S2: the augmentation schemes no-aug, flip-only, 1-crop-f, 4-crop-f (paper, CIFAR-10).

    On 8×8 digits these are not label-preserving (a mirrored digit is another glyph; a 4-pixel crop
    shifts by half the image), so ``default``/``smoke`` use their label-preserving analogues
    ``rot-only``, ``1-shift-rot``, ``4-shift-rot`` (``flatlib.data.augment``): the flip replaced by a
    random rotation of at most 15°, the crop's shift scaled to the same fraction of the image side.
    """

    schemes: list[str] | None = None

    SCENARIO: ClassVar[str] = "FIM-S2"
    LEVEL: ClassVar[str] = "augment"
    PRESETS = {
        "smoke": {**_SMOKE, "schemes": ["no-aug", "4-shift-rot"]},
        "default": {**_DEFAULT, "epochs": 180, "milestones": [90, 135],
                    "schemes": ["no-aug", "rot-only", "1-shift-rot", "4-shift-rot"]},
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
    """FIM-S3: batch sizes (paper 128/256/512/1024, 8× apart; default 16-128 for 449 training images, also 8×).

    ``budget="epochs"``: the same epochs for all (paper: 200 epochs with lr plateau for every batch
    size; default: 120 epochs, after which batch 128 too is at 0 % training error, so every level meets
    the fit criterion). ``budget="steps"`` instead trains every batch size for the same number of SGD
    steps: ``epochs`` and ``milestones`` are those of the base ``batch_size`` and scale with
    batch_size_level / batch_size (for models that large batches would otherwise leave unfitted; it
    also removes most of the large-batch gap the scenario is about).
    """

    batch_sizes: list[int] | None = bounded(lo=1)
    budget: str | None = choices("epochs", "steps")

    SCENARIO: ClassVar[str] = "FIM-S3"
    LEVEL: ClassVar[str] = "batch_size"
    PRESETS = {
        "smoke": {**_SMOKE, "batch_sizes": [16, 64], "budget": "steps"},
        # 10 seeds: with 5 the test-error span (0.88 points) stayed below the paired minimum detectable
        # difference (0.99), whose seed and image parts shrink about as 1/√seeds (≈ 0.7 at 10)
        "default": {**_DEFAULT, "batch_sizes": [16, 32, 64, 128], "budget": "epochs", "seeds": list(range(10))},
        "paper": {**_PAPER, "batch_sizes": [128, 256, 512, 1024], "budget": "epochs"},
    }

    def levels(self) -> list[int]:
        return list(self.batch_sizes)


def base_config(p: ScenarioParams) -> TrainConfig:
    """The scenario's shared recipe: SGD with momentum 0.9, lr divided by 10 at the milestones (or on plateau)."""
    return TrainConfig(dataset=p.dataset, dataset_kwargs=dict(p.dataset_kwargs or {}), model=p.model,
                       model_kwargs=dict(p.model_kwargs), n_train=p.n_train, augment=p.augment,
                       batch_size=p.batch_size, epochs=p.epochs, optimizer="sgd", lr=p.lr, momentum=0.9,
                       weight_decay=p.weight_decay, schedule=p.schedule,
                       milestones=tuple(p.milestones) if p.schedule == "multistep" else (), lr_factor=0.1)


def level_config(p: ScenarioParams, base: TrainConfig, level: Any) -> TrainConfig:
    """The configuration of one level: ``base`` with the scenario's field set (S3 with ``budget="steps"``
    also scales epochs and milestones so every batch size takes the same number of steps)."""
    cfg = base.replace(**{p.LEVEL: level})
    if p.LEVEL == "batch_size" and getattr(p, "budget", "epochs") == "steps":
        scale = level / p.batch_size
        cfg = cfg.replace(epochs=max(1, round(base.epochs * scale)),
                          milestones=tuple(max(1, round(m * scale)) for m in base.milestones))
    return cfg


def scenario_configs(p: ScenarioParams) -> list[tuple[Any, TrainConfig]]:
    """(level, config) for every configuration × seed; S1 draws a new subset and confusion set per seed."""
    base = base_config(p)
    return [(level, level_config(p, base, level).replace(seed=seed)) for level in p.levels() for seed in p.seeds]


def measure(cfg: TrainConfig, store: Store, *, n_prime: int, num_subsets: int, logit_norm: float | None = None,
            bn_mode: str = "eval", sampling: str = "random", convention: str = "paper",
            metrics: tuple[str, ...] = (*METRICS, *EXTRA_METRICS)) -> dict[str, dict[str, float]]:
    """The FIM metrics of the trained run ``cfg`` on its clean training set, cached in the store.

    Subsets are drawn with the run's seed. Returns ``{metric: {"value", "stderr"}}`` (stderr over
    the T subsets); a singular subset makes γ̂ = −inf (``fim_metrics`` warns). Robustness is the
    squared spectral norm of the softmax output's input Jacobian, Frobenius the App. D estimate.
    """
    from flatlib.fisher import fim_metrics

    spec = {"run": cfg.key(), "n_prime": n_prime, "num_subsets": num_subsets, "logit_norm": logit_norm,
            "bn_mode": bn_mode, "sampling": sampling, "convention": convention, "metrics": list(metrics),
            "definitions": "robustness: spectral norm, softmax; frobenius: App. D mean ||g||^4"}

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
    """Train every model of the scenario and measure it: one row per model (level, seed, fit, errors, metrics).

    ``train_loss``/``train_error``: the whole training set (for S1 with the confusion set);
    ``clean_train_loss``/``clean_train_error``: its clean rows (S1 without the confusion set; else the same);
    ``test_correct``: which test images the model gets right (``correct_vector``), for the paired comparisons.
    """
    store = Store(p.profile)
    pairs = scenario_configs(p)
    results = train_all([c for _, c in pairs], store, desc=p.SCENARIO)
    labels = [p.level_label(lv) for lv in p.levels()]
    rows = []
    for (level, cfg), res in zip(pairs, results):
        m = measure(cfg, store, n_prime=p.n_prime, num_subsets=p.num_subsets)
        ev = evaluation(cfg, store)
        rows.append({"scenario": p.SCENARIO, "level": p.level_label(level), "level_index": labels.index(p.level_label(level)),
                     "seed": cfg.seed, "epochs": cfg.epochs, "train_loss": res.summary["train_loss"],
                     "train_error": res.summary["train_error"], "clean_train_loss": ev["clean_train_loss"],
                     "clean_train_error": ev["clean_train_error"], "test_error": res.summary["test_error"],
                     "n_test": res.summary["n_test"], "test_correct": ev["test_correct"],
                     **{k: v["value"] for k, v in m.items()}, **{f"{k}_se": v["stderr"] for k, v in m.items()}})
    return pd.DataFrame(rows)


FIT_COLUMNS = ("clean_train_error", "clean_train_loss", "train_error", "train_loss")


def level_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per configuration of test error, training fit and every metric."""
    cols = ["test_error", *[c for c in FIT_COLUMNS if c in frame],
            *[m for m in (*METRICS, *EXTRA_METRICS) if m in frame]]
    return mean_std(frame.sort_values("level_index"), ["level_index", "level"], cols)


def level_table(frame: pd.DataFrame) -> pd.DataFrame:
    """``level_summary`` as a readable table: one row per configuration, "mean ± std" per column.

    The fit columns are the clean training rows' error and loss (for S1 also the whole training set's,
    confusion set included); the two coincide without a confusion set and are then shown once.
    """
    summ = level_summary(frame)
    same = all(np.allclose(frame[f"clean_{c}"], frame[c]) for c in ("train_error", "train_loss")
               if f"clean_{c}" in frame and c in frame)
    cols = [c[:-5] for c in summ.columns if c.endswith("_mean") and not (same and c[:-5] in ("train_error", "train_loss"))]
    out = pd.DataFrame({"configuration": summ["level"], "models": summ["test_error_count"]})
    if "epochs" in frame and frame["epochs"].nunique() > 1:
        out["epochs"] = frame.groupby("level_index")["epochs"].first().to_numpy()
    for c in cols:
        fixed = c in ("test_error", "train_error", "clean_train_error", "log_det")
        out[COLUMN_LABELS.get(c, METRIC_SHORT.get(c, c.replace("_", " ")))] = [
            f"{m:.2f} ± {_sd(sd):.2f}" if fixed else f"{m:.4g} ± {_sd(sd):.2g}"
            for m, sd in zip(summ[f"{c}_mean"], summ[f"{c}_std"])]
    return out


COLUMN_LABELS = {"test_error": "test error (%)", "clean_train_error": "train error, clean (%)",
                 "clean_train_loss": "train loss, clean", "train_error": "train error, all (%)",
                 "train_loss": "train loss, all"}


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
        if scenario:
            row["paper: tracks"] = paper.get(m, "—")
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
                "robustness": "robustness", "fisher_trace": "trace", "frobenius_gram": "Frobenius (Gram)"}


def _sd(x: float) -> float:
    return 0.0 if x is None or (isinstance(x, float) and math.isnan(x)) else x


def augmentation_effect(frame: pd.DataFrame, baseline: str = "no-aug") -> Any:
    """One generated sentence (Markdown): did augmentation lower the mean test error at this scale, as in
    the paper (where every augmented scheme beats no-aug)? Means over models per scheme, with std."""
    from IPython.display import Markdown

    summ = level_summary(frame).set_index("level")
    if baseline not in summ.index or len(summ) < 2:
        return Markdown(f"*No `{baseline}` arm to compare with.*")
    base = summ.loc[baseline]
    others = summ.drop(index=baseline)
    better = [lv for lv, r in others.iterrows() if r["test_error_mean"] < base["test_error_mean"]]
    each = "; ".join(f"{lv}: {r['test_error_mean']:.2f} ± {_sd(r['test_error_std']):.2f} %" for lv, r in others.iterrows())
    if len(better) == len(others):
        head = "Augmentation helped at this scale, as in the paper: every augmented scheme has a lower mean test error"
    elif better:
        head = (f"Augmentation helped only partly at this scale: {', '.join(better)} lowered the mean test error, "
                "the other schemes did not")
    else:
        head = "Augmentation did not help at this scale, unlike in the paper: no augmented scheme lowered the mean test error"
    return Markdown(f"{head} ({baseline}: {base['test_error_mean']:.2f} ± {_sd(base['test_error_std']):.2f} %; {each}; "
                    f"mean ± std over {int(base['test_error_count'])} models).")
