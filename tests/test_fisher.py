"""Tests for flatlib.fisher: per-example gradients, γ̂ and comparison metrics, Algorithm 1 update rule."""
from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cases import assert_untouched as assert_unchanged
from cases import snapshot
from flatlib.fisher import fim_metrics, fisher_log_det, per_sample_grads
from flatlib.fisher.metrics import subsets
from flatlib.train.rules import StandardRule, StepContext, build_rule
from flatlib.train.rules.fisher import FisherRule, fisher_regularizer

DT = torch.float64


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 4)).to(DT)


def cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(27, 4)).to(DT)
    with torch.no_grad():  # non-trivial running statistics and affine parameters
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
        model[1].weight.uniform_(0.5, 1.5)
        model[1].bias.uniform_(-0.2, 0.2)
    return model


def data(model: nn.Module, n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shape = (n, 6) if isinstance(model[0], nn.Linear) else (n, 2, 5, 5)
    return torch.randn(shape, generator=g, dtype=DT), torch.randint(0, 4, (n,), generator=g)


def loop_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn=F.cross_entropy) -> torch.Tensor:
    """Reference J: one autograd.grad call per example (model in eval mode, on a copy)."""
    model = copy.deepcopy(model).eval()
    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    for i in range(len(x)):
        loss = loss_fn(model(x[i:i + 1]), y[i:i + 1])
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]))
    return torch.stack(rows)


# --------------------------------------------------------------------------- per-example gradients

@pytest.mark.parametrize("build", [mlp, cnn])
def test_per_sample_grads_match_loop(build):
    model = build().train()
    x, y = data(model, 13)
    model.zero_grad()
    model(x).logsumexp(1).sum().backward()  # pre-existing .grad must survive untouched
    before = snapshot(model)
    j = per_sample_grads(model, x, y, chunk_size=5)
    assert_unchanged(model, before)
    assert j.shape == (13, sum(p.numel() for p in model.parameters()))
    torch.testing.assert_close(j, loop_grads(model, x, y), rtol=1e-10, atol=1e-12)


def test_per_sample_grads_soft_targets_param_subset_and_dtype():
    model = mlp()
    x, _ = data(model, 7)
    y = torch.softmax(torch.randn(7, 4, dtype=DT), 1)
    last = list(model[2].parameters())
    j = per_sample_grads(model, x, y, params=last)
    ref = loop_grads(model, x, y)[:, -sum(p.numel() for p in last):]
    torch.testing.assert_close(j, ref, rtol=1e-10, atol=1e-12)
    j32 = per_sample_grads(model.float(), x.float(), y.float(), params=["2.weight", "2.bias"], dtype=DT)
    assert j32.dtype == DT
    torch.testing.assert_close(j32, ref, rtol=1e-5, atol=1e-6)


def test_per_sample_grads_train_chunks_matches_chunk_jacobian():
    """Row i = ∂ℓ_i/∂w with BN batch statistics of i's 10-example chunk; running stats untouched."""
    model = cnn().eval()
    x, y = data(model, 23)
    before = snapshot(model)
    j = per_sample_grads(model, x, y, bn_mode="train-chunks")
    assert_unchanged(model, before)
    ref_model = copy.deepcopy(model).train()
    params = list(ref_model.parameters())
    rows = []
    for c in range(0, 23, 10):
        losses = F.cross_entropy(ref_model(x[c:c + 10]), y[c:c + 10], reduction="none")
        for l in losses:
            rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(l, params, retain_graph=True)]))
    torch.testing.assert_close(j, torch.stack(rows), rtol=1e-10, atol=1e-12)
    assert not torch.allclose(j, per_sample_grads(model, x, y))  # BN mode matters


# --------------------------------------------------------------------------- γ̂ and metrics

