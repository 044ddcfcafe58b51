"""Time per training step with and without the Fisher regularizer (FIM Algorithm 1, FIM-TC), as the engine runs it.

ResNet-20 and WRN-28-10 on CIFAR-shaped random batches held on the device, SGD (Nesterov 0.9, wd
5e-4). Every candidate is built with the engine's own settings (``benchmarks.common.engine_step``:
``build_rule``, fused optimizer, ``compile_mode``, ``cudnn.benchmark``, channels_last where the rule
allows it, bf16 autocast), so each row is what ``flatlib.train.engine.train`` would run. Candidates:
  plain-eager      StandardRule, compile=False;
  plain            StandardRule, compile="auto" (CUDA graphs on one GPU; on the CPU the same as plain-eager);
  fisher           FisherRule defaults (α=1e-4, M=8, β=10); BN models get the official full-batch pass (3 passes);
  fisher-ghost     FisherRule(reuse_mean_grad=True): (1/M)Σg_i reused as ∇L(B, w), 2 passes;
  fisher-hvp       FisherRule(gradient="hvp"): the regularizer gradient as α(1/M)Σ H_i g_i by forward-over-reverse;
  fisher-hvp-ghost gradient="hvp" and reuse_mean_grad=True;
  fisher-loop      FisherRule(batched=False): a Python loop over the M sub-batches (ResNet-20 only).
The Fisher rules run eager (``compile="auto"`` never compiles them), NCHW, and their sub-batch
passes in float32 with autocast off.

Timing (``benchmarks/common.interleaved``): warm-up outside the timed region, then ``--repeats``
interleaved rounds of ``--steps`` (≥ 50) consecutive steps per candidate between two CUDA events
(one synchronisation; ``perf_counter`` on the CPU, plus the process's CPU time). ``value`` = median
ms per step, ``min``/``max`` its spread; ``ratio`` = median / median of the fastest plain step on the
device (``baseline``), ``ratio_min``/``ratio_max`` the per-round ratios. Floors (forward+backward
passes over the batch): fisher 3, fisher-ghost 2, fisher-hvp 3, fisher-hvp-ghost 2 (an HVP costs at
least one gradient); a ratio under its floor is flagged ``below_floor``.
Paper: 285.6 ms vs 185.7 ms (1.54×) for WRN-18 on 2×2080Ti. Goal: ≤ 3.0× the engine's fastest
plain step on one GPU (WRN-28-10), with a regularizer gradient as accurate as float32.

    python -m benchmarks.fisher_reg [--quick] [--device cuda] [--models resnet20 wrn28_10]

``--quick``: CPU-sized, batch 16 (2 images per sub-batch), ResNet-20 at width 0.25, 50 steps × 3
rounds, without fisher-loop and fisher-hvp-ghost.
"""
from __future__ import annotations

import argparse
import os

import torch

from benchmarks.common import MIN_STEPS, allow_many_compiles, time_engine_candidates, timed_row, write_results

SGD = dict(optimizer="sgd", lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
CANDIDATES = {
    "plain-eager": dict(rule="standard", compile=False),
    "plain": dict(rule="standard", compile="auto"),
    "fisher": dict(rule="fisher", rule_kwargs={}),
    "fisher-ghost": dict(rule="fisher", rule_kwargs={"reuse_mean_grad": True}),
    "fisher-hvp": dict(rule="fisher", rule_kwargs={"gradient": "hvp"}),
    "fisher-hvp-ghost": dict(rule="fisher", rule_kwargs={"gradient": "hvp", "reuse_mean_grad": True}),
    "fisher-loop": dict(rule="fisher", rule_kwargs={"batched": False}),
}
FLOORS = {"fisher": 3.0, "fisher-ghost": 2.0, "fisher-hvp": 3.0, "fisher-hvp-ghost": 2.0, "fisher-loop": 3.0}
NETS = {"resnet20": ("resnet20", {}), "wrn28_10": ("wrn28_10", {}), "wrn28_2": ("wrn28_2", {}),
        "resnet20[width=0.25]": ("resnet20", {"width": 0.25})}
QUICK_SKIP = {"fisher-loop", "fisher-hvp-ghost"}  # CPU --quick: keep the run within minutes on a shared 2-core machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="CPU-sized: batch 16, narrow ResNet-20")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=None, choices=list(NETS),
                        help="default resnet20 wrn28_10 (quick: resnet20[width=0.25])")
    parser.add_argument("--candidates", nargs="+", default=None, choices=list(CANDIDATES),
                        help="time only these (default: all; the GPU session leaves out the loop and hvp-ghost)")
    parser.add_argument("--steps", type=int, default=MIN_STEPS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=None, help="default 128 (quick: 32)")
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    allow_many_compiles()
    batch = args.batch_size or (16 if args.quick else 128)
    models = args.models or (["resnet20[width=0.25]"] if args.quick else ["resnet20", "wrn28_10"])
    rows, failures, settings = [], {}, {}
    for net in models:
        model_name, model_kwargs = NETS[net]
        gen = torch.Generator().manual_seed(0)
        pool = [(torch.randn(batch, 3, 32, 32, generator=gen).to(device),
                 torch.randint(0, 10, (batch,), generator=gen).to(device)) for _ in range(2)]
        chosen = {cand: fields for cand, fields in CANDIDATES.items()
                  if not ((cand == "plain" and not cuda) or (cand == "fisher-loop" and net.startswith("wrn28_10"))
                          or (args.quick and cand in QUICK_SKIP) or (args.candidates and cand not in args.candidates))}
        times, fastest = time_engine_candidates(net, model_name, model_kwargs, chosen, base=SGD, batch=batch,
                                                device=device, pool=pool, plain_prefix="plain", args=args,
                                                failures=failures, settings=settings, width=17)
        for cand, t in times.items():
            row = timed_row(f"{net}/{cand}", "time_per_step", t, "ms", scale=1e3, baseline=f"{net}/{fastest}",
                            baseline_samples=times[fastest], floor=FLOORS.get(cand), quick=args.quick,
                            cpu_samples=times.cpu[cand], cpu_baseline_samples=times.cpu[fastest])
            row.update(settings[f"{net}/{cand}"])
            rows.append(row)
            flag = "  BELOW FLOOR: measurement problem" if row.get("below_floor") else ""
            print(f"{net:20s} {cand:17s} {row['value']:8.1f} ms [{row['min']:.1f}–{row['max']:.1f}]  "
                  f"{row['ratio']:.2f}× {fastest} [{row['ratio_min']:.2f}–{row['ratio_max']:.2f}]  "
                  f"cpu-time {row['cpu_time']['ratio']:.2f}× ({row['compile_mode']}){flag}", flush=True)
        if cuda:
            torch.cuda.empty_cache()
        path = write_results("fisher_reg", device, rows, extra={
            "batch_size": batch, "steps_per_timing": args.steps, "repeats": args.repeats, "quick": args.quick,
            "models": models, "failures": failures, "threads": torch.get_num_threads(),
            "load_average": os.getloadavg()[0],
            "timing": "median of interleaved rounds; each round ≥ 50 consecutive steps between two CUDA events "
                      "(perf_counter on the CPU); ratio to the fastest plain step"})
        print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    main()
