"""Batch execution for GPU boxes and clusters: ``flatlib run-all`` and ``flatlib status``.

``run-all`` asks every notebook's Params for its training plan (``Params.plan``), drops runs
whose results are stored, and trains the rest in parallel — one worker per GPU (via
``CUDA_VISIBLE_DEVICES``) or ``--jobs`` CPU workers, each run a ``flatlib train`` subprocess
with its own log — or as SLURM jobs through submitit. Then it executes the notebooks with
papermill, which find every result stored. Killing it loses nothing: finished runs are in the
store, an interrupted run resumes from its last epoch checkpoint, and the store's per-run
lock means two ``run-all`` processes never train the same config at once.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import TypeVar

from filelock import Timeout
from tqdm.auto import tqdm

from flatlib.pipeline.registry import execute, executed_dir, notebook_classes, notebooks
from flatlib.progress import disable
from flatlib.store import Store
from flatlib.train import TrainConfig

T, S, R = TypeVar("T"), TypeVar("S"), TypeVar("R")


def plans(profile: str, only: str | None = None) -> dict[str, list[TrainConfig]]:
    """Each selected notebook's training runs at ``profile`` (notebook name -> configs)."""
    classes = notebook_classes()
    out = {}
    for name in notebooks():
        if only and only not in name or name not in classes:
            continue
        out[name] = list(classes[name].resolve(profile=profile).plan())
    return out


def _state(store: Store, cfg: TrainConfig) -> str:
    """done / running / failed / missing for one run."""
    key = cfg.key()
    if store.path("train", key).exists():
        return "done"
    lock = store.lock("train", key)
    try:
        lock.acquire(timeout=0)
        lock.release()
    except Timeout:
        return "running"
    if (store.dir / "failed" / f"train-{key}.json").exists():
        return "failed"
    return "missing"


def status_table(profile: str) -> str:
    """Runs done / running / failed / missing per notebook, as a text table."""
    store = Store(profile)
    lines = [f"results: {store.dir}", f"{'notebook':<24} {'done':>6} {'running':>8} {'failed':>7} {'missing':>8}"]
    for name, cfgs in plans(profile).items():
        counts = {"done": 0, "running": 0, "failed": 0, "missing": 0}
        for c in {c.key(): c for c in cfgs}.values():
            counts[_state(store, c)] += 1
        lines.append(f"{name:<24} {counts['done']:>6} {counts['running']:>8} {counts['failed']:>7} {counts['missing']:>8}")
    return "\n".join(lines)


def _pending(profile: str, only: str | None, exclude: str | None = None) -> list[TrainConfig]:
    """Unique runs without a stored result, parents before children."""
    store = Store(profile)
    seen: dict[str, TrainConfig] = {}
    for name, cfgs in plans(profile, only).items():
        if exclude and exclude in name:
            continue
        for c in cfgs:
            chain = []
            while c is not None:
                chain.append(c)
                c = c.parent
            for c in reversed(chain):
                seen.setdefault(c.key(), c)
    return [c for c in seen.values() if _state(store, c) != "done"]


