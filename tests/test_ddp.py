"""DDP (gloo, world size 2, CPU) reproduces the single-process run of a few steps."""
from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from flatlib.train.config import TrainConfig
from flatlib.train.engine import _run

CFG = dict(dataset="toy", dataset_kwargs={"n_train": 256, "n_test": 128}, model="mlp5",
           model_kwargs={"width": 16}, epochs=2, batch_size=64, lr=0.1, progress=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), FLATLIB_QUIET="1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        result = _run(TrainConfig(**CFG), None)
        if rank == 0:
            torch.save({"losses": [r["train_loss"] for r in result.records], "test": result.summary["test_loss"]}, out)
    finally:
        dist.destroy_process_group()


def test_ddp_matches_single_process(tmp_path):
    torch.set_num_threads(1)
    single = _run(TrainConfig(**CFG), None)
    out = str(tmp_path / "ddp.pt")
    mp.start_processes(_worker, args=(2, _free_port(), out), nprocs=2, start_method="spawn")
    ddp = torch.load(out)
    assert ddp["losses"] == pytest.approx([r["train_loss"] for r in single.records], rel=1e-5)
    assert ddp["test"] == pytest.approx(single.summary["test_loss"], rel=1e-5)
