"""Measurements shared by the two PoF notebooks (``pof_toy``, ``pof_images``).

All classifier-space measurements use fixed features and the classifier block of the model
(``model.classifier``), as PoF defines θ; they run on float64 copies, so the trained model is never touched.
Also here: the continuous 1-D searches behind POF-F1c/F1d (a grid brackets, scipy refines), the
relative weight change ‖Δw‖/‖w‖ behind the "acted" gates, and compact per-image correctness strings.
"""
from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.optimize import brentq, minimize_scalar
from torch import Tensor, nn
from torch.func import functional_call

from flatlib.train.config import TrainConfig
from flatlib.curvature import unflatten
from flatlib.data import split_tensors as data_split_tensors
from flatlib.train.engine import dataset_for
from flatlib.params import Params
from flatlib._torch import bn_stats_frozen


def split_tensors(cfg: TrainConfig, split: str) -> tuple[Tensor, Tensor]:
    """The run's whole split, preprocessed exactly as the engine's loaders do (``flatlib.data.split_tensors``)."""
    return data_split_tensors(dataset_for(cfg), split)


def random_batches(x: Tensor, y: Tensor, size: int, count: int, seed: int) -> list[tuple[Tensor, Tensor]]:
    """``count`` mini-batches of ``size`` drawn without replacement within a batch (independently across batches)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        idx = torch.randperm(len(y), generator=g)[:size]
        out.append((x[idx], y[idx]))
    return out


def features(model: nn.Module, x: Tensor, train_bn: bool = False) -> Tensor:
    """Features in float64 (eval mode, or train-mode batch statistics without touching BN buffers)."""
    was = model.training
    model.train(train_bn)
    try:
        with torch.no_grad(), bn_stats_frozen(model):
            return model.features(x).double()
    finally:
        model.train(was)


def theta(model: nn.Module) -> dict[str, Tensor]:
    """The classifier's parameters θ (detached, float64)."""
    return {n: p.detach().double() for n, p in model.classifier.named_parameters()}


def clf_loss(model: nn.Module, f: Tensor, y: Tensor):
    """θ ↦ L_B(θ) on fixed features (``model`` is a float64 copy)."""
    return lambda th: F.cross_entropy(functional_call(model.classifier, th, (f,)), y)


def flat(d: dict[str, Tensor]) -> Tensor:
    return torch.cat([v.reshape(-1) for v in d.values()])


def double(model: nn.Module) -> nn.Module:
    """A float64 copy (measurements in float64 never touch the trained model)."""
    return copy.deepcopy(model).double().eval()


