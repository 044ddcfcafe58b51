"""The levers of issue 20, shown on the CPU before a GPU confirms them: FLOPs, host syncs and interleaved timings.

Deterministic counts first (they do not depend on machine load and transfer to any device):

* ``flops_per_step``: floating-point operations of one warm training step of every update rule
  (``torch.utils.flop_counter.FlopCounterMode``: matrix products and convolutions, forward,
  backward and forward-mode), as a ratio to the plain SGD step. This is the pass count behind each
  rule's algorithmic floor: SAM 2×, PoF 1 + (search forward)/(plain step), Fisher 3× (BN full-batch
  pass) or 2× (ghost BN), Fisher ``gradient="hvp"`` against ``"difference"``, and the vmapped
  sub-batch passes against the loop over sub-batches (``batched=False``), which shows what
  vmap's batched ``convolution_backward`` adds.
* ``host_syncs_per_step``: ``flatlib.hostsync.HostSyncCounter`` over the same warm step (must be 0).
* PoF line search, broadcast (one vmapped evaluation of the n + n·grid candidates, selected on the
  device) vs the two dependent sweeps it replaced (ladder, then the bracket's grid, indexed with
  0-dim tensors): host syncs per call, candidates evaluated, and interleaved time per call on
  WRN-28-10-sized features (search batch 256, 640 features, 10 classes); and a third form, the two
  sweeps with the bracket and grid point picked by ``index_select`` on the device (30 candidates,
  no host sync, but two dependent launches).

Timings (``benchmarks/common.interleaved``, ≥ 50 consecutive calls per round, ≥ 3 rotated rounds,
wall and process CPU time) are indicative on a shared CPU; the counts are the evidence.

    python -m benchmarks.levers [--quick]
"""
from __future__ import annotations

import argparse
import math
import os

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import MIN_STEPS, engine_step, interleaved, result, timed_row, write_results
from flatlib.train.config import TrainConfig
from flatlib.hostsync import HostSyncCounter
from flatlib.models import build_model
from flatlib.train.rules.pof import minibatch_line_search

RULES = {
    "sgd": dict(rule="standard"),
    "sam": dict(rule="sam", rule_kwargs={"rho": 0.05}),
    "pof-b256": dict(rule="pof", rule_kwargs={"search_batch_size": 256}),
    "pof-b32": dict(rule="pof", rule_kwargs={"search_batch_size": 32}),
    "fisher": dict(rule="fisher"),
    "fisher-ghost": dict(rule="fisher", rule_kwargs={"reuse_mean_grad": True}),
    "fisher-hvp": dict(rule="fisher", rule_kwargs={"gradient": "hvp"}),
    "fisher-hvp-ghost": dict(rule="fisher", rule_kwargs={"gradient": "hvp", "reuse_mean_grad": True}),
    "fisher-ghost-loop": dict(rule="fisher", rule_kwargs={"reuse_mean_grad": True, "batched": False}),
    "fisher-hvp-ghost-loop": dict(rule="fisher", rule_kwargs={"gradient": "hvp", "reuse_mean_grad": True,
                                                             "batched": False}),
}


def two_sweep_search(clf: nn.Module, features, y, theta0, init_step=1.0, cap=1e4, grid=16):
    """The PoF line search before issue 20, literally (also in tests/test_pof_broadcast.py)."""
    def loss(theta):
        return F.cross_entropy(functional_call(clf, theta, (features,)), y)

    g = grad(loss)(theta0)
    loss_at = vmap(lambda t: loss({k: theta0[k] - t * g[k] for k in theta0}))
    loss0 = loss(theta0)
    n = max(1, math.ceil(math.log2(cap / init_step)))
    ladder = init_step * 2.0 ** torch.arange(n, dtype=loss0.dtype)
    rises = loss_at(ladder) > loss0
    rejected = ~rises.any()
    upper = ladder[rises.to(torch.uint8).argmax()]
    steps = upper * torch.arange(1, grid + 1, dtype=loss0.dtype) / grid
    best = steps[loss_at(steps).argmin()]
    return torch.where(rejected, torch.zeros_like(best), best)


