"""``flatlib plan``: what a profile costs — runs, epochs and images per notebook, and with ``--measure`` device-hours.

Without ``--measure`` the plan is arithmetic on each notebook's run plan: unique runs (parents
included), the epochs they train, the images per epoch (the paper datasets' official split sizes,
less validation hold-outs, plus confusion sets), and the Hessian work of the FF-style
measurements in image-HVPs (one Hessian-vector product over one image). With ``--measure`` it
times, on this machine's device:

- **training**: each distinct training shape of the notebook (dataset, model, rule, batch size,
  augmentation) through the real engine — a dry run (`flatlib.dryrun`) of two epochs of
  ``--steps`` steps on fabricated data, the first a warm-up (cuDNN autotuning, compilation), the
  second timed — giving seconds per step, hence seconds per epoch;
- **measures**: one HVP over a batch of fabricated images on the notebook's model (seconds per
  image-HVP), and for the FIM scenarios one subset of the Fisher metrics;

and projects device-hours = Σ runs epochs × s/epoch + measure work × its unit time. The total
leaves out ``fim_imagenet`` (FIM-T2 needs ImageNet and is not implemented). The result is
written as ``benchmarks/results/plan-<device>.json`` (the benchmark result format the
Performance page reads), naming the device.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from flatlib.data import TRAIN_IMAGES
from flatlib.train.config import TrainConfig

EXCLUDED = {"fim_imagenet": "FIM-T2 needs ImageNet (and a streaming loader and WRN-18-1.5 flatlib lacks)"}


# ------------------------------------------------------------------------------------------ the runs
def notebook_runs(name: str, p) -> list[TrainConfig]:
    """Every training run of notebook ``name`` (parents included, unique), also for notebooks that train
    inside their ``run`` function instead of declaring a ``plan`` (the PoF notebooks)."""
    cfgs = list(p.plan())
    out: dict[str, TrainConfig] = {}
    for c in cfgs:
        while c is not None:
            out.setdefault(c.key(), c)
            c = c.parent
    return list(out.values())


def images_per_epoch(cfg: TrainConfig) -> int:
    """Training images one epoch of ``cfg`` passes over (official split, less hold-out, plus confusion)."""
    base = cfg.dataset_kwargs.get("n_train", TRAIN_IMAGES.get(cfg.dataset, 0))
    if cfg.dataset == "svhn" and cfg.dataset_kwargs.get("extra"):
        base += 531_131
    base -= cfg.dataset_kwargs.get("validation", 0)
    n = cfg.n_train if cfg.n_train is not None else base - cfg.confusion
    return n + cfg.confusion


def hessian_image_hvps(p, runs: list[TrainConfig]) -> int:
    """Image-HVPs of the FF-style curvature measurements (λ1, SLQ, trace, tr H²) over every run and BN mode."""
    if not hasattr(p, "lanczos_iters") or not hasattr(p, "slq_iters"):
        return 0
    per_run = p.lanczos_iters + p.slq_vectors * p.slq_iters + 2 * p.trace_samples
    modes = len(getattr(p, "bn_modes", None) or ["eval"])
    return sum(per_run * modes * min(p.hessian_samples or images_per_epoch(c), images_per_epoch(c)) for c in runs)


def shape(cfg: TrainConfig) -> tuple:
    """What decides the cost of one training step."""
    return (cfg.dataset, cfg.model, json.dumps(cfg.model_kwargs, sort_keys=True), cfg.rule,
            json.dumps(cfg.rule_kwargs, sort_keys=True), cfg.batch_size, cfg.optimizer)


def static_plan(profile: str, only: str | None = None) -> list[dict[str, Any]]:
    """One row per notebook: runs, epochs, images per epoch (range), image-epochs, image-HVPs."""
    from flatlib.pipeline.registry import notebook_classes, notebooks

    NOTEBOOKS = notebook_classes()

    rows = []
    for name in notebooks():
        if name not in NOTEBOOKS or (only and only not in name):
            continue
        p = NOTEBOOKS[name].resolve(profile=profile)
        runs = notebook_runs(name, p)
        images = [images_per_epoch(c) for c in runs]
        rows.append({"notebook": name, "runs": len(runs), "epochs": sum(c.epochs for c in runs),
                     "images_per_epoch": f"{min(images):,}–{max(images):,}" if images and min(images) != max(images)
                     else (f"{images[0]:,}" if images else "—"),
                     "image_epochs": sum(c.epochs * n for c, n in zip(runs, images)),
                     "image_hvps": hessian_image_hvps(p, runs), "excluded": EXCLUDED.get(name, "")})
    return rows


# ------------------------------------------------------------------------------------------ timing
def _timed_steps(cfg: TrainConfig, steps: int) -> float:
    """Seconds per optimizer step of ``cfg``: the engine in a 2-epoch dry run, epoch 1 warms up, epoch 2 is timed."""
    from flatlib import dryrun
    from flatlib.train.engine import dataset_for, train

    probe = cfg.replace(epochs=2, parent=None, parent_epoch=None, snapshot_epochs=(), averaging_start=None,
                        schedule="constant", milestones=(), n_train=None, confusion=0, dataset_kwargs={},
                        rule_kwargs={k: v for k, v in cfg.rule_kwargs.items() if k != "start_epoch"},
                        progress=False, device="auto")
    result = train(probe)
    done = min(steps, math.ceil(dataset_for(probe).n_train / dryrun.batch_size(probe.batch_size)))
    return result.records[-1]["seconds"] / done


def _hvp_seconds_per_image(cfg: TrainConfig, dtype: str, batch: int) -> float:
    """Seconds of one Hessian-vector product per image, on ``batch`` random images through the notebook's model."""
    import torch

    from flatlib.curvature import HessianOperator
    from flatlib.train.engine import dataset_for, model_for, resolve_device

    device = resolve_device("auto")
    ds = dataset_for(cfg.replace(n_train=None, confusion=0, dataset_kwargs={}))
    model = model_for(cfg, ds).to(device).eval()
    x = torch.randn(batch, *ds.x_train.shape[1:], device=device)
    y = torch.randint(0, ds.num_classes, (batch,), device=device)
    H = HessianOperator(model, (x, y), dtype=getattr(torch, dtype))
    v = torch.randn(H.dim, device=device, dtype=H.dtype)
    H @ v  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    H @ v
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / batch


