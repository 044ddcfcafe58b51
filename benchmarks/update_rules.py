"""Time per step of SGD, SAM and PoF as the engine runs them, as ratios to the engine's fastest SGD step (POF-T2).

WRN-28-10 (PoF's network) and ResNet-20 on CIFAR-shaped random batches held on the device. Every
candidate is a step built with the engine's own settings (``benchmarks.common.engine_step``:
``build_rule``, fused ``build_optimizer``, ``compile_mode``, ``cudnn.benchmark``, channels_last, bf16
autocast), so ``compile="auto"`` means what it means in ``flatlib.train.engine.train``: CUDA graphs
(``reduce-overhead``) for SGD and SAM on one GPU, eager for PoF, eager everything on the CPU.

Candidates per network (rows ``<net>/<candidate>``):
  sgd-eager         compile=False: the plain step without compilation;
  sgd               compile="auto" (on CUDA: graphed; on the CPU the same as sgd-eager, not repeated);
  sam               SAM ρ=0.05, compile="auto";
  pof               PoF, weak-classifier batch 256 (official code), compile="auto" (eager);
  pof-b32           PoF with the paper text's batch of 32 (goal ≤ 1.17× there);
  <rule>-<MODE>     with ``--compile MODE``: the rule forced under torch.compile(mode=MODE).
The Fisher regularizer is timed in ``fisher_reg.py``.

Timing (``benchmarks/common.interleaved``): every candidate is warmed up (compilation, graph
capture, cuDNN autotuning) outside the timed region, then ``--repeats`` rounds each time
``--steps`` (≥ 50) consecutive steps of every candidate in a rotated order, between two CUDA events
with one synchronisation at the end (``perf_counter`` on the CPU). ``value`` is the median seconds
per 50k-image epoch, ``min``/``max`` the spread over rounds. ``ratio`` = median / median of the
*fastest* SGD variant on the device (``baseline`` names it); ``ratio_min``/``ratio_max`` are the
per-round ratios. Floors: SAM is two forward/backward passes (2.0×); PoF adds at least a forward
of the feature extractor over its search batch, 1 + search/(3·batch) with a backward at two forwards
(``levers.py`` counts the FLOPs: 1.08× at 32/128 and 1.67× at 256/128 on ResNet-20). A ratio below its floor is flagged ``below_floor``.
Paper (16 A100, data-parallel): SGD 21.8 s, SAM 32.9 s (1.51×), PoF 25.6 s (1.17×).

    python -m benchmarks.update_rules [--quick] [--device cuda] [--compile max-autotune] [--steps 50 --repeats 3]

Each row also stores ``cpu_time``: the process's CPU seconds over the same rounds, with its own
ratios; on a shared CPU (one thread) it is the steadier figure. On a GPU it is host time only.

``--quick`` is CPU-sized: batch 32, ResNet-20 at width 0.5 only, 50 steps × 3 rounds.
"""
from __future__ import annotations

import argparse
import os

import torch

from benchmarks.common import MIN_STEPS, allow_many_compiles, time_engine_candidates, timed_row, write_results

CIFAR_TRAIN = 50_000
SGD = dict(optimizer="sgd", lr=1e-3, momentum=0.9, nesterov=True, weight_decay=5e-4)
FLOORS = {"sam": 2.0}


