"""Run every benchmark in ``benchmarks/``, one after the other, each in its own process.

A benchmark is any ``benchmarks/<name>.py`` other than the helpers below; each is started as
``python -m benchmarks.<name>`` from the repository root (a fresh process, so one benchmark's
threads, compiled graphs or GPU memory cannot affect the next), with ``--quick`` passed on.
A failing benchmark is reported and the rest still run. At the end a table lists every result
row the run wrote to ``benchmarks/results/``.

    python benchmarks/run_all.py [--quick] [--only train_throughput fisher_reg] [--book-build]

``book_build`` (a from-scratch build of the whole book, many minutes) runs only with
``--book-build``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
HELPERS = {"__init__", "common", "run_all"}
OPT_IN = {"book_build"}


def discover() -> list[str]:
    """Names of the benchmark scripts present, alphabetically."""
    return sorted(p.stem for p in BENCH_DIR.glob("*.py") if p.stem not in HELPERS)


def run(name: str, quick: bool) -> tuple[int, float]:
    """Run one benchmark in a subprocess, streaming its output; returns (exit code, seconds)."""
    cmd = [sys.executable, "-m", f"benchmarks.{name}"] + (["--quick"] if quick else [])
    print(f"\n=== {name}: {' '.join(cmd[1:])}", flush=True)
    env = {**os.environ, "FLATLIB_QUIET": "1"}
    t0 = time.perf_counter()
    rc = subprocess.call(cmd, cwd=ROOT, env=env)
    return rc, time.perf_counter() - t0


def new_results(since: float) -> list[dict]:
    """Result files written after ``since`` (a time stamp), parsed."""
    files = sorted(p for p in RESULTS_DIR.glob("*.json") if p.stat().st_mtime >= since)
    return [json.loads(p.read_text()) for p in files]


def fmt(v) -> str:
    return "" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def summary_table(payloads: list[dict]) -> str:
    """One plain-text table: benchmark, device, and each row's name, metric, value, unit, ratio."""
    lines = [("benchmark", "device", "name", "metric", "value", "unit", "ratio")]
    for p in payloads:
        for r in p["results"]:
            lines.append((p["benchmark"], p["device"][:28], r["name"], r["metric"], fmt(r["value"]), r["unit"],
                          fmt(r["ratio"])))
    widths = [max(len(row[i]) for row in lines) for i in range(len(lines[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="CPU-sized runs (passed to every benchmark)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks")
    parser.add_argument("--book-build", action="store_true", help="also time a from-scratch book build")
    args = parser.parse_args()
    available = discover()
    names = args.only or [n for n in available if n not in OPT_IN or args.book_build]
    unknown = sorted(set(names) - set(available))
    if unknown:
        parser.error(f"no benchmark named {', '.join(unknown)}; present: {', '.join(available)}")

    start = time.time()
    status = {name: run(name, args.quick) for name in names}
    print("\n=== summary")
    for name, (rc, seconds) in status.items():
        print(f"{name:22s} {'ok' if rc == 0 else f'FAILED (exit {rc})':18s} {seconds:7.1f} s")
    payloads = new_results(start)
    if payloads:
        print("\n" + summary_table(payloads))
    sys.exit(1 if any(rc for rc, _ in status.values()) else 0)


if __name__ == "__main__":
    main()
