"""The reproduction status: which paper claims held, at which profile, from the results store.

Each notebook that checks a claim calls ``record_claim``; the book's status page calls
``status_frame``, which reads those records back (never a hand-typed table). A row prefers
the most paper-like profile that has a record: paper, then default, then smoke.
"""
from __future__ import annotations

from importlib import resources
from typing import Any

import pandas as pd

from flatlib.store import Store

VERDICTS = ("held", "did not hold", "partly held", "not run")


def targets() -> pd.DataFrame:
    """Every reproduction target: id, paper, what, claim, the paper's value and where the paper gives it."""
    with resources.files("flatlib.reference").joinpath("targets.csv").open() as fh:
        return pd.read_csv(fh)


def record_claim(store: Store, target: str, *, ours: str, verdict: str, rule: str,
                 values: dict[str, Any] | None = None) -> None:
    """Store this profile's verdict on one target.

    ``ours`` is the measured value as text (with its spread), ``verdict`` one of VERDICTS,
    ``rule`` the sentence that decided it (e.g. "λ1 increases monotonically with wd in the
    mean and the seed spreads do not overlap").
    """
    ids = set(targets()["id"])
    if target not in ids:
        raise ValueError(f"unknown target {target!r}; choose from: {', '.join(sorted(ids))}")
    if verdict not in VERDICTS:
        raise ValueError(f"invalid verdict {verdict!r}; choose from: {', '.join(VERDICTS)}")
    store.put("claim", {"id": target}, {"ours": ours, "verdict": verdict, "rule": rule,
                                        "values": values or {}})


def status_frame(root=None, profiles: tuple[str, ...] = ("paper", "default", "smoke")) -> pd.DataFrame:
    """One row per target with the paper's value, ours, the profile, the verdict, date and commit."""
    found: dict[str, tuple[str, Any]] = {}
    for profile in profiles:
        for e in Store(profile, root).entries("claim"):
            found.setdefault(e.config["id"], (profile, e))
    rows = []
    for t in targets().itertuples():
        row = {"ID": t.id, "paper's claim": t.claim, "paper's value": t.paper_value, "source": t.source}
        if t.id in found:
            profile, e = found[t.id]
            row.update({"ours": e.data["ours"], "profile": profile, "verdict": e.data["verdict"],
                        "rule": e.data["rule"], "date": e.provenance["time"][:10],
                        "commit": e.provenance.get("commit") or ""})
        else:
            row.update({"ours": "—", "profile": "—", "verdict": "not run", "rule": "", "date": "", "commit": ""})
        rows.append(row)
    return pd.DataFrame(rows)


