"""PoF image notebook (``pof_images``): post-training the feature extractor after SAM (POF-T1, F4, F5, F6, X1, T2).

SGD and SAM for E + Δ epochs (snapshots at E and E + Δ₁), SAM@E → PoF for Δ₂, and a classifier-only fine-tune
after PoF@E+Δ₁ (X1). The schedule keeps the paper's relations: milestones at 0.3, 0.6, 0.8 and 1.0 of E
(the paper's 60/120/160/200 of 200), PoF's lr = the initial lr × 0.2⁴ (the official code's 1.6e-4 of 0.1),
Δ₁ = E/20 and Δ₂ = E/4 (the paper's 10 and 50 of 200), the fine-tune as long as Δ₁ (the paper's 10 epochs).

The measurement step (cached per seed in the store, so a rebuild needs no checkpoint) also records what the
gates need: ‖Δφ‖/‖φ‖ of PoF's feature extractor, λ1 of the classifier-block training Hessian before and
after PoF, the fine-tune's classifier change and training loss, and per-image test correctness (a hex bit
string per model) for McNemar's test; and, beside the acted gate, what sets PoF's ‖Δφ‖: its mean φ-gradient at
SAM@E against weight decay's pull (`pof_gradient`), and how far SAM continued and PoF after Δ₂ moved φ.
"""
from __future__ import annotations

import dataclasses
import glob
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp

from flatlib.train.config import TrainConfig
from flatlib.curvature import HessianOperator, lanczos
from flatlib.train.engine import load_model
from flatlib.experiments.common import train_all
from flatlib.experiments.pof_common import (bits_to_bool, clf_loss, correct_bits, double, errors, features, flat,
                                            kde_peak, knobs, random_batches, relative_change, split_tensors, theta)
from flatlib.params import Params, bounded, choices, notebook
from flatlib.measures.classifier import minibatch_line_search
from flatlib.reference import paper_numbers
from flatlib._torch import bn_stats_frozen
from flatlib.store import Store

LANCZOS_ITERS, LANCZOS_TOL = 40, 1e-3   # λ1 of the classifier block, converged to 1e-3 (relative)
MEASURES_VERSION = 3  # 3: PoF's mean φ-gradient, φ moves at Δ₂ and by SAM (2: acted-gate quantities, per-image
                      # correctness; 1: F5/F6 only)


