"""The benchmark timing helpers (benchmarks/common.py): warm-up outside, ≥ 50-step blocks, rotated rounds, floors."""
from __future__ import annotations

import torch

from benchmarks.common import MIN_STEPS, engine_step, interleaved, timed_row
from flatlib.train.config import TrainConfig
from flatlib.models import build_model


def test_interleaved_warms_up_outside_and_rotates_the_order():
    calls, order = {"a": 0, "b": 0, "c": 0}, []

    def make(name):
        def step():
            calls[name] += 1
            if not order or order[-1] != name:
                order.append(name)
        return step

    t = interleaved({n: make(n) for n in "abc"}, torch.device("cpu"), steps=MIN_STEPS, repeats=3, warmup=5)
    assert all(calls[n] == 5 + 3 * MIN_STEPS for n in "abc")
    assert {n: len(v) for n, v in t.items()} == {"a": 3, "b": 3, "c": 3} and set(t.cpu) == set("abc")
    # warm-up a, b, c; then rounds a b c | b c a | c a b
    assert order == list("abc") + list("abc") + list("bca") + list("cab")


def test_a_failing_candidate_is_dropped_and_reported():
    failed = {}

    def boom():
        raise RuntimeError("no")

    t = interleaved({"ok": lambda: None, "bad": boom}, torch.device("cpu"), steps=2, repeats=3, warmup=1,
                    on_fail=lambda n, e: failed.setdefault(n, str(e)))
    assert list(t) == ["ok"] and failed == {"bad": "no"}


def test_timed_row_reports_median_spread_and_flags_a_ratio_below_its_floor():
    row = timed_row("net/sam", "time_per_step", [1.2, 1.0, 1.5], "s", baseline="net/sgd",
                    baseline_samples=[1.0, 1.0, 1.0], floor=2.0, quick=True,
                    cpu_samples=[2.0, 2.1, 1.9], cpu_baseline_samples=[1.0, 1.0, 1.0])
    assert (row["value"], row["min"], row["max"], row["repeats"]) == (1.2, 1.0, 1.5, 3)
    assert row["ratio"] == 1.2 and (row["ratio_min"], row["ratio_max"]) == (1.0, 1.5)
    assert row["cpu_time"]["ratio"] == 2.0
    assert row["below_floor"] and "wall ratio 1.20" in row["note"] and "CPU-time" not in row["note"]
    ok = timed_row("net/sam", "t", [2.0] * 3, "s", baseline="net/sgd", baseline_samples=[1.0] * 3, floor=2.0)
    assert "below_floor" not in ok


def test_engine_step_uses_the_engine_settings_on_the_cpu():
    model = build_model("resnet20", in_channels=3, num_classes=10, input_size=32, width=0.25)
    pool = [(torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))) for _ in range(2)]
    cfg = TrainConfig(model="resnet20", batch_size=8, device="cpu", rule="sam", compile="auto")
    step, info = engine_step(model, cfg, torch.device("cpu"), pool)
    before = [p.detach().clone() for p in model.parameters()]
    loss = step()
    assert torch.isfinite(loss) and any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    # compile="auto" is eager on the CPU; amp, channels_last, fused optimizer and cudnn act on CUDA only
    assert info == {"compile_mode": "eager", "channels_last": False, "amp": False, "fused_optimizer": False,
                    "cudnn_benchmark": False}
