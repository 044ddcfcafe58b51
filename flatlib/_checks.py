"""Value checks shared by every entry point (notebook parameters, ``TrainConfig``, the CLI, estimators)."""
from __future__ import annotations

import math
from typing import Any


def finite(name: str, value: Any, error: type[Exception] = ValueError) -> Any:
    """Return ``value``; raise ``error`` with a one-line message if it (or an item of it) is NaN or ±inf.

    >>> finite("lr", 0.1)
    0.1
    >>> finite("lr", float("nan"))
    Traceback (most recent call last):
    ...
    ValueError: invalid lr=nan; must be a finite number
    """
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        if isinstance(v, float) and not math.isfinite(v):
            raise error(f"invalid {name}={value!r}; must be a finite number")
    return value
