"""The Fisher-determinant regularizer (FIM Sec. 6, Algorithm 1) as a training update rule.

For a batch B split into M equal sub-batches B_i, with g_i = ∇L(B_i, w) held constant,

    R_α(w) = (1/M) Σ_i [L(B_i, w) − L(B_i, w − α g_i)] ≈ (α/M) Σ_i ‖g_i‖²     (FIM Eq. 7)

and each step descends L(B, w) + β R_α(w). R_α penalises divergent sub-batch gradients, a
first-order surrogate of ln|I_B(w)|. Defaults α = 1e-4, M = 8, β = 10 (paper and official code).

Implementation (torch.func, no module state touched except through the optimizer step):
  pass 1: g_i and L(B_i, w) for all i in ONE ``vmap`` over sub-batches of ``grad_and_value``;
  pass 2: ∇L(B_i, w − α g_i) in ONE ``vmap`` over (stacked perturbed parameters, sub-batch) pairs.
First-order gradient (paper, official code): ∇R = (1/M) Σ_i [g_i − ∇L(B_i, w − α g_i)].
To O(α²) this equals α (1/M) Σ_i H_i g_i; ``gradient="hvp"`` computes that instead (pass 2 becomes
one vmapped forward-over-reverse HVP per sub-batch), because the difference of two gradients that
agree to ~α·λ relative is lost below TF32/bf16 resolution and the HVP has no such cancellation.
``first_order=False`` differentiates R exactly through g_i (double backward). For models with
train-mode BatchNorm this variant loops over sub-batches: vmap's double backward through batched
train-mode BN gives a wrong gradient (torch 2.14; caught by the autograd-loop comparison in the tests).

∇L(B, w): with equal sub-batches and no batch coupling, (1/M) Σ g_i = ∇L(B, w) exactly and is
reused (``reuse_mean_grad``). Train-mode BatchNorm couples the examples of a batch, so by
default BN models get a separate full-batch pass ``ctx.loss(x, y)`` as in the official code
(3 passes instead of 2; BN running statistics updated by that pass exactly as in plain
training). ``reuse_mean_grad=True`` forces the 2-pass "ghost BN" variant: the plain gradient uses
per-sub-batch BN statistics and the running statistics are updated with the average over
sub-batches of their per-sub-batch updates. BN inside vmap: every sub-batch gets its own stacked
copy of the buffers, so running-stat updates are batched like the activations; the copies of the
perturbed pass are discarded (the perturbed weights are not the model).

Layout: the sub-batch passes run on contiguous copies of the weights and inputs (vmap cannot
clone channels_last tensors on CUDA); the update is copied back in each parameter's own layout.

Precision: α g_i is ~1e-4 of the weights, below bf16 resolution, so the sub-batch passes run in
the parameters' dtype with autocast disabled (TF32 convolutions, if enabled, also blur it).

Non-finite contract: if L(B, w) or R_α is NaN/Inf the gradient handed to the optimizer is zero
(so no NaN reaches the weights, the momentum or, with ``reuse_mean_grad``, the BN statistics) and
the non-finite objective L + βR is returned, so the engine's finiteness check stops the run. The
test is a device-side select, not a host read: the step makes no host synchronisation. (The
optimizer still steps, with a zero gradient: weight decay and momentum move the weights once,
finitely; the engine never saves them.)
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.func import functional_call, grad, grad_and_value, jvp, vmap

from flatlib._checks import finite_floats
from flatlib._torch import bn_stats_frozen
from flatlib.train.rules.base import StepContext, UpdateRule

Tree = dict[str, torch.Tensor]
GRADIENTS = ("difference", "hvp")
Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _train_bn_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]


def _stacked_buffers(model: nn.Module, m: int) -> Tree:
    """One private copy of every buffer per sub-batch, stacked on dim 0."""
    return {n: b.detach().unsqueeze(0).expand(m, *b.shape).clone() for n, b in model.named_buffers()}


def _lane(tree, i: int):
    return {k: v[i] for k, v in tree.items()} if isinstance(tree, dict) else tree[i]


def _stack(items: list):
    if isinstance(items[0], dict):
        return {k: torch.stack([it[k] for it in items]) for k in items[0]}
    return torch.stack(items)


def map_subbatches(fn: Callable, in_dims: tuple[int | None, ...], *args, batched: bool = True):
    """Apply ``fn`` per sub-batch: ``vmap`` when ``batched``, else a Python loop (same results).

    Arguments with in_dim 0 are stacked per sub-batch (dicts of tensors or tensors; at least one
    tensor), None are shared.
    """
    if batched:
        return vmap(fn, in_dims=in_dims, randomness="different")(*args)
    m = next(len(a) for a, d in zip(args, in_dims) if d == 0 and torch.is_tensor(a))
    outs = [fn(*[_lane(a, i) if d == 0 else a for a, d in zip(args, in_dims)]) for i in range(m)]
    if isinstance(outs[0], tuple):
        return tuple(_stack([o[k] for o in outs]) for k in range(len(outs[0])))
    return _stack(outs)


class _SubBatchLoss:
    """L(B_i, w) as a pure function of (trainable params, buffers, x_i, y_i) via ``functional_call``."""

    def __init__(self, model: nn.Module, criterion: Criterion, names: list[str]):
        self.model, self.criterion = model, criterion
        self.frozen = {n: p.detach().contiguous() for n, p in model.named_parameters() if n not in set(names)}

    def __call__(self, params: Tree, buffers: Tree, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.criterion(functional_call(self.model, {**params, **self.frozen, **buffers}, (x,)), y)


def _subbatch_hvp(sub_loss: _SubBatchLoss) -> Callable:
    """(params, g_i, buffers, x_i, y_i) ↦ H_i g_i, the Hessian of L(B_i, ·) at params along g_i (forward-over-reverse)."""
    def hvp(params: Tree, gi: Tree, buffers: Tree, x: torch.Tensor, y: torch.Tensor) -> Tree:
        return jvp(lambda p: grad(sub_loss)(p, buffers, x, y), (params,), (gi,))[1]
    return hvp


def _split(t: torch.Tensor, m: int) -> torch.Tensor:
    if len(t) % m:
        raise ValueError(f"batch of {len(t)} cannot be split into {m} equal sub-batches")
    return t.reshape(m, len(t) // m, *t.shape[1:])


def fisher_regularizer(model: nn.Module, criterion: Criterion, x: torch.Tensor, y: torch.Tensor, *,
                       alpha: float = 1e-4, num_subbatches: int = 8, batched: bool = True) -> torch.Tensor:
    """R_α(w) (FIM Eq. 7) on the batch (x, y), without side effects (BN updates go to copies)."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    loss = _SubBatchLoss(model, criterion, names)
    params = {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    xs, ys = _split(x.contiguous(), num_subbatches), _split(y, num_subbatches)
    g, l1 = map_subbatches(grad_and_value(loss), (None, 0, 0, 0), params,
                           _stacked_buffers(model, num_subbatches), xs, ys, batched=batched)
    pert = {n: params[n] - alpha * g[n] for n in names}
    l2 = map_subbatches(loss, (0, 0, 0, 0), pert, _stacked_buffers(model, num_subbatches), xs, ys, batched=batched)
    return (l1 - l2).mean()


def fisher_gradients(model: nn.Module, criterion: Criterion, x: torch.Tensor, y: torch.Tensor, *,
                     alpha: float = 1e-4, num_subbatches: int = 8, batched: bool = True) -> tuple[Tree, Tree]:
    """(∇L(B, w), ∇R_α(w)) at the model's weights, without side effects: ∇R_α to first order as Algorithm 1
    takes it (no gradient through g_i), (1/M) Σ_i [g_i − ∇L(B_i, w − α g_i)], and ∇L(B, w) = (1/M) Σ_i g_i,
    exact for equal sub-batches without batch coupling (call it with BatchNorm in eval mode). Their norms
    tell how strongly β R_α pulls against the loss."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    loss = _SubBatchLoss(model, criterion, names)
    params = {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    xs, ys = _split(x.contiguous(), num_subbatches), _split(y, num_subbatches)
    g, _ = map_subbatches(grad_and_value(loss), (None, 0, 0, 0), params, _stacked_buffers(model, num_subbatches),
                          xs, ys, batched=batched)
    pert = {n: params[n] - alpha * g[n] for n in names}
    g2, _ = map_subbatches(grad_and_value(loss), (0, 0, 0, 0), pert, _stacked_buffers(model, num_subbatches), xs, ys,
                           batched=batched)
    return {n: g[n].mean(0) for n in names}, {n: (g[n] - g2[n]).mean(0) for n in names}


class FisherRule(UpdateRule):
    """FIM Algorithm 1: step on ∇[L(B, w) + β R_α(w)] (ICLR draft: clipped to global norm ``clip_tau``).

    A batch whose size is not a multiple of M (the epoch's short last batch) loses its remainder
    of fewer than M examples for that step. ``start_epoch``: plain steps (identical to ``StandardRule``) before it; the paper switches the
    regularizer on after the first lr drop (official code: epoch 60). ``batched=False`` replaces the
    vmaps by loops over sub-batches (reference implementation; fallback for models vmap cannot run).
    ``reuse_mean_grad``: None = reuse (1/M)Σg_i as ∇L(B, w) iff the model has no train-mode BatchNorm
    (where it is exact); see the module docstring. Per-step log: ``fisher_reg`` = R_α(w).
    ``gradient`` (first order only): ``"difference"`` is the paper's g_i − ∇L(B_i, w − α g_i);
    ``"hvp"`` is its O(α²)-equal form α H_i g_i by forward-over-reverse, which has no cancellation
    and so keeps its accuracy with TF32/bf16 matrix products (``tests/test_regularizer_precision.py``).
    """

    name = "fisher"
    # vmap's batched backward cannot clone channels_last activations on CUDA ("NYI: Tensor.clone(memory_format)
    # inside vmap", seen on an H100 with torch 2.11): the engine keeps this rule's model in NCHW
    channels_last = False

    @finite_floats
    def __init__(self, alpha: float = 1e-4, beta: float = 10.0, num_subbatches: int = 8, start_epoch: int = 0,
                 clip_tau: float | None = None, first_order: bool = True, batched: bool = True,
                 reuse_mean_grad: bool | None = None, gradient: str = "difference"):
        if num_subbatches < 1 or alpha <= 0 or beta < 0:
            raise ValueError("need num_subbatches >= 1, alpha > 0, beta >= 0")
        if gradient not in GRADIENTS:
            raise ValueError(f"gradient={gradient!r}; choose from: {', '.join(GRADIENTS)}")
        self.gradient = gradient
        self.alpha, self.beta, self.num_subbatches = alpha, beta, num_subbatches
        self.start_epoch, self.clip_tau, self.first_order = start_epoch, clip_tau, first_order
        self.batched, self.reuse_mean_grad = batched, reuse_mean_grad

    def _finish(self, ctx: StepContext) -> None:
        if self.clip_tau is not None:
            nn.utils.clip_grad_norm_(list(self.trainable(ctx.model)), self.clip_tau)
        ctx.optimizer.step()

    def step(self, ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        model = ctx.model
        if self.beta == 0 or ctx.epoch < self.start_epoch:
            ctx.optimizer.zero_grad(set_to_none=True)
            loss = ctx.loss(x, y)
            loss.backward()
            self._finish(ctx)
            return loss.detach()

        keep = len(x) - len(x) % self.num_subbatches  # a short last batch drops its < M remainder examples
        if keep == 0:
            raise ValueError(f"batch of {len(x)} is smaller than num_subbatches={self.num_subbatches}")
        x, y = x[:keep], y[:keep]
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        names = [n for n, _ in named]
        params = {n: p.detach().contiguous() for n, p in named}
        bn = _train_bn_modules(model)
        reuse = not bn if self.reuse_mean_grad is None else self.reuse_mean_grad
        m, a = self.num_subbatches, self.alpha
        sub_loss = _SubBatchLoss(model, ctx.criterion, names)
        xs, ys = _split(x.contiguous(), m), _split(y, m)
        bufs, bufs_pert = _stacked_buffers(model, m), _stacked_buffers(model, m)

        with torch.autocast(x.device.type, enabled=False):
            if self.first_order and self.gradient == "hvp":
                g, l1 = map_subbatches(grad_and_value(sub_loss), (None, 0, 0, 0), params, bufs, xs, ys,
                                       batched=self.batched)
                with bn_stats_frozen(model):  # batch statistics as in pass 1; the buffers are not touched
                    hg = map_subbatches(_subbatch_hvp(sub_loss), (None, 0, 0, 0, 0), params, g, bufs_pert, xs, ys,
                                        batched=self.batched)
                # R_α to second order, α‖g_i‖² − (α²/2) g_iᵀH_i g_i: no difference of two nearly equal losses
                gg = sum(g[n].flatten(1).pow(2).sum(1) for n in names)
                ghg = sum((g[n] * hg[n]).flatten(1).sum(1) for n in names)
                reg = (a * gg - 0.5 * a * a * ghg).mean()
                update = {n: self.beta * a * hg[n].mean(0) + (g[n].mean(0) if reuse else 0) for n in names}
            elif self.first_order:
                g, l1 = map_subbatches(grad_and_value(sub_loss), (None, 0, 0, 0), params, bufs, xs, ys,
                                       batched=self.batched)
                pert = {n: params[n] - a * g[n] for n in names}
                g2, l2 = map_subbatches(grad_and_value(sub_loss), (0, 0, 0, 0), pert, bufs_pert, xs, ys,
                                        batched=self.batched)
                reg = (l1 - l2).mean()
                update = {n: self.beta * (g[n] - g2[n]).mean(0) + (g[n].mean(0) if reuse else 0) for n in names}
            else:
                def objective(p: Tree, bufs: Tree, bufs_pert: Tree) -> tuple[torch.Tensor, tuple]:
                    def one(b: Tree, b2: Tree, xi: torch.Tensor, yi: torch.Tensor):
                        gi, li = grad_and_value(sub_loss)(p, b, xi, yi)
                        return li, sub_loss({n: p[n] - a * gi[n] for n in names}, b2, xi, yi)

                    l1, l2 = map_subbatches(one, (0, 0, 0, 0), bufs, bufs_pert, xs, ys,
                                            batched=self.batched and not bn)
                    r = (l1 - l2).mean()
                    obj = self.beta * r + (l1.mean() if reuse else 0)
                    return obj, (l1.detach(), r.detach())

                update, (l1, reg) = grad(objective, has_aux=True)(params, bufs, bufs_pert)  # buffers in: BN mutates them

        ctx.optimizer.zero_grad(set_to_none=True)
        loss = l1.mean() if reuse else ctx.loss(x, y)
        ctx.log("fisher_reg", reg)
        objective_value = (loss + self.beta * reg).detach()
        finite = torch.isfinite(objective_value)  # stays on the device: no host sync per step
        if reuse:
            self._update_bn_stats(bn, bufs, finite)
        else:
            loss.backward()
        zero = torch.zeros((), dtype=objective_value.dtype, device=objective_value.device)
        for n, p in named:
            u = update[n] if update[n].stride() == p.stride() else torch.empty_like(p).copy_(update[n])
            p.grad = torch.where(finite, u if p.grad is None else p.grad + u, zero)
        self._finish(ctx)
        return torch.where(finite, loss.detach(), objective_value)

    @staticmethod
    @torch.no_grad()
    def _update_bn_stats(bn: list[tuple[str, nn.Module]], lanes: Tree, finite: torch.Tensor) -> None:
        """Running stats ← average of the per-sub-batch updated copies (counters: any copy); kept when not ``finite``."""
        for prefix, mod in bn:
            for k in ("running_mean", "running_var", "num_batches_tracked"):
                buf = getattr(mod, k, None)
                if buf is not None:
                    stacked = lanes[f"{prefix}.{k}" if prefix else k]
                    buf.copy_(torch.where(finite, stacked.mean(0) if stacked.is_floating_point() else stacked[0], buf))
