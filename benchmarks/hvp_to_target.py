"""Benchmark: Hessian-vector products needed to reach a target error, against a float64 dense reference.

Deterministic counts, not timings, so they hold on a busy CPU and transfer to any device (time ≈
HVPs × the cost of one HVP, which ``curvature.py`` measures). A small tanh MLP is trained on
teacher-labelled data (float64), its dense Hessian over the data is the reference (λ1 and trace by
``eigvalsh``), and each estimator runs on a float32 ``HessianOperator`` (batched probes via
``method="forward-over-reverse-vmap"``) over ``--seeds`` seeds:

* ``lanczos-residual`` / ``lanczos-gap``: λ1 at ``tol=1e-3``, stopped on the residual (r ≤ tol·θ) or on
  the Ritz-value error bound min(r, r²/δ) ≤ tol·θ; value = median HVPs; ``max_rel_error`` = worst seed.
* ``hutchinson-b16``: trace with 16 probes per matmat until rel. standard error ≤ 1 %; value = median HVPs.
* ``hutch++`` / ``slq``: the smallest budget on a ladder at which the median |relative error| over
  seeds is ≤ 1 % (SLQ: ``num_vectors`` × 10 Lanczos steps; its trace is P·mean Σ w θ).

    python -m benchmarks.hvp_to_target            # CPU, about a minute
"""
from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import result, write_results
from flatlib.curvature import HessianOperator, hutchinson_trace, hutchpp_trace, lanczos, slq


def trained_problem(width: int, n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 10, generator=g, dtype=torch.float64)
    y = (x @ torch.randn(10, 4, generator=g, dtype=torch.float64)).argmax(1)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(10, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(),
                          nn.Linear(width, 4)).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(300):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model, (x, y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="accepted for run_all.py; the run is already CPU-sized")
    args = parser.parse_args()
    device = torch.device("cpu")
    model, data = trained_problem(args.width, args.images)
    H64 = HessianOperator(model, data, dtype=torch.float64, batch_size=args.images).to_dense()
    H64 = (H64 + H64.T) / 2
    eig = torch.linalg.eigvalsh(H64)
    lam1, trace, dim = float(eig[-1]), float(eig.sum()), H64.shape[0]
    print(f"P = {dim}, λ1 = {lam1:.6g}, trace = {trace:.6g} (float64 dense reference)")

    def op():
        return HessianOperator(model, data, dtype=torch.float32, batch_size=args.images,
                               method="forward-over-reverse-vmap")

    rows, seeds = [], range(args.seeds)
    counts = {}
    for stop in ("residual", "gap"):
        n, err = [], []
        for s in seeds:
            r = lanczos(op(), k=1, tol=1e-3, seed=s, stop=stop)
            n.append(r.num_matvecs)
            err.append(abs(float(r.eigenvalues[0]) - lam1) / lam1)
        counts[stop] = statistics.median(n)
        rows.append({**result(f"lanczos-{stop}", "HVPs to λ1 at tol 1e-3 (median)", counts[stop], "HVPs",
                              "lanczos-residual", counts.get("residual")), "max_rel_error": max(err)})
        print(rows[-1])

    n, err = [], []
    for s in seeds:
        est = hutchinson_trace(op(), num_samples=4000, seed=s, block_size=16, rel_stderr=0.01)
        n.append(est.n)
        err.append(abs(est.value - trace) / abs(trace))
    hutch = statistics.median(n)
    rows.append({**result("hutchinson-b16", "HVPs to trace at 1% rel. stderr (median)", hutch, "HVPs",
                          "hutchinson-b16", hutch), "median_rel_error": statistics.median(err), "block_size": 16})
    print(rows[-1])

    def ladder(name, run, budgets):
        for b in budgets:
            err = [abs(run(b, s) - trace) / abs(trace) for s in seeds]
            if statistics.median(err) <= 0.01:
                return {**result(name, "HVPs to median |rel. error| ≤ 1% of the trace", b, "HVPs",
                                 "hutchinson-b16", hutch), "median_rel_error": statistics.median(err)}
        return {**result(name, "HVPs to median |rel. error| ≤ 1% of the trace", float("nan"), "HVPs"),
                "note": f"not reached within {budgets[-1]} HVPs"}

    rows.append(ladder("hutch++", lambda b, s: hutchpp_trace(op(), b, seed=s).value,
                       [30, 60, 90, 150, 240, 360, 600, 900, 1500]))
    print(rows[-1])
    rows.append(ladder("slq", lambda b, s: dim * float(slq(op(), num_vectors=b // 10, num_iters=10, seed=s)
                                                       .moments(1)[0]),
                       [40, 80, 160, 320, 640, 1280, 2560]))
    print(rows[-1])
    path = write_results("hvp_to_target", device, rows, {
        "params": dim, "lambda1": lam1, "trace": trace, "seeds": args.seeds,
        "reference": "dense float64 Hessian over all images (eigvalsh); estimators on a float32 operator"})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