def _fisher_seconds(cfg: TrainConfig, p) -> float:
    """Seconds of the FIM metrics of one run (T subsets of N′ points), from one timed subset."""
    import torch

    from flatlib.train.engine import dataset_for, model_for, resolve_device
    from flatlib.fisher import fim_metrics

    device = resolve_device("auto")
    ds = dataset_for(cfg.replace(n_train=None, confusion=0, dataset_kwargs={}))
    model = model_for(cfg, ds).to(device).eval()
    x = torch.randn(p.n_prime, *ds.x_train.shape[1:], device=device)
    y = torch.randint(0, ds.num_classes, (p.n_prime,), device=device)
    t0 = time.perf_counter()
    fim_metrics(model, x, y, n_prime=p.n_prime, num_subsets=1, seed=0)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) * p.num_subsets


def measured_plan(profile: str, only: str | None, steps: int, max_batch: int, log=print) -> list[dict[str, Any]]:
    """`static_plan` plus seconds per epoch (per training shape) and per measure, timed on this device."""
    import flatlib.experiments  # noqa: F401
    from flatlib import dryrun
    from flatlib.pipeline.registry import notebook_classes

    NOTEBOOKS = notebook_classes()

    rows = static_plan(profile, only)
    # the profile's own values: resolved before the probes' dry-run environment would cap them
    resolved = {r["notebook"]: NOTEBOOKS[r["notebook"]].resolve(profile=profile) for r in rows}
    planned = {name: notebook_runs(name, p) for name, p in resolved.items()}
    biggest = max([c.batch_size for runs in planned.values() for c in runs] or [1])
    batch = min(biggest, max_batch) if max_batch else biggest
    # fabricated data large enough for `steps` full batches; CIFAR-10 holds 5 files of `images`
    settings = dataclasses.replace(dryrun.from_env(), steps=steps, iters=2, seeds=1, levels=0, batch=max_batch,
                                   images=max(8, math.ceil(steps * batch / 5) + 8))  # FLATLIB_DRYRUN_COMPILE passes
    saved = {k: os.environ.get(k) for k in dryrun.environment(settings)}
    with tempfile.TemporaryDirectory(prefix="flatlib-plan-") as tmp:
        # fabricated data and probe results in a folder of their own: never a results store, nor a dry run's data
        from flatlib.data.fabricate import prepare_dry_run

        prepare_dry_run(settings, data=Path(tmp) / "data", results=Path(tmp) / "results")
        try:
            cache: dict[tuple, float] = {}
            for row in rows:
                p, runs = resolved[row["notebook"]], planned[row["notebook"]]
                train_s = 0.0
                per_epoch = {}
                for c in runs:
                    key = shape(c)
                    if key not in cache:
                        t0 = time.perf_counter()
                        cache[key] = _timed_steps(c, steps)
                        log(f"  {row['notebook']}: {c.model}/{c.rule} batch {c.batch_size} on {c.dataset}: "
                            f"{cache[key]:.3g} s/step ({time.perf_counter() - t0:.0f} s to time)")
                    # timed at the (capped) batch size: scale by the steps an epoch takes at that size
                    n_steps = math.ceil(images_per_epoch(c) / (min(c.batch_size, max_batch) if max_batch
                                                               else c.batch_size))
                    per_epoch[f"{c.model}/{c.rule}/b{c.batch_size}"] = cache[key] * n_steps
                    train_s += cache[key] * n_steps * c.epochs
                measure_s = None
                if row["image_hvps"]:
                    unit = _hvp_seconds_per_image(runs[0], getattr(p, "dtype", "float32"),
                                                  min(p.hessian_batch_size or 256, 256, max_batch or 256))
                    measure_s = unit * row["image_hvps"]
                    row["s_per_image_hvp"] = unit
                elif hasattr(p, "n_prime") and hasattr(p, "num_subsets") and row["notebook"].startswith("fim_") and runs:
                    measure_s = _fisher_seconds(runs[0], p) * len(runs)
                row.update(s_per_epoch=per_epoch, train_hours=train_s / 3600,
                           measure_hours=None if measure_s is None else measure_s / 3600,
                           device_hours=train_s / 3600 + (measure_s or 0.0) / 3600)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    return rows


