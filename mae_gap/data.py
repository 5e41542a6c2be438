"""Data (SPEC section 5), the entry point: every source becomes uint8 (N, 3, S, S) images + int64
labels, held on the training device for the whole run. The work lives in the modules below; this
one dispatches on ``cfg.source`` and keeps every public name importable from ``mae_gap.data``.

- ``folder`` (``sources``): fast.ai layout ``train/<class>/*.JPEG``, ``val/<class>/*.JPEG``;
- ``imagenette`` (``hf_hub``): the Hugging Face hub copy, through ``datasets`` (imported lazily);
- ``digits`` (``sources``): scikit-learn's bundled 8x8 digits, upsampled, not cached;
- ``synthetic`` (``synthetic``): seeded random images and labels, for benchmarks.

Decoded tensors are cached on disk (``decode_cache``); augmentation runs on the device
(``augment``). Bad input raises ``DataError`` with one line naming the path and the fix. No wandb,
no torchvision, no datasets at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import sources as _sources
from .augment import IMAGENET_MEAN, IMAGENET_STD, augment, normalize
from .augment import _axis_aligned_grid, _normalize_, _rrc_flip_theta  # noqa: F401 - re-exported
from .config import TrainConfig
from .decode_cache import cache_path as _cache_path
from .decode_cache import cache_root, cached as _cached, load_cache as _load_cache, save_atomic as _save_atomic  # noqa: F401
from .hf_hub import HF_REVISION, check_hf_source, load_hf
from .hf_hub import hf_cache_key as _hf_cache_key, import_datasets as _import_datasets  # noqa: F401
from .hf_hub import splits_from_hf as _splits_from_hf  # noqa: F401
from .sources import DIGITS_SPLIT_SEED, IMAGE_EXTENSIONS, list_folder, load_digits, load_folder
from .sources import decode_image as _decode_image, decode_many as _decode_many  # noqa: F401
from .splits import CACHE_VERSION as _CACHE_VERSION  # noqa: F401
from .splits import SUBSET_SEED, DataError, DataSplits, check_num_classes
from .splits import balanced_subset as _balanced_subset, hash_parts as _hash  # noqa: F401
from .synthetic import synthetic_splits

__all__ = [
    "DIGITS_SPLIT_SEED", "HF_REVISION", "IMAGENET_MEAN", "IMAGENET_STD", "IMAGE_EXTENSIONS", "SUBSET_SEED",
    "DataError", "DataSplits", "augment", "cache_root", "check_source", "load_data", "normalize",
    "synthetic_splits",
]

_SOURCES = "use imagenette, folder, digits or synthetic"


def check_source(cfg: TrainConfig) -> None:
    """Cheap checks before any decoding or device work; raises DataError (one line)."""
    source = cfg.source
    if source == "folder":
        listing = list_folder(Path(cfg.data_dir).expanduser())
        check_num_classes(cfg, listing.classes, cfg.data_dir)
    elif source == "imagenette":
        check_hf_source(cfg)
    elif source == "digits":
        try:
            import sklearn.datasets  # noqa: F401
        except ImportError:
            raise DataError("dataset=digits needs scikit-learn: pip install scikit-learn") from None
    elif source != "synthetic":  # validate() already refuses this; keep the error clear anyway
        raise DataError(f"unknown dataset {source!r}; {_SOURCES}")


def load_data(cfg: TrainConfig) -> DataSplits:
    """The configured source as uint8 tensors on the CPU (call ``.to(device)`` once)."""
    source = cfg.source
    if source == "folder":
        return load_folder(cfg)
    if source == "imagenette":
        return load_hf(cfg)
    if source == "digits":
        return load_digits(cfg)
    if source == "synthetic":
        return _load_synthetic(cfg)
    raise DataError(f"unknown dataset {source!r}; {_SOURCES}")


def _load_synthetic(cfg: TrainConfig) -> DataSplits:
    """synthetic_size train images (at least 1), a quarter as many val, seeded by cfg.seed; not cached."""
    n_train = max(1, cfg.synthetic_size)
    return synthetic_splits(cfg.img_size, n_train, max(1, n_train // 4), cfg.num_classes, seed=cfg.seed)


def __getattr__(name: str) -> Any:
    # Counters that the sources module updates (a re-export would freeze their value at import).
    if name in ("decoded_images", "hashed_files"):
        return getattr(_sources, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
