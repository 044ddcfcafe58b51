"""The shared case table (``tests/cases.py``: tiny models × BN mode × dtype, × device with CUDA) run through
curvature, Fisher, measures and the update rules; plus the one BN-mode vocabulary and ``params=`` convention."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from cases import Case, assert_untouched, batches, cases, ids, problem, snapshot
from flatlib._torch import BN_MODES, bn_mode, select_parameters
from flatlib.curvature import HessianOperator, exact_hessian, landscape_1d
from flatlib.fisher import fim_metrics, per_sample_grads
from flatlib.measures import hessian_lambda1
from flatlib.train.rules import RULES, StepContext, build_rule

RTOL = {torch.float64: 1e-10, torch.float32: 1e-4}


def test_hessian_products_match_the_dense_reference(case: Case):  # ``case``: the conftest fixture, every row
    model, X, Y = case.problem()
    before = snapshot(model)
    H = HessianOperator(model, batches(X, Y), bn_mode=case.bn_mode)  # dtype: the model's
    assert H.dtype == case.dtype
    ref = exact_hessian(model, batches(X, Y), bn_mode=case.bn_mode, dtype=torch.float64)
    v = torch.randn(H.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    got = (H @ v.to(device=H.device, dtype=H.dtype)).double().cpu()
    torch.testing.assert_close(got, ref.cpu() @ v, rtol=RTOL[case.dtype], atol=RTOL[case.dtype] * float(ref.abs().max()))
    assert_untouched(model, before)


@pytest.mark.parametrize("case", cases(bn_modes=("eval",)), ids=ids(cases(bn_modes=("eval",))))
def test_per_sample_gradients_are_the_example_gradients(case: Case):
    model, X, Y = case.problem()
    before = snapshot(model)
    J = per_sample_grads(model, X, Y)
    ref = copy.deepcopy(model).eval()
    params = [p for p in ref.parameters() if p.requires_grad]
    rows = [torch.cat([g.reshape(-1) for g in torch.autograd.grad(F.cross_entropy(ref(X[i:i + 1]), Y[i:i + 1]), params)])
            for i in range(len(X))]
    torch.testing.assert_close(J, torch.stack(rows), rtol=RTOL[case.dtype] * 10, atol=RTOL[case.dtype])
    # params="classifier" means the classifier block here too, as in the curvature functions
    k = sum(p.numel() for p in model.classifier.parameters())
    torch.testing.assert_close(per_sample_grads(model, X, Y, params="classifier"), J[:, -k:])
    assert_untouched(model, before)


@pytest.mark.parametrize("case", cases(dtypes=(torch.float64,)), ids=ids(cases(dtypes=(torch.float64,))))
def test_fisher_metrics_and_measures_leave_the_model_untouched(case: Case):
    model, X, Y = case.problem()
    before = snapshot(model)
    est = fim_metrics(model, X, Y, n_prime=10, num_subsets=2, bn_mode=case.bn_mode, metrics=("log_det", "fisher_trace"))
    assert all(torch.isfinite(torch.tensor(e.value)) for e in est.values())
    lam = hessian_lambda1(model, (X, Y), num_iters=30, tol=1e-10)
    exact = torch.linalg.eigvalsh(exact_hessian(model, (X, Y)))[-1].item()
    assert lam == pytest.approx(exact, rel=1e-6)
    assert_untouched(model, before)


RULE_KWARGS = {"standard": {}, "sam": {"rho": 0.05}, "pof": {"search_batch_size": 8}, "classifier": {},
               "fisher": {"num_subbatches": 2}}


@pytest.mark.parametrize("rule", sorted(RULES))
@pytest.mark.parametrize("case", cases(bn_modes=("train",), dtypes=(torch.float64,)) + cases(models=("mlp",), bn_modes=("eval",), dtypes=(torch.float64,)),
                         ids=lambda c: c.id)
def test_every_rule_steps_on_every_model(case: Case, rule: str):
    model, X, Y = case.problem()
    model.train()
    r = build_rule(rule, **RULE_KWARGS[rule])
    assert r.name == rule
    opt = torch.optim.SGD(r.trainable(model), lr=0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ctx = StepContext(model, opt, F.cross_entropy, draw_batch=lambda: (X[:16], Y[:16]))
    loss = r.step(ctx, X[:16], Y[:16])
    assert torch.isfinite(loss) and loss.ndim == 0
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, f"rule {rule} changed nothing"


# ------------------------------------------------------------------------------ one vocabulary, one convention
def test_unknown_bn_mode_fails_at_construction_with_the_choices():
    model, X, Y = problem("cnn_bn", torch.float64)
    msg = "invalid bn_mode='train-chunks'; choose from: 'eval', 'train', 'train-frozen-stats'"
    with pytest.raises(ValueError, match=msg):
        HessianOperator(model, (X, Y), bn_mode="train-chunks")
    with pytest.raises(ValueError, match="invalid bn_mode='batch'"):
        landscape_1d(model, (X, Y), torch.zeros(1), [0.0], bn_mode="batch")
    with pytest.raises(ValueError, match="invalid bn_mode='batch'"):
        per_sample_grads(model, X, Y, bn_mode="batch")
    with pytest.raises(ValueError, match="invalid bn_mode='batch'"):
        fim_metrics(model, X, Y, n_prime=4, num_subsets=1, bn_mode="batch")


def test_one_example_batch_in_train_mode_names_the_batch():
    model, X, Y = problem("cnn_bn", torch.float64)
    H = HessianOperator(model, (X[:13], Y[:13]), bn_mode="train", batch_size=6)  # batches of 6, 6, 1
    with pytest.raises(ValueError) as err:
        H @ torch.ones(H.dim, dtype=torch.float64)
    assert str(err.value).startswith("batch 2 has 1 example; bn_mode='train' needs at least 2") and "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"BatchNorm chunk 1 \(example 10\) has 1 example"):
        per_sample_grads(model, X[:11], Y[:11], bn_mode="train-chunks")
    HessianOperator(model, (X[:13], Y[:13]), bn_mode="eval", batch_size=6) @ torch.ones(H.dim, dtype=torch.float64)


def test_params_convention_is_shared_and_never_reads_a_string_by_characters():
    model, X, Y = problem("mlp", torch.float64)
    names = ["classifier.weight", "classifier.bias"]
    assert select_parameters(model, "classifier") == names
    assert HessianOperator(model, (X, Y), params="classifier").param_names == names
    assert per_sample_grads(model, X, Y, params="classifier").shape == (len(X), 6 * 3 + 3)
    assert select_parameters(model, [model.classifier.bias]) == ["classifier.bias"]
    with pytest.raises(KeyError, match="params='clasifier' is neither a submodule nor a parameter"):
        per_sample_grads(model, X, Y, params="clasifier")


def test_bn_mode_context_restores_flags_and_only_train_updates_statistics():
    model, X, _ = problem("cnn_bn", torch.float64)
    bn = model.features[1]
    assert set(BN_MODES) == {"eval", "train", "train-frozen-stats"}
    for mode, updates in (("eval", False), ("train", True), ("train-frozen-stats", False)):
        m = copy.deepcopy(model).train()
        flags = [x.training for x in m.modules()]
        with torch.no_grad(), bn_mode(m, mode):
            assert m.features[1].training == (mode != "eval") and not m.features[0].training
            m(X)
        assert [x.training for x in m.modules()] == flags and m.features[1].track_running_stats
        assert torch.equal(m.features[1].running_mean, bn.running_mean) != updates, mode