def candidates(search: int, cuda: bool, extra_mode: str | None) -> dict[str, dict]:
    """name → TrainConfig fields (rule, rule_kwargs, compile)."""
    runs = {"sgd-eager": dict(rule="standard", compile=False)}
    if cuda:
        runs["sgd"] = dict(rule="standard", compile="auto")
    runs |= {"sam": dict(rule="sam", rule_kwargs={"rho": 0.05}, compile="auto"),
             "pof": dict(rule="pof", rule_kwargs={"search_batch_size": search}, compile="auto")}
    if search != 32:
        runs["pof-b32"] = dict(rule="pof", rule_kwargs={"search_batch_size": 32}, compile="auto")
    if extra_mode:
        for name, rule, kw in (("sgd", "standard", {}), ("sam", "sam", {"rho": 0.05}),
                               ("pof", "pof", {"search_batch_size": search})):
            runs[f"{name}-{extra_mode}"] = dict(rule=rule, rule_kwargs=kw, compile=extra_mode)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="CPU-sized: batch 32, narrow ResNet-20")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", metavar="MODE", help="also time every rule forced under torch.compile(mode=MODE)")
    parser.add_argument("--models", nargs="+", default=None, help="default wrn28_10 resnet20 (quick: resnet20)")
    parser.add_argument("--steps", type=int, default=MIN_STEPS, help="consecutive steps per timing (≥ 50)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (≥ 3)")
    parser.add_argument("--batch-size", type=int, default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    allow_many_compiles()
    batch = args.batch_size or (32 if args.quick else 256)
    search = 32 if args.quick else 256
    nets = {"wrn28_10": ("wrn28_10_nobias", {}), "resnet20": ("resnet20", {})}
    quick_nets = {"resnet20[width=0.5]": ("resnet20", {"width": 0.5})}
    chosen = quick_nets if args.quick and not args.models else \
        {k: v for k, v in (nets | quick_nets).items() if k in (args.models or list(nets))}
    rows, failures, settings = [], {}, {}
    for net, (model_name, model_kwargs) in chosen.items():
        gen = torch.Generator().manual_seed(0)
        pool = [(torch.randn(batch, 3, 32, 32, generator=gen).to(device),
                 torch.randint(0, 10, (batch,), generator=gen).to(device)) for _ in range(4)]
        times, fastest = time_engine_candidates(net, model_name, model_kwargs, candidates(search, cuda, args.compile),
                                                base=SGD, batch=batch, device=device, pool=pool, plain_prefix="sgd",
                                                args=args, failures=failures, settings=settings, width=24)
        epoch = CIFAR_TRAIN / batch
        for cand, t in times.items():
            rule = cand.split("-")[0]
            fields = candidates(search, cuda, args.compile)[cand]
            floor = FLOORS.get(rule) if rule != "pof" else \
                1 + fields["rule_kwargs"]["search_batch_size"] / (3 * batch)  # + a forward of the search batch
            row = timed_row(f"{net}/{cand}", "time_per_epoch", t, "s", scale=epoch, baseline=f"{net}/{fastest}",
                            baseline_samples=times[fastest],
                            floor=floor, quick=args.quick, cpu_samples=times.cpu[cand],
                            cpu_baseline_samples=times.cpu[fastest])
            row.update(settings[f"{net}/{cand}"])
            rows.append(row)
            flag = "  BELOW FLOOR: measurement problem" if row.get("below_floor") else ""
            print(f"{net:20s} {cand:24s} {row['value']:9.2f} s/epoch [{row['min']:.2f}–{row['max']:.2f}]  "
                  f"{row['ratio']:.2f}× {fastest} [{row['ratio_min']:.2f}–{row['ratio_max']:.2f}]  "
                  f"cpu-time {row['cpu_time']['ratio']:.2f}× [{row['cpu_time']['ratio_min']:.2f}–"
                  f"{row['cpu_time']['ratio_max']:.2f}] ({row['compile_mode']}){flag}", flush=True)
        if cuda:
            torch.cuda.empty_cache()
        path = write_results("update_rules", device, rows, extra={
            "batch_size": batch, "search_batch_size": search, "steps_per_timing": args.steps,
            "repeats": args.repeats, "quick": args.quick, "models": list(chosen), "epoch_steps": CIFAR_TRAIN // batch,
            "failures": failures, "compile": args.compile, "threads": torch.get_num_threads(),
            "load_average": os.getloadavg()[0],
            "timing": "median of interleaved rounds; each round ≥ 50 consecutive steps between two CUDA events "
                      "(perf_counter on the CPU); ratio to the fastest SGD variant",
            "paper": {"sgd_s": 21.8, "sam_s": 32.9, "pof_s": 25.6, "sam_ratio": 1.51, "pof_ratio": 1.17}})
        print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    main()
