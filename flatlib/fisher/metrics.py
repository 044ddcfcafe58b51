"""Fisher-determinant metric γ̂ and the three comparison metrics of FIM Sec. 7.1 / App. D.

All weight-space metrics come from one per-example gradient matrix J_t (N′×P) per random subset
S_t of the training set, through its singular values (float64), i.e. the spectrum of the Gram
matrix G_t = J_t J_tᵀ (N′×N′):

- γ̂ (FIM Eq. 5-6): (1/T) Σ_t ln|G_t|, G_t = ξ^t(w) = J_w[L̃(S_t,w)] J_w[L̃(S_t,w)]ᵀ. The official
  InfoMCR code reports Σ log σ_i(J_t) = ½ ln|G_t| instead: ``convention="official"``.
- Fisher on the subset (FIM Eq. 2, 5): F_t = (1/N′) J_tᵀJ_t, which equals the Hessian at a local
  minimum (FIM Eq. 1), so
  spectral radius ρ(∇²L) ≈ λmax(F_t) = λmax(G_t) / N′ = ‖J_w[L̃(S_t, w)]‖²₂ / N′ (App. D, up to the
  constant 1/N′ the paper drops),
  trace tr(F_t) = tr(G_t) / N′ = ‖J_t‖²_F / N′.
- Frobenius (ICLR draft, App. D): ‖∇²L‖²_F ≈ (1/N′) Σ_{x∈S_t} ‖g_x g_xᵀ‖²_F = (1/N′) Σ_x ‖g_x‖⁴, with
  g_x = ∇_w ℓ(f_w(x), ỹ) the rows of J_t (``"frobenius"``, the paper's metric). The Gram variant
  ‖F_t‖²_F = ‖G_t‖²_F / N′² = Σσ⁴/N′² adds the cross terms (g_i·g_j)² of the subset
  (``"frobenius_gram"``, kept for comparison; it is not the paper's quantity).
- robustness (Sokolić et al. 2017; FIM Sec. 7.1): (1/N) Σ_x ‖J_x[f_w(x)]‖²₂, the squared *spectral*
  norm of the input Jacobian of the network's softmax output f_w(x) (the paper's f_w ends in a
  softmax, FIM Sec. 3), averaged over the same subsets.

As in the paper, labels are hard (ỹ = argmax of soft targets, FIM Sec. 3.1 / 5.3). Every metric
is averaged over the same T subsets and returned as an ``Estimate`` (mean ± standard error).
"""
from __future__ import annotations

import warnings
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jacrev, vmap

from flatlib._checks import finite_floats
from flatlib.estimate import Estimate
from flatlib.fisher.jacobian import BN_CHUNK, BNMode, bn_mode_context, detached_state, fisher_bn_mode, per_sample_grads

Convention = Literal["paper", "official"]
Sampling = Literal["random", "sequential"]
Output = Literal["logits", "probs"]
Norm = Literal["spectral", "frobenius"]

WEIGHT_METRICS = ("log_det", "frobenius", "spectral_radius", "fisher_trace", "frobenius_gram")


def subsets(n: int, n_prime: int, num_subsets: int, seed: int = 0, sampling: Sampling = "random") -> list[torch.Tensor]:
    """Index sets S_t: ``"random"`` = T i.i.d. draws of N′ distinct points (paper);
    ``"sequential"`` = consecutive blocks 0..N′-1, N′..2N′-1, … (official code: the first T·N′ images in order)."""
    if n_prime > n:
        raise ValueError(f"n_prime={n_prime} exceeds the {n} available examples")
    if sampling == "sequential":
        if n_prime * num_subsets > n:
            raise ValueError(f"sequential sampling needs n_prime*num_subsets={n_prime * num_subsets} <= {n} examples")
        return [torch.arange(t * n_prime, (t + 1) * n_prime) for t in range(num_subsets)]
    if sampling != "random":
        raise ValueError(f"sampling must be 'random' or 'sequential', got {sampling!r}")
    gen = torch.Generator().manual_seed(seed)
    return [torch.randperm(n, generator=gen)[:n_prime] for _ in range(num_subsets)]


