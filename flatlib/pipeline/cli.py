"""The ``flatlib`` command line: run notebooks, run them all, build the book, show status, train one config.

Errors in what the user typed (unknown notebook, profile or parameter, invalid value) print
one line and exit with code 2 before any work starts.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from flatlib.params import ParameterError
from flatlib.pipeline.registry import execute, executed_dir, notebook_classes, notebooks
from flatlib.store import PROFILES

EXIT_USAGE = 2


def _die(msg: str) -> None:
    print(f"flatlib: error: {msg}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def parse_value(text: str) -> Any:
    """Parse a ``-p`` value like papermill does: YAML scalars and lists; else a number if ``float()``
    reads one (papermill turns ``inf`` and ``nan`` into floats, which validation then rejects); else the raw string."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def resolve_notebook(name: str) -> str:
    stem = Path(name).stem
    valid = notebooks()
    if stem not in valid:
        _die(f"unknown notebook {name!r}; choose from: {', '.join(valid)}")
    return stem


def validate(stem: str, params: dict[str, Any]) -> dict[str, Any]:
    """Check parameters against the notebook's Params class; returns what papermill should inject."""
    cls = notebook_classes().get(stem)
    if cls is None:
        _die(f"notebook {stem!r} has no registered parameters")
    try:
        cls.resolve(**params)
    except ParameterError as err:
        _die(str(err))
    return params


def start_dry_run(args: argparse.Namespace) -> None:
    """``--dry-run``: fabricated data, truncated runs, a results folder of its own (`flatlib.dryrun`)."""
    if getattr(args, "dry_run", False):
        from flatlib import dryrun
        from flatlib.data.fabricate import prepare_dry_run

        root = prepare_dry_run(dryrun.from_env())
        print(f"dry run: {dryrun.settings()}; fabricated data in {root}; results in {dryrun.results_root('')}",
              flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    start_dry_run(args)
    stem = resolve_notebook(args.notebook)
    params = {name: parse_value(value) for name, value in (args.p or [])}
    if args.profile:
        params["profile"] = args.profile
    validate(stem, params)
    out = Path(args.output or executed_dir(params.get("profile", "default")) / f"{stem}.ipynb")
    try:
        execute(stem, params, out)
    except RuntimeError as err:
        print(f"flatlib: {err}", file=sys.stderr)
        return 1
    print(f"executed {stem} -> {out}")
    return 0


def cmd_run_all(args: argparse.Namespace) -> int:
    from flatlib.pipeline.scheduler import run_all

    start_dry_run(args)
    return run_all(args)


def cmd_data(args: argparse.Namespace) -> int:
    """``data check``: every file the paper profile reads, named when missing; ``data fabricate``: fake files."""
    from flatlib.data.fabricate import fabricate, is_fabricated, missing_files
    from flatlib.data.paper import data_root

    root = data_root(args.root)
    if args.action == "fabricate":
        fabricate(root, args.images)
        print(f"fabricated {args.images} random images per split in {root}")
        return 0
    missing = missing_files(root)
    print(f"data root: {root}{' (FABRICATED: random images, for dry runs only)' if is_fabricated(root) else ''}")
    for name, files in missing.items():
        print(f"{name:<14} {'ok' if not files else 'MISSING ' + ', '.join(str(f) for f in files)}")
    absent = sorted(name for name, files in missing.items() if files)
    if absent:
        print(f"missing: {', '.join(absent)}; the paper profile's notebooks that read them stop with a one-line "
              "error (imagenet128 is needed only by fim_imagenet)")
    return 1 if any(files for name, files in missing.items() if name != "imagenet128") else 0


def cmd_plan(args: argparse.Namespace) -> int:
    from flatlib.pipeline.costplan import cost_plan

    return cost_plan(args)


def cmd_status(args: argparse.Namespace) -> int:
    from flatlib.pipeline.scheduler import status_table

    print(status_table(args.profile))
    return 0


def cmd_book(args: argparse.Namespace) -> int:
    from flatlib.store import project_root

    # `make book` also fetches the local MathJax copy the offline book needs
    return subprocess.call(["make", "book", f"PROFILE={args.profile}"], cwd=project_root())


def cmd_train(args: argparse.Namespace) -> int:
    from flatlib.store import Store
    from flatlib.train import ConfigError, TrainConfig, train

    try:
        cfg = TrainConfig.from_dict(json.loads(Path(args.config).read_text()))
    except (OSError, ValueError, ConfigError, TypeError) as err:
        _die(f"{args.config}: {err}")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:  # launched by torchrun: one process per GPU (or CPU worker with gloo)
        import torch
        import torch.distributed as dist

        local = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available() and cfg.device in ("auto", "cuda"):
            torch.cuda.set_device(local)
            cfg = cfg.replace(device=f"cuda:{local}")
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        result = train(cfg, Store(args.profile))
    finally:
        if world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(result.summary))
    return 0