@notebook("pof_images")
@dataclasses.dataclass
class PoFImagesParams(Params):
    """Knobs of the image notebook (POF-T1, F4, F5, F6, X1, T2)."""

    dataset: str | None = None
    dataset_kwargs: dict | None = None
    model: str | None = None
    model_kwargs: dict | None = None
    seeds: list[int] | None = bounded(lo=0)
    batch_size: int | None = bounded(lo=1)
    lr: float | None = bounded(lo=0.0)
    milestones: list[int] | None = bounded(lo=1)
    weight_decay: float | None = bounded(lo=0.0)
    augment: str | None = choices("no-aug", "flip-only", "1-crop-f", "4-crop-f")
    cutout: int | None = bounded(lo=0)
    pretrain_epochs: int | None = bounded(lo=1)  # E
    post_epochs: list[int] | None = bounded(lo=1)  # [Δ₁, Δ₂]
    rho: float | None = bounded(lo=0.0)
    pof_lr: float | None = bounded(lo=0.0)
    search_batch_size: int | None = bounded(lo=1)
    gamma_max: float | None = bounded(lo=0.0)
    finetune_epochs: int | None = bounded(lo=1)
    finetune_lr: float | None = bounded(lo=0.0)
    num_minibatches: int | None = bounded(lo=1)
    sgd_step_lr: float | None = bounded(lo=0.0)

    PRESETS = {
        "smoke": dict(dataset="mnist1d", dataset_kwargs={"num_samples": 1500, "train_split": 0.4}, model="mlp",
                      model_kwargs={"widths": [32, 32]}, seeds=[0], batch_size=100, lr=0.1, milestones=[2],
                      weight_decay=5e-4, augment="no-aug", cutout=0, pretrain_epochs=2, post_epochs=[1, 2], rho=0.05,
                      pof_lr=1.6e-4, search_batch_size=32, gamma_max=2.0, finetune_epochs=1, finetune_lr=1.6e-4,
                      num_minibatches=10, sgd_step_lr=1.6e-4),
        # MNIST-1D generated per seed: 4,000 training and 10,000 test points (a binomial s.e. ≤ 0.5 points at the
        # ~30 % error an MLP reaches here, with 100 % training accuracy: a real generalisation gap).
        # The paper's schedule scaled to E = 60: milestones 0.3/0.6/0.8/1.0·E, PoF lr = lr·0.2⁴, Δ = E/20, E/4.
        "default": dict(dataset="mnist1d", dataset_kwargs={"num_samples": 14000, "train_split": 4000 / 14000},
                        model="mlp", model_kwargs={"widths": [256, 256, 256]}, seeds=[0, 1, 2], batch_size=128,
                        lr=0.1, milestones=[18, 36, 48, 60], weight_decay=5e-4, augment="no-aug", cutout=0,
                        pretrain_epochs=60, post_epochs=[3, 15], rho=0.05, pof_lr=1.6e-4, search_batch_size=32,
                        gamma_max=2.0, finetune_epochs=3, finetune_lr=1.6e-4, num_minibatches=400,
                        sgd_step_lr=1.6e-4),
        # PoF Sec. 4.1 / REPRODUCTION_TARGETS: WRN-28-10, CIFAR-10, SAM 200 ep then PoF 10 / 50 ep.
        # pof_lr: the paper's text says 3e-5; the official code's schedule gives 0.1·0.2⁴ = 1.6e-4.
        "paper": dict(dataset="cifar10", dataset_kwargs={}, model="wrn28_10_nobias", model_kwargs={}, seeds=[0, 1, 2],
                      batch_size=256, lr=0.1, milestones=[60, 120, 160, 200], weight_decay=5e-4, augment="4-crop-f",
                      cutout=16, pretrain_epochs=200, post_epochs=[10, 50], rho=0.05, pof_lr=3e-5,
                      search_batch_size=32, gamma_max=2.0, finetune_epochs=10, finetune_lr=1.6e-4,
                      num_minibatches=400, sgd_step_lr=1.6e-4),
    }

    def plan(self) -> list[TrainConfig]:
        """Every run of every seed (``flatlib run-all`` trains them in parallel before the notebook runs)."""
        return [c for seed in self.seeds for c in image_configs(self, seed).values()]


def image_configs(p: PoFImagesParams, seed: int) -> dict[str, TrainConfig]:
    """SGD and SAM for E + Δ₂ epochs (snapshots at E and E + Δ₁), PoF for Δ₂ from SAM@E, classifier fine-tune after
    PoF@Δ₁. The dataset's seed is the run's seed (a generated dataset or split per seed)."""
    d1, d2 = min(p.post_epochs), max(p.post_epochs)
    E = p.pretrain_epochs
    base = TrainConfig(dataset=p.dataset, dataset_kwargs={**dict(p.dataset_kwargs or {}), "seed": seed}, model=p.model,
                       model_kwargs=dict(p.model_kwargs), batch_size=p.batch_size, epochs=E + d2, lr=p.lr, momentum=0.9,
                       nesterov=True, weight_decay=p.weight_decay, schedule="multistep", milestones=tuple(p.milestones),
                       lr_factor=0.2, augment=p.augment, cutout=p.cutout, seed=seed, snapshot_epochs=(E, E + d1))
    sam = base.replace(rule="sam", rule_kwargs={"rho": p.rho})
    pof = base.replace(rule="pof", rule_kwargs={"search_batch_size": p.search_batch_size, "gamma_max": p.gamma_max},
                       parent=sam, parent_epoch=E, epochs=d2, lr=p.pof_lr, schedule="constant", milestones=(),
                       snapshot_epochs=(d1,))
    finetune = base.replace(rule="classifier", parent=pof, parent_epoch=d1, epochs=p.finetune_epochs,
                            lr=p.finetune_lr, schedule="constant", milestones=(), snapshot_epochs=())
    return {"SGD": base, "SAM": sam, "PoF": pof, "PoF+classifier": finetune}


