"""The dry run: every paper-profile code path, truncated, on fabricated data, in its own results folder.

``flatlib run-all --profile paper --dry-run`` (and ``flatlib run NB --profile paper --dry-run``)
exports the settings below as ``FLATLIB_DRYRUN*`` environment variables, so that the training
subprocesses and the papermill kernels see them too, points ``$FLATLIB_DATA`` at fabricated
files in each dataset's real format (`flatlib.data.fabricate`) and ``$FLATLIB_RESULTS`` at a
folder of its own (never ``results/``). The paper presets are not touched; the truncation lives
in two places:

- **Params** (`cap_params`, called by ``Params.resolve``): iteration counts (Lanczos, SLQ,
  Hutchinson, bootstrap, …) are capped at ``iters``; sample counts that must fit the fabricated
  data (``n_train``, ``confusion``, ``validation``, ``n_measure``, …) at a fraction of ``images``;
  ``seeds`` keep their first ``seeds`` entries and every other sweep list its first ``levels``
  (at most ``levels³`` grid points per notebook; FIM's ``dataset:model`` pairs keep one pair per
  model, so every paper model runs). The capped values still respect each field's lower bound.
  ``include_stored`` (study_population measuring every other notebook's models) is off unless
  ``stored=1``. With ``batch`` > 0 a scalar ``batch_size`` is capped too (PoF measures on mini-batches of it).
- **the engine** (`executed_epochs`, `max_steps`, `batch_size`): a run keeps its epochs, schedule,
  model, rule and augmentation, but only the epochs that matter (first, last, snapshot epochs,
  the start of iterate averaging or of a regularizer) take ``steps`` optimizer steps and an
  evaluation; the others repeat the previous record. ``batch`` > 0 caps the batch size (CPU CI);
  0 keeps the paper's.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV = "FLATLIB_DRYRUN"

# Params fields that count iterations or Monte-Carlo samples: capped at ``iters`` (at least the field's bound)
ITERATION_FIELDS = ("lanczos_iters", "slq_iters", "slq_vectors", "trace_samples", "trace_matvecs", "num_subsets",
                    "pac_samples", "pac_iters", "bootstrap", "num_minibatches", "slice_points", "steps", "n_prime")
# Params fields that count images and must fit the fabricated splits: capped at images // divisor
IMAGE_FIELDS = {"n_train": 2, "grid_n_train": 2, "n_measure": 2, "hessian_samples": 2, "confusion": 4,
                "validation": 4, "search_batch_size": 2}
# image-count fields whose None means "every image": capped like a number in a dry run
NONE_MEANS_ALL = ("hessian_samples",)
# lists that are not sweeps (a schedule, or a pair that defines one run) keep every entry
NOT_SWEEPS = ("milestones", "post_epochs", "bn_modes", "w0")


@dataclass(frozen=True)
class Settings:
    """How far a dry run truncates (see the module docstring)."""

    steps: int = 1        # optimizer steps per executed epoch
    iters: int = 2        # cap on iteration-count parameters
    images: int = 8       # images per split of the fabricated data (CIFAR-10: per training file)
    batch: int = 8        # cap on the batch size; 0: the paper's
    seeds: int = 1        # seeds kept per notebook
    levels: int = 2       # entries kept per sweep list, at most levels³ grid points per notebook; 0: all
    compile: int = 1      # 0: eager steps (torch.compile off), e.g. to time many shapes quickly
    stored: int = 0       # 1: study_population also measures every stored run (include_stored), as at full size

    def to_env(self) -> dict[str, str]:
        return {ENV: "1", **{f"{ENV}_{f.name.upper()}": str(getattr(self, f.name)) for f in dataclasses.fields(self)}}


def from_env() -> Settings:
    """The defaults, with any ``FLATLIB_DRYRUN_<FIELD>`` the environment sets (e.g. ``FLATLIB_DRYRUN_BATCH=0``)."""
    given = {f.name: int(os.environ[f"{ENV}_{f.name.upper()}"]) for f in dataclasses.fields(Settings)
             if f"{ENV}_{f.name.upper()}" in os.environ}
    return Settings(**given)


def settings() -> Settings | None:
    """The active dry-run settings (from the environment), or None outside a dry run."""
    if os.environ.get(ENV, "") in ("", "0"):
        return None
    return from_env()


def results_root(profile: str) -> Path:
    """Where a dry run of ``profile`` writes: ``<project>/results-dryrun`` (the store adds ``/<profile>``)."""
    from flatlib.store import project_root

    return project_root() / "results-dryrun"


def data_root() -> Path:
    """The fabricated data folder: ``<project>/results-dryrun/data``."""
    return results_root("paper") / "data"


def environment(s: Settings, profile: str = "paper", data: Path | None = None,
                results: Path | None = None) -> dict[str, str]:
    """The variables a dry-run process and its children run with: settings, fabricated data, own results root."""
    return {**s.to_env(), "FLATLIB_DATA": str(data or data_root()), "FLATLIB_RESULTS": str(results or results_root(profile))}


# ------------------------------------------------------------------------------------------ Params
def cap_params(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` of a Params class with the dry-run caps applied (unchanged outside a dry run)."""
    s = settings()
    if s is None:
        return values
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out = dict(values)
    grid = 1  # points of the notebook's sweep grid so far (lists in field order)
    for name, v in values.items():
        if name == "include_stored" and v and not s.stored:
            out[name] = False  # measuring every other notebook's (paper-size) model is the GPU dry run's job
            continue
        if v is None and name in NONE_MEANS_ALL:
            v = s.images
        if v is None or name == "profile":
            continue
        lo = fields[name].metadata.get("lo")
        if name == "batch_size" and s.batch and isinstance(v, int):
            out[name] = min(v, s.batch)  # also the measures' mini-batches (PoF F5/F6), not only the engine's steps
            continue
        if name == "seeds" and isinstance(v, list):
            out[name] = v[:s.seeds]
            continue
        cap = s.iters if name in ITERATION_FIELDS else (max(1, s.images // IMAGE_FIELDS[name]) if name in IMAGE_FIELDS
                                                        else None)
        if name == "pairs" and s.levels:  # "dataset:model" pairs: one per model, so every paper model runs
            first: dict[str, str] = {}
            for pair in v:
                first.setdefault(pair.split(":")[-1], pair)
            v = list(first.values())
        elif isinstance(v, list) and name not in NOT_SWEEPS and s.levels:
            v = v[:max(1, min(s.levels, s.levels ** 3 // grid))]
            grid *= len(v)
        if cap is not None:
            cap = max(cap, lo) if lo is not None else cap
            v = [min(x, cap) for x in v] if isinstance(v, list) else (min(v, cap) if isinstance(v, (int, float))
                                                                     and not isinstance(v, bool) else v)
            if isinstance(v, list):
                v = list(dict.fromkeys(v))  # equal capped levels are one level
        out[name] = v
    return out


# ------------------------------------------------------------------------------------------ engine
def executed_epochs(cfg) -> set[int] | None:
    """0-based epochs a dry run trains and evaluates (None: all, outside a dry run)."""
    if settings() is None:
        return None
    keep = {0, cfg.epochs - 1} | {e - 1 for e in cfg.snapshot_epochs}
    if cfg.averaging_start:
        keep.add(cfg.averaging_start - 1)
    start = cfg.rule_kwargs.get("start_epoch")
    if isinstance(start, int):
        keep.add(start)
    return {e for e in keep if 0 <= e < cfg.epochs}


def compile_allowed() -> bool:
    """False when a dry run turns ``torch.compile`` off (``compile=0``)."""
    s = settings()
    return s is None or bool(s.compile)


def max_steps() -> int | None:
    """Optimizer steps per executed epoch in a dry run (None: the whole epoch)."""
    s = settings()
    return s.steps if s is not None else None


def batch_size(size: int) -> int:
    """The batch size a run trains with: the config's, capped in a dry run with ``batch`` > 0."""
    s = settings()
    return min(size, s.batch) if s is not None and s.batch > 0 else size
