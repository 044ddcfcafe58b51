"""Wall time of building the whole book from scratch at the ``default`` profile.

"From scratch" means an empty results store: every notebook trains and measures everything it
shows. The repository (working tree, without ``.venv``, ``results``, ``_build`` and benchmark
results) is copied to a temporary folder and the book is built there with the same command as
``make book`` (``FLATLIB_PROFILE=default jupyter-book build . --keep-going -W -n``), importing
flatlib from the copy and writing results into the copy, so the real ``results/default`` is never
touched. ``make`` itself is not called: its install step would re-point the shared editable
install at the copy.

    python -m benchmarks.book_build [--timeout 7200] [--keep]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import result, write_results

ROOT = Path(__file__).resolve().parent.parent
TOP_LEVEL_SKIP = {".venv", "results", "_build", "runs", "data", ".pytest_cache", "flatlib.egg-info"}
ANYWHERE_SKIP = {"__pycache__", ".ipynb_checkpoints"}


def skip(folder: str, names: list[str]) -> set[str]:
    """What ``copytree`` leaves out: build outputs, caches, the venv, results, benchmark results."""
    skipped = {n for n in names if n in ANYWHERE_SKIP}
    if Path(folder) == ROOT:
        skipped |= {n for n in names if n in TOP_LEVEL_SKIP}
    if Path(folder) == ROOT / "benchmarks":
        skipped.add("results")
    return skipped


def build_seconds(workdir: Path, timeout: float) -> tuple[int, float]:
    """Copy the repository into ``workdir``, build the book there; returns (exit code, seconds)."""
    copy = workdir / "repo"
    shutil.copytree(ROOT, copy, ignore=skip, symlinks=True)
    env = {**os.environ, "FLATLIB_PROFILE": "default", "FLATLIB_RESULTS": str(copy / "results"),
           "PYTHONPATH": os.pathsep.join([str(copy), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "FLATLIB_QUIET": "1"}
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jupyter_book), "build", ".", "--keep-going", "-W", "-n"]
    t0 = time.perf_counter()
    try:
        rc = subprocess.call(cmd, cwd=copy, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        rc = -1
    return rc, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="accepted for run_all; the build is the same")
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="give up after this many seconds")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy (its _build and results)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="flatlib-book-build-"))
    try:
        rc, seconds = build_seconds(workdir, args.timeout)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if rc not in (0, -1):
        sys.exit(f"book build failed (exit code {rc}, {seconds:.0f} s); no result written")
    # a build stopped by --timeout is still a measurement: the from-scratch time is at least that long
    finished = rc == 0
    row = result("book/default-from-scratch", "wall_time" if finished else "wall_time_lower_bound", seconds, "s")
    path = write_results("book_build", torch.device("cpu"), [row], extra={
        "profile": "default", "finished": finished, "timeout_s": args.timeout, "cpu_count": os.cpu_count(),
        "load_average_at_end": os.getloadavg()[0]})
    print(f"book build: {'' if finished else 'stopped by the timeout after '}{seconds / 60:.1f} min; wrote {path}")


if __name__ == "__main__":
    main()
