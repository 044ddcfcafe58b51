"""Shared helpers for benchmark scripts: device naming, timing, and the result-file format.

Every benchmark measures its candidates side by side in one process and writes
``benchmarks/results/<benchmark>-<device-slug>.json`` with ratios to a named baseline.
"""
from __future__ import annotations

import datetime as _dt
import json
import platform
import re
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def device_name(device: torch.device) -> str:
    """Human-readable device name (GPU model or CPU model with core count)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu} ({torch.get_num_threads()} threads)"


def device_slug(device: torch.device) -> str:
    """Short file-name-safe slug: 'cpu' or the GPU model, e.g. 'nvidia-h100-80gb-hbm3'."""
    if device.type != "cuda":
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-")


def timeit(fn: Callable[[], object], device: torch.device, repeats: int = 3, warmup: int = 1) -> float:
    """Median wall time of one call of ``fn()`` in seconds, synchronising CUDA around each call.

    For calls that are long on their own (a whole Lanczos run, an epoch). Training steps are timed
    with :func:`time_steps` / :func:`interleaved` instead (≥ 50 steps, one sync at the end).
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- timing steps: ≥ 50 consecutive steps, one sync, candidates interleaved over repeats ------------------
MIN_STEPS = 50


def time_steps(step: Callable[[], object], device: torch.device, steps: int = MIN_STEPS) -> float:
    """Seconds per step of ``steps`` consecutive calls of ``step()`` (the caller has warmed it up).

    CUDA: two CUDA events around the block, one ``synchronize`` after the second event (none inside
    the block; the device queue is drained before the first event so earlier work is not counted).
    CPU: ``time.perf_counter`` around the same block.
    """
    return _time_block(step, device, steps)[0]


def _time_block(step: Callable[[], object], device: torch.device, steps: int) -> tuple[float, float]:
    """(wall seconds per step, this process's CPU seconds per step) of ``steps`` consecutive steps."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        c0 = time.process_time()
        start.record()
        for _ in range(steps):
            step()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / steps, (time.process_time() - c0) / steps
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps, (time.process_time() - c0) / steps


class Timings(dict):
    """name → per-round wall seconds per step (the dict itself); ``.cpu``: name → per-round CPU seconds per step.

    On the CPU, the process's own CPU time (``time.process_time``, one thread) is far less disturbed
    by other users of a shared machine than wall time; both are stored.
    """

    def __init__(self) -> None:
        super().__init__()
        self.cpu: dict[str, list[float]] = {}


def interleaved(candidates: dict[str, Callable[[], object]], device: torch.device, *, steps: int = MIN_STEPS,
                repeats: int = 3, warmup: int = 5, on_fail: Callable[[str, BaseException], None] | None = None,
                log: bool = False) -> Timings:
    """Per-step seconds of every candidate in each of ``repeats`` interleaved rounds.

    Every candidate first runs ``warmup`` untimed steps (compilation, CUDA-graph capture, cuDNN
    autotuning, allocator growth). Then round r times ``steps`` consecutive steps of each candidate
    in turn, the order rotated by r (A B C, B C A, C A B, ...) so that no candidate always runs
    first or right after the same neighbour. A candidate that raises (in warm-up or a round) is
    dropped and reported through ``on_fail``; the others go on.
    """
    live = dict(candidates)
    for name, fn in list(live.items()):
        try:
            for _ in range(warmup):
                fn()
            sync(device)
        except Exception as err:  # noqa: BLE001 - reported, the others still run
            live.pop(name)
            if on_fail:
                on_fail(name, err)
    times = Timings()
    for name in live:
        times[name], times.cpu[name] = [], []
    names = list(live)
    for r in range(repeats):
        k = r % len(names) if names else 0
        for name in names[k:] + names[:k]:
            if name not in live:
                continue
            try:
                wall, cpu = _time_block(live[name], device, steps)
                if log:
                    print(f"  round {r + 1}/{repeats} {name:28s} {1e3 * wall:9.2f} ms/step wall, "
                          f"{1e3 * cpu:9.2f} ms/step CPU", flush=True)
                times[name].append(wall)
                times.cpu[name].append(cpu)
            except Exception as err:  # noqa: BLE001
                live.pop(name)
                times.pop(name)
                times.cpu.pop(name)
                if on_fail:
                    on_fail(name, err)
    return times


def spread(values: list[float]) -> dict:
    """median, min and max of repeated measurements, as stored in a result row."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def _ratios(samples: list[float], base_samples: list[float]) -> dict:
    base = statistics.median(base_samples)
    paired = [a / b for a, b in zip(samples, base_samples)]
    return {"ratio": statistics.median(samples) / base if base else None,
            "ratio_min": min(paired), "ratio_max": max(paired)}


