"""Seconds per epoch of SGD, SAM, PoF (and the Fisher regularizer) as ratios to SGD (POF-T2).

WRN-28-10 (PoF's network) and ResNet-20 on CIFAR-shaped random batches, measured side by side in
one process with the engine's own update rules, SGD (Nesterov 0.9, wd 5e-4) and, on CUDA, the
engine's bf16 autocast and channels_last. An epoch is 50,000 / batch steps; the time per epoch is
the median time per step times that. PoF's weak-classifier batch is 256 (official code).
Paper (16 A100, data-parallel): SGD 21.8 s, SAM 32.9 s (1.51×), PoF 25.6 s (1.17×).
Goal on one GPU: PoF ≤ 1.17×, SAM ≤ 2.0×.

    python -m benchmarks.update_rules [--quick] [--device cuda] [--compile reduce-overhead]

``--compile MODE`` adds every rule once more with the network under ``torch.compile(mode=MODE)``
(rows ``<rule>-<MODE>``, for the networks in ``--compile-models``); a rule that fails to compile
is listed under ``failures`` with its error.

``--quick`` is CPU-sized: batch 32, PoF search batch 32, ResNet-20 and a WRN-16-2 stand-in
(WRN-28-10 takes seconds per step on a CPU), 3 repeats.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import itertools

import torch
import torch.nn.functional as F

from benchmarks.common import failure, result, timeit, write_results
from flatlib.train.config import CUDA_GRAPH_MODES
from flatlib.models import build_model
from flatlib.train.rules import StepContext, build_rule

CIFAR_TRAIN = 50_000


def candidates(search_batch: int) -> dict[str, tuple[str, dict]]:
    rules = {"sgd": ("standard", {}), "sam": ("sam", {"rho": 0.05}),
             "pof": ("pof", {"search_batch_size": search_batch})}
    try:
        import flatlib.train.rules.fisher  # noqa: F401
        rules["fisher"] = ("fisher", {})
    except ModuleNotFoundError:
        pass
    return rules


def step_fn(model_name: str, model_kwargs: dict, rule_name: str, kwargs: dict, batch: int, device: torch.device,
            compile_mode: str | None = None):
    """One engine-style training step of ``rule`` on a fresh model; ``draw_batch`` cycles a device-resident pool.

    ``compile_mode``: the model is wrapped in ``torch.compile`` with that mode, as the engine does.
    """
    torch.manual_seed(0)
    cuda = device.type == "cuda"
    model = build_model(model_name, in_channels=3, num_classes=10, input_size=32, **model_kwargs).to(device).train()
    if cuda:
        model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model, dynamic=False, mode=compile_mode) if compile_mode else model
    rule = build_rule(rule_name, **kwargs)
    opt = torch.optim.SGD(list(rule.trainable(model)), lr=1e-3, momentum=0.9, nesterov=True, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(0)
    pool = [(torch.randn(batch, 3, 32, 32, generator=gen).to(device), torch.randint(0, 10, (batch,), generator=gen).to(device))
            for _ in range(4)]
    if cuda:
        pool = [(x.contiguous(memory_format=torch.channels_last), y) for x, y in pool]
    draws = itertools.count()
    autocast = functools.partial(torch.autocast, "cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext
    ctx = StepContext(step_model, opt, F.cross_entropy, draw_batch=lambda: pool[next(draws) % 4], autocast=autocast)
    x, y = pool[0]

    def step():
        if compile_mode in CUDA_GRAPH_MODES and device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()
        return rule.step(ctx, x, y)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="CPU-sized: small batch and models, few repeats")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", metavar="MODE", help="also time every rule with torch.compile(mode=MODE), "
                        "e.g. reduce-overhead (CUDA graphs); ratios still to eager SGD")
    parser.add_argument("--compile-models", nargs="+", default=["resnet20"], help="networks timed compiled too")
    args = parser.parse_args()
    device = torch.device(args.device)
    batch, search, repeats = (32, 32, 3) if args.quick else (256, 256, 20)
    models = {"resnet20": ("resnet20", {}), "wrn16_2": ("wrn", {"depth": 16, "width": 2})} if args.quick else \
        {"wrn28_10": ("wrn28_10_nobias", {}), "resnet20": ("resnet20", {})}
    rows, failures = [], {}
    for name, (model_name, model_kwargs) in models.items():
        times = {}
        runs = [(cand, rule, kw, None) for cand, (rule, kw) in candidates(search).items()]
        if args.compile and name in args.compile_models:
            runs += [(f"{cand}-{args.compile}", rule, kw, args.compile) for cand, (rule, kw) in candidates(search).items()]
        for cand, rule, kw, mode in runs:
            try:
                fn = step_fn(model_name, model_kwargs, rule, kw, batch, device, mode)
                times[cand] = timeit(fn, device, repeats=repeats, warmup=2) * CIFAR_TRAIN / batch
            except Exception as err:  # reported in the file; the other rules still run
                failures[f"{name}/{cand}"] = failure(err)
                print(f"{name:16s} {cand:7s} FAILED {failures[f'{name}/{cand}']}", flush=True)
                continue
            print(f"{name:16s} {cand:7s} {times[cand]:9.1f} s/epoch ({times[cand] / times['sgd']:.2f}× SGD)", flush=True)
        for cand, t in times.items():
            rows.append(result(f"{name}/{cand}", "time_per_epoch", t, "s", baseline=f"{name}/sgd",
                               baseline_value=times["sgd"]))
    path = write_results("update_rules", device, rows, extra={
        "batch_size": batch, "search_batch_size": search, "repeats": repeats, "quick": args.quick,
        "models": list(models), "epoch_steps": CIFAR_TRAIN // batch, "failures": failures, "compile": args.compile,
        "paper": {"sgd_s": 21.8, "sam_s": 32.9, "pof_s": 25.6, "sam_ratio": 1.51, "pof_ratio": 1.17}})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
