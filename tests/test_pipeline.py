"""The notebook tooling: the notebook order from ``_toc.yml``, the registry, and the quiet rule for progress bars."""
from __future__ import annotations

import yaml

from flatlib.pipeline.registry import notebook_classes, notebooks
from flatlib.store import project_root


def test_notebooks_follow_the_table_of_contents():
    toc = yaml.safe_load((project_root() / "_toc.yml").read_text())
    files = []

    def walk(node):
        if isinstance(node, dict):
            if str(node.get("file", "")).startswith("notebooks/"):
                files.append(node["file"].split("/", 1)[1])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(toc)
    names = notebooks()
    assert names[:len(files)] == files and len(names) == len(set(names))
    assert set(notebook_classes()) <= set(names)


def test_quiet_variables_turn_progress_bars_off(monkeypatch):
    from flatlib.progress import disable, progress_bar, quiet

    for var in ("CI", "FLATLIB_QUIET", "TQDM_DISABLE"):
        monkeypatch.delenv(var, raising=False)
    assert disable(False) is True and disable(True) is None  # None: tqdm decides by the terminal
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert quiet() and disable(True) is True
    items = [1, 2]
    assert progress_bar(items, True, "x") is items
