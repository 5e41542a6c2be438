"""The ``imagenette`` source: the Hugging Face hub copy, downloaded once through ``datasets``
(imported lazily, only here). Its failure modes are network ones, so this module's job is mostly
to fail in seconds with one clear line, or to use a local copy without a minute of retries."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

import torch

from ..config import TrainConfig
from .decode_cache import CACHE_VERSION, cache_path, cached
from .sources import SUBSET_SEED, balanced_subset, check_num_classes, decode_many
from .types import DataError, DataSplits, hash_parts

HF_REVISION = "refs/convert/parquet"
NETWORK_PROBE_TIMEOUT_S = 3.0
# Hub timeouts (seconds) used for our load_dataset call unless the user set the variable.
HUB_TIMEOUTS = {"HF_HUB_ETAG_TIMEOUT": 10, "HF_HUB_DOWNLOAD_TIMEOUT": 30}
_MISSING = object()


def hf_cache_key(cfg: TrainConfig) -> str:
    # Known before anything is downloaded, so a warm start needs neither `datasets` nor the network.
    seed = SUBSET_SEED if (cfg.train_limit > 0 or cfg.val_limit > 0) else None
    return hash_parts("imagenette", CACHE_VERSION, cfg.hf_dataset, cfg.hf_config, HF_REVISION, cfg.img_size,
                      cfg.train_limit, cfg.val_limit, seed)


def import_datasets():
    try:
        import datasets
    except ImportError:
        raise DataError(
            "dataset=imagenette needs the `datasets` package: pip install datasets, "
            "or use --data_dir PATH with a local train/ val/ folder"
        ) from None
    return datasets


@contextlib.contextmanager
def hub_settings(datasets_module: Any, offline: bool) -> Iterator[None]:
    """Offline mode and hub timeouts for one ``load_dataset`` call, restored afterwards.

    ``load_dataset`` takes no offline argument (datasets 5.x leaves DownloadConfig.local_files_only
    unused), and datasets / huggingface_hub read HF_HUB_OFFLINE and the timeouts from the
    environment once, at import, into module constants consulted at call time. So those constants
    are set for the call and put back in ``finally``; ``os.environ`` is never changed.
    """
    try:
        from huggingface_hub import constants as hub_constants
    except ImportError:  # pragma: no cover - datasets depends on huggingface_hub
        hub_constants = None
    ds_config = getattr(datasets_module, "config", None)
    changes: list[tuple[Any, str, Any]] = []
    if offline:
        changes += [(ds_config, "HF_HUB_OFFLINE", True), (ds_config, "HF_DATASETS_OFFLINE", True),
                    (hub_constants, "HF_HUB_OFFLINE", True)]
    for name, seconds in HUB_TIMEOUTS.items():
        if not os.environ.get(name):
            changes.append((hub_constants, name, seconds))
    saved = [(obj, name, getattr(obj, name, _MISSING)) for obj, name, _ in changes if obj is not None]
    try:
        for obj, name, value in changes:
            if obj is not None and hasattr(obj, name):
                setattr(obj, name, value)
        yield
    finally:
        for obj, name, old in reversed(saved):
            if old is not _MISSING:
                setattr(obj, name, old)


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE")


def hf_offline() -> bool:
    return _env_true("HF_HUB_OFFLINE") or _env_true("HF_DATASETS_OFFLINE")


def hf_cache_dirs() -> tuple[Path, Path]:
    home = Path(os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "huggingface")
    hub = Path(os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE") or home / "hub")
    ds = Path(os.environ.get("HF_DATASETS_CACHE") or home / "datasets")
    return hub.expanduser(), ds.expanduser()


def hf_cached_copy(repo_id: str) -> Path | None:
    """A local copy of `repo_id` in the hub or datasets cache (no network), if any."""
    hub, ds = hf_cache_dirs()
    for candidate in (hub / ("datasets--" + repo_id.replace("/", "--")), ds / repo_id.replace("/", "___")):
        if candidate.is_dir():
            return candidate
    return None


def hf_probe_target() -> tuple[str, int]:
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        if os.environ.get(var):
            u = urlparse(os.environ[var] if "://" in os.environ[var] else "http://" + os.environ[var])
            return u.hostname or "", u.port or 8080
    u = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    return u.hostname or "huggingface.co", u.port or (443 if u.scheme == "https" else 80)


def hub_reachable(timeout: float = NETWORK_PROBE_TIMEOUT_S) -> bool:
    host, port = hf_probe_target()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _needs_network(cfg: TrainConfig, why: str) -> DataError:
    return DataError(
        f"dataset=imagenette needs the network once to download {cfg.hf_dataset} ({why}); "
        "connect and run again, or use --data_dir PATH with a local train/ val/ folder "
        "(e.g. --data_dir ../shared/data/imagenette-224)"
    )


def check_hf_reachable(cfg: TrainConfig) -> None:
    """Fail in seconds (not after the hub client's minute of retries) when the data cannot come."""
    if hf_cached_copy(cfg.hf_dataset) is not None:
        return
    hub, ds = hf_cache_dirs()
    if hf_offline():
        raise _needs_network(cfg, f"HF_HUB_OFFLINE is set and there is no cached copy in {hub} or {ds}")
    if not hub_reachable():
        host, port = hf_probe_target()
        raise _needs_network(cfg, f"{host}:{port} is unreachable and there is no cached copy in {hub} or {ds}")


def check_hf_source(cfg: TrainConfig) -> None:
    """check_source for dataset=imagenette: nothing to check once decoded, else `datasets` and the hub."""
    if cache_path(cfg, hf_cache_key(cfg)).is_file():
        return  # decoded before: needs neither `datasets` nor the network
    import_datasets()
    check_hf_reachable(cfg)


def load_hf(cfg: TrainConfig) -> DataSplits:
    key = hf_cache_key(cfg)

    def build() -> DataSplits:
        # A local copy and no hub: use the copy offline rather than after a minute of retries.
        offline = hf_cached_copy(cfg.hf_dataset) is not None and not hf_offline() and not hub_reachable()
        check_hf_reachable(cfg)
        datasets = import_datasets()
        try:
            with hub_settings(datasets, offline):
                dsd = datasets.load_dataset(cfg.hf_dataset, cfg.hf_config, revision=HF_REVISION)
        except Exception as e:  # noqa: BLE001 - any hub/parquet failure becomes one clear line
            raise DataError(
                f"could not load {cfg.hf_dataset} (config {cfg.hf_config}, revision {HF_REVISION}): "
                f"{type(e).__name__}: {e}; check the name and the network, or use --data_dir PATH"
            ) from None
        return splits_from_hf(dsd, cfg, key)

    return cached(cache_path(cfg, key), build)


def _hf_columns(dsd: Any, where: str) -> tuple[str, str, str]:
    """(validation split, image column, label column) of a DatasetDict, or a DataError."""
    val_name = next((s for s in ("validation", "val", "test") if s in dsd), None)
    if "train" not in dsd or val_name is None:
        raise DataError(f"{where} has splits {list(dsd.keys())}, not train and validation; use --data_dir PATH instead")
    feats = dsd["train"].features
    image_col = next((c for c in ("image", "img") if c in feats), None)
    label_col = next((c for c in ("label", "labels") if c in feats), None)
    if image_col is None or label_col is None:
        raise DataError(f"{where} has columns {list(feats)}, not image and label; use --data_dir PATH instead")
    return val_name, image_col, label_col


def splits_from_hf(dsd: Any, cfg: TrainConfig, key: str) -> DataSplits:
    """A `datasets.DatasetDict` with train/validation splits and image/label columns -> DataSplits."""
    import datasets

    where = f"{cfg.hf_dataset}/{cfg.hf_config}"
    val_name, image_col, label_col = _hf_columns(dsd, where)
    train_ds, val_ds = dsd["train"], dsd[val_name]
    label_feat = train_ds.features[label_col]
    if hasattr(label_feat, "names"):
        classes = list(label_feat.names)
    else:
        classes = [str(i) for i in sorted(set(train_ds[label_col]))]
    check_num_classes(cfg, classes, where)
    parts = []
    for split, ds, limit, salt in (("train", train_ds, cfg.train_limit, 1), (val_name, val_ds, cfg.val_limit, 2)):
        labels = [int(y) for y in ds[label_col]]
        idx = balanced_subset(labels, limit, SUBSET_SEED, salt)
        sub = ds.select(idx) if len(idx) < len(labels) else ds
        sub = sub.cast_column(image_col, datasets.Image(decode=False))
        raw = list(sub[image_col])
        sources = [r["bytes"] if r.get("bytes") is not None else r["path"] for r in raw]
        names = [f"{where}[{split}][{i}]" for i in idx]
        images = decode_many(sources, cfg.img_size, f"{where} {split}", names)
        parts.append((images, torch.tensor([labels[i] for i in idx], dtype=torch.int64)))
        del raw, sources
    content = [getattr(d, "_fingerprint", None) for d in (train_ds, val_ds)]
    return DataSplits(
        train_images=parts[0][0],
        train_labels=parts[0][1],
        val_images=parts[1][0],
        val_labels=parts[1][1],
        classes=classes,
        fingerprint=hash_parts(key, content),
    )