def timed_row(name: str, metric: str, samples: list[float], unit: str, scale: float = 1.0,
              baseline: str | None = None, baseline_samples: list[float] | None = None,
              floor: float | None = None, quick: bool = False,
              cpu_samples: list[float] | None = None, cpu_baseline_samples: list[float] | None = None) -> dict:
    """A result row from repeated timings: ``value`` is the median (× ``scale``), ``min``/``max`` the spread.

    ``ratio`` is median / baseline median; ``ratio_min``/``ratio_max`` the spread of the per-round
    ratios (candidate and baseline timed in the same interleaved round). ``cpu_samples``: the
    process's CPU seconds in the same rounds, stored as ``cpu_time`` {median, min, max, ratio, ...}
    (the steadier CPU-side figure on a shared machine). ``floor``: the ratio the algorithm cannot
    beat (SAM: 2 passes → 2.0); a ratio (wall or CPU time) below 0.97 × floor is marked
    ``below_floor`` with a ``note``: a measurement problem, not a speed-up.
    """
    s = spread([scale * v for v in samples])
    row = {**result(name, metric, s["median"], unit), "min": s["min"], "max": s["max"], "repeats": s["n"]}
    if baseline_samples:
        row.update(baseline=baseline, **_ratios(samples, baseline_samples))
    if cpu_samples:
        c = spread([scale * v for v in cpu_samples])
        row["cpu_time"] = {"median": c["median"], "min": c["min"], "max": c["max"]}
        if cpu_baseline_samples:
            row["cpu_time"].update(_ratios(cpu_samples, cpu_baseline_samples))
    if floor is not None and baseline_samples:
        row["floor"] = floor
        low = [f"{what} ratio {r:.2f}" for what, r in (("wall", row.get("ratio")),
                                                      ("CPU-time", row.get("cpu_time", {}).get("ratio")))
               if r is not None and r < 0.97 * floor]
        if low:
            row["below_floor"] = True
            row["note"] = (f"{' and '.join(low)} below the algorithmic floor {floor:.2f}: a measurement problem "
                           f"({'CPU --quick timing on a shared machine' if quick else 'check the timing'}), "
                           "not a speed-up")
    return row


def failure(err: BaseException) -> str:
    """One line naming a failed candidate's error, for a result file's ``failures`` and the console."""
    return f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}"


# the engine's speed settings, as benchmarks compare them (amp and channels_last act on CUDA only)
FAST_PATH = {
    "fp32": dict(amp=False, channels_last=False, compile=False),
    "bf16": dict(amp=True, channels_last=True, compile=False),
    "compile": dict(amp=True, channels_last=True, compile=True),
    "cudagraphs": dict(amp=True, channels_last=True, compile="reduce-overhead"),
}


