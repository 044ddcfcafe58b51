"""PoF chapter: the toy landscape studies (POF-F1c, F1d, F2a, F2b) and the image pipeline (POF-T1, F4, F5, F6, X1, T2).

Toy: SGD to a minimum on the toy data with the 5-weight-layer MLP, then PoF from the SGD snapshot;
"SGD" below is the same SGD run continued for as many epochs as PoF ran, so both models have equal
training time. Images: SGD and SAM for E + Δ epochs (snapshots at E), SAM@E → PoF for Δ, and a
classifier-only fine-tune after PoF (X1). All classifier-space measurements use fixed features and
the classifier block of the model (``model.classifier``), as PoF defines θ.
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
from flatlib.curvature import HessianOperator, lanczos, landscape_1d, unflatten
from flatlib.data import BatchLoader
from flatlib.train.engine import dataset_for, load_model
from flatlib.experiments.common import mean_std, train_all
from flatlib.models.base import weight_layers
from flatlib.params import Params, bounded, choices, notebook
from flatlib.measures.classifier import minibatch_line_search
from flatlib._torch import bn_stats_frozen
from flatlib.reference import paper_numbers
from flatlib.store import Store

# ------------------------------------------------------------------------------------------------
# shared measurements


def split_tensors(cfg: TrainConfig, split: str) -> tuple[Tensor, Tensor]:
    """The whole split, preprocessed exactly as the engine's loaders do (scaling, normalisation, no augmentation)."""
    ds = dataset_for(cfg)
    x, y = (ds.x_train, ds.y_train) if split == "train" else (ds.x_test, ds.y_test)
    return next(iter(BatchLoader(x, y, len(y), shuffle=False, mean=ds.mean, std=ds.std)))


def random_batches(x: Tensor, y: Tensor, size: int, count: int, seed: int) -> list[tuple[Tensor, Tensor]]:
    """``count`` mini-batches of ``size`` drawn without replacement within a batch (independently across batches)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        idx = torch.randperm(len(y), generator=g)[:size]
        out.append((x[idx], y[idx]))
    return out


def _features(model: nn.Module, x: Tensor, train_bn: bool = False) -> Tensor:
    """Features in float64 (eval mode, or train-mode batch statistics without touching BN buffers)."""
    was = model.training
    model.train(train_bn)
    try:
        with torch.no_grad(), bn_stats_frozen(model):
            return model.features(x).double()
    finally:
        model.train(was)


def _theta(model: nn.Module) -> dict[str, Tensor]:
    return {n: p.detach().double() for n, p in model.classifier.named_parameters()}


def _clf_loss(model: nn.Module, f: Tensor, y: Tensor):
    """θ ↦ L_B(θ) on fixed features (``model`` is a float64 copy)."""
    return lambda th: F.cross_entropy(functional_call(model.classifier, th, (f,)), y)


def _flat(d: dict[str, Tensor]) -> Tensor:
    return torch.cat([v.reshape(-1) for v in d.values()])


def classifier_hessian(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Exact (P, P) Hessian of the mean loss w.r.t. the classifier parameters on fixed eval-mode features (float64)."""
    m = _double(model)
    f = _features(m, x.double() if x.is_floating_point() else x)
    theta = _theta(m)
    loss = _clf_loss(m, f, y)
    return torch.autograd.functional.hessian(lambda flat: loss(unflatten(flat, theta)), _flat(theta))


def _double(model: nn.Module) -> nn.Module:
    """A float64 copy (measurements in float64 never touch the trained model)."""
    import copy

    return copy.deepcopy(model).double().eval()


# ------------------------------------------------------------------------------------------------
# toy studies


