"""Store keys are part of the results' identity: moving or refactoring the training code must not change them.

The literal keys were computed on main before the package layout changed (issue 15); the second test
recomputes the key of every committed ``results/default`` training run from its stored config.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from flatlib.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]

PINNED = [
    (dict(), "0fdd52b498223b0d"),
    (dict(dataset="cifar10", model="resnet20", rule="sam", rule_kwargs={"rho": 0.05}, schedule="multistep",
          milestones=(2, 4), epochs=5, augment="1-crop-f"), "2665ae4c8865667f"),
    (dict(optimizer="adamw", schedule="linear_decay", averaging_start=3, epochs=4, lr=1e-3, weight_decay=0.25),
     "40c14ed678281e13"),
    (dict(parent=TrainConfig(epochs=3), parent_epoch=2, rule="pof", seed=3), "89b98af2be4f6c4f"),
]


@pytest.mark.parametrize("kwargs,key", PINNED)
def test_pinned_config_keys(kwargs, key):
    assert TrainConfig(**kwargs).key() == key


def test_committed_default_results_keep_their_keys():
    files = sorted((ROOT / "results" / "default" / "train").glob("*.json"))
    if not files:
        pytest.skip("no committed default results")
    for f in files:
        entry = json.loads(f.read_text())
        assert TrainConfig.from_dict(entry["config"]).key() == entry["key"], f.name


def test_averaging_lr_is_a_field_written_only_when_set():
    from flatlib.train import ConfigError
    from flatlib.train.optim import lr_at

    base = TrainConfig(optimizer="adamw", schedule="linear_decay", averaging_start=3, epochs=4, lr=1e-3)
    assert "averaging_lr" not in base.to_dict() and "averaging_lr" not in base.to_dict(hashed_only=True)
    set_ = base.replace(averaging_lr=4e-4)
    assert set_.to_dict()["averaging_lr"] == 4e-4 and set_.key() != base.key()
    assert lr_at(set_, 3) == pytest.approx(4e-4) and lr_at(base, 3) == pytest.approx(5e-4)
    assert TrainConfig.from_dict(set_.to_dict()) == set_
    with pytest.raises(ConfigError, match="averaging_lr is a TrainConfig field"):
        TrainConfig(rule_kwargs={"averaging_lr": 1e-3})