def run_images(p: PoFImagesParams) -> dict[str, pd.DataFrame]:
    """Train all runs for every seed; return per-epoch curves (global epochs), the T1 table rows, and logs."""
    store = Store(p.profile)
    E, d1, d2 = p.pretrain_epochs, min(p.post_epochs), max(p.post_epochs)
    curves, points, logs, runs = [], [], [], []
    for seed in p.seeds:
        cfgs = image_configs(p, seed)
        results = dict(zip(cfgs, train_all(cfgs.values(), store, desc=f"images seed {seed}")))
        runs += [{"seed": seed, "method": name, **errors(r.summary)} for name, r in results.items()]
        offset = {"SGD": 0, "SAM": 0, "PoF": E, "PoF+classifier": E + d1}
        for name, r in results.items():
            f = r.frame.assign(method=name, seed=seed)
            f["epoch"] += offset[name]
            curves.append(f)
        err = {name: {rec["epoch"] + offset[name]: rec["test_error"] for rec in r.records} for name, r in results.items()}
        for label, method, epoch in (("SGD@E", "SGD", E), ("SGD@E+Δ₂", "SGD", E + d2), ("SAM@E", "SAM", E),
                                     ("SAM@E+Δ₁", "SAM", E + d1), ("SAM@E+Δ₂", "SAM", E + d2),
                                     ("PoF@E+Δ₁", "PoF", E + d1), ("PoF@E+Δ₂", "PoF", E + d2),
                                     ("PoF@E+Δ₁ + classifier", "PoF+classifier", E + d1 + p.finetune_epochs)):
            points.append({"seed": seed, "checkpoint": label, "epoch": epoch, "test_error": err[method][epoch]})
        log = pd.DataFrame(results["PoF"].logs)
        logs.append(log.assign(seed=seed))
    return {"curves": pd.concat(curves, ignore_index=True), "points": pd.DataFrame(points),
            "pof_logs": pd.concat(logs, ignore_index=True), "runs": pd.DataFrame(runs)}


def t1_table(points: pd.DataFrame, p: PoFImagesParams) -> pd.DataFrame:
    """POF-T1: test error mean ± std over seeds per checkpoint, beside the paper's CIFAR-10 number."""
    g = points.groupby("checkpoint", sort=False)["test_error"].agg(["mean", "std", "count"]).reset_index()
    g["epoch (ours)"] = points.groupby("checkpoint", sort=False)["epoch"].first().to_numpy()
    g["ours: test error % (mean ± std)"] = [f"{m:.2f} ± {s:.2f}" if c > 1 else f"{m:.2f}"
                                             for m, s, c in zip(g["mean"], g["std"], g["count"])]
    paper = PoFImagesParams.resolve(profile="paper")
    E, d1, d2 = paper.pretrain_epochs, min(paper.post_epochs), max(paper.post_epochs)
    paper_epochs = {"SGD@E": E, "SGD@E+Δ₂": E + d2, "SAM@E": E, "SAM@E+Δ₂": E + d2, "PoF@E+Δ₁": E + d1,
                    "PoF@E+Δ₂": E + d2}
    g["paper's epoch"] = g["checkpoint"].map(lambda c: f"{paper_epochs[c]}" if c in paper_epochs else "—")
    g["paper's CIFAR-10 error % (WRN-28-10)"] = g["checkpoint"].map(
        lambda c: f"{paper_numbers('POF-T1')[c]:.2f}" if c in paper_numbers("POF-T1") else "—")
    return g[["checkpoint", "epoch (ours)", "ours: test error % (mean ± std)", "count", "paper's epoch",
              "paper's CIFAR-10 error % (WRN-28-10)"]]


def hessian_components(model: nn.Module, batches: list[tuple[Tensor, Tensor]]) -> np.ndarray:
    """POF-F5: per mini-batch, the Rayleigh quotient gᵀ H_B g / ‖g‖² of the classifier-block mini-batch Hessian along
    the mini-batch gradient g = ∂L_B/∂θ (the paper's cheap estimate of the top Hessian component; eval-mode features)."""
    m = double(model)
    th = theta(m)
    out = []
    for x, y in batches:
        loss = clf_loss(m, features(m, x.double()), y)
        g = grad(loss)(th)
        _, hg = jvp(grad(loss), (th,), (g,))
        gf, hgf = flat(g), flat(hg)
        out.append(float(gf @ hgf / (gf @ gf)))
    return np.array(out)


