"""The results store: every experiment result as a small JSON file keyed by its config hash.

Layout: ``<root>/<profile>/<kind>/<key>.json`` with ``{"kind", "key", "config", "data",
"provenance", "checksum"}``. ``key`` hashes the config with the flatlib version, so a
finished result is found again and reused. Writes are atomic (temp file + rename), each
entry carries a SHA-256 checksum verified on read (a corrupt or truncated file is reported,
set aside and recomputed, never used), and ``cached`` holds a per-key file lock so two
processes never compute the same result twice. Checkpoints (large, never committed) live
under ``<root>/<profile>/checkpoints/``.
"""
from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import os
import platform
import socket
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from filelock import FileLock

import flatlib

PROFILES = ("smoke", "default", "paper")


def config_hash(d: dict[str, Any]) -> str:
    """Short stable hash of a JSON-able dict together with the flatlib version."""
    blob = json.dumps({"flatlib": flatlib.__version__, **d}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]



def project_root(start: Path | None = None) -> Path:
    """The flatlib project folder (the one holding ``_toc.yml``), searched upwards from ``start``/cwd."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "_toc.yml").exists() and (d / "flatlib").is_dir():
            return d
    return Path(__file__).resolve().parent.parent


def default_root() -> Path:
    """``$FLATLIB_RESULTS`` or ``<project>/results``."""
    env = os.environ.get("FLATLIB_RESULTS")
    return Path(env) if env else project_root() / "results"


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The checkout's short commit hash, read once per process (``None`` outside a git checkout)."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=project_root(), timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance() -> dict[str, Any]:
    """Where and with what a result was computed."""
    import torch

    commit = git_commit()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({platform.machine()})"
    return {
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "device": device,
        "commit": commit,
        "versions": {"flatlib": flatlib.__version__, "torch": torch.__version__,
                     "python": platform.python_version()},
    }


class CorruptResult(RuntimeError):
    """A stored entry failed its checksum or could not be parsed."""


@dataclass
class Entry:
    kind: str
    key: str
    config: dict[str, Any]
    data: Any
    provenance: dict[str, Any]
    path: Path


class Store:
    """Results of one profile under ``root/profile``."""

    def __init__(self, profile: str, root: Path | str | None = None) -> None:
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; choose from: {', '.join(PROFILES)}")
        self.profile = profile
        self.dir = Path(root or default_root()) / profile

    # -- paths --------------------------------------------------------------
    def path(self, kind: str, key: str) -> Path:
        return self.dir / kind / f"{key}.json"

    def checkpoint_dir(self, key: str) -> Path:
        return self.dir / "checkpoints" / key

    def lock(self, kind: str, key: str) -> FileLock:
        p = self.dir / "locks" / f"{kind}-{key}.lock"
        p.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(p))

    # -- read / write -----------------------------------------------------
    def read(self, path: Path) -> Entry:
        """Parse and verify one entry file; raises CorruptResult on any damage."""
        try:
            raw = json.loads(path.read_text())
            body = {k: raw[k] for k in ("kind", "key", "config", "data", "provenance")}
            ok = raw["checksum"] == hashlib.sha256(_canonical(body)).hexdigest()
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise CorruptResult(f"{path}: unreadable result ({type(err).__name__})") from None
        if not ok:
            raise CorruptResult(f"{path}: checksum mismatch")
        return Entry(path=path, **body)

    def get(self, kind: str, config: dict[str, Any]) -> Entry | None:
        """The stored entry for ``config``, or None if absent. A corrupt entry is set aside (``.corrupt``) with a warning."""
        path = self.path(kind, config_hash(config))
        if not path.exists():
            return None
        try:
            return self.read(path)
        except CorruptResult as err:
            warnings.warn(f"{err}; set aside as .corrupt and recomputing", stacklevel=2)
            os.replace(path, path.with_suffix(".corrupt"))
            return None

    def put(self, kind: str, config: dict[str, Any], data: Any) -> Entry:
        """Atomically write an entry (temp file in the same folder, then rename)."""
        key = config_hash(config)
        body = {"kind": kind, "key": key, "config": json.loads(_canonical(config)),
                "data": json.loads(_canonical(data)), "provenance": provenance()}
        payload = {**body, "checksum": hashlib.sha256(_canonical(body)).hexdigest()}
        path = self.path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(payload, fh, indent=1, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return Entry(path=path, **body)

    def cached(self, kind: str, config: dict[str, Any], compute: Callable[[], Any]) -> Any:
        """Return the stored data for ``config``, computing and storing it (under a lock) if absent."""
        entry = self.get(kind, config)
        if entry is not None:
            return entry.data
        with self.lock(kind, config_hash(config)):
            entry = self.get(kind, config)  # another process may have finished it meanwhile
            if entry is not None:
                return entry.data
            return self.put(kind, config, compute()).data

    def entries(self, kind: str | None = None) -> Iterator[Entry]:
        """All readable entries (of one kind); corrupt ones are skipped with a warning."""
        kinds = [kind] if kind else [p.name for p in sorted(self.dir.glob("*")) if p.is_dir()
                                       and p.name not in ("checkpoints", "locks", "failed")]
        for k in kinds:
            for path in sorted((self.dir / k).glob("*.json")):
                try:
                    yield self.read(path)
                except CorruptResult as err:
                    warnings.warn(str(err), stacklevel=2)

    # -- failures -------------------------------------------------------------
    def record_failure(self, kind: str, config: dict[str, Any], message: str) -> Path:
        """Write a failure note (never a result) under ``failed/``."""
        path = self.dir / "failed" / f"{kind}-{config_hash(config)}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"kind": kind, "config": config, "error": message,
                                    "provenance": provenance()}, indent=1, default=str))
        return path
