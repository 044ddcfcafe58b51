"""Typed, validated training configuration.

A ``TrainConfig`` fully determines a training run: its hash (with the flatlib version) is
the run's key in the results store, so two equal configs share one result. Fields that do
not change the result (device, progress bars, compilation) are excluded from the hash.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from flatlib._checks import finite
from flatlib.store import config_hash

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "multistep", "plateau", "linear_decay")
# compile: "auto" = CUDA graphs ("reduce-overhead") on one CUDA device for the rules that support
# them (StandardRule, SAM: measured in benchmarks/update_rules.py), eager otherwise and on the CPU;
# True = torch.compile's default mode; False = eager; or any torch.compile mode by name
COMPILE_MODES = ("auto", False, True, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")  # replayed as CUDA graphs: mark each step's start
# fields that change how fast a run goes, never what it computes
NOT_HASHED = {"device", "compile", "progress", "snapshot_epochs", "amp", "channels_last"}
# fields added after results were first stored: written (and hashed) only when set, so that the
# configs without them keep their store keys
WRITTEN_WHEN_SET = {"averaging_lr"}


class ConfigError(ValueError):
    """An invalid configuration value; the message is one line naming field, value and choices."""


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Defaults are a small CPU-friendly run; profiles override them."""

    dataset: str = "mnist5k"
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)
    model: str = "mlp100"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    n_train: int | None = None          # random training subset of this size (per seed)
    confusion: int = 0                  # FIM-S1: extra training images with random labels
    augment: str = "no-aug"
    cutout: int = 0
    batch_size: int = 128
    epochs: int = 10
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: str = "constant"
    milestones: tuple[int, ...] = ()
    lr_factor: float = 0.2              # multistep factor
    final_lr_ratio: float = 0.01        # FF Eq. 14: r
    averaging_start: int | None = None  # iterate averaging from this epoch (1-based), FF Eq. 15
    label_smoothing: float = 0.0
    rule: str = "standard"
    rule_kwargs: dict[str, Any] = field(default_factory=dict)
    parent: "TrainConfig | None" = None  # start from this run's weights ...
    parent_epoch: int | None = None      # ... at this epoch (None: its last)
    seed: int = 0
    averaging_lr: float | None = None   # FF Eq. 15: the lr α_avg during averaging (None: lr / 2)
    # not hashed: how the run executes
    device: str = "auto"
    amp: bool = True                    # bf16 autocast on CUDA (ignored on CPU)
    channels_last: bool = True          # on CUDA
    compile: bool | str = "auto"        # see COMPILE_MODES
    progress: bool = True
    snapshot_epochs: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        _validate(self)

    # -- identity ---------------------------------------------------------------
    def to_dict(self, hashed_only: bool = False) -> dict[str, Any]:
        d = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if (hashed_only and f.name in NOT_HASHED) or (f.name in WRITTEN_WHEN_SET and v is None):
                continue
            if isinstance(v, TrainConfig):
                v = v.to_dict(hashed_only)
            elif isinstance(v, tuple):
                v = list(v)
            d[f.name] = v
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown config field {unknown[0]!r}; valid fields: {', '.join(sorted(names))}")
        d = dict(d)
        if d.get("parent") is not None and isinstance(d["parent"], dict):
            d["parent"] = cls.from_dict(d["parent"])
        for k in ("betas", "milestones", "snapshot_epochs"):
            if k in d and d[k] is not None:
                d[k] = tuple(d[k])
        return cls(**d)

    def key(self) -> str:
        """Hash of the result-determining fields and the flatlib version."""
        return config_hash(self.to_dict(hashed_only=True))

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


def choice(name: str, value: Any, choices: tuple | list | set | dict) -> None:
    """Raise a one-line ConfigError unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"invalid {name}={value!r}; choose from: {', '.join(map(str, choices))}")


def positive(name: str, value: float, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if not ok:
        raise ConfigError(f"invalid {name}={value!r}; must be {'>= 0' if allow_zero else '> 0'}")


def _finite_fields(c: TrainConfig) -> None:
    """No NaN or ±inf anywhere: numeric fields, and the numbers in the ``*_kwargs`` dictionaries."""
    for f in dataclasses.fields(c):
        value = getattr(c, f.name)
        if isinstance(value, dict):
            for k, v in value.items():
                finite(f"{f.name}[{k!r}]", v, ConfigError)
        elif not isinstance(value, TrainConfig):
            finite(f.name, value, ConfigError)


def _validate(c: TrainConfig) -> None:
    from flatlib.data import AUGMENTATIONS, DATASETS
    from flatlib.models import MODELS

    _finite_fields(c)

    choice("dataset", c.dataset, DATASETS)
    choice("model", c.model, MODELS)
    choice("augment", c.augment, AUGMENTATIONS)
    choice("optimizer", c.optimizer, OPTIMIZERS)
    choice("schedule", c.schedule, SCHEDULES)
    choice("device", c.device.split(":")[0], ("auto", "cpu", "cuda"))
    choice("compile", c.compile, COMPILE_MODES)
    for name in ("batch_size", "epochs", "lr"):
        positive(name, getattr(c, name))
    for name in ("weight_decay", "momentum", "cutout", "confusion", "label_smoothing", "seed"):
        positive(name, getattr(c, name), allow_zero=True)
    if not 0 <= c.label_smoothing < 1:
        raise ConfigError(f"invalid label_smoothing={c.label_smoothing!r}; must be in [0, 1)")
    if c.n_train is not None:
        positive("n_train", c.n_train)
    if c.schedule == "multistep" and not c.milestones:
        raise ConfigError("schedule='multistep' needs milestones, e.g. milestones=(60, 120, 160)")
    if c.averaging_start is not None and not 1 <= c.averaging_start <= c.epochs:
        raise ConfigError(f"invalid averaging_start={c.averaging_start!r}; must be in [1, epochs={c.epochs}]")
    if c.averaging_lr is not None:
        positive("averaging_lr", c.averaging_lr)
        if c.averaging_start is None:
            raise ConfigError("averaging_lr is set but averaging_start is None")
    if "averaging_lr" in c.rule_kwargs:
        raise ConfigError("averaging_lr is a TrainConfig field, not a rule argument: TrainConfig(averaging_lr=...)")
    if c.parent_epoch is not None and c.parent is None:
        raise ConfigError("parent_epoch is set but parent is None")
    if c.parent is not None and c.parent_epoch is not None and not 1 <= c.parent_epoch <= c.parent.epochs:
        raise ConfigError(f"invalid parent_epoch={c.parent_epoch!r}; parent trains {c.parent.epochs} epochs")
    from flatlib.train.rules import RULES

    choice("rule", c.rule, RULES)