def perturbation_sizes(models: dict[str, nn.Module], train: tuple[Tensor, Tensor], p: PoFImagesParams,
                       seed: int) -> pd.DataFrame:
    """POF-F6: classifier-space perturbation sizes ‖δθ‖₂ per mini-batch, measured as each method makes them
    (train-mode BN with batch statistics, buffers untouched):
    PoF ‖γ ξ*_B ĝ‖ = γ ξ*_B with γ = 2 (search batches of ``search_batch_size``); SAM: the classifier part of
    e = ρ g/‖g‖, i.e. ρ ‖g_θ‖/‖g‖; SGD: ‖η g_θ‖ with η = ``sgd_step_lr``."""
    rows = []
    batches = random_batches(*train, p.batch_size, p.num_minibatches, seed + 2)
    pof = double(models["PoF"])
    th = theta(pof)
    for x, y in random_batches(*train, p.search_batch_size, p.num_minibatches, seed + 3):
        res, _, gnorm = minibatch_line_search(pof, F.cross_entropy, features(pof, x.double(), train_bn=True), y, th)
        if not bool(res.rejected):
            rows.append({"method": "PoF (γ = 2)", "size": 2.0 * float(res.step * gnorm)})
    for name, scale in (("SAM", None), ("SGD", p.sgd_step_lr)):
        m = double(models[name]).train()
        clf = {id(q) for q in m.classifier.parameters()}
        for x, y in batches:
            with bn_stats_frozen(m):
                loss = F.cross_entropy(m(x.double()), y)
            gs = torch.autograd.grad(loss, list(m.parameters()), allow_unused=True)
            sq = [(g.pow(2).sum() if g is not None else torch.zeros((), dtype=torch.float64), id(q) in clf)
                  for g, q in zip(gs, m.parameters())]
            g_theta = float(torch.sqrt(sum(s for s, c in sq if c)))
            g_all = float(torch.sqrt(sum(s for s, _ in sq)))
            size = p.rho * g_theta / g_all if scale is None else scale * g_theta
            rows.append({"method": f"SAM (ρ = {p.rho})" if scale is None else f"SGD (η = {scale:g})", "size": size})
    return pd.DataFrame(rows)


def classifier_lambda1(model: nn.Module, train: tuple[Tensor, Tensor]) -> float:
    """λ1 of the classifier block of the full training-set Hessian (fixed eval-mode features; Lanczos, float64)."""
    H = HessianOperator(model, train, params="classifier", dtype=torch.float64)
    return float(lanczos(H, k=1, num_iters=LANCZOS_ITERS, tol=LANCZOS_TOL).eigenvalues[0])


def pof_gradient(model: nn.Module, train: tuple[Tensor, Tensor], p: PoFImagesParams, seed: int) -> dict[str, float]:
    """The size of PoF's feature-extractor gradient (Eq. 5) at ``model``'s (φ, θ₀), beside the acted gate.

    Over ``num_minibatches`` pairs (B, B̃) drawn as Algorithm 1 draws them (B of ``search_batch_size``, B̃ of
    ``batch_size``, γ ~ U[0, γ_max]; float64, train-mode BN statistics with the buffers untouched, as the rule):

        ḡ_PoF = mean ∂L_B̃(φ, θ₀ − γ ξ*_B ĝ_B)/∂φ,        ḡ₀ = mean ∂L_B̃(φ, θ₀)/∂φ  (the same B̃, no perturbation).

    Returns ‖ḡ_PoF‖, ‖ḡ₀‖ and ‖φ‖. Over T steps of lr η and momentum μ a steady gradient ḡ moves φ by ηT‖ḡ‖/(1 − μ)
    and weight decay λ by ηλT‖φ‖/(1 − μ), so ‖ḡ_PoF‖/(λ‖φ‖) is the acted gate's ratio (‖Δφ‖ over weight decay's
    shrinkage) with η and T cancelled. Batch noise inflates the norm of a mean (in expectation): upper estimates.
    """
    m = double(model).train()
    phi = [q for q in m.features.parameters() if q.requires_grad]
    th0 = theta(m)
    gammas = p.gamma_max * torch.rand(p.num_minibatches, generator=torch.Generator().manual_seed(seed + 4),
                                      dtype=torch.float64)
    pairs = zip(random_batches(*train, p.search_batch_size, p.num_minibatches, seed + 5),
                random_batches(*train, p.batch_size, p.num_minibatches, seed + 6), gammas)
    total = {"pof": torch.zeros((), dtype=torch.float64), "sgd": torch.zeros((), dtype=torch.float64)}
    for (xb, yb), (x, y), gamma in pairs:
        res, g, _ = minibatch_line_search(m, F.cross_entropy, features(m, xb.double(), train_bn=True), yb, th0)
        with bn_stats_frozen(m):
            f = m.features(x.double())
        for key, th in (("pof", {k: th0[k] - gamma * res.step * g[k] for k in th0}), ("sgd", th0)):
            gs = torch.autograd.grad(F.cross_entropy(functional_call(m.classifier, th, (f,)), y), phi, retain_graph=True)
            total[key] = total[key] + torch.cat([q.reshape(-1) for q in gs])
    norm = lambda v: float(v.norm() / p.num_minibatches)  # noqa: E731
    return {"grad_pof": norm(total["pof"]), "grad_sgd": norm(total["sgd"]),
            "phi_norm": float(torch.sqrt(sum((q.detach() ** 2).sum() for q in phi)))}