@notebook("pof_toy")
@dataclasses.dataclass
class PoFToyParams(Params):
    """Knobs of the toy landscape notebook (POF-F1c, F1d, F2a, F2b)."""

    seeds: list[int] | None = bounded(lo=0)
    width: int | None = bounded(lo=1)
    n_train: int | None = bounded(lo=10)
    batch_size: int | None = bounded(lo=1)
    sgd_epochs: int | None = bounded(lo=1)
    sgd_lr: float | None = bounded(lo=0.0)
    pof_epochs: int | None = bounded(lo=1)
    pof_lr: float | None = bounded(lo=0.0)
    search_batch_size: int | None = bounded(lo=1)
    num_minibatches: int | None = bounded(lo=1)
    slice_radius: float | None = bounded(lo=0.0)
    slice_points: int | None = bounded(lo=3)
    lanczos_iters: int | None = bounded(lo=2)

    PRESETS = {
        "smoke": dict(seeds=[0], width=16, n_train=500, batch_size=100, sgd_epochs=3, sgd_lr=0.05, pof_epochs=1,
                      pof_lr=0.01, search_batch_size=32, num_minibatches=20, slice_radius=2.0, slice_points=7,
                      lanczos_iters=8),
        "default": dict(seeds=[0, 1, 2], width=64, n_train=2000, batch_size=100, sgd_epochs=150, sgd_lr=0.05,
                        pof_epochs=30, pof_lr=0.01, search_batch_size=32, num_minibatches=1000, slice_radius=3.0,
                        slice_points=41, lanczos_iters=40),
        "paper": dict(seeds=[0, 1, 2, 3, 4], width=64, n_train=2000, batch_size=100, sgd_epochs=300, sgd_lr=0.05,
                      pof_epochs=50, pof_lr=0.01, search_batch_size=32, num_minibatches=5000, slice_radius=3.0,
                      slice_points=81, lanczos_iters=100),
    }


def toy_configs(p: PoFToyParams, seed: int) -> tuple[TrainConfig, TrainConfig]:
    """(SGD run of E + Δ epochs with a snapshot at E, PoF run of Δ epochs from SGD@E)."""
    sgd = TrainConfig(dataset="toy", dataset_kwargs={"n_train": p.n_train}, model="mlp5",
                      model_kwargs={"width": p.width}, batch_size=p.batch_size, epochs=p.sgd_epochs + p.pof_epochs,
                      lr=p.sgd_lr, momentum=0.9, seed=seed, snapshot_epochs=(p.sgd_epochs,))
    pof = sgd.replace(rule="pof", rule_kwargs={"search_batch_size": p.search_batch_size}, parent=sgd,
                      parent_epoch=p.sgd_epochs, epochs=p.pof_epochs, lr=p.pof_lr, snapshot_epochs=())
    return sgd, pof


def _knobs(p: Params) -> dict:
    """The parameters that determine one seed's measurements (everything but profile and seeds)."""
    return {k: v for k, v in p.as_dict().items() if k not in ("profile", "seeds")}


def run_toy(p: PoFToyParams) -> dict[str, pd.DataFrame]:
    """Train SGD and PoF for every seed and measure F1c, F1d, F2a, F2b (measurements cached per seed in the
    store, so a rebuild reads them back without the checkpoints). Returns tidy frames by figure."""
    store = Store(p.profile)
    out: dict[str, list[pd.DataFrame]] = {k: [] for k in ("runs", "f1c", "f1d", "f2a", "f2b")}
    for seed in p.seeds:
        sgd_cfg, pof_cfg = toy_configs(p, seed)
        sgd_res, pof_res = train_all([sgd_cfg, pof_cfg], store, desc=f"toy seed {seed}")
        out["runs"].append(pd.DataFrame([
            {"seed": seed, "method": "SGD", "epochs": sgd_cfg.epochs, **_errors(sgd_res.summary)},
            {"seed": seed, "method": "PoF", "epochs": sgd_cfg.epochs, **_errors(pof_res.summary)},
            {"seed": seed, "method": "SGD (PoF start)", "epochs": p.sgd_epochs,
             "train_loss": sgd_res.records[p.sgd_epochs - 1]["train_loss"],
             "test_error": sgd_res.records[p.sgd_epochs - 1]["test_error"]}]))

        def measure(seed: int = seed, sgd_cfg: TrainConfig = sgd_cfg, pof_cfg: TrainConfig = pof_cfg) -> dict:
            start = load_model(sgd_cfg, store, epoch=p.sgd_epochs)
            models = {"SGD": load_model(sgd_cfg, store), "PoF": load_model(pof_cfg, store)}
            train, test = split_tensors(sgd_cfg, "train"), split_tensors(sgd_cfg, "test")
            alphas = np.linspace(-p.slice_radius, p.slice_radius, p.slice_points)
            frames: dict[str, list[pd.DataFrame]] = {"f1c": [], "f1d": []}
            for method, model in models.items():
                frames["f1c"].append(layer_delta_l(model, train, test, alphas, p.lanczos_iters).assign(method=method))
                frames["f1d"].append(final_layer_slices(model, train, alphas).assign(method=method))
            got = {k: pd.concat(v, ignore_index=True) for k, v in frames.items()}
            got["f2a"] = gradient_alignment(start, train, p.batch_size, p.num_minibatches, seed)
            got["f2b"] = xi_distribution(start, train, test, p.search_batch_size, p.num_minibatches, seed)
            return {k: json.loads(f.to_json(orient="records")) for k, f in got.items()}

        spec = {"figure": "pof_toy", "seed": seed, "runs": [sgd_cfg.key(), pof_cfg.key()], **_knobs(p)}
        for k, records in store.cached("pof_measures", spec, measure).items():
            out[k].append(pd.DataFrame(records).assign(seed=seed))
    return {k: pd.concat(v, ignore_index=True) for k, v in out.items()}


