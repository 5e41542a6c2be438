"""The types every data source returns and the helpers they share, kept apart from the sources so
that the cache, the sources and the entry point can all import them without importing each other."""

from __future__ import annotations

import dataclasses
import hashlib
import random
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from .config import TrainConfig

SUBSET_SEED = 0  # fixed: train_limit/val_limit pick the same images for every run, so runs stay comparable
CACHE_VERSION = 1  # bump when decoding changes, so stale caches are not reused


class DataError(Exception):
    """Bad data input; the message is one line naming the problem (a path) and the fix."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


@dataclass
class DataSplits:
    """Decoded data, held on the training device for the whole run."""

    train_images: torch.Tensor  # (N, 3, S, S) uint8
    train_labels: torch.Tensor  # (N,) int64
    val_images: torch.Tensor  # (M, 3, S, S) uint8
    val_labels: torch.Tensor  # (M,) int64
    classes: list[str]
    fingerprint: str  # short hex identifying the content (source, size, inputs, subset)

    def to(self, device: torch.device | str) -> "DataSplits":
        return dataclasses.replace(
            self,
            train_images=self.train_images.to(device),
            train_labels=self.train_labels.to(device),
            val_images=self.val_images.to(device),
            val_labels=self.val_labels.to(device),
        )

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def img_size(self) -> int:
        return int(self.train_images.shape[-1])

    def __repr__(self) -> str:
        return (
            f"DataSplits(train={tuple(self.train_images.shape)}, val={tuple(self.val_images.shape)}, "
            f"classes={len(self.classes)}, fingerprint={self.fingerprint!r}, device={self.train_images.device})"
        )


def hash_parts(*parts: Any) -> str:
    """16 hex digits of SHA-1 over the reprs of `parts` (a cache key / fingerprint)."""
    h = hashlib.sha1()
    for p in parts:
        h.update(repr(p).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def check_num_classes(cfg: TrainConfig, classes: Sequence[str], where: str) -> None:
    if len(classes) > cfg.num_classes:
        raise DataError(
            f"{where} has {len(classes)} classes but num_classes={cfg.num_classes}: pass --num_classes={len(classes)}"
        )


def balanced_subset(labels: Sequence[int], limit: int, seed: int, salt: int) -> list[int]:
    """Indices of `limit` items, round-robin over classes, seeded; all of them if limit <= 0."""
    if limit <= 0 or limit >= len(labels):
        return list(range(len(labels)))
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(int(y), []).append(i)
    rng = random.Random(seed * 1_000_003 + salt)
    queues = []
    for y in sorted(by_class):
        idx = by_class[y]
        rng.shuffle(idx)
        queues.append(idx)
    chosen: list[int] = []
    depth = 0
    while len(chosen) < limit:
        for q in queues:
            if depth < len(q):
                chosen.append(q[depth])
                if len(chosen) == limit:
                    break
        depth += 1
    return sorted(chosen)
