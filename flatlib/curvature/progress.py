"""tqdm progress bars that stay quiet in CI and when output is not a terminal."""
from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_bar(iterable: Iterable[T], enabled: bool, desc: str, total: int | None = None) -> Iterable[T]:
    """Wrap ``iterable`` in a bar if ``enabled`` and we are on an interactive, non-CI terminal."""
    show = enabled and not os.environ.get("CI") and sys.stderr.isatty()
    return tqdm(iterable, desc=desc, total=total, leave=False) if show else iterable
