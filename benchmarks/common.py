"""Shared helpers for benchmark scripts: device naming, timing, and the result-file format.

Every benchmark measures its candidates side by side in one process and writes
``benchmarks/results/<benchmark>-<device-slug>.json`` with ratios to a named baseline.
"""
from __future__ import annotations

import datetime as _dt
import json
import platform
import re
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
    """Median wall time of ``fn()`` in seconds, synchronising CUDA around each call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


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
