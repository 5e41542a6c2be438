"""What every data source returns (DataSplits) and raises (DataError), and how a DataSplits'
fingerprint is made (hash_parts)."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

import torch


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

    def to(self, device: torch.device | str) -> DataSplits:
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
