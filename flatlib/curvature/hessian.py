"""The dataset Hessian of a network's loss as a matrix-free operator.

For the mean loss over ``N`` samples split into batches ``b`` of size ``n_b``,

.. math::
    L(θ) = \\sum_b \\frac{n_b}{N} ℓ_b(θ), \\qquad H = ∇^2 L = \\sum_b \\frac{n_b}{N} ∇^2 ℓ_b(θ),

which is exact for batches of unequal size. Hessian-vector products use Pearlmutter's
trick (Pearlmutter 1994, "Fast exact multiplication by the Hessian"), ``Hv = ∂/∂ε ∇L(θ+εv)``,
computed either forward-over-reverse (``torch.func.jvp`` of ``torch.func.grad``) or by
double backward (``autograd.grad`` of ``⟨∇L, v⟩``).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import grad, jvp, vmap

from flatlib._checks import finite_floats
from flatlib.curvature.functional import Data, FunctionalLoss, LossFn, ParamSpec, iterate_batches, unflatten
from flatlib.curvature.operator import LinearOperator
from flatlib.progress import progress_bar
from flatlib.torch_compat import load_jvp_decompositions_quietly

load_jvp_decompositions_quietly()

HVP_METHODS = ("forward-over-reverse", "double-backward", "forward-over-reverse-vmap")


class HessianOperator(LinearOperator):
    """``H + λI`` of the un-regularised mean loss over ``data``, w.r.t. the chosen parameters.

    The parameters are snapshotted (as cast copies) at construction; the model is never
    modified. ``weight_decay=λ`` adds ``λI``, the Hessian of ``λ/2 ‖θ‖²``.

    Args:
        model: network with the parameters (any ``nn.Module``).
        data: re-iterable of ``(x, y)`` batches, or a tensor pair ``(X, Y)`` (split by ``batch_size``).
        loss_fn: ``loss_fn(logits, y)`` with mean reduction; default cross-entropy.
        params: ``None``/``"all"``, a submodule name (``"classifier"``, ``"features.3"``) or a list of names.
        bn_mode: ``"eval"``: BN with running statistics; ``"train"`` (or ``"train-frozen-stats"``): with
            batch statistics, running statistics untouched. An unknown mode fails here, at construction.
        dtype: of the products (default: the model's parameters' dtype).
        method: ``"double-backward"`` (default: measured faster on CPU, and one gradient graph per
            batch serves every column of a matmat), ``"forward-over-reverse"`` (same result, one
            ``jvp`` per column) or ``"forward-over-reverse-vmap"`` (same result, all columns of a
            matmat in one ``vmap`` over tangents: batched probes share the forward).

    Example:
        >>> model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
        >>> X, Y = torch.randn(16, 3), torch.randint(0, 2, (16,))
        >>> H = HessianOperator(model, (X, Y), batch_size=5, dtype=torch.float64)
        >>> (H @ torch.ones(H.dim, dtype=torch.float64)).shape
        torch.Size([26])
    """

    @finite_floats
    def __init__(self, model: nn.Module, data: Data, *, loss_fn: LossFn | None = None,
                 params: ParamSpec = None, bn_mode: str = "eval", dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None, batch_size: int | None = None,
                 weight_decay: float = 0.0, method: str = "double-backward", progress: bool = False):
        if method not in HVP_METHODS:
            raise ValueError(f"method must be one of {HVP_METHODS}, got {method!r}")
        self.loss = FunctionalLoss(model, loss_fn=loss_fn, params=params, bn_mode=bn_mode,
                                   dtype=dtype, device=device)
        super().__init__(self.loss.dim, self.loss.dtype, self.loss.device)
        self.data, self.batch_size = data, batch_size
        self.weight_decay, self.method, self.progress = float(weight_decay), method, progress
        self.num_samples: int | None = None

    @property
    def param_names(self) -> list[str]:
        return self.loss.names

    def _matmat(self, M: Tensor) -> Tensor:
        theta = self.loss.theta
        V = [unflatten(M[:, j], theta) for j in range(M.shape[1])]
        out = torch.zeros_like(M)
        count = 0
        batch_hvp = {"forward-over-reverse": self._batch_hvp_fwd, "double-backward": self._batch_hvp_bwd,
                     "forward-over-reverse-vmap": self._batch_hvp_vmap}[self.method]
        with self.loss.modes():
            batches = progress_bar(iterate_batches(self.data, self.batch_size), self.progress, "HVP batches")
            for i, (x, y) in enumerate(batches):
                x, y = self.loss.batch(x, y, i)
                out += y.shape[0] * batch_hvp(x, y, V)
                count += y.shape[0]
        self.num_samples = count
        return out / count + self.weight_decay * M

    def _batch_hvp_fwd(self, x: Tensor, y: Tensor, V: list[dict[str, Tensor]]) -> Tensor:
        """Columns ``H_b v`` by forward-mode differentiation of the reverse-mode gradient."""
        grad_fn = grad(lambda th: self.loss(th, x, y))
        cols = [jvp(grad_fn, (self.loss.theta,), (v,))[1] for v in V]
        return torch.stack([torch.cat([c[n].reshape(-1) for n in self.loss.names]) for c in cols], dim=1)

    def _batch_hvp_vmap(self, x: Tensor, y: Tensor, V: list[dict[str, Tensor]]) -> Tensor:
        """All columns in one ``vmap`` over tangents of forward-over-reverse: the primal forward and
        backward run once (unbatched), only the tangent computations are batched."""
        grad_fn = grad(lambda th: self.loss(th, x, y))
        tangents = {n: torch.stack([v[n] for v in V]) for n in self.loss.names}
        cols = vmap(lambda v: jvp(grad_fn, (self.loss.theta,), (v,))[1])(tangents)
        return torch.cat([cols[n].reshape(len(V), -1) for n in self.loss.names], dim=1).T

    def _batch_hvp_bwd(self, x: Tensor, y: Tensor, V: list[dict[str, Tensor]]) -> Tensor:
        """Columns ``H_b v = ∇⟨∇ℓ_b, v⟩``, reusing one differentiable gradient graph for all columns."""
        with torch.enable_grad():
            leaves = {n: t.detach().requires_grad_() for n, t in self.loss.theta.items()}
            inputs = list(leaves.values())
            g = torch.autograd.grad(self.loss(leaves, x, y), inputs, create_graph=True, materialize_grads=True)
            # gradient entries that are constant in θ contribute zero rows to H
            live = [i for i, t in enumerate(g) if t.requires_grad]
            cols = [torch.autograd.grad([g[i] for i in live], inputs,
                                        grad_outputs=[list(v.values())[i] for i in live],
                                        retain_graph=j < len(V) - 1, allow_unused=True, materialize_grads=True)
                    for j, v in enumerate(V)]
        return torch.stack([torch.cat([t.reshape(-1) for t in c]) for c in cols], dim=1).detach()