# ------------------------------------------------------------------------------------------ output
def device_label() -> tuple[str, str]:
    """(device name, file-name slug): the GPU model, or the CPU model with its thread count and slug ``cpu``."""
    import torch

    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        return name, re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    cpu = platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu} ({torch.get_num_threads()} threads)", "cpu"


def plan_payload(rows: list[dict[str, Any]], profile: str, steps: int, max_batch: int,
                 compiled: bool = True) -> dict[str, Any]:
    """The plan in the benchmark result format (``results``: one ``device_hours`` row per notebook)."""
    import torch

    import flatlib
    from flatlib.store import provenance

    name, _ = device_label()
    total = sum(r.get("device_hours") or 0.0 for r in rows if not r["excluded"])
    results = [{"name": r["notebook"], "metric": "device_hours", "value": r.get("device_hours"), "unit": "h",
                "baseline": None, "ratio": None} for r in rows]
    results.append({"name": "total (excluding FIM-T2)", "metric": "device_hours", "value": total, "unit": "h",
                    "baseline": None, "ratio": None})
    return {"benchmark": "plan", "device": name, "profile": profile, "date": _dt.datetime.now(_dt.timezone.utc)
            .isoformat(timespec="seconds"), "versions": {"flatlib": flatlib.__version__, "torch": torch.__version__},
            "commit": provenance()["commit"], "steps": steps, "max_batch": max_batch, "compiled": compiled,
            "quick": bool(max_batch), "total_hours_excluding_imagenet": total, "notebooks": rows, "results": results}


def format_table(rows: list[dict[str, Any]]) -> str:
    import pandas as pd

    cols = ["notebook", "runs", "epochs", "images_per_epoch", "image_epochs", "image_hvps"]
    if any("device_hours" in r for r in rows):
        cols += ["train_hours", "measure_hours", "device_hours"]
    frame = pd.DataFrame(rows)[cols]
    text = frame.to_string(index=False, float_format=lambda v: f"{v:,.2f}")
    if "device_hours" in cols:
        total = sum(r["device_hours"] or 0 for r in rows if not r["excluded"])
        text += f"\ntotal device-hours excluding FIM-T2 (ImageNet): {total:,.1f}"
    for r in rows:
        if r["excluded"]:
            text += f"\n{r['notebook']}: not in the total: {r['excluded']}"
    return text


def cost_plan(args: argparse.Namespace) -> int:
    """The ``flatlib plan`` command."""
    if not args.measure:
        print(format_table(static_plan(args.profile, args.only)))
        return 0
    rows = measured_plan(args.profile, args.only, args.steps, args.max_batch)
    from flatlib import dryrun

    payload = plan_payload(rows, args.profile, args.steps, args.max_batch, compiled=bool(dryrun.from_env().compile))
    print(f"device: {payload['device']}")
    print(format_table(rows))
    _, slug = device_label()
    out = Path(args.output) if args.output else (Path(__file__).resolve().parent.parent / "benchmarks" / "results"
                                                 / f"plan-{slug}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    print(f"wrote {out}")
    return 0
