"""Shared fixtures: a temporary results store and quiet, single-threaded torch."""
from __future__ import annotations

import pytest
import torch

from cases import cases


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("FLATLIB_QUIET", "1")
    torch.set_num_threads(1)


@pytest.fixture
def results_root(tmp_path, monkeypatch):
    """An empty results folder, also exported as FLATLIB_RESULTS for subprocesses."""
    root = tmp_path / "results"
    monkeypatch.setenv("FLATLIB_RESULTS", str(root))
    return root


@pytest.fixture(params=cases(), ids=lambda c: c.id)
def case(request):
    """One row of the shared case table (``tests/cases.py``): model × BN mode × dtype × device."""
    return request.param