def hard_labels(y: torch.Tensor) -> torch.Tensor:
    """ỹ: soft targets (N, C) → argmax class; int labels unchanged."""
    return y.argmax(dim=1) if y.is_floating_point() else y


def normalized_ce(logit_norm: float | None):
    """Cross-entropy, optionally on logits rescaled per example to Euclidean norm ``logit_norm``.

    FIM Sec. 7.2.3 / Table 3 normalise the outputs before γ̂; the official code divides the logits
    by 0.04·‖z‖, i.e. rescales them to norm 25.
    """
    if logit_norm is None:
        return F.cross_entropy

    def loss(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logit_norm * z / z.norm(dim=1, keepdim=True), y)

    return loss


def singular_values(j: torch.Tensor, block: int = 2**16) -> torch.Tensor:
    """Singular values of J (N′×P) in float64, descending, without a float64 copy of all of J.

    Blocked (TS)QR of Jᵀ: R ← qr([R; J_blockᵀ]).R over column blocks, then σ(J) = σ(R). Backward
    stable, so σ is accurate down to ~eps·σmax (eigenvalues of J Jᵀ would lose half the digits:
    Gram-based ln det fails on the tiny gradients of confidently classified examples).
    """
    r = torch.zeros(0, j.shape[0], dtype=torch.float64, device=j.device)
    for k in range(0, j.shape[1], block):
        r = torch.linalg.qr(torch.cat([r, j[:, k:k + block].double().T]), mode="r").R
    return torch.linalg.svdvals(r)


class SingularGramWarning(UserWarning):
    """J Jᵀ of a subset is singular, so its ln det is −∞ (callers that report −∞ themselves may filter this)."""


def log_det_from_singular_values(s: torch.Tensor, label: str = "") -> float:
    """ln|J Jᵀ| = 2 Σ ln σ_i for the N′ singular values ``s`` (descending) of J.

    J Jᵀ is singular when rank J < N′, numerically when σmin ≤ N′·eps·σmax (the ``matrix_rank``
    rule) or σmax = 0; then −∞ is returned with a warning naming the subset, never a clipped
    finite number. (Rows that are dependent only up to float32 rounding are not detected.)
    """
    tol = len(s) * torch.finfo(torch.float64).eps * s[0]
    if not bool(s[0] > 0) or not bool(s[-1] > tol):
        warnings.warn(f"singular Fisher Gram matrix J Jᵀ{' on ' + label if label else ''} "
                      f"(σmin={s[-1].item():.3e}, σmax={s[0].item():.3e}): ln det = -inf", SingularGramWarning,
                      stacklevel=3)
        return float("-inf")
    return float(2 * s.log().sum())


def subset_metrics(j: torch.Tensor, label: str = "", convention: Convention = "paper") -> dict[str, float]:
    """The weight-space metrics of one subset from J (N′×P) and its singular values σ.

    With G = J Jᵀ (eigenvalues σ²) and F = JᵀJ/N′: γ̂ term ln|G| = 2Σ ln σ (FIM Eq. 5-6),
    λmax(F) = σmax²/N′, tr F = Σσ²/N′; Frobenius (App. D) (1/N′) Σ_x ‖g_x‖⁴ over the rows g_x of J;
    its Gram variant ‖F‖²_F = Σσ⁴/N′² (see module docstring). All in float64.
    """
    if convention not in ("paper", "official"):
        raise ValueError(f"convention must be 'paper' or 'official', got {convention!r}")
    n = j.shape[0]
    s = singular_values(j)
    log_det = log_det_from_singular_values(s, label)
    row_sq = torch.stack([j[i].double().pow(2).sum() for i in range(n)])  # ‖g_x‖², without a float64 copy of J
    return {
        "log_det": log_det if convention == "paper" else 0.5 * log_det,
        "frobenius": float(row_sq.pow(2).mean()),
        "spectral_radius": float(s[0] ** 2) / n,
        "fisher_trace": float((s**2).sum()) / n,
        "frobenius_gram": float((s**4).sum()) / n**2,
    }


