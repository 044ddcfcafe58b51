"""The reproduction status: which paper claims held, at which profile, from the results store.

Each notebook that checks a claim calls ``record_claim``; the book's status page calls
``status_frame``, which reads those records back (never a hand-typed table). A row prefers
the most paper-like profile that has a record: paper, then default, then smoke.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from flatlib.store import Entry, Store

VERDICTS = ("held", "partly held", "did not hold", "not run")
PROFILE_PREFERENCE = ("paper", "default", "smoke")
COLUMNS = ("ID", "paper's claim", "paper's value", "reference", "ours", "profile", "verdict", "rule",
           "date", "commit")


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


def latest_claims(root: Path | str | None = None,
                  profiles: tuple[str, ...] = PROFILE_PREFERENCE) -> dict[str, tuple[str, Entry]]:
    """For each target id, (profile, entry) of its newest record in the first profile that has one."""
    found: dict[str, tuple[str, Entry]] = {}
    for profile in profiles:
        newest: dict[str, Entry] = {}
        for e in Store(profile, root).entries("claim"):
            tid = e.config["id"]
            if tid not in newest or e.provenance["time"] > newest[tid].provenance["time"]:
                newest[tid] = e
        for tid, e in newest.items():
            found.setdefault(tid, (profile, e))
    return found


def status_frame(root: Path | str | None = None,
                 profiles: tuple[str, ...] = PROFILE_PREFERENCE) -> pd.DataFrame:
    """One row per target (columns ``COLUMNS``): the paper's claim and value with its reference,
    ours with its spread, the profile, verdict and the rule that decided it, the date and commit."""
    found = latest_claims(root, profiles)
    rows = []
    for t in targets().itertuples():
        row = {"ID": t.id, "paper's claim": t.claim, "paper's value": t.paper_value, "reference": t.source}
        if t.id in found:
            profile, e = found[t.id]
            row.update({"ours": e.data["ours"], "profile": profile, "verdict": e.data["verdict"],
                        "rule": e.data["rule"], "date": e.provenance["time"][:10],
                        "commit": e.provenance.get("commit") or "—"})
        else:
            row.update({"ours": "—", "profile": "—", "verdict": "not run", "rule": "", "date": "—",
                        "commit": "—"})
        rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))

