"""λ1 of WRN-28-10 by Lanczos over a CIFAR-sized training set of fabricated images, timed (issue 19).

FF's paper profile asks for ~100 Lanczos iterations over 45k–50k CIFAR images of a WRN-28-10
(36.5M parameters). This times that measurement as `flatlib.experiments.ff` takes it: a
``HessianOperator`` (BN in eval mode, float32, batches of ``--batch`` moved to the GPU in chunks)
and ``lanczos`` with the basis-memory plan chosen from the free device memory. The run stops after
``--iters`` products or ``--max-seconds``, whichever first, and projects the time of FF's 100
iterations. Writes ``benchmarks/results/lambda1_wrn-<device>.json``.

    python -m benchmarks.lambda1_wrn --images 50000 --iters 100 --max-seconds 150
"""
from __future__ import annotations

import argparse
import time

import torch

from benchmarks.common import RESULTS_DIR, device_name, device_slug
from flatlib.curvature import HessianOperator
from flatlib.curvature.lanczos import lanczos_tridiagonal
from flatlib.curvature.memory import basis_plan
from flatlib.models import build_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=1000, help="FF's hessian_batch_size")
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--max-seconds", type=float, default=150.0)
    ap.add_argument("--model", default="wrn28_10")
    ap.add_argument("--width", type=float, default=None, help="model width override (CPU smoke check)")
    args = ap.parse_args()

    import datetime as _dt
    import json

    import flatlib

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    g = torch.Generator().manual_seed(0)
    # fabricated CIFAR-100: random uint8 pixels, normalised as the loaders do (mean 0.5, std 0.25)
    x = (torch.randint(0, 256, (args.images, 3, 32, 32), generator=g, dtype=torch.uint8).float() / 255 - 0.5) / 0.25
    y = torch.randint(0, 100, (args.images,), generator=g)
    kwargs = {"width": args.width} if args.width else {}
    model = build_model(args.model, in_channels=3, num_classes=100, input_size=32, **kwargs).to(device).eval()
    H = HessianOperator(model, (x, y), batch_size=args.batch, dtype=torch.float32)
    plan = basis_plan(H.dim, args.iters, device)
    print(f"{args.model}: {H.dim:,} parameters, {args.images} images; HVP chunk {H.chunk_size}; basis: {plan.reason}")
    t0 = time.perf_counter()
    times: list[float] = []

    def stop(T) -> bool:
        times.append(time.perf_counter() - t0)
        return times[-1] > args.max_seconds

    v0 = torch.randn(H.dim, generator=g, dtype=torch.float64)
    T = lanczos_tridiagonal(H, v0, args.iters, should_stop=stop, plan=plan)
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    m = len(T.alpha)
    lam = float(torch.linalg.eigvalsh(T.matrix())[-1])
    per_iter = elapsed / m
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    print(f"{m} Lanczos iterations in {elapsed:.1f} s ({per_iter:.2f} s each, peak {peak:.1f} GiB); "
          f"λ1 ≈ {lam:.4g}; 100 iterations ≈ {100 * per_iter / 60:.1f} min")
    name = f"{args.model}/{args.images}img"
    payload = {"benchmark": "lambda1_wrn", "device": device_name(device),
               "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
               "versions": {"flatlib": flatlib.__version__, "torch": torch.__version__},
               "basis_plan": plan.reason, "iterations": m, "lambda1": lam, "peak_gib": peak,
               "results": [{"name": name, "metric": "time_per_lanczos_iteration", "value": per_iter, "unit": "s",
                            "baseline": None, "ratio": None},
                           {"name": name, "metric": "time_for_100_iterations", "value": 100 * per_iter, "unit": "s",
                            "baseline": None, "ratio": None}]}
    out = RESULTS_DIR / f"lambda1_wrn-{device_slug(device)}.json"
    if device.type == "cuda":
        out.write_text(json.dumps(payload, indent=1) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