@pytest.mark.parametrize("logit_norm", [None, 25.0])
def test_fisher_log_det_matches_direct_float64(logit_norm):
    model = cnn()  # P = 3*2*9+3+3+3+27*4+4 = 175 > N' = 10: full-rank Gram
    x, y = data(model, 40)
    loss_fn = F.cross_entropy if logit_norm is None else (
        lambda z, t: F.cross_entropy(logit_norm * z / z.norm(dim=1, keepdim=True), t))
    direct, half = [], []
    for idx in subsets(40, 10, 3, seed=5):
        jt = loop_grads(model, x[idx], y[idx], loss_fn)
        direct.append(torch.linalg.slogdet(jt @ jt.T).logabsdet)
        half.append(torch.linalg.svdvals(jt).log().sum())
    est = fisher_log_det(model, x, y, n_prime=10, num_subsets=3, seed=5, logit_norm=logit_norm)
    assert est.n == 3
    assert est.value == pytest.approx(float(torch.stack(direct).mean()), rel=1e-9)
    assert est.stderr == pytest.approx(float(torch.stack(direct).std() / 3**0.5), rel=1e-6)
    off = fisher_log_det(model, x, y, n_prime=10, num_subsets=3, seed=5, logit_norm=logit_norm, convention="official")
    assert off.value == pytest.approx(float(torch.stack(half).mean()), rel=1e-9)


def test_fisher_log_det_singular_is_minus_inf_with_warning():
    model = cnn()
    x, y = data(model, 6)
    x, y = torch.cat([x, x[:1]]), torch.cat([y, y[:1]])  # duplicated example: two equal rows of J
    with pytest.warns(UserWarning, match="singular Fisher Gram matrix J Jᵀ on subset 0"):
        est = fisher_log_det(model, x, y, n_prime=7, num_subsets=1)
    assert est.value == float("-inf")
    tiny = nn.Linear(2, 2).to(DT)  # P = 6 < N' = 10: rank-deficient Gram
    xs, ys = torch.randn(10, 2, dtype=DT), torch.randint(0, 2, (10,))
    with pytest.warns(UserWarning, match="singular"):
        assert fisher_log_det(tiny, xs, ys, n_prime=10, num_subsets=2).value == float("-inf")


