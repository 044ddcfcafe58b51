"""run-all: parallel runs, kill -9 and resume without recomputation, SLURM via submitit's local executor."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from flatlib.store import Store

ONLY = "data_and_baselines"


def _entries(root: Path) -> dict[str, float]:
    """key -> provenance time of every stored training result."""
    return {e.key: e.provenance["time"] for e in Store("smoke", root).entries("train")}


def _run_all(root: Path, *extra: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "FLATLIB_RESULTS": str(root), "FLATLIB_QUIET": "1"}
    return subprocess.Popen([sys.executable, "-m", "flatlib.pipeline.cli", "run-all", "--profile", "smoke", "--only", ONLY,
                             "--no-notebooks", *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **popen)


def test_run_all_killed_and_rerun_completes_without_recomputing(results_root):
    from flatlib.pipeline.scheduler import plans

    expected = {c.key() for c in plans("smoke", ONLY)[ONLY]}
    proc = _run_all(results_root, "--jobs", "2", start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and not _entries(results_root):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole group: run-all and its workers
    proc.wait()
    before = _entries(results_root)
    assert before and set(before) <= expected
    rerun = _run_all(results_root, "--jobs", "2")
    out, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, out
    after = _entries(results_root)
    assert set(after) == expected  # every result present exactly once (one file per key)
    assert all(after[k] == t for k, t in before.items())  # none recomputed
    assert f"{len(expected) - len(before)} runs to train" in out


def test_status_and_slurm_executor_with_local_submitit(results_root, monkeypatch):
    from flatlib.pipeline.scheduler import plans

    monkeypatch.setenv("FLATLIB_SUBMITIT_CLUSTER", "local")
    expected = {c.key() for c in plans("smoke", ONLY)[ONLY]}
    proc = _run_all(results_root, "--executor", "slurm")
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    assert set(_entries(results_root)) == expected
    status = subprocess.run([sys.executable, "-m", "flatlib.pipeline.cli", "status", "--profile", "smoke"], text=True,
                            capture_output=True, env={**os.environ, "FLATLIB_RESULTS": str(results_root)})
    row = next(line for line in status.stdout.splitlines() if line.startswith(ONLY))
    assert row.split()[1:] == [str(len(expected)), "0", "0", "0"]


def test_failed_run_is_reported_and_others_continue(results_root, monkeypatch, capsys):
    """A diverging run is reported with its config and log path; the other run still finishes; exit code 1."""
    import argparse

    from flatlib.pipeline import scheduler
    from flatlib.train.config import TrainConfig

    good = TrainConfig(dataset="toy", model="mlp5", model_kwargs={"width": 8}, epochs=1, progress=False)
    bad = good.replace(lr=1e8, epochs=20)
    monkeypatch.setattr(scheduler, "plans", lambda profile, only=None: {"demo": [bad, good]})
    args = argparse.Namespace(profile="smoke", only=None, executor="local", gpus=None, jobs=2, no_notebooks=True)
    assert scheduler.run_all(args) == 1
    out = capsys.readouterr()
    text = out.out + out.err
    assert f"FAILED {bad.key()}" in text and '"lr": 100000000.0' in text and ".log" in text
    assert set(_entries(results_root)) == {good.key()}
    log = next(line for line in text.splitlines() if "FAILED" in line).rsplit("(log: ", 1)[1].rstrip(")")
    assert "diverged: non-finite loss" in Path(log).read_text()


def test_parallel_workers_share_the_cpu_cores(monkeypatch):
    from flatlib.pipeline.scheduler import worker_env

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    env = worker_env("3", workers=4)
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "4" and env["CUDA_VISIBLE_DEVICES"] == "3"
    assert worker_env(None, workers=32)["OMP_NUM_THREADS"] == "1" and "CUDA_VISIBLE_DEVICES" not in worker_env(None, 1)
    monkeypatch.setenv("OMP_NUM_THREADS", "7")  # the user's own setting wins
    assert worker_env(None, workers=4)["OMP_NUM_THREADS"] == "7"


def test_cpu_default_is_one_worker_per_core(monkeypatch):
    """Without GPUs and without --jobs, run-all keeps every core busy: one single-thread worker per core
    (measured: two threads per process on these small models cost about twice the CPU for the same wall time)."""
    import argparse

    import torch

    from flatlib.pipeline.scheduler import _slots, worker_env

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert _slots(argparse.Namespace(gpus=None, jobs=None)) == [None] * 4
    assert worker_env(None, len(_slots(argparse.Namespace(gpus=None, jobs=None))))["OMP_NUM_THREADS"] == "1"
    assert _slots(argparse.Namespace(gpus="0,1", jobs=None)) == ["0", "1"]
    assert _slots(argparse.Namespace(gpus=None, jobs=3)) == [None] * 3


def test_runs_take_the_next_free_gpu():
    """Runs of unequal length on fake GPU slots: a GPU never holds two runs, so none idles while another is doubled."""
    import threading

    from flatlib.pipeline.scheduler import map_on_slots

    lock = threading.Lock()
    busy: dict[str, int] = {"0": 0, "1": 0, "2": 0}
    events: list[tuple[str, dict[str, int]]] = []
    durations = [0.3, 0.02, 0.02, 0.25, 0.02, 0.02, 0.02, 0.15, 0.02, 0.02, 0.02, 0.02]

    def run(seconds: float, gpu: str) -> str:
        with lock:
            busy[gpu] += 1
            events.append((gpu, dict(busy)))
        time.sleep(seconds)
        with lock:
            busy[gpu] -= 1
        return gpu

    used = list(map_on_slots(run, durations, ["0", "1", "2"]))
    assert len(used) == len(durations) and set(used) == {"0", "1", "2"}
    for gpu, snapshot in events:
        assert snapshot[gpu] == 1, f"GPU {gpu} got a second run while {snapshot} were busy"
    # with --jobs above the GPU count a GPU is shared by as many runs as it has slots, never more
    busy.update({"0": 0, "1": 0})
    events.clear()
    list(map_on_slots(run, durations, ["0", "1", "0", "1"]))
    assert max(snapshot[gpu] for gpu, snapshot in events) == 2
