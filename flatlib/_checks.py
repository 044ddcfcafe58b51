"""Value checks shared by every entry point (notebook parameters, ``TrainConfig``, the CLI, estimators)."""
from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


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


def finite_floats(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorator for public estimators: every float argument (or list/tuple of floats) must be finite.

    A NaN or ±inf fails at the call with one line naming the function, the argument and the value,
    instead of surfacing later as a failed eigen-solver or a NaN result.

    >>> @finite_floats
    ... def shrink(x, *, tol: float = 1e-3):
    ...     return x
    >>> shrink(1, tol=float("inf"))
    Traceback (most recent call last):
    ...
    ValueError: shrink: invalid tol=inf; must be a finite number
    """
    signature = inspect.signature(fn)
    name = fn.__qualname__.replace(".__init__", "")

    @functools.wraps(fn)
    def checked(*args: P.args, **kwargs: P.kwargs) -> R:
        bound = signature.bind_partial(*args, **kwargs)
        for arg, value in bound.arguments.items():
            if isinstance(value, float) or (isinstance(value, (list, tuple)) and value
                                            and all(isinstance(v, (int, float)) for v in value)):
                try:
                    finite(arg, value)
                except ValueError as err:
                    raise ValueError(f"{name}: {err}") from None
        return fn(*args, **kwargs)

    return checked