def _full_loss(model: nn.Module, data: tuple[Tensor, Tensor]) -> float:
    m = double(model)
    with torch.no_grad():
        return float(F.cross_entropy(m(data[0].double()), data[1]))


def gate_quantities(models: dict[str, nn.Module], data: dict[str, tuple[Tensor, Tensor]], pof_d2: nn.Module) -> dict:
    """What the acted gates and McNemar need, for one seed: PoF's ‖Δφ‖/‖φ‖ (PoF@E+Δ₁ vs SAM@E), λ1 of the classifier
    block before and after PoF, the fine-tune's ‖Δθ‖/‖θ‖ and full training losses, and per-image correctness.
    For comparison (no gate): ‖Δφ‖/‖φ‖ from SAM@E of SAM continued (SAM@E+Δ₁) and of PoF after Δ₂ (``pof_d2``)."""
    phi0 = models["SAM@E"].features
    return {"phi_change": relative_change(phi0, models["PoF@E+Δ₁"].features),
            "phi_change_sam": relative_change(phi0, models["SAM@E+Δ₁"].features),
            "phi_change_d2": relative_change(phi0, pof_d2.features),
            "lambda1_sam": classifier_lambda1(models["SAM@E"], data["train"]),
            "lambda1_pof": classifier_lambda1(models["PoF@E+Δ₁"], data["train"]),
            "theta_change_finetune": relative_change(models["PoF@E+Δ₁"].classifier,
                                                     models["PoF@E+Δ₁ + classifier"].classifier),
            "train_loss": {k: _full_loss(m, data["train"]) for k, m in models.items()},
            "n_train": len(data["train"][1]), "n_test": len(data["test"][1]),
            "correct": {k: correct_bits(m, *data["test"]) for k, m in models.items()}}