DRY_RUN_HELP = ("execute the real code paths truncated to a few steps and iterations, on fabricated data in "
                "each dataset's format, into results-dryrun/ (FLATLIB_DRYRUN_<STEPS|ITERS|IMAGES|BATCH|SEEDS|LEVELS> "
                "override the truncation; BATCH=0 keeps the paper's batch sizes)")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        _die(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="flatlib", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("run", help="execute one notebook with papermill")
    p.add_argument("notebook", help="notebook name (e.g. ff_spectra) or path")
    p.add_argument("-p", nargs=2, action="append", metavar=("NAME", "VALUE"), help="set a parameter")
    p.add_argument("--profile", choices=PROFILES)
    p.add_argument("-o", "--output", help="executed notebook path (default _build/executed/<profile>/<name>.ipynb)")
    p.add_argument("--dry-run", action="store_true", help=DRY_RUN_HELP)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("run-all", help="run every notebook's experiments, then execute the notebooks")
    p.add_argument("--profile", choices=PROFILES, required=True)
    p.add_argument("--gpus", default=None, help="comma-separated GPU ids (default: all visible)")
    p.add_argument("--jobs", type=int, default=None, help="parallel workers (default: one per GPU, else one per CPU core, one thread each)")
    p.add_argument("--only", default=None, help="only notebooks whose name contains this pattern")
    p.add_argument("--exclude", default=None, help="skip notebooks whose name contains this pattern")
    p.add_argument("--executor", choices=("local", "slurm"), default="local")
    p.add_argument("--partition", default=None)
    p.add_argument("--time", type=int, default=24 * 60, help="SLURM time limit in minutes")
    p.add_argument("--gpus-per-job", type=int, default=1)
    p.add_argument("--no-notebooks", action="store_true", help="only run the experiments")
    p.add_argument("--dry-run", action="store_true", help=DRY_RUN_HELP)
    p.set_defaults(func=cmd_run_all)

    p = sub.add_parser("data", help="check the paper datasets' files, or fabricate random ones for a dry run")
    p.add_argument("action", choices=("check", "fabricate"))
    p.add_argument("--root", default=None, help="data folder (default $FLATLIB_DATA, else ~/.cache/flatlib/data)")
    p.add_argument("--images", type=int, default=8, help="fabricate: random images per split")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("plan", help="what a profile costs: runs, epochs, images; --measure times them here")
    p.add_argument("--profile", choices=PROFILES, default="paper")
    p.add_argument("--only", default=None, help="only notebooks whose name contains this pattern")
    p.add_argument("--measure", action="store_true", help="time one epoch and each measure per notebook on this device")
    p.add_argument("--steps", type=int, default=5, help="--measure: timed optimizer steps per model")
    p.add_argument("--max-batch", type=int, default=0,
                   help="--measure: time at most this batch size and scale per step (a CPU smoke check); 0: the paper's")
    p.add_argument("--output", default=None, help="--measure: JSON file (default benchmarks/results/plan-<device>.json)")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("status", help="which results exist, per notebook")
    p.add_argument("--profile", choices=PROFILES, default="default")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("book", help="build the Jupyter Book")
    p.add_argument("--profile", choices=PROFILES, default="default")
    p.set_defaults(func=cmd_book)

    p = sub.add_parser("train", help="train one config (JSON file); works under torchrun")
    p.add_argument("--config", required=True)
    p.add_argument("--profile", choices=PROFILES, default="default")
    p.set_defaults(func=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
