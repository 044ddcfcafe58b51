"""Training: one engine, one configuration, update rules as small classes.

- ``config``: ``TrainConfig``, the frozen, validated, hashed description of a run (its store key);
- ``engine``: ``train(cfg, store)`` — data on the device, schedule, mixed precision, checkpoints, resume;
- ``optim``: optimizers and learning-rate schedules as small functions of the config;
- ``rules``: what one step does (``RULES``: standard, sam, pof, classifier, fisher).
"""
from flatlib.train.config import ConfigError, TrainConfig
from flatlib.train.engine import Diverged, OutOfMemory, TrainResult, load_model, train
from flatlib.train.rules import RULES, StepContext, UpdateRule, build_rule

__all__ = ["ConfigError", "Diverged", "OutOfMemory", "RULES", "StepContext", "TrainConfig", "TrainResult",
           "UpdateRule", "build_rule", "load_model", "train"]
