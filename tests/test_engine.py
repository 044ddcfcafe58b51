"""The training engine: learning, schedules, optimizers, caching, resume, divergence."""
from __future__ import annotations

import pytest
import torch

from flatlib.train.config import ConfigError, TrainConfig
from flatlib.train.engine import Diverged, load_model, train
from flatlib.train.optim import build_optimizer, lr_at
from flatlib.store import Store

TINY = dict(dataset="toy", model="mlp5", model_kwargs={"width": 16}, epochs=4, lr=0.1, batch_size=64,
            progress=False)


def test_short_run_loss_decreases(results_root):
    r = train(TrainConfig(**TINY), Store("smoke"))
    losses = [rec["train_loss"] for rec in r.records]
    assert losses[-1] < 0.8 * losses[0]
    assert {"epoch", "lr", "train_loss", "test_loss", "test_error", "weight_norm", "seconds"} <= set(r.records[0])
    assert r.summary["test_error"] < 75.0  # 4 classes: chance is 75 %


def test_result_is_cached_and_reused(results_root, monkeypatch):
    store = Store("smoke")
    cfg = TrainConfig(**TINY)
    first = train(cfg, store)
    import flatlib.train.engine as engine

    monkeypatch.setattr(engine, "_run", lambda *a, **k: pytest.fail("retrained a cached config"))
    again = train(cfg, store)
    assert again.records == first.records and again.summary == first.summary
    # a different config is a different key
    assert cfg.replace(seed=1).key() != cfg.key()
    # fields that do not change the result do not change the key
    assert cfg.replace(progress=True, device="cpu").key() == cfg.key()


def test_resume_after_interruption_matches_uninterrupted(results_root, monkeypatch):
    """Kill a run after epoch 2 (simulated), rerun: it resumes and ends bit-identical to a clean run."""
    cfg = TrainConfig(**{**TINY, "epochs": 4})
    clean = train(cfg, Store("smoke", results_root / "clean"))

    store = Store("smoke", results_root / "interrupted")
    import flatlib.train.engine as engine

    real_eval = engine.evaluate
    calls = {"n": 0}

    def dying_eval(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:  # during epoch 3, after epoch 2's checkpoint was written
            raise KeyboardInterrupt
        return real_eval(*a, **k)

    monkeypatch.setattr(engine, "evaluate", dying_eval)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, store)
    assert (store.checkpoint_dir(cfg.key()) / "last.pt").exists()
    assert store.get("train", cfg.to_dict(hashed_only=True)) is None  # no result from a killed run
    monkeypatch.setattr(engine, "evaluate", real_eval)
    started = []
    real_tqdm = engine.tqdm
    monkeypatch.setattr(engine, "tqdm", lambda it, **k: (started.append(k.get("initial")), real_tqdm(it, **k))[1])
    resumed = train(cfg, store)
    assert started == [2]  # resumed after epoch 2
    assert [r["train_loss"] for r in resumed.records] == [r["train_loss"] for r in clean.records]
    assert resumed.summary["test_loss"] == clean.summary["test_loss"]


def test_nan_loss_stops_run_and_keeps_checkpoint(results_root, monkeypatch):
    store = Store("smoke")
    cfg = TrainConfig(**{**TINY, "lr": 1e6, "epochs": 30})  # diverges quickly
    with pytest.raises(Diverged, match=r"non-finite loss at epoch \d+, step \d+"):
        train(cfg, store)
    assert store.get("train", cfg.to_dict(hashed_only=True)) is None
    assert list((store.dir / "failed").glob("train-*.json"))


def test_load_model_returns_final_weights(results_root):
    store = Store("smoke")
    cfg = TrainConfig(**TINY)
    r = train(cfg, store)
    model = load_model(cfg, store)
    assert not model.training
    assert sum(p.numel() for p in model.parameters()) == r.summary["num_params"]


def test_parent_run_starts_from_parent_weights(results_root):
    store = Store("smoke")
    parent = TrainConfig(**TINY)
    child = TrainConfig(**{**TINY, "epochs": 1, "lr": 1e-12, "momentum": 0.0}, parent=parent)
    p = train(parent, store)
    c = train(child, store)
    assert c.summary["test_loss"] == pytest.approx(p.summary["test_loss"], rel=1e-4)


def test_linear_decay_schedule_eq14():
    cfg = TrainConfig(**{**TINY, "epochs": 100, "schedule": "linear_decay", "lr": 1.0, "final_lr_ratio": 0.01})
    assert lr_at(cfg, 0) == 1.0 and lr_at(cfg, 50) == 1.0
    assert lr_at(cfg, 70) == pytest.approx(1 - 0.99 * 0.5)
    assert lr_at(cfg, 90) == pytest.approx(0.01) and lr_at(cfg, 99) == pytest.approx(0.01)
    ms = TrainConfig(**{**TINY, "schedule": "multistep", "milestones": (2, 3), "lr_factor": 0.1, "lr": 1.0})
    assert [lr_at(ms, e) for e in range(4)] == pytest.approx([1.0, 1.0, 0.1, 0.01])


def test_adamw_is_decoupled():
    """AdamW: p <- p(1 - lr*wd) then the Adam step (a zero gradient leaves only the decay)."""
    p = torch.nn.Parameter(torch.ones(3))
    opt = build_optimizer(TrainConfig(**{**TINY, "optimizer": "adamw", "lr": 0.1, "weight_decay": 0.5}), [p])
    p.grad = torch.zeros(3)
    opt.step()
    assert torch.allclose(p.detach(), torch.full((3,), 1 - 0.1 * 0.5))


def test_iterate_averaging_runs(results_root):
    cfg = TrainConfig(**{**TINY, "epochs": 4, "averaging_start": 3, "schedule": "linear_decay"})
    r = train(cfg, Store("smoke"))
    assert "avg_test_error" in r.records[-1] and "avg_test_error" not in r.records[0]


@pytest.mark.parametrize("field,value,match", [
    ("model", "resnet999", "invalid model='resnet999'; choose from"),
    ("dataset", "imagenet22k", "invalid dataset='imagenet22k'; choose from"),
    ("optimizer", "lbfgs", "choose from: sgd, adam, adamw"),
    ("lr", -1.0, "must be > 0"),
    ("augment", "mixup", "choose from: no-aug"),
])
def test_invalid_config_one_line(field, value, match):
    with pytest.raises(ConfigError, match=match) as info:
        TrainConfig(**{**TINY, field: value})
    assert "\n" not in str(info.value)
