"""Results store: atomic writes, checksums, corruption handling, locking."""
from __future__ import annotations

import json
import multiprocessing as mp

import pytest

from flatlib.store import Store


def test_put_get_roundtrip_with_provenance(results_root):
    s = Store("smoke")
    s.put("demo", {"a": 1}, {"x": [1, 2, 3]})
    e = s.get("demo", {"a": 1})
    assert e.data == {"x": [1, 2, 3]}
    assert {"time", "device", "versions", "commit"} <= set(e.provenance)
    assert s.get("demo", {"a": 2}) is None


@pytest.mark.parametrize("damage", ["corrupt", "truncate"])
def test_damaged_entry_is_detected_set_aside_and_recomputed(results_root, damage):
    s = Store("smoke")
    e = s.put("demo", {"a": 1}, {"x": 1.5})
    text = e.path.read_text()
    e.path.write_text(text.replace("1.5", "2.5") if damage == "corrupt" else text[: len(text) // 2])
    with pytest.warns(UserWarning, match="checksum mismatch|unreadable"):
        assert s.get("demo", {"a": 1}) is None
    assert e.path.with_suffix(".corrupt").exists()
    calls = []
    assert s.cached("demo", {"a": 1}, lambda: calls.append(1) or {"x": 1.5}) == {"x": 1.5}
    assert calls == [1]


def test_cached_computes_once(results_root):
    s = Store("smoke")
    calls = []
    for _ in range(3):
        s.cached("demo", {"k": 0}, lambda: calls.append(1) or {"v": 7})
    assert calls == [1]


def _worker(root, counter_path):
    import os
    import time

    s = Store("smoke", root)

    def compute():
        with open(counter_path, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        time.sleep(0.3)
        return {"v": 1}

    s.cached("demo", {"shared": True}, compute)


def test_concurrent_writers_compute_once(tmp_path):
    counter = tmp_path / "calls.txt"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(str(tmp_path / "r"), str(counter))) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    assert len(counter.read_text().splitlines()) == 1
    entries = list(Store("smoke", tmp_path / "r").entries("demo"))
    assert len(entries) == 1 and entries[0].data == {"v": 1}
    json.loads(entries[0].path.read_text())


def test_unknown_profile():
    with pytest.raises(ValueError, match="unknown profile 'fast'; choose from: smoke, default, paper"):
        Store("fast")


def test_git_commit_is_read_once_per_process(monkeypatch):
    import subprocess

    from flatlib import store as store_module

    calls = []
    real = subprocess.run

    def counting(cmd, *args, **kwargs):
        calls.append(cmd)
        return real(cmd, *args, **kwargs)

    store_module.git_commit.cache_clear()
    monkeypatch.setattr(store_module.subprocess, "run", counting)
    first = [store_module.provenance()["commit"] for _ in range(3)]
    assert len([c for c in calls if c[:2] == ["git", "rev-parse"]]) == 1 and len(set(first)) == 1