# -- what the engine runs ----------------------------------------------------------------------
def engine_step(model: torch.nn.Module, cfg, device: torch.device, pool: list[tuple[torch.Tensor, torch.Tensor]]):
    """One training step exactly as ``flatlib.train.engine.train`` sets it up for ``cfg`` (a ``TrainConfig``).

    Reuses the engine's own pieces: ``build_rule``, ``build_optimizer``
    with ``fused=cuda``, ``compile_mode(cfg, rule, cuda, world=1)`` (``compile="auto"``: CUDA graphs
    for rules with ``cuda_graphs``, eager otherwise), ``cudnn.benchmark`` on CUDA, channels_last when
    ``cfg.channels_last`` and the rule allow it, bf16 autocast when ``cfg.amp``, and
    ``cudagraph_mark_step_begin`` before each graphed step. ``pool``: device batches; the step
    trains on ``pool[0]`` and the rule's extra draws cycle through the pool.
    Returns ``(step, info)`` where ``info`` names the compile mode, layout and precision used.
    """
    import contextlib
    import functools
    import itertools

    from flatlib.train import engine
    from flatlib.train.config import CUDA_GRAPH_MODES
    from flatlib.train.optim import build_optimizer
    from flatlib.train.rules import StepContext, build_rule

    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    model = model.to(device).train()
    rule = build_rule(cfg.rule, **cfg.rule_kwargs)  # as the engine builds it
    channels_last = cuda and cfg.channels_last and rule.channels_last
    if channels_last:
        model.to(memory_format=torch.channels_last)
        pool = [(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x, y) for x, y in pool]
    optimizer = build_optimizer(cfg, rule.trainable(model), fused=cuda)
    mode = engine.compile_mode(cfg, rule, cuda, 1)
    step_model = torch.compile(model, dynamic=False, mode=mode) if mode else model
    cudagraphs = cuda and mode in CUDA_GRAPH_MODES
    autocast = functools.partial(torch.autocast, "cuda", dtype=torch.bfloat16) if cuda and cfg.amp \
        else contextlib.nullcontext
    draws = itertools.count(1)
    ctx = StepContext(step_model, optimizer, torch.nn.functional.cross_entropy,
                      draw_batch=lambda: pool[next(draws) % len(pool)], autocast=autocast)
    x, y = pool[0]

    def step():
        if cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
        ctx.logs = {}
        return rule.step(ctx, x, y)

    info = {"compile_mode": mode or "eager", "channels_last": channels_last, "amp": bool(cuda and cfg.amp),
            "fused_optimizer": cuda, "cudnn_benchmark": cuda}
    return step, info


def time_engine_candidates(net: str, model_name: str, model_kwargs: dict, fields_by_candidate: dict[str, dict], *,
                           base: dict, batch: int, device: torch.device, pool: list, plain_prefix: str, args,
                           failures: dict, settings: dict, width: int = 17):
    """Build each candidate's engine step (a fresh seeded model, ``TrainConfig(**base, **fields)``), time them
    interleaved (``interleaved``), and return ``(times, fastest)``: the samples and the fastest candidate whose
    name starts with ``plain_prefix`` (the ratios' baseline). Failures land in ``failures`` and are printed."""
    from flatlib.models import build_model
    from flatlib.train.config import TrainConfig

    steps = {}
    for cand, fields in fields_by_candidate.items():
        torch.manual_seed(0)
        model = build_model(model_name, in_channels=3, num_classes=10, input_size=32, **model_kwargs)
        cfg = TrainConfig(model=model_name, model_kwargs=model_kwargs, batch_size=batch, device=str(device),
                          **base, **fields)
        try:
            steps[cand], settings[f"{net}/{cand}"] = engine_step(model, cfg, device, pool)
        except Exception as err:  # noqa: BLE001 - reported in the file
            failures[f"{net}/{cand}"] = failure(err)

    def fail(cand, err):
        failures[f"{net}/{cand}"] = failure(err)
        print(f"{net:20s} {cand:{width}s} FAILED {failures[f'{net}/{cand}']}", flush=True)

    times = interleaved(steps, device, steps=args.steps, repeats=args.repeats, warmup=5, on_fail=fail, log=True)
    plain = {c: t for c, t in times.items() if c.startswith(plain_prefix)}
    fastest = min(plain, key=lambda c: sorted(plain[c])[len(plain[c]) // 2])
    return times, fastest


def allow_many_compiles() -> None:
    """Several compiled models of one class live in one benchmark process: keep dynamo from falling back to eager."""
    import torch._dynamo

    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, 256)
    if hasattr(torch._dynamo.config, "accumulated_recompile_limit"):
        torch._dynamo.config.accumulated_recompile_limit = 4096


def result(name: str, metric: str, value: float, unit: str, baseline: str | None = None,
           baseline_value: float | None = None) -> dict:
    """One result row; ``ratio`` is value / baseline_value when a baseline is named."""
    ratio = None if baseline_value in (None, 0) else value / baseline_value
    return {"name": name, "metric": metric, "value": value, "unit": unit,
            "baseline": baseline, "ratio": ratio}


def write_results(benchmark: str, device: torch.device, results: list[dict], extra: dict | None = None) -> Path:
    """Write the benchmark's JSON result file and return its path."""
    import flatlib

    payload = {
        "benchmark": benchmark,
        "device": device_name(device),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"torch": torch.__version__, "flatlib": flatlib.__version__,
                     "python": platform.python_version()},
        "results": results,
        **(extra or {}),
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{benchmark}-{device_slug(device)}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
