"""Progress bars, quiet in CI, in worker processes and when output is not a terminal: one rule for all of flatlib.

Quiet when ``CI``, ``FLATLIB_QUIET`` or tqdm's own ``TQDM_DISABLE`` is set; otherwise tqdm's
``disable=None`` turns bars off when stderr is not a terminal.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
QUIET_VARIABLES = ("CI", "FLATLIB_QUIET", "TQDM_DISABLE")


def quiet() -> bool:
    """True when progress bars should be off (a quiet variable is set, or stderr is not a terminal)."""
    return any(os.environ.get(v) for v in QUIET_VARIABLES) or not sys.stderr.isatty()


def disable(enabled: bool = True) -> bool | None:
    """tqdm's ``disable=`` for a bar the caller wants ``enabled``: ``None`` lets tqdm hide it off a terminal."""
    return True if not enabled or any(os.environ.get(v) for v in QUIET_VARIABLES) else None


def progress_bar(iterable: Iterable[T], enabled: bool, desc: str, total: int | None = None) -> Iterable[T]:
    """Wrap ``iterable`` in a bar if ``enabled`` and not quiet (see the module docstring)."""
    return iterable if quiet() or not enabled else tqdm(iterable, desc=desc, total=total, leave=False)
