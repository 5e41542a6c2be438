"""The benchmark's data: synthetic uint8 images (mae_gap.synthetic, seed 0) cached on disk through
the same cache code as every real source, so that a fresh process (the fixed-cost child, a sweep
run) finds a warm cache."""

from __future__ import annotations

from ..config import TrainConfig
from ..synthetic import synthetic_splits

# Imagenette 2 (fast.ai): 9,469 train / 3,925 val images; the GPU suite's synthetic data has its shape.
IMAGENETTE_TRAIN, IMAGENETTE_VAL = 9469, 3925


def bench_data(cfg: TrainConfig, n_train: int, n_val: int):
    """The benchmark's data, as training gets it: real data through load_data (`--data_dir`), or
    synthetic uint8 images of n_train / n_val, decoded once and cached on disk through the same
    cache code as every source (so a fresh process finds a warm cache, like a sweep run)."""
    from .. import data as D

    if cfg.source != "synthetic":
        D.check_source(cfg)
        return D.load_data(cfg)
    path = D.cache_root(cfg) / f"bench-synthetic-{cfg.img_size}px-{n_train}+{n_val}-c{cfg.num_classes}.pt"
    return D._cached(path, lambda: synthetic_splits(cfg.img_size, n_train, n_val, cfg.num_classes, seed=0))
