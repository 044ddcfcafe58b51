"""Notebook parameters: typed, validated, filled in from a profile.

Each notebook has a ``Params`` dataclass registered under the notebook's name. Its
``parameters`` cell holds literals (``None`` = "take the profile's value"); the next cell
calls ``flatlib.pipeline.registry.notebook_params(name, globals())``, which rejects unknown names (e.g. a typo passed
with ``papermill -p``), fills every ``None`` from the profile preset, and checks types,
ranges and allowed values, raising a one-line ``ParameterError`` before any work starts.
The same classes validate ``flatlib run -p`` and direct Python use (``Params.resolve``).
"""
from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from typing import Any, ClassVar

from flatlib import dryrun
from flatlib.store import PROFILES

NOTEBOOKS: dict[str, type["Params"]] = {}


class ParameterError(ValueError):
    """An unknown or invalid parameter; the message is one line."""


def notebook(name: str):
    """Class decorator registering a Params class for ``notebooks/<name>.ipynb``."""

    def deco(cls: type[Params]) -> type[Params]:
        cls.NOTEBOOK = name
        NOTEBOOKS[name] = cls
        return cls

    return deco


def choices(*values: Any) -> Any:
    """Field with allowed values (default None = from profile)."""
    return dataclasses.field(default=None, metadata={"choices": values})


def bounded(lo: float | None = None, hi: float | None = None) -> Any:
    """Numeric field (or list of numbers) with inclusive bounds (default None = from profile)."""
    return dataclasses.field(default=None, metadata={"lo": lo, "hi": hi})


@dataclasses.dataclass
class Params:
    """Base class: ``profile`` plus the notebook's knobs; ``PRESETS[profile]`` fills ``None`` fields."""

    profile: str | None = None
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}
    NOTEBOOK: ClassVar[str] = ""

    @classmethod
    def resolve(cls, **given: Any) -> "Params":
        """Validate ``given`` (names, types, ranges) and fill the rest from the profile preset."""
        names = [f.name for f in dataclasses.fields(cls)]
        for k in given:
            if k not in names:
                raise ParameterError(f"unknown parameter {k!r} for {cls.NOTEBOOK or cls.__name__}; "
                                     f"valid: {', '.join(names)}")
        profile = given.get("profile") or os.environ.get("FLATLIB_PROFILE") or "default"
        if profile not in PROFILES:
            raise ParameterError(f"invalid profile={profile!r}; choose from: {', '.join(PROFILES)}")
        preset = cls.PRESETS.get(profile, {})
        values = {"profile": profile}
        for f in dataclasses.fields(cls):
            if f.name == "profile":
                continue
            v = given.get(f.name)
            values[f.name] = preset.get(f.name, f.default) if v is None else v
        values = dryrun.cap_params(cls, values)  # a dry run's caps on iterations and sample counts; else unchanged
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            values[f.name] = _check(f, hints[f.name], values[f.name], cls.NOTEBOOK or cls.__name__)
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def plan(self) -> list:
        """The training runs (``TrainConfig``s) this notebook needs, for ``flatlib run-all``.

        Notebooks whose experiments train models override this; the scheduler runs the plan
        in parallel before executing the notebook, which then finds every result stored.
        """
        return []

    def _repr_html_(self) -> str:
        """The resolved parameters as an HTML table (one row per field, values as their ``repr``).

        HTML rather than Markdown: a Markdown table in a cell output reaches the built book as one
        paragraph of pipes. Names and values are HTML-escaped.
        """
        import html

        rows = "".join(f"<tr><td><code>{html.escape(k)}</code></td><td><code>{html.escape(repr(v))}</code></td></tr>"
                       for k, v in self.as_dict().items())
        return ('<table class="dataframe flatlib-params"><thead><tr><th style="text-align: left">parameter</th><th style="text-align: left">value</th></tr></thead>'
                f"<tbody>{rows}</tbody></table>")


def _check(f: dataclasses.Field, hint: Any, value: Any, where: str) -> Any:
    """Coerce and validate one value against its type hint and field metadata."""
    def fail(why: str) -> ParameterError:
        return ParameterError(f"invalid {f.name}={value!r} for {where}: {why}")

    base = [a for a in typing.get_args(hint) if a is not type(None)] if typing.get_origin(hint) in (typing.Union, types.UnionType) else [hint]
    if value is None:
        if type(None) in typing.get_args(hint):
            return None
        raise fail("no value (and the profile sets none)")
    t = base[0]
    origin = typing.get_origin(t) or t
    if origin in (list, tuple):
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise fail(f"expected a list of {typing.get_args(t)[0].__name__}")
        item = typing.get_args(t)[0]
        out = [_scalar(v, item, fail) for v in value]
        for v in out:
            _range(f, v, fail)
        return type(value)(out) if origin is list else tuple(out)
    value = _scalar(value, t, fail)
    _range(f, value, fail)
    return value


def _scalar(v: Any, t: type, fail) -> Any:
    if t is bool:
        if isinstance(v, bool):
            return v
        raise fail("expected True or False")
    if t is int:
        if isinstance(v, bool) or not isinstance(v, int):
            if isinstance(v, float) and v.is_integer():
                return int(v)
            raise fail("expected an integer")
        return v
    if t is float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise fail("expected a number")
        if not math.isfinite(v):
            raise fail("must be a finite number")
        return float(v)
    if t is str:
        if not isinstance(v, str):
            raise fail("expected a string")
        return v
    return v


def _range(f: dataclasses.Field, v: Any, fail) -> None:
    ch = f.metadata.get("choices")
    if ch is not None and v not in ch:
        raise fail(f"choose from: {', '.join(map(str, ch))}")
    lo, hi = f.metadata.get("lo"), f.metadata.get("hi")
    if lo is not None and v < lo:
        raise fail(f"must be >= {lo}")
    if hi is not None and v > hi:
        raise fail(f"must be <= {hi}")
