"""Seeded random images and labels: one generator for the `synthetic` source and the benchmark, so
both measure the same kind of data and a given (size, counts, classes, seed) is the same data set."""

from __future__ import annotations

import numpy as np
import torch

from ..config import TrainConfig
from .types import DataSplits, hash_parts


def synthetic_splits(img_size: int, n_train: int, n_val: int, num_classes: int, seed: int = 0) -> DataSplits:
    """uint8 (n_train + n_val, 3, img_size, img_size) uniform noise and uniform labels in
    [0, num_classes), from numpy's default_rng(seed): the first n_train are train, the rest val."""
    rng = np.random.default_rng(seed)
    n = n_train + n_val
    images = torch.from_numpy(rng.integers(0, 256, size=(n, 3, img_size, img_size), dtype=np.uint8))
    labels = torch.from_numpy(rng.integers(0, num_classes, size=n).astype(np.int64))
    return DataSplits(
        train_images=images[:n_train],
        train_labels=labels[:n_train],
        val_images=images[n_train:],
        val_labels=labels[n_train:],
        classes=[f"class_{i}" for i in range(num_classes)],
        fingerprint=hash_parts("synthetic", img_size, n_train, n_val, num_classes, seed),
    )


def load_synthetic(cfg: TrainConfig) -> DataSplits:
    """dataset=synthetic: synthetic_size train images (at least 1), a quarter as many val, seeded by
    cfg.seed; not cached (generating them is as fast as reading them)."""
    n_train = max(1, cfg.synthetic_size)
    return synthetic_splits(cfg.img_size, n_train, max(1, n_train // 4), cfg.num_classes, seed=cfg.seed)
