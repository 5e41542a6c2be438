"""The benchmark's data: synthetic uint8 images (mae_gap.data.synthetic, seed 0) cached on disk through
the same cache code as every real source, so that a fresh process (the fixed-cost child, a sweep
run) finds a warm cache."""

from __future__ import annotations

from ..config import TrainConfig
from ..data import check_source, load_data, synthetic_splits
from ..data.decode_cache import cache_root, cached

# Imagenette 2 (fast.ai): 9,469 train / 3,925 val images; the GPU suite's synthetic data has its shape.
IMAGENETTE_TRAIN, IMAGENETTE_VAL = 9469, 3925


def bench_data(cfg: TrainConfig, n_train: int, n_val: int):
    """The benchmark's data, as training gets it: real data through load_data (`--data_dir`), or
    synthetic uint8 images of n_train / n_val, decoded once and cached on disk through the same
    cache code as every source (so a fresh process finds a warm cache, like a sweep run)."""
    if cfg.source != "synthetic":
        check_source(cfg)
        return load_data(cfg)
    path = cache_root(cfg) / f"bench-synthetic-{cfg.img_size}px-{n_train}+{n_val}-c{cfg.num_classes}.pt"
    return cached(path, lambda: synthetic_splits(cfg.img_size, n_train, n_val, cfg.num_classes, seed=0))