def classifier_hessian(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Exact (P, P) Hessian of the mean loss w.r.t. the classifier parameters on fixed eval-mode features (float64)."""
    m = double(model)
    f = features(m, x.double() if x.is_floating_point() else x)
    th = theta(m)
    loss = clf_loss(m, f, y)
    return torch.autograd.functional.hessian(lambda v: loss(unflatten(v, th)), flat(th))


def relative_change(before: nn.Module, after: nn.Module) -> float:
    """‖w_after − w_before‖ / ‖w_before‖ over all parameters of two modules of the same architecture."""
    a = torch.cat([p.detach().double().reshape(-1) for p in before.parameters()])
    b = torch.cat([p.detach().double().reshape(-1) for p in after.parameters()])
    return float((b - a).norm() / a.norm())


def correct_bits(model: nn.Module, x: Tensor, y: Tensor) -> str:
    """Per-test-point correctness (eval mode) as a hex string, one bit per point (McNemar needs the pairs)."""
    with torch.no_grad():
        ok = (model.eval()(x).argmax(1) == y).numpy()
    return np.packbits(ok.astype(np.uint8)).tobytes().hex()


def bits_to_bool(hexstr: str, n: int) -> np.ndarray:
    """Inverse of ``correct_bits`` for ``n`` test points."""
    return np.unpackbits(np.frombuffer(bytes.fromhex(hexstr), dtype=np.uint8))[:n].astype(bool)


# ------------------------------------------------------------------------------------------------
# continuous 1-D searches (POF-F1c, F1d): a grid brackets, scipy refines, so no grid ties decide anything

def minimum_along(f: Callable[[float], float], alphas: np.ndarray, values: np.ndarray,
                  xatol: float) -> tuple[float, float]:
    """(α*, f(α*)): the minimum of f over [alphas[0], alphas[-1]].

    The grid's argmin brackets the global minimum between its neighbours; ``minimize_scalar``
    (bounded Brent) refines it to ``xatol`` in α. The refined value never exceeds the grid's minimum.
    """
    a, v = np.asarray(alphas, dtype=float), np.asarray(values, dtype=float)
    i = int(np.argmin(v))
    lo, hi = a[max(i - 1, 0)], a[min(i + 1, len(a) - 1)]
    best = (float(a[i]), float(v[i]))
    if hi > lo:
        r = minimize_scalar(f, bounds=(lo, hi), method="bounded", options={"xatol": xatol})
        if float(r.fun) < best[1]:
            best = (float(r.x), float(r.fun))
    return best


def flat_interval(f: Callable[[float], float], alphas: np.ndarray, values: np.ndarray, level: float,
                  xtol: float) -> tuple[float, float, bool]:
    """(α₋, α₊, capped): the interval around α = 0 on which f stays ≤ ``level``, its ends found by
    ``brentq`` (to ``xtol``) in the grid cell where f first crosses ``level``; ``capped`` when f stays
    below ``level`` up to the grid's end on a side (that end is returned)."""
    a, v = np.asarray(alphas, dtype=float), np.asarray(values, dtype=float)
    i0 = int(np.argmin(np.abs(a)))
    ends, capped = [], False
    for step in (-1, +1):
        i = i0
        while 0 <= i + step < len(a) and v[i + step] <= level:
            i += step
        if not 0 <= i + step < len(a):
            ends.append(float(a[i]))
            capped = True
        else:
            lo, hi = sorted((a[i], a[i + step]))
            ends.append(float(brentq(lambda t: f(t) - level, lo, hi, xtol=xtol)))
    return ends[0], ends[1], capped


def knobs(p: Params) -> dict:
    """The parameters that determine one seed's measurements (everything but profile and seeds)."""
    return {k: v for k, v in p.as_dict().items() if k not in ("profile", "seeds")}


def errors(summary: dict) -> dict:
    return {"train_loss": summary["train_loss"], "train_error": summary["train_error"],
            "test_error": summary["test_error"], "n_test": summary["n_test"]}


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


# ------------------------------------------------------------------------------------------------
# compact storage of long per-mini-batch columns (the store keeps small JSON)

def _b64(a: np.ndarray) -> str:
    import base64

    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def _unb64(s: str, dtype: str) -> np.ndarray:
    import base64

    return np.frombuffer(base64.b64decode(s), dtype=dtype)


def pack_frame(frame: pd.DataFrame) -> dict:
    """A frame of long numeric/boolean/label columns as compact JSON: floats as little-endian float32 (ample for
    KDE peaks and histograms), integers as int32, booleans as bits, labels as int8 codes; all base64."""
    cols = {}
    for name in frame.columns:
        v = frame[name].to_numpy()
        if v.dtype == bool:
            cols[name] = {"kind": "bool", "b64": _b64(np.packbits(v.astype(np.uint8)))}
        elif v.dtype.kind in "iu":
            cols[name] = {"kind": "int32", "b64": _b64(v.astype("<i4"))}
        elif v.dtype.kind == "f":
            cols[name] = {"kind": "float32", "b64": _b64(v.astype("<f4"))}
        else:
            cats, codes = np.unique(v.astype(str), return_inverse=True)
            cols[name] = {"kind": "category", "categories": [str(c) for c in cats], "b64": _b64(codes.astype("<i1"))}
    return {"n": len(frame), "columns": cols}


def unpack_frame(packed: dict) -> pd.DataFrame:
    """Inverse of ``pack_frame`` (floats come back as float64 of the stored float32 values)."""
    n, out = packed["n"], {}
    for name, c in packed["columns"].items():
        if c["kind"] == "bool":
            out[name] = np.unpackbits(_unb64(c["b64"], "u1"))[:n].astype(bool)
        elif c["kind"] == "int32":
            out[name] = _unb64(c["b64"], "<i4").astype(np.int64)
        elif c["kind"] == "float32":
            out[name] = _unb64(c["b64"], "<f4").astype(np.float64)
        else:
            out[name] = np.asarray(c["categories"], dtype=object)[_unb64(c["b64"], "<i1")]
    return pd.DataFrame(out)