def two_sweep_device(clf: nn.Module, features, y, theta0, init_step=1.0, cap=1e4, grid=16):
    """Two sweeps (30 candidates) with the bracket picked by ``index_select`` on the device: no host sync."""
    def loss(theta):
        return F.cross_entropy(functional_call(clf, theta, (features,)), y)

    g = grad(loss)(theta0)
    loss_at = vmap(lambda t: loss({k: theta0[k] - t * g[k] for k in theta0}))
    loss0 = loss(theta0)
    n = max(1, math.ceil(math.log2(cap / init_step)))
    ladder = init_step * 2.0 ** torch.arange(n, dtype=loss0.dtype)
    rises = loss_at(ladder) > loss0
    rejected = ~rises.any()
    upper = ladder.index_select(0, rises.to(torch.uint8).argmax().reshape(1))
    steps = upper * torch.arange(1, grid + 1, dtype=loss0.dtype) / grid
    best = steps.index_select(0, loss_at(steps).argmin().reshape(1)).squeeze(0)
    return torch.where(rejected, torch.zeros_like(best), best)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="ResNet-20 at width 0.5 only")
    parser.add_argument("--pof-only", action="store_true", help="only the PoF line-search comparison")
    parser.add_argument("--steps", type=int, default=MIN_STEPS)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device("cpu")
    rows: list[dict] = []
    if args.pof_only:  # keep the FLOP rows of the last full run
        import json

        from benchmarks.common import RESULTS_DIR
        old_file = RESULTS_DIR / "levers-cpu.json"
        if old_file.exists():
            rows = [r for r in json.loads(old_file.read_text())["results"] if not r["name"].startswith("pof-line-search/")]

    # -- FLOPs and host syncs per warm step, every rule, two BN networks --------------------------------------
    batch = 64
    nets = {"resnet20": ("resnet20", {}), "wrn16_4": ("wrn", {"depth": 16, "width": 4})}
    if args.pof_only:
        nets = {}
    elif args.quick:  # FLOP ratios hardly depend on the width; a full-width count takes many minutes on a busy CPU
        nets = {"resnet20[width=0.5]": ("resnet20", {"width": 0.5})}
    for net, (name, kw) in nets.items():
        gen = torch.Generator().manual_seed(0)
        pool = [(torch.randn(batch, 3, 32, 32, generator=gen), torch.randint(0, 10, (batch,), generator=gen))
                for _ in range(3)]
        flops, syncs = {}, {}
        for cand, fields in RULES.items():
            torch.manual_seed(0)
            model = build_model(name, in_channels=3, num_classes=10, input_size=32, **kw)
            cfg = TrainConfig(model=name, model_kwargs=kw, batch_size=batch, device="cpu", optimizer="sgd",
                              lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4, **fields)
            step, _ = engine_step(model, cfg, device, pool)
            step()  # warm: optimizer state exists
            with FlopCounterMode(display=False) as fc, HostSyncCounter() as hs:
                step()
            flops[cand], syncs[cand] = fc.get_total_flops(), hs.count
        for cand in RULES:
            rows.append({**result(f"{net}/{cand}", "flops_per_step", flops[cand] / 1e9, "GFLOP", f"{net}/sgd",
                                  flops["sgd"] / 1e9), "host_syncs_per_step": syncs[cand], "batch_size": batch})
            print(f"{net:10s} {cand:17s} {flops[cand] / 1e9:9.2f} GFLOP/step  {flops[cand] / flops['sgd']:5.2f}× sgd"
                  f"  host syncs {syncs[cand]}", flush=True)
        write_results("levers", device, rows, extra={"quick": args.quick})

    # -- PoF line search: broadcast vs two sweeps -------------------------------------------------------------
    g = torch.Generator().manual_seed(0)
    n, d, k = 256, 640, 10
    feats = torch.randn(n, d, generator=g).relu()
    y = torch.randint(0, k, (n,), generator=g)
    clf = nn.Linear(d, k)
    theta0 = {kk: v.detach() for kk, v in clf.named_parameters()}
    holder = nn.Module()
    holder.classifier = clf  # minibatch_line_search reads model.classifier
    new = lambda: minibatch_line_search(holder, F.cross_entropy, feats, y, theta0)  # noqa: E731
    old = lambda: two_sweep_search(clf, feats, y, theta0)  # noqa: E731
    dev2 = lambda: two_sweep_device(clf, feats, y, theta0)  # noqa: E731
    assert torch.allclose(old(), dev2()) and torch.allclose(old(), new()[0].step)
    sync_counts = {}
    for cand, fn in (("broadcast", new), ("two-sweep", old), ("two-sweep-device", dev2)):
        with HostSyncCounter() as hs:
            fn()
        sync_counts[cand] = hs.count
    ladder = math.ceil(math.log2(1e4))
    evals = {"broadcast": ladder + ladder * 16, "two-sweep": ladder + 16, "two-sweep-device": ladder + 16}
    times = interleaved({"broadcast": new, "two-sweep": old, "two-sweep-device": dev2}, device, steps=args.steps, repeats=args.repeats,
                        warmup=3)
    for cand, t in times.items():
        rows.append({**timed_row(f"pof-line-search/{cand}", "time_per_call", t, "ms", scale=1e3,
                                 baseline="pof-line-search/two-sweep", baseline_samples=times["two-sweep"],
                                 cpu_samples=times.cpu[cand], cpu_baseline_samples=times.cpu["two-sweep"]),
                     "host_syncs_per_call": sync_counts[cand], "candidates_evaluated": evals[cand],
                     "shape": f"features ({n}, {d}), {k} classes"})
        r = rows[-1]
        print(f"pof line search {cand:10s} {r['value']:7.3f} ms [{r['min']:.3f}–{r['max']:.3f}] "
              f"{r['ratio']:.2f}× two-sweep (cpu-time {r['cpu_time']['ratio']:.2f}×), host syncs {sync_counts[cand]}, "
              f"{evals[cand]} candidates", flush=True)
    path = write_results("levers", device, rows, extra={
        "quick": args.quick, "threads": torch.get_num_threads(), "load_average": os.getloadavg()[0],
        "note": "FLOPs and host syncs are deterministic; timings are indicative on a shared CPU"})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
