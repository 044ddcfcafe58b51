"""Notebook parameters and the CLI: validation, profiles, one-line errors, exit code 2."""
from __future__ import annotations

import subprocess
import sys

import pytest

from flatlib.experiments.data_and_baselines import BaselineParams
from flatlib.params import ParameterError
from flatlib.pipeline.registry import notebook_params


def test_profile_fills_unset_values(monkeypatch):
    monkeypatch.delenv("FLATLIB_PROFILE", raising=False)
    p = BaselineParams.resolve(epochs=3)
    assert p.profile == "default" and p.epochs == 3 and p.seeds == BaselineParams.PRESETS["default"]["seeds"]
    monkeypatch.setenv("FLATLIB_PROFILE", "smoke")
    assert BaselineParams.resolve().epochs == BaselineParams.PRESETS["smoke"]["epochs"]


@pytest.mark.parametrize("given,match", [
    ({"epochz": 3}, "unknown parameter 'epochz' for data_and_baselines; valid: profile, datasets"),
    ({"epochs": "many"}, "invalid epochs='many' for data_and_baselines: expected an integer"),
    ({"epochs": 0}, "invalid epochs=0 .*must be >= 1"),
    ({"profile": "huge"}, "invalid profile='huge'; choose from: smoke, default, paper"),
    ({"datasets": ["cifar10"]}, "invalid datasets=\\['cifar10'\\]"),
])
def test_invalid_parameters_one_line(given, match):
    with pytest.raises(ParameterError, match=match) as info:
        BaselineParams.resolve(**given)
    assert "\n" not in str(info.value)


def test_notebook_namespace_rejects_unknown_names():
    import flatlib

    ns = {"profile": "smoke", "epochs": 2, "flatlib": flatlib, "typo_param": 1, "In": [], "_": None}
    with pytest.raises(ParameterError, match="unknown parameter 'typo_param'"):
        notebook_params("data_and_baselines", ns)
    del ns["typo_param"]
    assert notebook_params("data_and_baselines", ns).epochs == 2


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "flatlib.pipeline.cli", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args,match", [
    (["run", "no_such_notebook"], "unknown notebook 'no_such_notebook'; choose from: "),
    (["run", "data_and_baselines", "-p", "epochz", "3"], "unknown parameter 'epochz'"),
    (["run", "data_and_baselines", "-p", "epochs", "-1"], "invalid epochs=-1"),
    (["run", "data_and_baselines", "--profile", "huge"], "invalid choice: 'huge'"),
    (["status", "--profile", "x"], "invalid choice: 'x'"),
])
def test_cli_bad_input_exits_2_with_one_line(args, match):
    r = _cli(*args)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and match in lines[0], r.stderr


def test_every_notebook_parameters_cell_lists_exactly_its_parameters():
    """A reader reruns a notebook with any knob of its ``parameters`` cell: every Params field is there, nothing else."""
    import ast
    import dataclasses
    from pathlib import Path

    import nbformat

    import flatlib.experiments  # noqa: F401  (registers every notebook's Params)
    from flatlib.params import NOTEBOOKS

    folder = Path(__file__).resolve().parent.parent / "notebooks"
    assert sorted(p.stem for p in folder.glob("*.ipynb")) == sorted(NOTEBOOKS)
    for name, cls in NOTEBOOKS.items():
        cells = [c for c in nbformat.read(folder / f"{name}.ipynb", as_version=4).cells
                 if "parameters" in c.metadata.get("tags", [])]
        assert len(cells) == 1, f"{name}: one parameters cell"
        names = {t.id for node in ast.parse(cells[0].source).body if isinstance(node, ast.Assign)
                 for t in node.targets if isinstance(t, ast.Name)}
        fields = {f.name for f in dataclasses.fields(cls) if f.init}
        assert names == fields, f"{name}: missing {sorted(fields - names)}, extra {sorted(names - fields)}"