def test_fim_metrics_match_dense_fisher_and_have_no_side_effects():
    model = cnn().train()
    x, y = data(model, 20)
    before = snapshot(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = fim_metrics(model, x, y, n_prime=6, num_subsets=2, seed=3)
    assert_unchanged(model, before)
    ref = {k: [] for k in res}
    eval_model = copy.deepcopy(model).eval()
    for idx in subsets(20, 6, 2, seed=3):
        jt = loop_grads(model, x[idx], y[idx])
        fisher = jt.T @ jt / 6  # dense P×P Fisher of the subset
        ref["frobenius_gram"].append((fisher**2).sum())
        # App. D: (1/N′) Σ_x ‖g_x g_xᵀ‖²_F, the outer product formed explicitly, one example at a time
        ref["frobenius"].append(torch.stack([(torch.outer(g, g) ** 2).sum() for g in jt]).mean())
        ref["spectral_radius"].append(torch.linalg.eigvalsh(fisher)[-1])
        ref["fisher_trace"].append(fisher.trace())
        ref["log_det"].append(torch.linalg.slogdet(jt @ jt.T).logabsdet)
        # Sec. 7.1: ‖J_x f_w(x)‖²₂ of the softmax output, largest singular value by a full SVD per example
        jx = [torch.autograd.functional.jacobian(lambda xi: eval_model(xi[None]).softmax(1)[0], x[i]).reshape(
            eval_model(x[:1]).shape[1], -1) for i in idx]
        ref["robustness"].append(torch.stack([torch.linalg.svd(j).S[0] ** 2 for j in jx]).mean())
    for k, v in ref.items():
        assert res[k].value == pytest.approx(float(torch.stack(v).mean()), rel=1e-9), k


def test_sec4_hessian_equals_fisher_at_zero_kl_minimum():
    """FIM Eq. 1-2: with soft targets y = f_w(x) (KL = 0, a global minimum over those targets),
    ∇²L = (1/N) Σ_x J_fᵀ(diag p − p pᵀ)J_f = (1/N) Σ_x Σ_k y_k ∇[ℓ_x]_k ∇[ℓ_x]_kᵀ exactly."""
    model = mlp()
    x, _ = data(model, 9)
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    w0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def unflat(w: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(names, torch.split(w, [s.numel() for s in shapes]))) | {
            n: t.reshape(s) for n, t, s in zip(names, torch.split(w, [s.numel() for s in shapes]), shapes)}

    def logits(w: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(model, unflat(w), (x,))

    p = logits(w0).softmax(1).detach()
    loss = lambda w: F.cross_entropy(logits(w), p)  # noqa: E731
    assert torch.func.grad(loss)(w0).abs().max() < 1e-15  # stationary point
    hess = torch.func.hessian(loss)(w0)
    jf = torch.func.jacrev(logits)(w0)  # (N, K, P)
    ggn = torch.einsum("nkp,nkl,nlq->pq", jf, torch.diag_embed(p) - p[:, :, None] * p[:, None, :], jf) / len(x)
    fisher = sum(torch.einsum("n,np,nq->pq", p[:, k], jk := per_sample_grads(model, x, torch.full((9,), k)), jk)
                 for k in range(4)) / len(x)
    torch.testing.assert_close(hess, ggn, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(hess, fisher, rtol=1e-10, atol=1e-13)
    assert torch.linalg.matrix_norm(hess) > 1e-2  # non-trivial curvature at the minimum


# --------------------------------------------------------------------------- regularizer

def make_ctx(model: nn.Module, x, y, lr: float = 0.1, momentum: float = 0.0, epoch: int = 0) -> StepContext:
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=1e-3)
    return StepContext(model=model, optimizer=opt, criterion=nn.CrossEntropyLoss(), draw_batch=lambda: (x, y),
                       epoch=epoch)


def test_regularizer_small_alpha_is_sum_of_squared_subbatch_grad_norms():
    model = cnn().train()
    x, y = data(model, 16)
    before = snapshot(model)
    alpha, m = 1e-6, 4
    r = fisher_regularizer(model, nn.CrossEntropyLoss(), x, y, alpha=alpha, num_subbatches=m)
    assert_unchanged(model, before)
    ref = copy.deepcopy(model)
    sq = 0.0
    for xi, yi in zip(x.chunk(m), y.chunk(m)):
        sq += sum((g**2).sum() for g in torch.autograd.grad(F.cross_entropy(ref(xi), yi), list(ref.parameters())))
    assert float(r) == pytest.approx(alpha * float(sq) / m, rel=1e-3)


def reference_update(model: nn.Module, x, y, alpha, beta, m, exact: bool) -> list[torch.Tensor]:
    """∇[L(B,w) + βR_α(w)] by plain autograd and a loop over sub-batches (full-batch L(B, w))."""
    model = copy.deepcopy(model)
    params = list(model.parameters())
    total = F.cross_entropy(model(x), y)
    reg = 0.0
    for xi, yi in zip(x.chunk(m), y.chunk(m)):
        li = F.cross_entropy(model(xi), yi)
        gi = torch.autograd.grad(li, params, create_graph=exact)
        if exact:
            pert = {n: p - alpha * g for (n, p), g in zip(model.named_parameters(), gi)}
            reg = reg + li - F.cross_entropy(torch.func.functional_call(model, pert, (xi,)), yi)
        else:
            pert = {n: (p - alpha * g).detach().requires_grad_() for (n, p), g in zip(model.named_parameters(), gi)}
            loss2 = F.cross_entropy(torch.func.functional_call(model, pert, (xi,)), yi)
            g2 = torch.autograd.grad(loss2, list(pert.values()))
            reg = reg + sum(((a - b) * p).sum() for a, b, p in zip(gi, g2, params))  # gradient: g_i − g2_i
    return list(torch.autograd.grad(total + beta * reg / m, params))


@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("build", [mlp, cnn])
def test_rule_gradient_matches_autograd_loop(build, exact):
    model = build().train()
    x, y = data(model, 16)
    alpha, beta, m = 1e-3, 3.0, 4
    expected = reference_update(model, x, y, alpha, beta, m, exact)
    rule = FisherRule(alpha=alpha, beta=beta, num_subbatches=m, first_order=not exact, reuse_mean_grad=False)
    ctx = make_ctx(model, x, y, lr=1.0)
    ctx.optimizer.param_groups[0]["weight_decay"] = 0.0
    w0 = [p.detach().clone() for p in model.parameters()]
    loss = rule.step(ctx, x, y)
    assert torch.isfinite(loss) and len(ctx.logs["fisher_reg"]) == 1
    for p, p0, e in zip(model.parameters(), w0, expected):
        torch.testing.assert_close(p0 - p.detach(), e, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("first_order,build", [(True, cnn), (False, mlp)])  # exact + BN always loops
@pytest.mark.parametrize("reuse", [True, False])
def test_rule_vmap_path_equals_loop_path(first_order, build, reuse):
    results = []
    for batched in (True, False):
        model = build().train()
        x, y = data(model, 16)
        rule = FisherRule(alpha=1e-3, beta=2.0, num_subbatches=4, first_order=first_order, batched=batched,
                          reuse_mean_grad=reuse, clip_tau=0.5)
        ctx = make_ctx(model, x, y, momentum=0.9)
        losses = [rule.step(ctx, x, y) for _ in range(2)]
        results.append((losses, model.state_dict()))
    (la, sa), (lb, sb) = results
    torch.testing.assert_close(torch.stack(la), torch.stack(lb), rtol=1e-12, atol=1e-14)
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=1e-10, atol=1e-13)


def test_rule_reuse_on_mlp_equals_full_batch_and_ghost_bn_stats():
    model_a, model_b = mlp(), mlp()
    x, y = data(model_a, 16)
    for model, reuse in ((model_a, True), (model_b, False)):
        FisherRule(alpha=1e-3, num_subbatches=4, reuse_mean_grad=reuse).step(make_ctx(model, x, y), x, y)
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-10, atol=1e-13)
    model = cnn().train()
    x, y = data(model, 16)
    FisherRule(num_subbatches=4, reuse_mean_grad=True).step(make_ctx(model, x, y), x, y)
    ref = cnn().train()
    means = torch.stack([ref[0](xi).mean((0, 2, 3)) for xi in x.chunk(4)]).detach()
    expected = 0.9 * cnn()[1].running_mean + 0.1 * means.mean(0)
    torch.testing.assert_close(model[1].running_mean, expected, rtol=1e-12, atol=1e-14)
    assert int(model[1].num_batches_tracked) == 1


@pytest.mark.parametrize("kwargs,epoch", [({"beta": 0.0}, 0), ({"start_epoch": 3}, 2)])
def test_rule_off_reproduces_standard_rule(kwargs, epoch):
    states = []
    for rule in (StandardRule(), build_rule("fisher", num_subbatches=4, **kwargs)):
        model = cnn().train()
        x, y = data(model, 16)
        ctx = make_ctx(model, x, y, momentum=0.9, epoch=epoch)
        losses = [rule.step(ctx, x, y) for _ in range(3)]
        states.append((losses, model.state_dict()))
    assert all(torch.equal(a, b) for a, b in zip(states[0][0], states[1][0]))
    assert all(torch.equal(states[0][1][k], states[1][1][k]) for k in states[0][1])


def test_rule_clip_tau_bounds_update():
    model = mlp()
    x, y = data(model, 16)
    ctx = make_ctx(model, x, y, lr=1.0)
    ctx.optimizer.param_groups[0]["weight_decay"] = 0.0
    w0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).clone()
    FisherRule(num_subbatches=4, clip_tau=1e-3).step(ctx, x, y)
    w1 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    assert float((w1 - w0).norm()) == pytest.approx(1e-3, rel=1e-4)  # clip_grad_norm_ adds 1e-6