def _errors(summary: dict) -> dict:
    return {"train_loss": summary["train_loss"], "train_error": summary["train_error"],
            "test_error": summary["test_error"], "n_test": summary["n_test"]}


def layer_delta_l(model: nn.Module, train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor],
                  alphas: np.ndarray, lanczos_iters: int) -> pd.DataFrame:
    """POF-F1c: per weight layer, the top eigenpair of the layer's training-loss Hessian block (Lanczos) and
    ΔL = L_test(w) − min_α L_test(w + α v₁), the test-loss decrease available along v₁ (Fig. 1a/b)."""
    rows = []
    for i, (name, _) in enumerate(weight_layers(model)):
        H = HessianOperator(model, train, params=name, dtype=torch.float64)
        top = lanczos(H, k=1, num_iters=lanczos_iters, tol=1e-3)
        v = top.eigenvectors[:, 0]
        s = landscape_1d(model, {"test": test}, v, np.union1d(alphas, [0.0]), params=name, dtype=torch.float64)
        at0 = float(s.loc[s["alpha"] == 0.0, "loss"].iloc[0])
        rows.append({"layer": i + 1, "name": name, "lambda_1": float(top.eigenvalues[0]),
                     "delta_l": at0 - float(s["loss"].min()), "alpha_at_min": float(s.loc[s["loss"].idxmin(), "alpha"])})
    return pd.DataFrame(rows)


def final_layer_slices(model: nn.Module, train: tuple[Tensor, Tensor], alphas: np.ndarray, k: int = 2) -> pd.DataFrame:
    """POF-F1d: training loss along the top-``k`` exact eigenvectors of the final-layer (classifier) Hessian block."""
    H = classifier_hessian(model, *train)
    evals, evecs = torch.linalg.eigh(H)
    frames = []
    for j in range(k):
        v = evecs[:, -1 - j]
        s = landscape_1d(model, {"train": train}, v, alphas, params="classifier", dtype=torch.float64)
        frames.append(s.assign(eigenvector=j + 1, eigenvalue=float(evals[-1 - j])))
    return pd.concat(frames, ignore_index=True)


def flat_width(slices: pd.DataFrame, tol: float) -> pd.DataFrame:
    """Width of the α-interval around 0 on which the training loss stays within ``tol`` of L(0), per slice."""
    rows = []
    for keys, s in slices.groupby(["method", "seed", "eigenvector"]):
        s = s.sort_values("alpha")
        a, loss = s["alpha"].to_numpy(), s["loss"].to_numpy()
        l0 = loss[np.argmin(np.abs(a))]
        ok = loss <= l0 + tol
        i0 = int(np.argmin(np.abs(a)))
        lo = i0
        while lo > 0 and ok[lo - 1]:
            lo -= 1
        hi = i0
        while hi < len(a) - 1 and ok[hi + 1]:
            hi += 1
        rows.append(dict(zip(["method", "seed", "eigenvector"], keys), width=a[hi] - a[lo],
                         capped=bool(lo == 0 or hi == len(a) - 1)))
    return pd.DataFrame(rows)


