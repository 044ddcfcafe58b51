"""The training engine: one function that trains a model from a ``TrainConfig``.

It reads top to bottom: data on the device, model, update rule, optimizer, then epochs of
``rule.step`` calls, an evaluation, a checkpoint. The loop never changes for a new method;
SAM, PoF and the Fisher regularizer are update rules (``flatlib.train.rules``). Results go to the
results store keyed by the config hash; a rerun of the same config reuses the result or
resumes from the last epoch checkpoint. A non-finite loss stops the run (``Diverged``),
keeps the last good checkpoint and writes no result.
"""
from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from flatlib._torch import weight_norm
from flatlib.data import ArrayDataset, BatchLoader, confusion_dataset, load_dataset, subset
from flatlib.models import build_model
from flatlib.progress import disable, quiet  # noqa: F401  (quiet: used by the experiments)
from flatlib.store import Store
from flatlib.train.config import CUDA_GRAPH_MODES, TrainConfig
from flatlib.train.optim import Plateau, build_optimizer, lr_at, set_lr
from flatlib.train.rules import StepContext, build_rule

# steps between host reads of the per-step losses (NaN check); the loop itself never waits for the device
_CHECK_EVERY = 50

# rule_kwargs the engine itself consumes (schedule of iterate averaging), not passed to the rule


def dist_info() -> tuple[int, int]:
    """(rank, world size) of the torch.distributed process group, (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class Diverged(RuntimeError):
    """The loss became NaN or Inf; the message names epoch and step."""


class OutOfMemory(RuntimeError):
    """The device ran out of memory; the message suggests what to shrink."""


@dataclass
class TrainResult:
    config: TrainConfig
    records: list[dict[str, Any]]
    summary: dict[str, Any]
    logs: dict[str, list[float]] = field(default_factory=dict)

    @property
    def frame(self) -> pd.DataFrame:
        """Per-epoch records as a tidy DataFrame."""
        return pd.DataFrame(self.records)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device={name!r} requested but CUDA is not available; use device='cpu' or 'auto'")
    return torch.device(name)


@functools.lru_cache(maxsize=8)
def _load(name: str, kwargs_json: str) -> ArrayDataset:
    return load_dataset(name, **json.loads(kwargs_json))


def dataset_for(cfg: TrainConfig) -> ArrayDataset:
    """The run's data: the named dataset, then the seed's training subset / confusion set."""
    ds = _load(cfg.dataset, json.dumps(cfg.dataset_kwargs, sort_keys=True))
    if cfg.confusion or cfg.n_train is not None:
        n = cfg.n_train if cfg.n_train is not None else ds.n_train - cfg.confusion
        ds = confusion_dataset(ds, n, cfg.confusion, seed=cfg.seed) if cfg.confusion else subset(ds, n, seed=cfg.seed)
    return ds


def model_for(cfg: TrainConfig, ds: ArrayDataset) -> nn.Module:
    return build_model(cfg.model, in_channels=ds.in_channels, num_classes=ds.num_classes,
                       input_size=ds.input_size, **cfg.model_kwargs)


def criterion_for(cfg: TrainConfig):
    return functools.partial(F.cross_entropy, label_smoothing=cfg.label_smoothing)


def loader(ds: ArrayDataset, split: str, batch_size: int, device: torch.device, *, train: bool = False,
           cfg: TrainConfig | None = None, seed: int = 0) -> BatchLoader:
    """A device-resident loader; ``train=True`` shuffles and augments as the config says."""
    x, y = (ds.x_train, ds.y_train) if split == "train" else (ds.x_test, ds.y_test)
    aug = dict(augment=cfg.augment, cutout=cfg.cutout) if (train and cfg is not None) else {}
    return BatchLoader(x, y, batch_size, shuffle=train, mean=ds.mean, std=ds.std, device=device, seed=seed, **aug)


@torch.no_grad()
def evaluate(model: nn.Module, batches: BatchLoader, autocast=contextlib.nullcontext) -> tuple[float, float]:
    """Mean cross-entropy and error (%) of ``model`` in eval mode over the loader (mode restored after)."""
    was = model.training
    model.eval()
    loss = torch.zeros((), dtype=torch.float64, device=batches.device)
    wrong = torch.zeros((), dtype=torch.float64, device=batches.device)
    n = 0
    for x, y in batches:
        with autocast():
            out = model(x)
        loss += F.cross_entropy(out.float(), y, reduction="sum")
        wrong += (out.argmax(1) != y).sum()
        n += len(y)
    model.train(was)
    return float(loss) / n, 100.0 * float(wrong) / n


def _cycle(batches: BatchLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    epoch = 0
    while True:
        batches.set_epoch(epoch)
        yield from batches
        epoch += 1


# ---------------------------------------------------------------------------------------------
def train(cfg: TrainConfig, store: Store | None = None) -> TrainResult:
    """Train (or reuse / resume) the run ``cfg``; returns its per-epoch records.

    With a store, a finished result is returned without training, and an interrupted run
    resumes from its last epoch checkpoint. The final weights are kept as a checkpoint for
    later measurements (``load_model``).
    """
    if store is not None and dist_info()[0] != 0:
        return _run(cfg, store)  # DDP worker: rank 0 alone locks and writes the result
    if store is not None:
        entry = store.get("train", cfg.to_dict(hashed_only=True))
        if entry is not None:
            return TrainResult(cfg, entry.data["records"], entry.data["summary"], entry.data.get("logs", {}))
        with store.lock("train", cfg.key()):
            entry = store.get("train", cfg.to_dict(hashed_only=True))
            if entry is not None:
                return TrainResult(cfg, entry.data["records"], entry.data["summary"], entry.data.get("logs", {}))
            result = _run(cfg, store)
            store.put("train", cfg.to_dict(hashed_only=True),
                      {"records": result.records, "summary": result.summary, "logs": result.logs})
            return result
    return _run(cfg, None)


def load_model(cfg: TrainConfig, store: Store, epoch: int | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """The run's weights (final, or at a snapshot epoch), retraining if the checkpoint is missing."""
    path = store.checkpoint_dir(cfg.key()) / ("final.pt" if epoch in (None, cfg.epochs) else f"epoch{epoch}.pt")
    if not path.exists():
        snaps = tuple(sorted(set(cfg.snapshot_epochs) | ({epoch} if epoch not in (None, cfg.epochs) else set())))
        _run(cfg.replace(snapshot_epochs=snaps), store)
    ds = dataset_for(cfg)
    model = model_for(cfg, ds)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("config_key") != cfg.key():
        raise RuntimeError(f"checkpoint {path} belongs to config {state.get('config_key')}, not {cfg.key()}; refusing to load")
    model.load_state_dict(state["model"])
    return model.to(device).eval()