def input_jacobians(model: nn.Module, x: torch.Tensor, *, bn_mode: BNMode = "eval", output: Output = "probs",
                    chunk_size: int = 32) -> torch.Tensor:
    """J_x f_w(x_i) for each example, shape (N, K, D) with D the flattened input size: ``vmap`` over
    examples of ``jacrev`` w.r.t. the input.

    ``output="probs"`` differentiates the softmax output (the paper's f_w, FIM Sec. 3), ``"logits"``
    the logits. With ``bn_mode="train-chunks"`` the batch statistics of each 10-example chunk are
    used and only the diagonal blocks ∂f(x_i)/∂x_i are kept.
    """
    def head(z: torch.Tensor) -> torch.Tensor:
        return z.softmax(dim=-1) if output == "probs" else z

    with bn_mode_context(model, bn_mode):
        w, rest = detached_state(model, [n for n, _ in model.named_parameters()], None)
        state = {**w, **rest}
        if bn_mode == "eval":
            def f_one(xi: torch.Tensor) -> torch.Tensor:
                return head(functional_call(model, state, (xi.unsqueeze(0),)))[0]

            jac = vmap(jacrev(f_one))
            out = [jac(x[i:i + chunk_size]).flatten(2) for i in range(0, len(x), chunk_size)]
        else:
            def f_chunk(xc: torch.Tensor, st: dict[str, torch.Tensor]) -> torch.Tensor:
                return head(functional_call(model, st, (xc,)))  # state passed in: BN updates its buffers

            out = []
            for i in range(0, len(x), BN_CHUNK):
                xc = x[i:i + BN_CHUNK]
                j = jacrev(f_chunk)(xc, state)  # (n, K, n, *input_shape)
                idx = torch.arange(len(xc))
                out.append(j[idx, :, idx].flatten(2))
    return torch.cat(out)


def input_jacobian_sq_norms(model: nn.Module, x: torch.Tensor, *, bn_mode: BNMode = "eval",
                            output: Output = "probs", norm: Norm = "spectral", chunk_size: int = 32) -> torch.Tensor:
    """‖J_x f_w(x_i)‖² for each example (float64): the squared spectral norm (largest singular value
    of the K×D Jacobian; FIM Sec. 7.1's ‖·‖₂) or, with ``norm="frobenius"``, the squared Frobenius
    norm. ``output``, ``bn_mode``: as ``input_jacobians``."""
    if norm not in ("spectral", "frobenius"):
        raise ValueError(f"norm must be 'spectral' or 'frobenius', got {norm!r}")
    j = input_jacobians(model, x, bn_mode=bn_mode, output=output, chunk_size=chunk_size).double()
    if norm == "frobenius":
        return j.pow(2).sum((1, 2))
    return torch.linalg.matrix_norm(j, ord=2).pow(2)


