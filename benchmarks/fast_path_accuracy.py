"""Does the fast path train as well as float32? Test error after a short run, against seed noise.

The engine's speed settings (bf16 autocast, channels_last, ``torch.compile``) are excluded from
the config hash because they should not change what a run computes beyond rounding. This
checks it where it matters: the same short training run with ``float32`` (fp32, NCHW, eager),
``fast`` (bf16 autocast + channels_last), ``fast-compile`` (plus ``torch.compile``) and
``fast-cudagraphs`` (``compile="reduce-overhead"``: CUDA graphs), each over several seeds. The fast path *matches* when the difference of
mean test errors is within two standard errors of that difference,
``|Δ| ≤ 2 sqrt(s_a²/n + s_b²/n)`` with ``s`` the seed standard deviations (reported as the row
``z`` = |Δ| / sqrt(s_a²/n + s_b²/n)).

On CUDA: ResNet-20 on CIFAR-10 (4-pixel crop + flip) when its files are present, else on
MNIST-5k, 3 seeds, 10 epochs. On the CPU the engine has only the float32 path, so ``--quick``
trains it with four seeds (an MLP on the embedded digits) and reports the seed noise (test error
and test loss), the yardstick a GPU run is judged by.

    python -m benchmarks.fast_path_accuracy [--quick] [--device cuda] [--seeds 3] [--epochs 10]
"""
from __future__ import annotations

import argparse
import statistics

import torch

from benchmarks.common import FAST_PATH, result, write_results
from flatlib.train.config import TrainConfig
from flatlib.data import MissingDataError, load_dataset
from flatlib.train.engine import train

ARMS = {"float32": FAST_PATH["fp32"], "fast": FAST_PATH["bf16"], "fast-compile": FAST_PATH["compile"],
        "fast-cudagraphs": FAST_PATH["cudagraphs"]}


def base_config(quick: bool, device: torch.device, epochs: int | None) -> TrainConfig:
    """The short run: CIFAR-10 (else MNIST-5k) ResNet-20 on a GPU; digits MLP for --quick."""
    if quick:
        return TrainConfig(dataset="digits", model="mlp100", batch_size=64, epochs=epochs or 5, lr=0.05,
                           device=str(device), progress=False)
    try:
        load_dataset("cifar10")
        data = dict(dataset="cifar10", augment="4-crop-f")
    except MissingDataError:
        data = dict(dataset="mnist5k")
    return TrainConfig(**data, model="resnet20", batch_size=128, epochs=epochs or 10, optimizer="sgd", lr=0.1,
                       momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="linear_decay",
                       device=str(device), progress=False)


def final_test(cfg: TrainConfig, seeds: range) -> dict[str, list[float]]:
    """Final test error (%) and test loss of ``cfg`` for each seed (no results store: trained afresh)."""
    summaries = [train(cfg.replace(seed=s)).summary for s in seeds]
    return {metric: [s[metric] for s in summaries] for metric in ("test_error", "test_loss")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="CPU-sized: float32 only, four seeds, digits MLP")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per arm (default 3; 4 with --quick)")
    parser.add_argument("--epochs", type=int, default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    cfg = base_config(args.quick, device, args.epochs)
    seeds = range(args.seeds or (4 if args.quick else 3))
    arms = ARMS if device.type == "cuda" else {"float32": ARMS["float32"]}
    label = f"{cfg.dataset}/{cfg.model}/{cfg.epochs}ep"
    finals = {arm: final_test(cfg.replace(**flags), seeds) for arm, flags in arms.items()}

    rows, n = [], len(seeds)
    for metric, unit in (("test_error", "%"), ("test_loss", "nats")):
        ref = finals["float32"][metric]
        ref_mean, ref_std = statistics.mean(ref), statistics.stdev(ref)
        for arm, final in finals.items():
            values = final[metric]
            mean, std = statistics.mean(values), statistics.stdev(values)
            print(f"{label} {arm:13s} {metric} {mean:7.3f} ± {std:.3f} {unit}"
                  f"  (seeds: {', '.join(f'{v:.3f}' for v in values)})")
            rows.append(result(f"{label}/{arm}", f"{metric}_mean", mean, unit, f"{label}/float32", ref_mean))
            rows.append(result(f"{label}/{arm}", f"{metric}_seed_std", std, unit))
            if arm != "float32":
                se = ((std**2 + ref_std**2) / n) ** 0.5
                z = abs(mean - ref_mean) / se if se > 0 else (0.0 if mean == ref_mean else float("inf"))
                print(f"{label} {arm:13s} |Δ| / s.e. = {z:.2f} -> {'within' if z <= 2 else 'OUTSIDE'} seed noise")
                rows.append(result(f"{label}/{arm}", f"{metric}_z_vs_float32", z, "s.e."))
    path = write_results("fast_path_accuracy", device, rows, extra={
        "seeds": n, "per_seed": finals, "quick": args.quick, "config": cfg.to_dict(hashed_only=True)})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
