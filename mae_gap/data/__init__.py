"""Data (SPEC section 5): every source becomes uint8 (N, 3, S, S) images + int64 labels (a
``DataSplits``), held on the training device for the whole run. ``load_data`` dispatches on
``cfg.source``:

- ``folder`` (``sources``): fast.ai layout ``train/<class>/*.JPEG``, ``val/<class>/*.JPEG``;
- ``imagenette`` (``hf_hub``): the Hugging Face hub copy, through ``datasets`` (imported lazily);
- ``digits`` (``sources``): scikit-learn's bundled 8x8 digits, upsampled, not cached;
- ``synthetic`` (``synthetic``): seeded random images and labels, for benchmarks.

Decoded tensors are cached on disk (``decode_cache``); augmentation runs on the device
(``augmentation``). Bad input raises ``DataError`` with one line naming the path and the fix. No
wandb, no torchvision, no datasets at import time.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

# `name as name` marks a re-export: the package's public names beside its two functions.
from ..config import TrainConfig
from .augmentation import IMAGENET_MEAN as IMAGENET_MEAN
from .augmentation import IMAGENET_STD as IMAGENET_STD
from .augmentation import augment as augment
from .augmentation import normalize as normalize
from .decode_cache import cache_root as cache_root
from .hf_hub import check_hf_source, load_hf
from .sources import check_num_classes, list_folder, load_digits, load_folder
from .synthetic import load_synthetic
from .synthetic import synthetic_splits as synthetic_splits
from .types import DataError as DataError
from .types import DataSplits as DataSplits

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
        if importlib.util.find_spec("sklearn") is None:
            raise DataError("dataset=digits needs scikit-learn: pip install scikit-learn")
    elif source != "synthetic":  # validate() already refuses this; keep the error clear anyway
        raise DataError(f"unknown dataset {source!r}; {_SOURCES}")


def load_data(cfg: TrainConfig) -> DataSplits:
    """The configured source as uint8 tensors on the CPU (call ``.to(device)`` once)."""
    loaders = {"folder": load_folder, "imagenette": load_hf, "digits": load_digits, "synthetic": load_synthetic}
    if cfg.source not in loaders:
        raise DataError(f"unknown dataset {cfg.source!r}; {_SOURCES}")
    return loaders[cfg.source](cfg)