def compile_mode(cfg: TrainConfig, rule, cuda: bool, world: int) -> str | None:
    """The ``torch.compile`` mode of the run's step model, None for eager.

    ``"auto"`` picks CUDA graphs (``"reduce-overhead"``, the fastest setting measured in
    ``benchmarks/train_throughput.py``) on a single CUDA device for rules that declare
    ``cuda_graphs``; everything else (CPU, DDP, PoF, the Fisher regularizer) runs eager.
    """
    if cfg.compile == "auto":
        return "reduce-overhead" if cuda and world == 1 and rule.cuda_graphs else None
    if cfg.compile is False:
        return None
    return "default" if cfg.compile is True else cfg.compile


def _save(path, payload: dict) -> None:
    if dist_info()[0] != 0:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _run(cfg: TrainConfig, store: Store | None) -> TrainResult:
    try:
        return _train_loop(cfg, store)
    except torch.OutOfMemoryError:
        raise OutOfMemory(f"out of device memory training {cfg.model} with batch_size={cfg.batch_size}: use a smaller "
                          "batch_size (or model width); for Hessian/Fisher estimators pass a smaller batch_size/chunk_size"
                          ) from None


def _train_loop(cfg: TrainConfig, store: Store | None) -> TrainResult:
    device = resolve_device(cfg.device)
    cuda = device.type == "cuda"
    torch.manual_seed(cfg.seed)
    ds = dataset_for(cfg)
    model = model_for(cfg, ds)
    if cfg.parent is not None:
        if store is None:
            raise ValueError("a run with a parent needs a results store to find the parent's weights")
        train(cfg.parent, store)
        model.load_state_dict(load_model(cfg.parent, store, epoch=cfg.parent_epoch).state_dict())
    model.to(device)
    if cuda:
        # every step has the same input shape (the last batch aside): let cuDNN pick the fastest kernels
        torch.backends.cudnn.benchmark = True
    rule = build_rule(cfg.rule, **cfg.rule_kwargs)
    channels_last = cuda and cfg.channels_last and rule.channels_last
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(cfg, rule.trainable(model), fused=cuda)
    plateau = Plateau(cfg.lr) if cfg.schedule == "plateau" else None
    averaged = torch.optim.swa_utils.AveragedModel(model) if cfg.averaging_start else None
    autocast = (functools.partial(torch.autocast, "cuda", dtype=torch.bfloat16)
                if cuda and cfg.amp else contextlib.nullcontext)
    rank, world = dist_info()
    mode = compile_mode(cfg, rule, cuda, world)
    # static shapes: the shorter last batch gets its own graph instead of a dynamic-shape recompile
    step_model = torch.compile(model, dynamic=False, mode=mode) if mode else model
    # CUDA graphs replay into the same output buffers: mark where each step begins
    cudagraphs = cuda and mode in CUDA_GRAPH_MODES
    if world > 1:
        # DDP: every rank draws the same global batch (same seed) and trains on its contiguous
        # shard; gradients are averaged across ranks, so the step equals the single-process one.
        if cfg.batch_size % world:
            raise ValueError(f"batch_size={cfg.batch_size} is not divisible by the world size {world}")
        step_model = nn.parallel.DistributedDataParallel(step_model, device_ids=[device.index] if cuda else None)

    train_batches = loader(ds, "train", cfg.batch_size, device, train=True, cfg=cfg, seed=cfg.seed)
    extra = _cycle(loader(ds, "train", cfg.batch_size, device, train=True, cfg=cfg, seed=cfg.seed + 10_000))
    test_batches = loader(ds, "test", 1024, device)
    criterion = criterion_for(cfg)
    def shard(batch):
        return tuple(t.chunk(world)[rank] for t in batch) if world > 1 else batch

    ctx = StepContext(step_model, optimizer, criterion, draw_batch=lambda: shard(next(extra)), autocast=autocast)

    ckpt_dir = store.checkpoint_dir(cfg.key()) if store else None
    records: list[dict[str, Any]] = []
    logs: dict[str, list[float]] = {}
    start = 0
    if ckpt_dir is not None and (ckpt_dir / "last.pt").exists():
        state = torch.load(ckpt_dir / "last.pt", map_location=device, weights_only=True)
        if state["config_key"] != cfg.key():
            raise RuntimeError(f"checkpoint {ckpt_dir / 'last.pt'} is from config {state['config_key']}, not {cfg.key()}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        rule.load_state_dict(state["rule"])
        if plateau:
            plateau.load_state_dict(state["plateau"])
        if averaged is not None and state.get("averaged"):
            averaged.load_state_dict(state["averaged"])
        torch.set_rng_state(state["rng"].cpu())
        records, logs, start = json.loads(state["records"]), json.loads(state["logs"]), state["epoch"]

    bar = tqdm(range(start, cfg.epochs), desc=f"{cfg.model}/{cfg.rule}", disable=disable(cfg.progress),
               initial=start, total=cfg.epochs, leave=False)
    step = start * len(train_batches)
    for epoch in bar:
        lr = plateau.lr if plateau else lr_at(cfg, epoch)
        set_lr(optimizer, lr)
        model.train()
        train_batches.set_epoch(epoch)
        ctx.epoch, ctx.logs = epoch, {}
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        # every step's loss stays on the device; finiteness is read on the host every _CHECK_EVERY steps
        # (one sync per check, none per step) and the first non-finite step is found from this buffer
        step_losses = torch.zeros(len(train_batches), dtype=torch.float64, device=device)
        checked = 0
        t0 = time.perf_counter()
        for i, (x, y) in enumerate(train_batches):
            if channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            ctx.step = step
            x, y = shard((x, y))
            if cudagraphs:
                torch.compiler.cudagraph_mark_step_begin()
            loss = rule.step(ctx, x, y)
            loss_sum += loss.double()
            step_losses[i] = loss.detach()
            step += 1
            if (i + 1) % _CHECK_EVERY == 0 or i + 1 == len(step_losses):
                _check_finite(step_losses, checked, i + 1, cfg, store, epoch)
                checked = i + 1
        if world > 1:
            torch.distributed.all_reduce(loss_sum)
            loss_sum /= world
        train_loss = float(loss_sum) / len(train_batches)
        if not math.isfinite(train_loss):
            _diverged(cfg, store, epoch, None)
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        rec = {"epoch": epoch + 1, "lr": lr, "train_loss": train_loss, "seconds": seconds,
               "weight_norm": weight_norm(model)}
        rec["test_loss"], rec["test_error"] = evaluate(model, test_batches, autocast)
        if averaged is not None and epoch + 1 >= cfg.averaging_start:
            averaged.update_parameters(model)
            _recompute_bn(averaged, ds, device, autocast)
            rec["avg_test_loss"], rec["avg_test_error"] = evaluate(averaged.module, test_batches, autocast)
            rec["avg_weight_norm"] = weight_norm(averaged.module)
        for name, values in ctx.logs.items():
            logs.setdefault(name, []).extend(float(v) for v in values)
        if plateau:
            plateau.update(train_loss)
        records.append(rec)
        bar.set_postfix(loss=f"{train_loss:.3f}", test_err=f"{rec['test_error']:.2f}")
        if ckpt_dir is not None:
            final_model = averaged.module if averaged is not None and epoch + 1 >= cfg.averaging_start else model
            if epoch + 1 in cfg.snapshot_epochs:
                _save(ckpt_dir / f"epoch{epoch + 1}.pt", {"config_key": cfg.key(), "model": final_model.state_dict()})
            _save(ckpt_dir / "last.pt", {
                "config_key": cfg.key(), "epoch": epoch + 1, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "rule": rule.state_dict(),
                "plateau": plateau.state_dict() if plateau else {},
                "averaged": averaged.state_dict() if averaged is not None else {},
                "rng": torch.get_rng_state(), "records": json.dumps(records), "logs": json.dumps(logs)})
    bar.close()

    final = averaged.module if averaged is not None else model
    summary = {"n_train": ds.n_train, "n_test": ds.n_test, "num_params": sum(p.numel() for p in model.parameters())}
    summary["train_loss"], summary["train_error"] = evaluate(final, loader(ds, "train", 1024, device), autocast)
    summary["test_loss"], summary["test_error"] = evaluate(final, test_batches, autocast)
    summary["gap"] = summary["test_error"] - summary["train_error"]
    summary["weight_norm"] = weight_norm(final)
    if ckpt_dir is not None:
        _save(ckpt_dir / "final.pt", {"config_key": cfg.key(), "model": final.state_dict()})
    return TrainResult(cfg, records, summary, logs)


def _recompute_bn(averaged: torch.optim.swa_utils.AveragedModel, ds: ArrayDataset, device: torch.device, autocast) -> None:
    """BN statistics of the averaged weights from one full un-augmented training pass (FF's recipe)."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in averaged.modules()):
        return
    batches = loader(ds, "train", 512, device)
    with autocast():
        torch.optim.swa_utils.update_bn(((x, y) for x, y in batches), averaged.module, device=device)


def _check_finite(step_losses: torch.Tensor, start: int, stop: int, cfg: TrainConfig, store: Store | None,
                  epoch: int) -> None:
    """Stop the run (``Diverged``, naming the first bad step) if a loss of steps [start, stop) is NaN/Inf."""
    window = step_losses[start:stop]
    if not bool(torch.isfinite(window).all()):  # the one host read per check
        _diverged(cfg, store, epoch, start + int((~torch.isfinite(window)).to(torch.uint8).argmax()))


def _diverged(cfg: TrainConfig, store: Store | None, epoch: int, step: int | None) -> None:
    where = f"epoch {epoch + 1}" + (f", step {step}" if step is not None else "")
    msg = f"run {cfg.key()} ({cfg.model}/{cfg.rule}, lr={cfg.lr}) diverged: non-finite loss at {where}"
    if store is not None:
        store.record_failure("train", cfg.to_dict(hashed_only=True), msg)
        msg += f"; last good checkpoint kept in {store.checkpoint_dir(cfg.key())}"
    raise Diverged(msg)
