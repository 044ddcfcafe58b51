"""Batch execution: run every notebook's experiments and notebooks for a profile; status tables."""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from flatlib.store import Store


def status_table(profile: str) -> str:
    """A plain-text table of stored results per kind for one profile."""
    store = Store(profile)
    counts = Counter(e.kind for e in store.entries())
    failed = len(list((store.dir / "failed").glob("*.json"))) if (store.dir / "failed").exists() else 0
    rows = [f"{'kind':<12} {'results':>8}"] + [f"{k:<12} {n:>8}" for k, n in sorted(counts.items())]
    rows.append(f"{'failed':<12} {failed:>8}")
    return f"results/{profile} ({store.dir})\n" + "\n".join(rows)


def run_all(args: argparse.Namespace) -> int:
    """Execute every notebook (in book order) at the profile; finished results are reused."""
    from flatlib.cli import execute, notebooks

    names = [n for n in notebooks() if not args.only or args.only in n]
    failed = []
    for name in names:
        out = Path("_build/executed") / args.profile / f"{name}.ipynb"
        try:
            execute(name, {"profile": args.profile}, out)
            print(f"done   {name} -> {out}")
        except RuntimeError as err:
            failed.append(name)
            print(f"FAILED {err}", file=sys.stderr)
    return 1 if failed else 0
