"""The on-disk cache of decoded data sets: decoding Imagenette takes minutes, a warm start must take
well under a second, and parallel runs on one machine must decode it only once (a file lock) and
never read half a file (an atomic write)."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Callable

import torch

from ..config import TrainConfig
from ..fileio import atomic_path
from .types import DataSplits

CACHE_VERSION = 1  # bump when decoding changes, so stale caches (and fingerprints) are not reused


def cache_root(cfg: TrainConfig) -> Path:
    """Where decoded data sets are cached: cfg.cache_dir, $MAE_GAP_CACHE or ~/.cache/mae-gap."""
    root = cfg.cache_dir or os.environ.get("MAE_GAP_CACHE") or "~/.cache/mae-gap"
    return Path(root).expanduser()


def cache_path(cfg: TrainConfig, key: str) -> Path:
    return cache_root(cfg) / f"{cfg.source}-{cfg.img_size}px-{key}.pt"


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save(obj) to `path`: readers see the old file or the whole new one, never a part."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())


def load_cache(path: Path) -> DataSplits | None:
    """The cached splits, memory-mapped; None (and a note) if the file is stale or unreadable."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        if blob.get("version") != CACHE_VERSION:
            return None
        return DataSplits(
            train_images=blob["train_images"],
            train_labels=blob["train_labels"],
            val_images=blob["val_images"],
            val_labels=blob["val_labels"],
            classes=list(blob["classes"]),
            fingerprint=str(blob["fingerprint"]),
        )
    except Exception as e:  # noqa: BLE001 - a broken cache file is rebuilt, never fatal
        print(f"mae_gap.data: ignoring unreadable cache {path} ({type(e).__name__}); decoding again", file=sys.stderr)
        return None


@contextlib.contextmanager
def file_lock(path: Path):
    """Exclusive lock so that parallel runs on one machine decode a data set only once."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, the atomic write still keeps the cache consistent
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "a+b")
    except OSError:
        yield
        return
    with f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def cached(path: Path, build: Callable[[], DataSplits]) -> DataSplits:
    """The splits cached at `path`, or build() them once (under a lock) and cache them."""
    if path.is_file():
        hit = load_cache(path)
        if hit is not None:
            return hit
    with file_lock(path.with_name(path.name + ".lock")):
        if path.is_file():  # another process built it while we waited
            hit = load_cache(path)
            if hit is not None:
                return hit
        data = build()
        blob = {
            "version": CACHE_VERSION,
            "train_images": data.train_images,
            "train_labels": data.train_labels,
            "val_images": data.val_images,
            "val_labels": data.val_labels,
            "classes": list(data.classes),
            "fingerprint": data.fingerprint,
        }
        try:
            save_atomic(blob, path)
        except OSError as e:
            print(f"mae_gap.data: could not write the cache {path} ({e}); continuing without it", file=sys.stderr)
    return data
