"""Update rules: what one training step does with a batch. ``RULES`` is the table of rule names.

A new method is a small class (``base.UpdateRule``) in its own module and one row here.
"""
from __future__ import annotations

from flatlib.train.rules.base import Batch, StandardRule, StepContext, UpdateRule
from flatlib.train.rules.fisher import FisherRule, fisher_regularizer
from flatlib.train.rules.pof import ClassifierRule, PoFRule
from flatlib.train.rules.sam import SAMRule

RULES: dict[str, type[UpdateRule]] = {
    "standard": StandardRule,   # plain SGD / Adam / AdamW
    "sam": SAMRule,             # SAM and ASAM (Foret et al. 2021; Kwon et al. 2021)
    "pof": PoFRule,             # PoF, Algorithm 1 (Sato et al. 2022)
    "classifier": ClassifierRule,  # classifier-only fine-tuning on fixed features (POF-X1)
    "fisher": FisherRule,       # the Fisher-determinant regularizer (Jia & Su 2020, Algorithm 1)
}


def build_rule(name: str, **kwargs) -> UpdateRule:
    """Instantiate a rule by name; unknown names and arguments get a one-line error.

    >>> build_rule("sam", rho=0.1).rho
    0.1
    >>> build_rule("adam")
    Traceback (most recent call last):
    ...
    ValueError: unknown update rule 'adam'; choose from: classifier, fisher, pof, sam, standard
    """
    if name not in RULES:
        raise ValueError(f"unknown update rule {name!r}; choose from: {', '.join(sorted(RULES))}")
    try:
        return RULES[name](**kwargs)
    except TypeError as err:
        raise ValueError(f"update rule {name!r}: {err}") from None


__all__ = ["RULES", "Batch", "ClassifierRule", "FisherRule", "PoFRule", "SAMRule", "StandardRule", "StepContext",
           "UpdateRule", "build_rule", "fisher_regularizer"]
