"""The notebooks: their names in book order, their ``Params`` classes, and executing one with papermill.

Each experiment module declares its notebook's parameters with ``@flatlib.params.notebook``; importing
``flatlib.experiments`` here fills the table, so that the parameter layer never imports the experiments.
"""
from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

from flatlib.params import NOTEBOOKS, ParameterError, Params
from flatlib.store import project_root

_IGNORED = {"In", "Out", "exit", "quit", "get_ipython", "display"}


def notebook_dir() -> Path:
    return project_root() / "notebooks"


def notebooks() -> list[str]:
    """Notebook names in book order (``_toc.yml``), then any others."""
    import yaml

    names = sorted(p.stem for p in notebook_dir().glob("*.ipynb"))
    toc = project_root() / "_toc.yml"
    ordered: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            f = node.get("file")
            if isinstance(f, str) and f.startswith("notebooks/"):
                stem = Path(f).stem
                if stem in names and stem not in ordered:
                    ordered.append(stem)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    if toc.exists():
        walk(yaml.safe_load(toc.read_text()))
    return ordered + [n for n in names if n not in ordered]


def notebook_classes() -> dict[str, type[Params]]:
    """Notebook name -> its ``Params`` class (imports every experiment module once)."""
    import flatlib.experiments  # noqa: F401  (each module registers its notebooks' Params)

    return NOTEBOOKS


def notebook_params(name: str, namespace: dict[str, Any]) -> Params:
    """Resolve the parameters a notebook's ``parameters`` cell (and papermill) put in ``namespace``."""
    classes = notebook_classes()
    if name not in classes:
        raise ParameterError(f"unknown notebook {name!r}; choose from: {', '.join(sorted(classes))}")
    given = {k: v for k, v in namespace.items()
             if not k.startswith("_") and k not in _IGNORED
             and not isinstance(v, (types.ModuleType, types.FunctionType, type))}
    return classes[name].resolve(**given)


def execute(stem: str, params: dict[str, Any], output: Path, log=print) -> Path:
    """Execute one notebook with papermill into ``output``; a failing cell is reported with its parameters."""
    import papermill as pm

    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        pm.execute_notebook(str(notebook_dir() / f"{stem}.ipynb"), str(output), parameters=params,
                            cwd=str(notebook_dir()), progress_bar=False, kernel_name="python3")
    except pm.PapermillExecutionError as err:
        raise RuntimeError(f"notebook {stem} failed in cell {err.exec_count} with parameters "
                           f"{json.dumps(params)}: {err.ename}: {err.evalue} (output: {output})") from None
    return output
