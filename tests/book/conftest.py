"""Fixtures for the book tests: the built HTML (from `make book`) and where screenshots go."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def built_html() -> Path:
    """``_build/html`` of this checkout (or ``$FLATLIB_BOOK_HTML``, for a book built with
    ``--path-output``); the tests fail, never skip, when the book was not built."""
    html = Path(os.environ.get("FLATLIB_BOOK_HTML", PROJECT / "_build" / "html"))
    if not (html / "index.html").exists():
        pytest.fail(f"no built book at {html}: run `make book` first (or `make book-check`)")
    return html


@pytest.fixture(scope="session")
def screenshot_dir(built_html: Path) -> Path:
    """``_build/screenshots``, beside the built HTML."""
    return built_html.parent / "screenshots"
