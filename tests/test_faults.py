"""Bad input and failures: clear one-line errors, nothing lost (issue: reliability)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import nbformat
import pytest
import torch

from flatlib.train.config import TrainConfig
from flatlib.train.engine import Diverged, OutOfMemory, load_model, train
from flatlib.store import Store

TINY = dict(dataset="toy", model="mlp5", model_kwargs={"width": 16}, epochs=3, lr=0.1, batch_size=64, progress=False)


def test_papermill_unknown_parameter_fails_before_work(tmp_path):
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError, match="unknown parameter 'epochz' for ff_gedanken"):
        pm.execute_notebook("notebooks/ff_gedanken.ipynb", str(tmp_path / "out.ipynb"), cwd="notebooks",
                            parameters={"profile": "smoke", "epochz": 3}, progress_bar=False)


def test_python_api_invalid_value_one_line():
    from flatlib.experiments.gedanken import GedankenParams
    from flatlib.params import ParameterError

    with pytest.raises(ParameterError, match=r"invalid steps=-5 for ff_gedanken: must be >= 1") as info:
        GedankenParams.resolve(profile="smoke", steps=-5)
    assert "\n" not in str(info.value)


def test_missing_dataset_one_line(tmp_path):
    from flatlib.data import MissingDataError, load_dataset

    with pytest.raises(MissingDataError) as info:
        load_dataset("cifar10", root=tmp_path)
    msg = str(info.value)
    assert "cifar10" in msg and str(tmp_path) in msg and "\n" not in msg


class NaNAt(torch.nn.Module):
    """Wraps a model; from training forward call ``at`` (1-based) on, the output is NaN."""

    def __init__(self, inner: torch.nn.Module, at: int) -> None:
        super().__init__()
        self.inner, self.at, self.calls = inner, at, 0
        self.features, self.classifier = inner.features, inner.classifier

    def forward(self, x):
        out = self.inner(x)
        if not self.training:
            return out
        self.calls += 1
        return out * float("nan") if self.calls >= self.at else out


def test_nan_at_chosen_step_stops_keeps_checkpoint_writes_no_result(results_root, monkeypatch):
    import flatlib.train.engine as engine

    store = Store("smoke")
    cfg = TrainConfig(**TINY)
    steps_per_epoch = -(-2000 // 64)  # toy has 2000 training points
    real = engine.model_for
    monkeypatch.setattr(engine, "model_for", lambda c, ds: NaNAt(real(c, ds), at=steps_per_epoch + 5))
    with pytest.raises(Diverged, match="non-finite loss at epoch 2, step 4"):
        train(cfg, store)
    assert store.get("train", cfg.to_dict(hashed_only=True)) is None
    ckpt = torch.load(store.checkpoint_dir(cfg.key()) / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 1  # the last good epoch
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    failure = json.loads(next((store.dir / "failed").glob("*.json")).read_text())
    assert "epoch 2, step 4" in failure["error"]


def test_checkpoint_from_other_config_is_refused(results_root):
    store = Store("smoke")
    a, b = TrainConfig(**TINY), TrainConfig(**{**TINY, "seed": 1})
    train(a, store)
    dst = store.checkpoint_dir(b.key())
    dst.mkdir(parents=True)
    (dst / "final.pt").write_bytes((store.checkpoint_dir(a.key()) / "final.pt").read_bytes())
    with pytest.raises(RuntimeError, match=f"belongs to config {a.key()}, not {b.key()}; refusing"):
        load_model(b, store)


def test_out_of_memory_message(results_root, monkeypatch):
    import flatlib.train.engine as engine

    def boom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(engine, "_train_loop", boom)
    with pytest.raises(OutOfMemory, match="use a smaller batch_size") as info:
        train(TrainConfig(**TINY), Store("smoke"))
    assert "\n" not in str(info.value)


def test_killed_mid_epoch_resumes_identically(results_root, tmp_path):
    """SIGKILL a `flatlib train` process mid-run, rerun: the result equals an uninterrupted run."""
    cfg = TrainConfig(**{**TINY, "epochs": 12, "dataset_kwargs": {"n_train": 4000}})
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(cfg.to_dict()))
    env = {**os.environ, "FLATLIB_RESULTS": str(results_root / "killed"), "FLATLIB_QUIET": "1"}
    cmd = [sys.executable, "-m", "flatlib.pipeline.cli", "train", "--config", str(path), "--profile", "smoke"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = Store("smoke", results_root / "killed").checkpoint_dir(cfg.key()) / "last.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not last.exists():
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    store = Store("smoke", results_root / "killed")
    assert store.get("train", cfg.to_dict(hashed_only=True)) is None, "killed too late: run already finished"
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=300)
    resumed = store.get("train", cfg.to_dict(hashed_only=True)).data
    clean = train(cfg, Store("smoke", results_root / "clean"))
    assert [r["train_loss"] for r in resumed["records"]] == [r["train_loss"] for r in clean.records]
    assert resumed["summary"]["test_loss"] == clean.summary["test_loss"]


def test_batch_execution_reports_failing_cell_and_continues(results_root, tmp_path, monkeypatch, capsys):
    """run-all's notebook stage: a failing notebook is reported with cell and parameters; the next still runs."""
    import argparse

    from flatlib.pipeline import registry, scheduler

    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    for name, code in [("a_bad", "raise ValueError('boom')"), ("b_good", "x = 1")]:
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell("profile = None", metadata={"tags": ["parameters"]}),
                    nbformat.v4.new_code_cell(code)]
        nbformat.write(nb, nbdir / f"{name}.ipynb")
    monkeypatch.setattr(registry, "notebook_dir", lambda: nbdir)
    monkeypatch.setattr(scheduler, "notebooks", lambda: ["a_bad", "b_good"])
    monkeypatch.setattr(scheduler, "plans", lambda profile, only=None: {})
    monkeypatch.chdir(tmp_path)
    args = argparse.Namespace(profile="smoke", only=None, executor="local", gpus=None, jobs=1, no_notebooks=False)
    assert scheduler.run_all(args) == 1
    err = capsys.readouterr()
    text = err.out + err.err
    assert re.search(r'notebook a_bad failed in cell \d+ with parameters \{"profile": "smoke"\}: ValueError: boom', text)
    assert "notebook b_good ->" in text