def gradient_alignment(model: nn.Module, train: tuple[Tensor, Tensor], batch_size: int, count: int,
                       seed: int) -> pd.DataFrame:
    """POF-F2a: for random mini-batches, i* = argmax_i |v_iᵀ ∂L_B/∂θ| over the exact eigenvectors v_i of the
    classifier block of the training Hessian (i = 1 the largest eigenvalue)."""
    m = _double(model)
    evals, evecs = torch.linalg.eigh(classifier_hessian(m, *train))
    order = torch.argsort(evals, descending=True)
    evecs = evecs[:, order]
    theta = _theta(m)
    rows = []
    for x, y in random_batches(*train, batch_size, count, seed):
        g = _flat(grad(_clf_loss(m, _features(m, x.double()), y))(theta))
        proj = (evecs.T @ g).abs()
        rows.append({"rank": int(proj.argmax()) + 1, "cos_top": float(proj[0] / g.norm())})
    return pd.DataFrame(rows)


def xi_distribution(model: nn.Module, train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor], batch_size: int,
                    count: int, seed: int) -> pd.DataFrame:
    """POF-F2b: ξ*_B (Eq. 2, the official line search) for ``count`` train and test mini-batches."""
    m = _double(model)
    theta = _theta(m)
    rows = []
    for split, data in (("train", train), ("test", test)):
        for x, y in random_batches(*data, batch_size, count, seed + 1):
            res, _, gnorm = minibatch_line_search(m, F.cross_entropy, _features(m, x.double()), y, theta)
            rows.append({"split": split, "xi": float(res.step * gnorm), "rejected": bool(res.rejected)})
    return pd.DataFrame(rows)


def kde_peak(values: np.ndarray, log: bool = True) -> float:
    """Position of the maximum of a Gaussian KDE (on log10 values by default)."""
    from scipy.stats import gaussian_kde

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)] if log else v[np.isfinite(v)]
    z = np.log10(v) if log else v
    if len(z) < 3 or np.ptp(z) == 0:
        return float(np.median(v))
    grid = np.linspace(z.min(), z.max(), 2000)
    peak = grid[np.argmax(gaussian_kde(z)(grid))]
    return float(10 ** peak if log else peak)


def toy_tables(res: dict[str, pd.DataFrame], p: PoFToyParams, flat_tol: float = 0.1) -> dict[str, pd.DataFrame]:
    """Summaries: ΔL per layer (mean ± std), flat widths, alignment counts, ξ* peaks per seed."""
    f1c = mean_std(res["f1c"], ["method", "layer", "name"], ["delta_l", "lambda_1"])
    widths = mean_std(flat_width(res["f1d"], flat_tol), ["method", "eigenvector"], ["width"])
    counts = res["f2a"].groupby("rank").size().rename("count").reset_index()
    peaks = []
    for seed, g in res["f2b"].groupby("seed"):
        tr, te = (g.loc[(g["split"] == s) & ~g["rejected"], "xi"].to_numpy() for s in ("train", "test"))
        peaks.append({"seed": seed, "train_peak": kde_peak(tr), "test_peak": kde_peak(te),
                      "train_median": float(np.median(tr)), "test_median": float(np.median(te)),
                      "rejected_%": 100 * float(g["rejected"].mean())})
    peaks = pd.DataFrame(peaks)
    peaks["peak_ratio"] = peaks["test_peak"] / peaks["train_peak"]
    peaks["median_ratio"] = peaks["test_median"] / peaks["train_median"]
    return {"runs": mean_std(res["runs"], ["method", "epochs"], ["train_loss", "test_error"]), "f1c": f1c,
            "widths": widths, "f2a": counts, "f2b": peaks}


# ------------------------------------------------------------------------------------------------
# image pipeline