@pytest.mark.parametrize("reuse", [True, False])
def test_rule_non_finite_returns_loss_and_keeps_nan_out_of_the_model(reuse):
    """A NaN batch: the non-finite objective comes back (the engine stops on it) and no NaN reaches the model.

    The rule decides on the device (no host sync), so the optimizer steps with a zero gradient:
    with weight decay and momentum the weights move once, finitely, exactly as a zero-gradient SGD step.
    """
    model = cnn().train()
    x, y = data(model, 16)
    x[3] = float("nan")
    before = snapshot(model)
    ctx = make_ctx(model, x, y, momentum=0.9)
    loss = FisherRule(num_subbatches=4, reuse_mean_grad=reuse).step(ctx, x, y)
    assert not torch.isfinite(loss)
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in model.parameters())
    for n, p in model.named_parameters():  # one zero-gradient SGD step: p − lr·wd·p
        p0 = before["state"][n]
        torch.testing.assert_close(p.detach(), p0 - 0.1 * 1e-3 * p0, rtol=1e-12, atol=1e-15)
    if reuse:  # the ghost-BN statistics are not updated by a NaN step (the full-batch pass updates them like plain SGD)
        for k in ("1.running_mean", "1.running_var", "1.num_batches_tracked"):
            assert torch.equal(model.state_dict()[k], before["state"][k]), k


