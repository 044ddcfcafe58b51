"""The paper profile without the papers' data: fabricated files, the dry run's caps, measures on the run's device,
the Lanczos basis-memory plan and chunked HVPs."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from flatlib import dryrun
from flatlib.pipeline.cli import main
from flatlib.train.config import TrainConfig
from flatlib.curvature import HessianOperator, lanczos
from flatlib.curvature.memory import basis_plan, combine, project_out
from flatlib.data import load_dataset
from flatlib.data.fabricate import REQUIRED_FILES, fabricate, missing_files
from flatlib.train.engine import load_model, train
from flatlib.store import Store


# ------------------------------------------------------------------------------------------ fabricated data
@pytest.fixture(scope="module")
def fake_root(tmp_path_factory):
    return fabricate(tmp_path_factory.mktemp("data"), 4)


@pytest.mark.parametrize("name, n_train, shape, classes", [
    ("cifar10", 20, (3, 32, 32), 10), ("cifar100", 20, (3, 32, 32), 100), ("svhn", 4, (3, 32, 32), 10),
    ("mnist", 4, (1, 28, 28), 10), ("fashion_mnist", 4, (1, 28, 28), 10)])
def test_fabricated_files_load_through_torchvision(fake_root, name, n_train, shape, classes):
    ds = load_dataset(name, root=fake_root)
    assert ds.x_train.shape == (n_train, *shape) and ds.x_train.dtype == torch.uint8
    assert ds.x_test.shape == (4, *shape) and ds.num_classes == classes
    assert int(ds.y_train.min()) >= 0 and int(ds.y_train.max()) < classes


def test_fabricated_svhn_extra_and_imagenet_layout(fake_root):
    assert load_dataset("svhn", root=fake_root, extra=True).n_train == 8
    from torchvision.datasets import ImageFolder

    folder = ImageFolder(str(fake_root / "imagenet128" / "train"))
    assert len(folder.classes) == 2 and folder[0][0].size == (128, 128)


def test_real_folder_keeps_checksums(fake_root, tmp_path):
    """Without the FABRICATED marker the published MD5s apply: fake files are reported, never loaded."""
    import shutil

    from flatlib.data import MissingDataError

    shutil.copytree(fake_root / "cifar-10-batches-py", tmp_path / "cifar-10-batches-py")
    with pytest.raises(MissingDataError, match="cifar10"):
        load_dataset("cifar10", root=tmp_path)


def test_data_check_names_each_missing_file(fake_root, tmp_path, capsys):
    (tmp_path / "train_32x32.mat").write_bytes(b"")
    assert main(["data", "check", "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    for name, files in REQUIRED_FILES.items():
        for f in files:
            assert (str(tmp_path / f) in out) == (f != "train_32x32.mat")
    assert main(["data", "check", "--root", str(fake_root)]) == 0
    assert all(not v for v in missing_files(fake_root).values())


# ------------------------------------------------------------------------------------------ dry-run caps
@pytest.fixture
def dry(monkeypatch):
    for k, v in dryrun.Settings(steps=2, iters=3, images=8, batch=4, seeds=1, levels=2).to_env().items():
        monkeypatch.setenv(k, v)


def test_paper_presets_untouched_and_caps_applied(dry, monkeypatch):
    import flatlib.experiments  # noqa: F401
    from flatlib.pipeline.registry import notebook_classes

    capped = notebook_classes()["ff_wrn"].resolve(profile="paper")
    assert (capped.lanczos_iters, capped.seeds, capped.weight_decays) == (3, [0], [0.0, 1e-4])
    assert (capped.model, capped.epochs, capped.batch_size, capped.augment) == ("wrn28_10", 300, 4, "4-crop-f")
    scen = notebook_classes()["fim_confusion"].resolve(profile="paper")
    assert scen.n_train == 4 and scen.confusion == [0, 2] and scen.n_prime == 3
    reg = notebook_classes()["fim_regularizer"].resolve(profile="paper")
    assert sorted(p.split(":")[1] for p in reg.pairs) == ["cnn6", "densenet_bc", "resnet20", "wrn28_2"]
    monkeypatch.delenv(dryrun.ENV)
    full = notebook_classes()["ff_wrn"].resolve(profile="paper")
    assert (full.lanczos_iters, full.weight_decays, full.batch_size) == (100, [0.0, 1e-4, 5e-4], 128)
    monkeypatch.setenv(dryrun.ENV, "1")
    monkeypatch.setenv(f"{dryrun.ENV}_BATCH", "0")  # the GPU dry run: the paper's batch sizes
    assert notebook_classes()["ff_wrn"].resolve(profile="paper").batch_size == 128


def test_engine_truncates_a_dry_run(dry, results_root):
    cfg = TrainConfig(dataset="toy", dataset_kwargs={"n_train": 64, "n_test": 16}, model="mlp5", batch_size=16,
                      epochs=6, snapshot_epochs=(3,), averaging_start=5, device="cpu", progress=False)
    res = train(cfg, Store("paper"))
    assert len(res.records) == 6
    skipped = [r["epoch"] for r in res.records if r.get("dry_run_skipped")]
    assert skipped == [2, 4]  # epochs 1 (first), 3 (snapshot), 5 (averaging starts), 6 (last) run
    assert (Store("paper").checkpoint_dir(cfg.key()) / "epoch3.pt").exists()


# ------------------------------------------------------------------------------------------ device
def test_load_model_defaults_to_the_runs_device(results_root):
    cfg = TrainConfig(dataset="toy", dataset_kwargs={"n_train": 32, "n_test": 8}, model="mlp5", batch_size=16,
                      epochs=1, device="cpu", progress=False)
    store = Store("smoke")
    train(cfg, store)
    model = load_model(cfg, store)
    assert next(model.parameters()).device == torch.device(cfg.device)
    assert HessianOperator(model, (torch.randn(4, 10), torch.zeros(4, dtype=torch.long))).device == torch.device("cpu")


def test_hvp_chunks_equal_whole_batches():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7), nn.Tanh(), nn.Linear(7, 3)).double().eval()
    X, Y = torch.randn(23, 5, dtype=torch.float64), torch.randint(0, 3, (23,))
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=torch.float64)
    whole = HessianOperator(model, (X, Y), dtype=torch.float64, chunk_size=None) @ v
    chunked = HessianOperator(model, (X, Y), dtype=torch.float64, chunk_size=5)
    torch.testing.assert_close(chunked @ v, whole, rtol=1e-10, atol=1e-12)
    assert HessianOperator(model, (X, Y), bn_mode="train", chunk_size=5).chunk_size is None  # BN stats: never split


# ------------------------------------------------------------------------------------------ Lanczos basis memory
def test_basis_plan_follows_the_free_memory():
    """WRN-28-10 (36.5M parameters), 100 Lanczos vectors: 29 GB in float64, 15 GB in float32."""
    P, m, gib = 36_546_980, 100, 2**30
    big = basis_plan(P, m, "cuda", free_bytes=120 * gib)
    mid = basis_plan(P, m, "cuda", free_bytes=40 * gib)
    small = basis_plan(P, m, "cuda", free_bytes=8 * gib)
    assert (big.dtype, big.device.type) == (torch.float64, "cuda")
    assert (mid.dtype, mid.device.type) == (torch.float32, "cuda")
    assert (small.dtype, small.device.type) == (torch.float32, "cpu")
    assert basis_plan(P, m, "cpu").dtype == torch.float64


def test_lanczos_with_a_small_memory_plan_matches_float64(monkeypatch):
    """A fake 1 kB budget forces the float32 host basis; eigenvalues agree with the float64 basis."""
    import sys

    lz = sys.modules["flatlib.curvature.lanczos"]  # the module (the package exports the function by this name)
    torch.manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(200, 200, dtype=torch.float64))
    A = Q @ torch.diag(torch.linspace(-1, 10, 200, dtype=torch.float64)) @ Q.T
    ref = lanczos(A, k=2, num_iters=60, tol=1e-6)
    plan = basis_plan(200, 60, "cuda", free_bytes=1000)
    assert plan.device.type == "cpu" and plan.dtype == torch.float32
    monkeypatch.setattr(lz, "basis_plan", lambda *a, **k: plan)
    small = lanczos(A, k=2, num_iters=60, tol=1e-6)
    torch.testing.assert_close(small.eigenvalues, ref.eigenvalues, rtol=1e-6, atol=1e-6)
    assert abs(float(small.eigenvectors[:, 0] @ ref.eigenvectors[:, 0])) == pytest.approx(1.0, abs=1e-5)


def test_project_out_chunked_float32_basis():
    V, _ = torch.linalg.qr(torch.randn(1000, 7, dtype=torch.float64))
    w = torch.randn(1000, dtype=torch.float64)
    exact = project_out(V, 7, w)
    approx = project_out(V.float(), 7, w)
    assert float((V.T @ approx).abs().max()) < 1e-6 and float((exact - approx).norm()) < 1e-5
    S = torch.randn(7, 2, dtype=torch.float64)
    torch.testing.assert_close(combine(V.float(), S, torch.float64, torch.device("cpu")), V @ S, rtol=1e-5, atol=1e-5)


def test_settings_round_trip(monkeypatch):
    s = dryrun.Settings(steps=2, batch=0)
    for k, v in s.to_env().items():
        monkeypatch.setenv(k, v)
    assert dryrun.settings() == s and dataclasses.asdict(dryrun.from_env()) == dataclasses.asdict(s)


# ------------------------------------------------------------------------------------------ cost plan
def test_static_plan_counts_runs_epochs_and_images(monkeypatch, capsys):
    from flatlib.pipeline.costplan import static_plan

    monkeypatch.delenv(dryrun.ENV, raising=False)
    rows = {r["notebook"]: r for r in static_plan("paper")}
    wrn = rows["ff_wrn"]
    assert (wrn["runs"], wrn["epochs"], wrn["images_per_epoch"]) == (3, 900, "50,000")
    # λ1 (100) + SLQ (100) + trace and tr H² (2 × 100) HVPs, two BN modes, 50k images, 3 runs
    assert wrn["image_hvps"] == 400 * 2 * 50_000 * 3
    assert rows["pof_images"]["runs"] == 12  # SGD, SAM, PoF, PoF+classifier for 3 seeds, from image_configs
    assert rows["fim_imagenet"]["excluded"] and rows["ff_softmax"]["images_per_epoch"] == "45,000"
    assert main(["plan", "--profile", "paper", "--only", "ff_"]) == 0
    assert "ff_wrn" in capsys.readouterr().out