def measure_images(p: PoFImagesParams) -> dict[str, pd.DataFrame]:
    """F5 (SAM@E vs PoF@E+Δ₁, train and test mini-batches), F6 (perturbation sizes) and the gate quantities for every
    seed, cached per seed in the store so that a rebuild reads them back without the checkpoints."""
    store = Store(p.profile)
    E, d1 = p.pretrain_epochs, min(p.post_epochs)
    f5, f6, gates, pairs = [], [], [], []
    for seed in p.seeds:
        cfgs = image_configs(p, seed)

        def measure(seed: int = seed, cfgs: dict = cfgs) -> dict:
            models = {"SAM": load_model(cfgs["SAM"], store, epoch=E), "PoF": load_model(cfgs["PoF"], store, epoch=d1),
                      "SGD": load_model(cfgs["SGD"], store, epoch=E)}
            data = {s: split_tensors(cfgs["SGD"], s) for s in ("train", "test")}
            rows = []
            for split, (x, y) in data.items():
                batches = random_batches(x, y, p.batch_size, p.num_minibatches, seed)
                for method in ("SAM", "PoF"):
                    label = f"SAM@{E}" if method == "SAM" else f"PoF@{E + d1}"
                    rows += [{"split": split, "method": label, "value": float(v)}
                             for v in hessian_components(models[method], batches)]
            named = {"SAM@E": models["SAM"], "SAM@E+Δ₁": load_model(cfgs["SAM"], store, epoch=E + d1),
                     "PoF@E+Δ₁": models["PoF"], "PoF@E+Δ₁ + classifier": load_model(cfgs["PoF+classifier"], store)}
            return {"f5": rows, "f6": json.loads(perturbation_sizes(models, data["train"], p, seed).to_json(orient="records")),
                    "gates": gate_quantities(named, data, load_model(cfgs["PoF"], store))
                    | pof_gradient(models["SAM"], data["train"], p, seed)}

        spec = {"figure": "pof_images", "seed": seed, "runs": sorted(c.key() for c in cfgs.values()),
                "measures_version": MEASURES_VERSION, **knobs(p)}
        got = store.cached("pof_measures", spec, measure)
        f5.append(pd.DataFrame(got["f5"]).assign(seed=seed))
        f6.append(pd.DataFrame(got["f6"]).assign(seed=seed))
        g = got["gates"]
        gates.append({"seed": seed, **{k: v for k, v in g.items() if k not in ("train_loss", "correct")},
                      **{f"train_loss {k}": v for k, v in g["train_loss"].items()}})
        ok = {k: bits_to_bool(h, g["n_test"]) for k, h in g["correct"].items()}
        for claim, a, b in (("T1", "PoF@E+Δ₁", "SAM@E+Δ₁"), ("X1", "PoF@E+Δ₁ + classifier", "PoF@E+Δ₁")):
            pairs.append({"seed": seed, "pair": claim, "treatment": a, "control": b, "n_test": g["n_test"],
                          "only_treatment": int((ok[a] & ~ok[b]).sum()), "only_control": int((ok[b] & ~ok[a]).sum()),
                          "error_treatment": 100 * float(1 - ok[a].mean()), "error_control": 100 * float(1 - ok[b].mean())})
    return {"f5": pd.concat(f5, ignore_index=True), "f6": pd.concat(f6, ignore_index=True),
            "gates": pd.DataFrame(gates), "pairs": pd.DataFrame(pairs)}


def f5_table(f5: pd.DataFrame) -> pd.DataFrame:
    """KDE peak (log scale) per seed, split and model, and the PoF/SAM peak ratio."""
    rows = []
    for (seed, split), g in f5.groupby(["seed", "split"]):
        peaks = {m: kde_peak(v["value"].to_numpy()) for m, v in g.groupby("method")}
        sam = next(v for k, v in peaks.items() if k.startswith("SAM"))
        pof = next(v for k, v in peaks.items() if k.startswith("PoF"))
        rows.append({"seed": seed, "split": split, "SAM peak": sam, "PoF peak": pof, "PoF/SAM": pof / sam})
    return pd.DataFrame(rows)


def f6_table(f6: pd.DataFrame) -> pd.DataFrame:
    """Median perturbation size per method (over seeds and mini-batches) and quartiles."""
    g = f6.groupby("method")["size"].describe(percentiles=[0.25, 0.5, 0.75])
    return g[["count", "25%", "50%", "75%"]].rename(columns={"50%": "median"}).reset_index()


def benchmark_table(root: Path | None = None) -> tuple[pd.DataFrame, dict | None]:
    """POF-T2: the update-rule benchmark's ratios to SGD (prefers a GPU, non-quick result file), with the paper's."""
    root = root or Path(__file__).resolve().parents[2] / "benchmarks" / "results"
    files = [json.loads(Path(f).read_text()) for f in sorted(glob.glob(str(root / "update_rules-*.json")))]
    if not files:
        return pd.DataFrame(), None
    best = sorted(files, key=lambda d: (d.get("quick", True), "threads" in d["device"]))[0]
    n = paper_numbers("POF-T2")
    paper = {"sgd": (n["sgd_s"], 1.0), "sam": (n["sam_s"], n["sam_ratio"]), "pof": (n["pof_s"], n["pof_ratio"])}
    rows = []
    for r in best["results"]:
        model, method = r["name"].split("/")
        rows.append({"model": model, "method": method, "ours: s/epoch": r["value"], "ours: ratio to SGD": r["ratio"],
                     "paper's s/epoch (WRN-28-10, 16 A100)": f"{paper[method][0]:g}" if method in paper else "—",
                     "paper's ratio": f"{paper[method][1]:g}" if method in paper else "—"})
    return pd.DataFrame(rows), best
