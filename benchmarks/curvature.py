"""Benchmark: Hessian top eigenvalue, trace and SLQ density on ResNet-20, flatlib vs PyHessian.

Both libraries see the same pre-activation ResNet-20 (eval-mode BN, float32), the same random
CIFAR-shaped images with random labels (already on the device, in the same batches) and the same
device, in one process. Tasks:

* ``hvp``: one Hessian-vector product over the whole dataset (flatlib: both HVP methods, in
  ``--batch-size`` batches like PyHessian and in one batch of all images).
* ``top_eigenvalue``: flatlib Lanczos stopped at a certified relative error ``≤ 1e-3`` (residual
  bound); PyHessian power iteration with its own ``tol=1e-3`` (relative change between
  iterations). The achieved error of both is reported against a tightly converged Lanczos value.
* ``trace``: flatlib Hutchinson run until its relative standard error is ``≤ 1%`` (capped by
  ``--max-trace-samples``); PyHessian Hutchinson with exactly as many samples (``tol=-inf``).
* ``slq``: one ``--slq-steps``-step stochastic Lanczos quadrature.

Ratios: ``ratio = time(flatlib) / time(PyHessian)``, so a ratio below 1 means flatlib is faster.

    python -m benchmarks.curvature --quick --device cpu      # 64 images, 10 SLQ steps
    python -m benchmarks.curvature --device cuda             # 1,000 images, 100 SLQ steps
"""
from __future__ import annotations

import argparse
import copy
import math

import torch
from torch import nn

from benchmarks.common import device_slug, result, timeit, write_results
from flatlib.curvature import HessianOperator, hutchinson_trace, lanczos, slq
from flatlib.models import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="CPU-sized run: 64 images, 10 SLQ steps")
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--slq-steps", type=int, default=None)
    parser.add_argument("--max-trace-samples", type=int, default=None)
    args = parser.parse_args()
    from pyhessian import hessian as PyHessian

    device = torch.device(args.device)
    images = args.images or (64 if args.quick else 1000)
    slq_steps = args.slq_steps or (10 if args.quick else 100)
    max_trace = args.max_trace_samples or (20 if args.quick else 2000)
    hvp_repeats = 2 if args.quick else 5
    max_eig_iters = 30 if args.quick else 200  # caps the untimed reference and PyHessian's power iteration

    torch.manual_seed(0)
    model = build_model("resnet20", in_channels=3, num_classes=10, input_size=32).to(device).eval()
    X = torch.randn(images, 3, 32, 32, device=device)
    Y = torch.randint(0, 10, (images,), device=device)
    data = list(zip(X.split(args.batch_size), Y.split(args.batch_size)))
    criterion = nn.CrossEntropyLoss()
    H = {m: HessianOperator(model, data, method=m) for m in ("double-backward", "forward-over-reverse")}
    flat = H["double-backward"]
    # PyHessian switches its model to eval mode and writes .grad: give it its own copy
    ph = PyHessian(copy.deepcopy(model), criterion, dataloader=data, cuda=device.type == "cuda")
    rows: list[dict] = []
    info = {"images": images, "num_params": flat.dim, "slq_steps": slq_steps,
                      "ratio": "time(flatlib) / time(pyhessian); < 1 means flatlib is faster"}

    def emit(*new: dict) -> None:
        """Print the new rows and rewrite the result file, so an interrupted run keeps what it measured."""
        for row in new:
            ratio = "" if row["ratio"] is None else f"  ratio {row['ratio']:.2f}"
            print(f"{row['metric']:>15}  {row['name']:<32} {row['value']:9.3f} {row['unit']}{ratio}", flush=True)
        rows.extend(new)
        write_results("curvature", device, rows, extra=info)

    # one HVP
    v = torch.randn(flat.dim, device=device)
    v_ph = [t.reshape_as(p) for t, p in zip(v.split([p.numel() for p in ph.params]), ph.params)]
    t_ph = timeit(lambda: ph.dataloader_hv_product(v_ph), device, repeats=hvp_repeats)
    emit(result("pyhessian", "hvp", t_ph, "s"))
    for method, op in H.items():
        emit(result(f"flatlib ({method})", "hvp", timeit(lambda: op @ v, device, repeats=hvp_repeats),
                    "s", "pyhessian", t_ph))
    # the same HVP with all images in one batch: forward-over-reverse has a large fixed cost per call
    whole = [(X, Y)]
    for method in H:
        op = HessianOperator(model, whole, method=method)
        emit(result(f"flatlib ({method}, one batch of {images})", "hvp",
                    timeit(lambda: op @ v, device, repeats=hvp_repeats), "s", "pyhessian", t_ph))

    # top eigenvalue to 1e-3 relative
    reference = lanczos(flat, tol=1e-6, num_iters=max_eig_iters).eigenvalues[0].item()
    out = {}
    t_ours = timeit(lambda: out.update(ours=lanczos(flat, tol=1e-3)), device, repeats=1, warmup=0)
    t_ph = timeit(lambda: out.update(ph=ph.eigenvalues(maxIter=max_eig_iters, tol=1e-3)), device, repeats=1, warmup=0)
    ours, (ph_values, _) = out["ours"], out["ph"]
    info["top_eigenvalue"] = {
        "reference": reference,
        "flatlib": {"value": ours.eigenvalues[0].item(), "hvps": ours.num_matvecs,
                    "rel_error": abs(ours.eigenvalues[0].item() - reference) / abs(reference)},
        "pyhessian": {"value": ph_values[0], "rel_error": abs(ph_values[0] - reference) / abs(reference)},
    }
    emit(result("pyhessian", "top_eigenvalue", t_ph, "s"),
         result("flatlib", "top_eigenvalue", t_ours, "s", "pyhessian", t_ph))

    # trace to 1% relative standard error
    t_ours = timeit(lambda: out.update(tr=hutchinson_trace(flat, num_samples=max_trace, rel_stderr=0.01)),
                    device, repeats=1, warmup=0)
    n = out["tr"].n
    t_ph = timeit(lambda: out.update(ph_tr=ph.trace(maxIter=n, tol=-math.inf)), device, repeats=1, warmup=0)
    ph_tr = torch.tensor(out["ph_tr"], dtype=torch.float64)
    info["trace"] = {
        "samples": n,
        "flatlib": {"value": out["tr"].value, "rel_stderr": out["tr"].stderr / abs(out["tr"].value)},
        "pyhessian": {"value": ph_tr.mean().item(),
                      "rel_stderr": (ph_tr.std() / math.sqrt(n) / ph_tr.mean().abs()).item()},
    }
    emit(result("pyhessian", "trace", t_ph, "s"), result("flatlib", "trace", t_ours, "s", "pyhessian", t_ph))

    # SLQ density, one vector
    t_ours = timeit(lambda: slq(flat, num_vectors=1, num_iters=slq_steps), device, repeats=1, warmup=0)
    try:
        t_ph = timeit(lambda: ph.density(iter=slq_steps, n_v=1), device, repeats=1, warmup=0)
        emit(result("pyhessian", "slq", t_ph, "s"), result("flatlib", "slq", t_ours, "s", "pyhessian", t_ph))
    except RuntimeError as err:  # PyHessian's density calls torch.eig, removed from torch since 1.9
        info["slq"] = {"pyhessian": f"not available: {str(err).splitlines()[0]}"}
        emit(result("flatlib", "slq", t_ours, "s"))
    print("wrote benchmarks/results/" + f"curvature-{device_slug(device)}.json")


if __name__ == "__main__":
    main()