def worker_env(gpu: str | None, workers: int) -> dict[str, str]:
    """The environment of one of ``workers`` concurrent training processes.

    The CPU cores are shared out (``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` = cores // workers, at
    least 1) so that parallel workers do not oversubscribe the machine; a value the user already
    exported wins. ``gpu`` pins the process to that device.
    """
    env = {**os.environ, "FLATLIB_QUIET": "1", "TQDM_DISABLE": "1"}
    threads = str(max(1, (os.cpu_count() or 1) // max(workers, 1)))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, threads)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return env


def _train_local(cfg: TrainConfig, profile: str, gpu: str | None, store: Store,
                 workers: int = 1) -> tuple[TrainConfig, int, Path]:
    """Train one config in a ``flatlib train`` subprocess; returns its exit code and log path."""
    queue = store.dir / "queue" / f"{cfg.key()}.json"
    log = store.dir / "logs" / f"{cfg.key()}.log"
    queue.parent.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    queue.write_text(json.dumps(cfg.to_dict()))
    env = worker_env(gpu, workers)
    with open(log, "w") as fh:
        code = subprocess.call([sys.executable, "-m", "flatlib.pipeline.cli", "train", "--config", str(queue),
                                "--profile", profile], stdout=fh, stderr=subprocess.STDOUT, env=env)
    return cfg, code, log


def _train_slurm_entry(cfg_dict: dict, profile: str, root: str) -> dict:
    """What a SLURM job runs (pickled by submitit): train one config into the shared store."""
    from flatlib.train import train

    return train(TrainConfig.from_dict(cfg_dict), Store(profile, root)).summary


def map_on_slots(fn: Callable[[T, S], R], items: Iterable[T], slots: Sequence[S]) -> Iterator[R]:
    """``fn(item, slot)`` for every item, in parallel, each on a slot that is free when it starts.

    The slots (GPU ids, or ``None`` for CPU workers) wait in a queue; a worker takes the next free
    one, runs, and puts it back. So a slot never serves more runs at once than it appears in
    ``slots``, however unequal the runs' lengths (assigning slots at submission, ``slots[i % n]``,
    can stack two runs on one GPU while another sits idle). Results come in order of completion.
    """
    free: queue.SimpleQueue = queue.SimpleQueue()
    for slot in slots:
        free.put(slot)

    def on_a_free_slot(item: T) -> R:
        slot = free.get()
        try:
            return fn(item, slot)
        finally:
            free.put(slot)

    with ThreadPoolExecutor(max_workers=max(len(slots), 1)) as pool:
        for fut in as_completed([pool.submit(on_a_free_slot, item) for item in items]):
            yield fut.result()


def _slots(args: argparse.Namespace) -> list[str | None]:
    if args.gpus:
        gpus = [g.strip() for g in args.gpus.split(",") if g.strip()]
    else:
        import torch

        gpus = [str(i) for i in range(torch.cuda.device_count())]
    jobs = args.jobs or len(gpus) or (os.cpu_count() or 1)
    return [gpus[i % len(gpus)] if gpus else None for i in range(jobs)]


def run_all(args: argparse.Namespace) -> int:
    """Train every pending run in parallel, then execute the notebooks; non-zero exit if anything failed."""
    store = Store(args.profile)
    exclude = getattr(args, "exclude", None)
    pending = _pending(args.profile, args.only, exclude)
    owner = {c.key(): name for name, cfgs in plans(args.profile, args.only).items() for c in cfgs
             if not (exclude and exclude in name)}
    failed: list[str] = []
    slots = _slots(args)
    print(f"run-all {args.profile}: {len(pending)} runs to train ({store.dir})", flush=True)
    bar = tqdm(total=len(pending), desc="runs", disable=disable(bool(pending)))
    if args.executor == "slurm":
        import submitit

        cluster = os.environ.get("FLATLIB_SUBMITIT_CLUSTER")  # "local" in tests
        ex = submitit.AutoExecutor(folder=str(store.dir / "logs" / "submitit"), cluster=cluster)
        ex.update_parameters(timeout_min=args.time, gpus_per_node=args.gpus_per_job,
                             **({"slurm_partition": args.partition} if args.partition and cluster != "local" else {}))
        jobs = [(c, ex.submit(_train_slurm_entry, c.to_dict(), args.profile, str(store.dir.parent))) for c in pending]
        for cfg, job in jobs:
            try:
                job.result()
                bar.write(f"done   {cfg.model}/{cfg.rule} {cfg.key()}")
            except Exception as err:  # a failed job is reported, the others go on
                failed.append(cfg.key())
                bar.write(f"FAILED {cfg.key()} {json.dumps(cfg.to_dict(hashed_only=True))}: {str(err).splitlines()[-1]} "
                          f"(logs: {job.paths.stdout})")
            bar.update()
    else:
        # parents first: a child waits on its parent's lock anyway, but this keeps workers busy
        def train_one(cfg: TrainConfig, gpu: str | None) -> tuple[TrainConfig, int, Path]:
            return _train_local(cfg, args.profile, gpu, store, len(slots))

        for cfg, code, log in map_on_slots(train_one, pending, slots):
            if code == 0:
                bar.write(f"done   {cfg.model}/{cfg.rule} seed={cfg.seed} {cfg.key()}")
            else:
                failed.append(f"{owner.get(cfg.key(), 'a parent run')} (run {cfg.key()})")
                bar.write(f"FAILED {cfg.key()} {json.dumps(cfg.to_dict(hashed_only=True))} for notebook "
                          f"{owner.get(cfg.key(), '(a parent run)')} (log: {log})")
            bar.update()
    bar.close()
    if not args.no_notebooks:
        # on a GPU box the notebooks share device 0: one at a time unless --jobs says otherwise; on the CPU one
        # per core. The papermill kernels inherit this process's environment: each gets its share of the cores
        kernels = args.jobs or (1 if any(s is not None for s in slots) else len(slots))
        threads = worker_env(None, kernels)
        os.environ.update({v: threads[v] for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")})
        names = [n for n in notebooks() if not (args.only and args.only not in n) and not (exclude and exclude in n)]
        # notebooks whose runs are all stored are independent, except study_population, which may read every
        # other notebook's results (include_stored): it runs last, alone
        last = [n for n in names if n == "study_population"]
        for group in ([n for n in names if n not in last], last):
            with ThreadPoolExecutor(max_workers=max(1, min(kernels, len(group) or 1))) as pool:
                futures = {pool.submit(execute, n, {"profile": args.profile}, executed_dir(args.profile) / f"{n}.ipynb",
                                       ): n for n in group}
                for fut in as_completed(futures):
                    try:
                        print(f"notebook {futures[fut]} -> {fut.result()}", flush=True)
                    except RuntimeError as err:
                        failed.append(futures[fut])
                        print(f"FAILED {err}", file=sys.stderr, flush=True)
    print(f"run-all {args.profile}: {len(failed)} failed" + (f": {', '.join(failed)}" if failed else ""), flush=True)
    return 1 if failed else 0