@pytest.mark.parametrize("build", [mlp, cnn])
@pytest.mark.parametrize("reuse", [True, False])
def test_rule_hvp_gradient_equals_difference_to_first_order_and_vmap_equals_loop(build, reuse):
    """gradient="hvp": α H_i g_i agrees with g_i − ∇L(B_i, w − α g_i) to O(α²); vmap and loop paths agree."""
    updates = {}
    for gradient, batched in (("difference", True), ("hvp", True), ("hvp", False)):
        model = build().train()
        x, y = data(model, 16)
        ctx = make_ctx(model, x, y, lr=0.0)
        FisherRule(alpha=1e-5, beta=3.0, num_subbatches=4, reuse_mean_grad=reuse, gradient=gradient,
                   batched=batched).step(ctx, x, y)
        updates[gradient, batched] = (torch.cat([p.grad.flatten() for p in model.parameters()]),
                                      ctx.logs["fisher_reg"][0], model.state_dict())
    (ud, rd, sd), (uh, rh, sh), (ul, rl, sl) = updates.values()
    torch.testing.assert_close(uh, ud, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(rh, rd, rtol=1e-4, atol=0)
    torch.testing.assert_close(uh, ul, rtol=1e-10, atol=1e-13)
    for k in sd:  # BN running statistics: updated by pass 1 (or the full-batch pass) only, as in the difference form
        torch.testing.assert_close(sh[k], sd[k], rtol=1e-12, atol=1e-14)


def test_robustness_variants_match_naive_loops():
    """Spectral vs Frobenius norm, softmax vs logits: each against a per-example float64 loop."""
    from flatlib.fisher.metrics import input_jacobian_sq_norms

    model = cnn().eval()
    x, _ = data(model, 5)
    for output, head in (("probs", lambda z: z.softmax(1)), ("logits", lambda z: z)):
        jx = [torch.autograd.functional.jacobian(lambda xi: head(model(xi[None]))[0], x[i]).reshape(
            model(x[:1]).shape[1], -1) for i in range(len(x))]
        spec = input_jacobian_sq_norms(model, x, output=output)
        frob = input_jacobian_sq_norms(model, x, output=output, norm="frobenius")
        torch.testing.assert_close(spec, torch.stack([torch.linalg.svd(j).S[0] ** 2 for j in jx]), rtol=1e-9, atol=0)
        torch.testing.assert_close(frob, torch.stack([(j ** 2).sum() for j in jx]), rtol=1e-9, atol=0)
        assert bool((spec < frob).all())  # K > 1 non-zero singular values


@pytest.mark.parametrize("build", [mlp, cnn])
def test_fisher_gradients_match_the_autograd_loop(build):
    """∇L(B, w) and the first-order ∇R_α (Algorithm 1) against the plain-autograd loop ``reference_update``:
    ∇L is its β = 0 update, ∇R_α the difference of its β = 1 and β = 0 updates (eval mode: no batch coupling)."""
    from flatlib.train.rules.fisher import fisher_gradients

    model = build().eval()
    x, y = data(model, 16)
    before = snapshot(model)
    alpha, m = 1e-3, 4
    gl, gr = fisher_gradients(model, nn.CrossEntropyLoss(), x, y, alpha=alpha, num_subbatches=m)
    assert_unchanged(model, before)
    plain = reference_update(model, x, y, alpha, 0.0, m, exact=False)
    both = reference_update(model, x, y, alpha, 1.0, m, exact=False)
    for (n, _), e0, e1 in zip(model.named_parameters(), plain, both):
        torch.testing.assert_close(gl[n], e0, rtol=1e-8, atol=1e-12)
        torch.testing.assert_close(gr[n], e1 - e0, rtol=1e-6, atol=1e-12)
    assert float(sum(v.pow(2).sum() for v in gr.values())) > 0
