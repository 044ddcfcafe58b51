"""Time per training step with and without the Fisher regularizer (FIM Algorithm 1, FIM-TC).

ResNet-20 and WRN-28-2 on CIFAR-shaped random batches, SGD (Nesterov 0.9, wd 5e-4), measured
side by side in one process. Candidates per model:
  plain        StandardRule, fp32 (baseline);
  plain-bf16   StandardRule under bf16 autocast (CUDA only: the engine's default precision);
  fisher       FisherRule defaults (α=1e-4, M=8, β=10); BN models get the official full-batch pass;
  fisher-ghost FisherRule(reuse_mean_grad=True): (1/M)Σg_i reused as ∇L(B, w), 2 passes;
  fisher-loop  FisherRule(batched=False): a Python loop over the M sub-batches instead of vmap.
Paper: 285.6 ms vs 185.7 ms (1.54×) for WRN-18 on 2×2080Ti; goal ≤ 1.5× on GPU.

    python -m benchmarks.fisher_reg [--quick] [--device cuda]
"""
from __future__ import annotations

import argparse
import contextlib

import torch
from torch import nn

from benchmarks.common import result, timeit, write_results
from flatlib.models import build_model
from flatlib.train.rules import StandardRule, StepContext, UpdateRule
from flatlib.train.rules.fisher import FisherRule


def step_fn(model: nn.Module, rule: UpdateRule, x: torch.Tensor, y: torch.Tensor, bf16: bool):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    ctx = StepContext(model=model, optimizer=opt, criterion=nn.CrossEntropyLoss(), draw_batch=lambda: (x, y),
                      autocast=autocast)
    return lambda: rule.step(ctx, x, y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="CPU-sized: batch 32, fewer repeats")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    batch, repeats = (32, 3) if args.quick else (128, 20)
    candidates: dict[str, tuple[UpdateRule, bool]] = {
        "plain": (StandardRule(), False),
        "fisher": (FisherRule(), False),
        "fisher-ghost": (FisherRule(reuse_mean_grad=True), False),
        "fisher-loop": (FisherRule(batched=False), False),
    }
    if device.type == "cuda":
        candidates["plain-bf16"] = (StandardRule(), True)
    rows = []
    for name in ("resnet20", "wrn28_2"):
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(batch, 3, 32, 32, generator=gen).to(device)
        y = torch.randint(0, 10, (batch,), generator=gen).to(device)
        times = {}
        for cand, (rule, bf16) in candidates.items():
            torch.manual_seed(0)
            model = build_model(name, in_channels=3, num_classes=10, input_size=32).to(device).train()
            times[cand] = timeit(step_fn(model, rule, x, y, bf16), device, repeats=repeats, warmup=2)
            print(f"{name:10s} {cand:13s} {1e3 * times[cand]:8.1f} ms/step", flush=True)
        for cand, t in times.items():
            rows.append(result(f"{name}/{cand}", "time_per_step", 1e3 * t, "ms",
                               baseline=f"{name}/plain", baseline_value=1e3 * times["plain"]))
    path = write_results("fisher_reg", device, rows, extra={"batch_size": batch, "repeats": repeats,
                                                            "quick": args.quick})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