@notebook("pof_images")
@dataclasses.dataclass
class PoFImagesParams(Params):
    """Knobs of the image notebook (POF-T1, F4, F5, F6, X1, T2)."""

    dataset: str | None = None
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
        "smoke": dict(dataset="digits", model="cnn6", model_kwargs={"width": 0.25, "batch_norm": True}, seeds=[0],
                      batch_size=256, lr=0.05, milestones=[1], weight_decay=5e-4, augment="no-aug", cutout=0,
                      pretrain_epochs=1, post_epochs=[1, 2], rho=0.05, pof_lr=2e-3, search_batch_size=32,
                      gamma_max=2.0, finetune_epochs=1, finetune_lr=2e-3, num_minibatches=10, sgd_step_lr=2e-3),
        "default": dict(dataset="digits", model="cnn6", model_kwargs={"width": 0.25, "batch_norm": True},
                        seeds=[0, 1, 2], batch_size=128, lr=0.05, milestones=[6, 12, 16, 20], weight_decay=5e-4,
                        augment="no-aug", cutout=0, pretrain_epochs=20, post_epochs=[5, 10], rho=0.05, pof_lr=8e-5,
                        search_batch_size=32, gamma_max=2.0, finetune_epochs=5, finetune_lr=8e-5,
                        num_minibatches=400, sgd_step_lr=8e-5),
        # PoF Sec. 4.1 / REPRODUCTION_TARGETS: WRN-28-10, CIFAR-10, SAM 200 ep then PoF 10 / 50 ep.
        # pof_lr: the paper's text says 3e-5; the official code's schedule gives 0.1·0.2⁴ = 1.6e-4.
        "paper": dict(dataset="cifar10", model="wrn28_10_nobias", model_kwargs={}, seeds=[0, 1, 2], batch_size=256,
                      lr=0.1, milestones=[60, 120, 160, 200], weight_decay=5e-4, augment="4-crop-f", cutout=16,
                      pretrain_epochs=200, post_epochs=[10, 50], rho=0.05, pof_lr=3e-5, search_batch_size=32,
                      gamma_max=2.0, finetune_epochs=10, finetune_lr=1.6e-4, num_minibatches=400,
                      sgd_step_lr=1.6e-4),
    }


def image_configs(p: PoFImagesParams, seed: int) -> dict[str, TrainConfig]:
    """SGD and SAM for E + Δ₂ epochs (snapshots at E and E + Δ₁), PoF for Δ₂ from SAM@E, classifier fine-tune after PoF@Δ₁."""
    d1, d2 = min(p.post_epochs), max(p.post_epochs)
    E = p.pretrain_epochs
    rho = p.rho
    base = TrainConfig(dataset=p.dataset, model=p.model, model_kwargs=dict(p.model_kwargs), batch_size=p.batch_size,
                       epochs=E + d2, lr=p.lr, momentum=0.9, nesterov=True, weight_decay=p.weight_decay,
                       schedule="multistep", milestones=tuple(p.milestones), lr_factor=0.2, augment=p.augment,
                       cutout=p.cutout, seed=seed, snapshot_epochs=(E, E + d1))
    sam = base.replace(rule="sam", rule_kwargs={"rho": rho})
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
        runs += [{"seed": seed, "method": name, **_errors(r.summary)} for name, r in results.items()]
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
    m = _double(model)
    theta = _theta(m)
    out = []
    for x, y in batches:
        loss = _clf_loss(m, _features(m, x.double()), y)
        g = grad(loss)(theta)
        _, hg = jvp(grad(loss), (theta,), (g,))
        gf, hgf = _flat(g), _flat(hg)
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
    pof = _double(models["PoF"])
    theta = _theta(pof)
    for x, y in random_batches(*train, p.search_batch_size, p.num_minibatches, seed + 3):
        res, _, gnorm = minibatch_line_search(pof, F.cross_entropy, _features(pof, x.double(), train_bn=True), y, theta)
        if not bool(res.rejected):
            rows.append({"method": "PoF (γ = 2)", "size": 2.0 * float(res.step * gnorm)})
    for name, scale in (("SAM", None), ("SGD", p.sgd_step_lr)):
        m = _double(models[name]).train()
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


def measure_images(p: PoFImagesParams) -> dict[str, pd.DataFrame]:
    """F5 (SAM@E vs PoF@E+Δ₁, train and test mini-batches) and F6 (perturbation sizes) for every seed,
    cached per seed in the store so that a rebuild reads them back without the checkpoints."""
    store = Store(p.profile)
    E, d1 = p.pretrain_epochs, min(p.post_epochs)
    f5, f6 = [], []
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
            return {"f5": rows, "f6": json.loads(perturbation_sizes(models, data["train"], p, seed).to_json(orient="records"))}

        spec = {"figure": "pof_images", "seed": seed, "runs": sorted(c.key() for c in cfgs.values()), **_knobs(p)}
        got = store.cached("pof_measures", spec, measure)
        f5.append(pd.DataFrame(got["f5"]).assign(seed=seed))
        f6.append(pd.DataFrame(got["f6"]).assign(seed=seed))
    return {"f5": pd.concat(f5, ignore_index=True), "f6": pd.concat(f6, ignore_index=True)}


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
                     "paper's s/epoch (WRN-28-10, 16 A100)": paper.get(method, (None, None))[0],
                     "paper's ratio": paper.get(method, (None, None))[1]})
    return pd.DataFrame(rows), best