@finite_floats
def fim_metrics(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, n_prime: int = 100,
                num_subsets: int = 100, seed: int = 0, logit_norm: float | None = None,
                bn_mode: BNMode = "eval", chunk_size: int | None = None, convention: Convention = "paper",
                sampling: Sampling = "random", robustness_output: Output = "probs",
                metrics: tuple[str, ...] = (*WEIGHT_METRICS, "robustness")) -> dict[str, Estimate]:
    """γ̂ (``"log_det"``), ``"frobenius"`` (App. D), ``"spectral_radius"``, ``"fisher_trace"``,
    ``"frobenius_gram"`` and ``"robustness"`` over the same T subsets of N′ examples, in one pass
    (one J_t per subset); definitions in the module docstring.

    ``logit_norm`` (e.g. 25.0, FIM Table 3) applies to the weight-space metrics; robustness uses
    the network's own output, the softmax (``robustness_output="probs"``, FIM Sec. 7.1) unless
    ``"logits"`` is asked for. Returns ``{name: Estimate}`` for the requested ``metrics``.
    """
    fisher_bn_mode(bn_mode)
    unknown = set(metrics) - {*WEIGHT_METRICS, "robustness"}
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}")
    y = hard_labels(y)
    loss_fn = normalized_ce(logit_norm)
    need_j = any(m in WEIGHT_METRICS for m in metrics)
    samples: dict[str, list[float]] = {m: [] for m in metrics}
    for t, idx in enumerate(subsets(len(x), n_prime, num_subsets, seed, sampling)):
        idx = idx.to(x.device)
        if need_j:
            j = per_sample_grads(model, x[idx], y[idx], bn_mode=bn_mode, loss_fn=loss_fn, chunk_size=chunk_size)
            values = subset_metrics(j, f"subset {t}", convention)
            for m in WEIGHT_METRICS:
                if m in samples:
                    samples[m].append(values[m])
        if "robustness" in samples:
            r = input_jacobian_sq_norms(model, x[idx], bn_mode=bn_mode, output=robustness_output)
            samples["robustness"].append(float(r.double().mean()))
    return {m: Estimate.from_samples(s) for m, s in samples.items()}


@finite_floats
def fisher_log_det(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, n_prime: int = 100,
                   num_subsets: int = 100, seed: int = 0, logit_norm: float | None = None,
                   bn_mode: BNMode = "eval", chunk_size: int | None = None, convention: Convention = "paper",
                   sampling: Sampling = "random") -> Estimate:
    """γ̂(w) = (1/T) Σ_t ln|J_t J_tᵀ| over T subsets of N′ training points (FIM Eq. 6), in float64.

    ``convention="paper"``: ln det(J Jᵀ) as in Eq. 5-6. ``convention="official"``: Σ log σ_i(J_t) =
    ½ ln det(J Jᵀ), the value the InfoMCR code reports (its Table 3 scale). A singular subset
    contributes −∞ with a warning. Use ``logit_norm=25.0, bn_mode="train-chunks",
    sampling="sequential", convention="official"`` for the official evaluation protocol.
    """
    return fim_metrics(model, x, y, n_prime=n_prime, num_subsets=num_subsets, seed=seed, logit_norm=logit_norm,
                       bn_mode=bn_mode, chunk_size=chunk_size, convention=convention, sampling=sampling,
                       metrics=("log_det",))["log_det"]


def fisher_frobenius(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kwargs) -> Estimate:
    """‖∇²L‖²_F ≈ (1/T) Σ_t (1/N′) Σ_{x∈S_t} ‖g_x‖⁴ (ICLR draft App. D); keywords as ``fim_metrics``."""
    return fim_metrics(model, x, y, metrics=("frobenius",), **kwargs)["frobenius"]


def fisher_spectral_radius(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kwargs) -> Estimate:
    """ρ(∇²L) ≈ (1/T) Σ_t λmax(J_t J_tᵀ) / N′ = ‖J_w L̃(S_t)‖²₂ / N′ (FIM Sec. 7.1); keywords as ``fim_metrics``."""
    return fim_metrics(model, x, y, metrics=("spectral_radius",), **kwargs)["spectral_radius"]


def fisher_trace(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kwargs) -> Estimate:
    """tr(F) = (1/T) Σ_t ‖J_t‖²_F / N′; keywords as ``fim_metrics``."""
    return fim_metrics(model, x, y, metrics=("fisher_trace",), **kwargs)["fisher_trace"]


def robustness(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kwargs) -> Estimate:
    """(1/N′) Σ_{x∈S_t} ‖J_x f_w(x)‖²₂ (squared spectral norm, softmax output) averaged over the subsets
    (FIM Sec. 7.1); keywords as ``fim_metrics``."""
    return fim_metrics(model, x, y, metrics=("robustness",), **kwargs)["robustness"]
