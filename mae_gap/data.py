"""Data (SPEC section 5): every source becomes uint8 (N, 3, S, S) images + int64 labels.

Sources (``cfg.source``):

- ``folder``: fast.ai layout ``train/<class>/*.JPEG``, ``val/<class>/*.JPEG`` under ``cfg.data_dir``;
- ``imagenette``: the Hugging Face hub copy (``cfg.hf_dataset``/``cfg.hf_config``, parquet
  conversion branch), downloaded once through ``datasets`` (imported lazily, only here);
- ``digits``: scikit-learn's bundled 8x8 digits, upsampled (no download, no cache: it is instant);
- ``synthetic``: seeded random images and labels, for benchmarks.

Decoding happens once (a thread pool of PIL decoders: resize the shorter side to S, centre crop,
any mode -> RGB) and the tensors are cached on disk with ``torch.save`` (atomic write) under
``cfg.cache_dir`` or ``$MAE_GAP_CACHE`` or ``~/.cache/mae-gap``, keyed by source, size, a
fingerprint of the inputs and the subset limits. A warm start memory-maps the cache.

Augmentation runs on the images' device, per sample and batched: RandomResizedCrop(S,
scale=(0.2, 1), ratio=(3/4, 4/3)) + horizontal flip as one affine grid per image and a single
``F.grid_sample``, then ImageNet mean/std. Validation uses ``normalize`` only.

Bad input raises ``DataError`` with one line naming the path and the fix. No wandb, no
torchvision, no datasets at import time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import math
import os
import random
import socket
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn.functional as F

from .config import TrainConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
HF_REVISION = "refs/convert/parquet"
DIGITS_SPLIT_SEED = 0  # fixed: every run, whatever its seed, shares the digits train/val split
SUBSET_SEED = 0  # fixed: train_limit/val_limit pick the same images for every run, so runs stay comparable
_CACHE_VERSION = 1  # bump when decoding changes, so stale caches are not reused
_NETWORK_PROBE_TIMEOUT_S = 3.0

# Images decoded by this process (tests use it to prove that a warm start does not decode).
decoded_images = 0


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


# ============================================================================ public entry points


def check_source(cfg: TrainConfig) -> None:
    """Cheap checks before any decoding or device work; raises DataError (one line)."""
    source = cfg.source
    if source == "folder":
        listing = _list_folder(Path(cfg.data_dir).expanduser())
        _check_num_classes(cfg, listing.classes, cfg.data_dir)
    elif source == "imagenette":
        if _cache_path(cfg, _hf_cache_key(cfg)).is_file():
            return  # decoded before: needs neither `datasets` nor the network
        _import_datasets()
        _check_hf_reachable(cfg)
    elif source == "digits":
        try:
            import sklearn.datasets  # noqa: F401
        except ImportError:
            raise DataError("dataset=digits needs scikit-learn: pip install scikit-learn") from None
    elif source == "synthetic":
        pass
    else:  # validate() already refuses this; keep the error clear anyway
        raise DataError(f"unknown dataset {source!r}; use imagenette, folder, digits or synthetic")


def load_data(cfg: TrainConfig) -> DataSplits:
    """The configured source as uint8 tensors on the CPU (call ``.to(device)`` once)."""
    source = cfg.source
    if source == "folder":
        return _load_folder(cfg)
    if source == "imagenette":
        return _load_hf(cfg)
    if source == "digits":
        return _load_digits(cfg)
    if source == "synthetic":
        return _load_synthetic(cfg)
    raise DataError(f"unknown dataset {source!r}; use imagenette, folder, digits or synthetic")


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float32 ImageNet-normalized, no augmentation (validation).

    Float input is taken to be in [0, 1] already.
    """
    return _normalize_(images.float(), 255.0 if images.dtype == torch.uint8 else 1.0)


def augment(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float32 normalized (N, 3, H, W) on the same device.

    Per sample: RandomResizedCrop((H, W), scale=(0.2, 1.0), ratio=(3/4, 4/3)) with torchvision's
    sampling rule (10 tries, then the centre crop), horizontal flip with p = 0.5, bilinear
    resampling; then ImageNet mean/std. All samples at once: one affine grid per image and a
    single ``grid_sample``. Crop boxes are continuous (sub-pixel) rather than rounded to pixels.
    Random numbers come from ``generator`` (on the images' device) or the global RNG.
    """
    if images.dim() != 4:
        raise ValueError(f"augment expects (N, C, H, W) images, got shape {tuple(images.shape)}")
    n, c, h, w = images.shape
    x = images.float()
    value_range = 255.0 if images.dtype == torch.uint8 else 1.0
    if n == 0:
        return _normalize_(x, value_range)
    theta = _rrc_flip_theta(n, h, w, images.device, generator)
    out = F.grid_sample(x, _axis_aligned_grid(theta, h, w), mode="bilinear", padding_mode="border", align_corners=False)
    return _normalize_(out, value_range)


def cache_root(cfg: TrainConfig) -> Path:
    """Where decoded data sets are cached: cfg.cache_dir, $MAE_GAP_CACHE or ~/.cache/mae-gap."""
    root = cfg.cache_dir or os.environ.get("MAE_GAP_CACHE") or "~/.cache/mae-gap"
    return Path(root).expanduser()


# ============================================================================ augmentation helpers


_NORM_CONSTANTS: dict[tuple[torch.device, torch.dtype, float], tuple[torch.Tensor, torch.Tensor]] = {}


def _norm_constants(device: torch.device, dtype: torch.dtype, value_range: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) per channel, built once per device: torch.tensor(..., device=cuda) is a blocking
    host->device copy, which in every training step would stall the host until the GPU drained."""
    key = (device, dtype, value_range)
    if key not in _NORM_CONSTANTS:
        std = torch.tensor(IMAGENET_STD, dtype=torch.float64)
        mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64)
        _NORM_CONSTANTS[key] = ((1.0 / (value_range * std)).to(device, dtype), (mean / std).to(device, dtype))
    return _NORM_CONSTANTS[key]


def _normalize_(x: torch.Tensor, value_range: float) -> torch.Tensor:
    """In place: x / value_range, then ImageNet mean/std, as one multiply-add per element."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    scale, shift = _norm_constants(x.device, x.dtype, value_range)
    return x.mul_(scale.view(shape)).sub_(shift.view(shape))


def _axis_aligned_grid(theta: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """F.affine_grid(theta, align_corners=False) for scale+translate theta, built separably.

    Equal to affine_grid up to float rounding, without its (N, H*W, 3) x (N, 3, 2) product.
    """
    n = theta.shape[0]
    xs = (torch.arange(w, device=theta.device, dtype=theta.dtype) * 2 + 1) / w - 1
    ys = (torch.arange(h, device=theta.device, dtype=theta.dtype) * 2 + 1) / h - 1
    grid = torch.empty(n, h, w, 2, device=theta.device, dtype=theta.dtype)
    grid[..., 0] = (theta[:, 0, 2, None] + theta[:, 0, 0, None] * xs)[:, None, :]
    grid[..., 1] = (theta[:, 1, 2, None] + theta[:, 1, 1, None] * ys)[:, :, None]
    return grid


def _rand(shape: Sequence[int], device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(*shape, device=device, generator=generator)


def _rrc_flip_theta(
    n: int,
    h: int,
    w: int,
    device: torch.device,
    generator: torch.Generator | None,
    scale: tuple[float, float] = (0.2, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    attempts: int = 10,
) -> torch.Tensor:
    """(n, 2, 3) affine matrices mapping output coordinates to a random crop, flipped or not."""
    r = _rand((n, attempts, 4), device, generator)
    flip = _rand((n,), device, generator) < 0.5
    area = float(h * w)
    target = area * (scale[0] + (scale[1] - scale[0]) * r[..., 0])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * r[..., 1])
    cw = torch.sqrt(target * aspect)
    ch = torch.sqrt(target / aspect)
    ok = (cw <= w) & (ch <= h)
    first = ok.to(torch.uint8).argmax(dim=1, keepdim=True)  # first valid try (0 if none)
    cw = cw.gather(1, first).squeeze(1)
    ch = ch.gather(1, first).squeeze(1)
    rx = r[..., 2].gather(1, first).squeeze(1)
    ry = r[..., 3].gather(1, first).squeeze(1)
    # torchvision's fallback when all tries fail: the centre crop of the clamped aspect ratio.
    in_ratio = w / h
    if in_ratio < ratio[0]:
        fw, fh = float(w), w / ratio[0]
    elif in_ratio > ratio[1]:
        fw, fh = h * ratio[1], float(h)
    else:
        fw, fh = float(w), float(h)
    none_ok = ~ok.any(dim=1)
    cw = torch.where(none_ok, torch.full_like(cw, fw), cw)
    ch = torch.where(none_ok, torch.full_like(ch, fh), ch)
    rx = torch.where(none_ok, torch.full_like(rx, 0.5), rx)
    ry = torch.where(none_ok, torch.full_like(ry, 0.5), ry)
    x0 = rx * (w - cw)
    y0 = ry * (h - ch)
    sx = cw / w
    sy = ch / h
    cx = (2 * x0 + cw) / w - 1
    cy = (2 * y0 + ch) / h - 1
    sx = torch.where(flip, -sx, sx)
    theta = torch.zeros(n, 2, 3, device=device, dtype=torch.float32)
    theta[:, 0, 0] = sx
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = sy
    theta[:, 1, 2] = cy
    return theta


# ============================================================================ folder source


@dataclass
class _Listing:
    root: Path
    classes: list[str]
    train: list[tuple[str, int, int]]  # (relative path, size in bytes, label)
    val: list[tuple[str, int, int]]


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


_LAYOUT = "train/<class>/*.JPEG and val/<class>/*.JPEG (fast.ai layout)"


def _class_dirs(split_dir: Path) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
    except OSError as e:
        raise DataError(f"cannot read {split_dir} ({e.strerror or e}); check the path and its permissions") from None


def _list_split(root: Path, split: str, classes: list[str] | None) -> tuple[list[str], list[tuple[str, int, int]]]:
    split_dir = root / split
    if not split_dir.is_dir():
        raise DataError(f"{split_dir} is missing: the data folder {root} must hold {_LAYOUT}")
    found = _class_dirs(split_dir)
    if not found:
        raise DataError(f"{split_dir} has no class sub-folders: the data folder {root} must hold {_LAYOUT}")
    if classes is None:
        classes = found
    else:
        unknown = [c for c in found if c not in classes]
        if unknown:
            raise DataError(
                f"{split_dir / unknown[0]} is a class that {root / 'train'} does not have: "
                "val/ must use the classes of train/"
            )
    index = {c: i for i, c in enumerate(classes)}
    items: list[tuple[str, int, int]] = []
    for name in found:
        class_dir = split_dir / name
        try:
            entries = sorted(
                (e.name, e.stat().st_size) for e in os.scandir(class_dir) if _is_image(e.name) and e.is_file()
            )
        except OSError as e:
            raise DataError(f"cannot read {class_dir} ({e.strerror or e}); check its permissions") from None
        if not entries and split == "train":
            raise DataError(f"{class_dir} holds no .jpg/.jpeg/.png images: remove the folder or add its images")
        items.extend((f"{split}/{name}/{fname}", size, index[name]) for fname, size in entries)
    if not items:
        raise DataError(f"{split_dir} holds no .jpg/.jpeg/.png images in its class sub-folders ({_LAYOUT})")
    return classes, items


def _list_folder(root: Path) -> _Listing:
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise DataError(f"data folder {root} {what}: pass --data_dir PATH to a folder holding {_LAYOUT}")
    classes, train = _list_split(root, "train", None)
    _, val = _list_split(root, "val", classes)
    return _Listing(root, classes, train, val)


def _check_num_classes(cfg: TrainConfig, classes: Sequence[str], where: str) -> None:
    if len(classes) > cfg.num_classes:
        raise DataError(
            f"{where} has {len(classes)} classes but num_classes={cfg.num_classes}: pass --num_classes={len(classes)}"
        )


def _balanced_subset(labels: Sequence[int], limit: int, seed: int, salt: int) -> list[int]:
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


def _hash(*parts: Any) -> str:
    h = hashlib.sha1()
    for p in parts:
        h.update(repr(p).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _load_folder(cfg: TrainConfig) -> DataSplits:
    root = Path(cfg.data_dir).expanduser()
    listing = _list_folder(root)
    _check_num_classes(cfg, listing.classes, str(root))
    train = [listing.train[i] for i in _balanced_subset([t[2] for t in listing.train], cfg.train_limit, SUBSET_SEED, 1)]
    val = [listing.val[i] for i in _balanced_subset([t[2] for t in listing.val], cfg.val_limit, SUBSET_SEED, 2)]
    # The fingerprint of the inputs: sorted relative paths and byte sizes of the chosen files
    # (cheap: no decoding), plus the size and the decoder version.
    fingerprint = _hash("folder", _CACHE_VERSION, cfg.img_size, listing.classes, train, val)

    def build() -> DataSplits:
        size = cfg.img_size
        train_images = _decode_many([root / p for p, _, _ in train], size, root)
        val_images = _decode_many([root / p for p, _, _ in val], size, root)
        return DataSplits(
            train_images=train_images,
            train_labels=torch.tensor([y for _, _, y in train], dtype=torch.int64),
            val_images=val_images,
            val_labels=torch.tensor([y for _, _, y in val], dtype=torch.int64),
            classes=list(listing.classes),
            fingerprint=fingerprint,
        )

    return _cached(_cache_path(cfg, fingerprint), build)


# ============================================================================ decoding


def _num_workers() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 64))


def _decode_image(src: Any, size: int) -> np.ndarray:
    """Path or bytes -> (size, size, 3) uint8: shorter side to `size` (bilinear), centre crop, RGB."""
    from PIL import Image

    fp = io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else src
    with Image.open(fp) as im:
        im = im.convert("RGB")
        w, h = im.size
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        if (nw, nh) != (w, h):
            im = im.resize((nw, nh), Image.BILINEAR)
        left, top = (nw - size) // 2, (nh - size) // 2
        if (nw, nh) != (size, size):
            im = im.crop((left, top, left + size, top + size))
        arr = np.asarray(im, dtype=np.uint8)
    if arr.shape != (size, size, 3):  # defensive: never return a wrong shape silently
        raise ValueError(f"decoded to shape {arr.shape}")
    return arr


def _decode_many(sources: Sequence[Any], size: int, label: Any, names: Sequence[str] | None = None) -> torch.Tensor:
    """Decode in a thread pool (PIL releases the GIL) into one (N, 3, S, S) uint8 tensor."""
    global decoded_images
    n = len(sources)
    out = torch.empty((n, 3, size, size), dtype=torch.uint8)
    if n == 0:
        return out
    out_np = out.numpy()
    workers = _num_workers()
    t0 = time.perf_counter()
    if n >= 1000:
        print(f"mae_gap.data: decoding {n} images from {label} at {size}px with {workers} threads", file=sys.stderr, flush=True)

    def work(i: int) -> None:
        try:
            arr = _decode_image(sources[i], size)
        except Exception as e:  # noqa: BLE001 - any decoder failure is a bad input file
            where = names[i] if names is not None else str(sources[i])
            reason = f"{type(e).__name__}: {e}"
            raise DataError(f"unreadable image {where} ({reason}); delete or replace the file") from None
        out_np[i] = arr.transpose(2, 0, 1)

    if workers == 1 or n < 8:
        for i in range(n):
            work(i)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            chunk = max(1, min(64, n // (workers * 4)))
            futures = [pool.submit(lambda a, b: [work(i) for i in range(a, b)], s, min(n, s + chunk)) for s in range(0, n, chunk)]
            try:
                for f in futures:
                    f.result()
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    decoded_images += n
    dt = time.perf_counter() - t0
    if n >= 1000:
        print(f"mae_gap.data: decoded {n} images in {dt:.1f} s ({n / dt:.0f} img/s)", file=sys.stderr, flush=True)
    return out


# ============================================================================ cache


def _cache_path(cfg: TrainConfig, key: str) -> Path:
    return cache_root(cfg) / f"{cfg.source}-{cfg.img_size}px-{key}.pt"


def _save_atomic(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _load_cache(path: Path) -> DataSplits | None:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        if blob.get("version") != _CACHE_VERSION:
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
def _file_lock(path: Path):
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


def _cached(path: Path, build: Callable[[], DataSplits]) -> DataSplits:
    if path.is_file():
        hit = _load_cache(path)
        if hit is not None:
            return hit
    with _file_lock(path.with_name(path.name + ".lock")):
        if path.is_file():  # another process built it while we waited
            hit = _load_cache(path)
            if hit is not None:
                return hit
        data = build()
        blob = {
            "version": _CACHE_VERSION,
            "train_images": data.train_images,
            "train_labels": data.train_labels,
            "val_images": data.val_images,
            "val_labels": data.val_labels,
            "classes": list(data.classes),
            "fingerprint": data.fingerprint,
        }
        try:
            _save_atomic(blob, path)
        except OSError as e:
            print(f"mae_gap.data: could not write the cache {path} ({e}); continuing without it", file=sys.stderr)
    return data


# ============================================================================ Hugging Face source


def _hf_cache_key(cfg: TrainConfig) -> str:
    # Known before anything is downloaded, so a warm start needs neither `datasets` nor the network.
    seed = SUBSET_SEED if (cfg.train_limit > 0 or cfg.val_limit > 0) else None
    return _hash("imagenette", _CACHE_VERSION, cfg.hf_dataset, cfg.hf_config, HF_REVISION, cfg.img_size,
                 cfg.train_limit, cfg.val_limit, seed)


def _import_datasets():
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "30")
    try:
        import datasets
    except ImportError:
        raise DataError(
            "dataset=imagenette needs the `datasets` package: pip install datasets, "
            "or use --data_dir PATH with a local train/ val/ folder"
        ) from None
    return datasets


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE")


def _hf_offline() -> bool:
    return _env_true("HF_HUB_OFFLINE") or _env_true("HF_DATASETS_OFFLINE")


def _hf_cache_dirs() -> tuple[Path, Path]:
    home = Path(os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "huggingface")
    hub = Path(os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE") or home / "hub")
    ds = Path(os.environ.get("HF_DATASETS_CACHE") or home / "datasets")
    return hub.expanduser(), ds.expanduser()


def _hf_cached_copy(repo_id: str) -> Path | None:
    """A local copy of `repo_id` in the hub or datasets cache (no network), if any."""
    hub, ds = _hf_cache_dirs()
    for candidate in (hub / ("datasets--" + repo_id.replace("/", "--")), ds / repo_id.replace("/", "___")):
        if candidate.is_dir():
            return candidate
    return None


def _hf_probe_target() -> tuple[str, int]:
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        if os.environ.get(var):
            u = urlparse(os.environ[var] if "://" in os.environ[var] else "http://" + os.environ[var])
            return u.hostname or "", u.port or 8080
    u = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    return u.hostname or "huggingface.co", u.port or (443 if u.scheme == "https" else 80)


def _hub_reachable(timeout: float = _NETWORK_PROBE_TIMEOUT_S) -> bool:
    host, port = _hf_probe_target()
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


def _check_hf_reachable(cfg: TrainConfig) -> None:
    """Fail in seconds (not after the hub client's minute of retries) when the data cannot come."""
    if _hf_cached_copy(cfg.hf_dataset) is not None:
        return
    hub, ds = _hf_cache_dirs()
    if _hf_offline():
        raise _needs_network(cfg, f"HF_HUB_OFFLINE is set and there is no cached copy in {hub} or {ds}")
    if not _hub_reachable():
        host, port = _hf_probe_target()
        raise _needs_network(cfg, f"{host}:{port} is unreachable and there is no cached copy in {hub} or {ds}")


def _load_hf(cfg: TrainConfig) -> DataSplits:
    key = _hf_cache_key(cfg)

    def build() -> DataSplits:
        cached_copy = _hf_cached_copy(cfg.hf_dataset)
        if cached_copy is not None and "datasets" not in sys.modules and not _hf_offline() and not _hub_reachable():
            os.environ["HF_HUB_OFFLINE"] = "1"  # use the local copy without a minute of retries
        _check_hf_reachable(cfg)
        datasets = _import_datasets()
        try:
            dsd = datasets.load_dataset(cfg.hf_dataset, cfg.hf_config, revision=HF_REVISION)
        except Exception as e:  # noqa: BLE001 - any hub/parquet failure becomes one clear line
            raise DataError(
                f"could not load {cfg.hf_dataset} (config {cfg.hf_config}, revision {HF_REVISION}): "
                f"{type(e).__name__}: {e}; check the name and the network, or use --data_dir PATH"
            ) from None
        return _splits_from_hf(dsd, cfg, key)

    return _cached(_cache_path(cfg, key), build)


def _splits_from_hf(dsd: Any, cfg: TrainConfig, key: str) -> DataSplits:
    """A `datasets.DatasetDict` with train/validation splits and image/label columns -> DataSplits."""
    import datasets

    where = f"{cfg.hf_dataset}/{cfg.hf_config}"
    names = list(dsd.keys())
    val_name = next((s for s in ("validation", "val", "test") if s in dsd), None)
    if "train" not in dsd or val_name is None:
        raise DataError(f"{where} has splits {names}, not train and validation; use --data_dir PATH instead")
    train_ds, val_ds = dsd["train"], dsd[val_name]
    feats = train_ds.features
    image_col = next((c for c in ("image", "img") if c in feats), None)
    label_col = next((c for c in ("label", "labels") if c in feats), None)
    if image_col is None or label_col is None:
        raise DataError(f"{where} has columns {list(feats)}, not image and label; use --data_dir PATH instead")
    label_feat = feats[label_col]
    if hasattr(label_feat, "names"):
        classes = list(label_feat.names)
    else:
        classes = [str(i) for i in sorted(set(train_ds[label_col]))]
    _check_num_classes(cfg, classes, where)
    parts = []
    for split, ds, limit, salt in (("train", train_ds, cfg.train_limit, 1), (val_name, val_ds, cfg.val_limit, 2)):
        labels = [int(y) for y in ds[label_col]]
        idx = _balanced_subset(labels, limit, SUBSET_SEED, salt)
        sub = ds.select(idx) if len(idx) < len(labels) else ds
        sub = sub.cast_column(image_col, datasets.Image(decode=False))
        raw = list(sub[image_col])
        sources = [r["bytes"] if r.get("bytes") is not None else r["path"] for r in raw]
        names = [f"{where}[{split}][{i}]" for i in idx]
        images = _decode_many(sources, cfg.img_size, f"{where} {split}", names)
        parts.append((images, torch.tensor([labels[i] for i in idx], dtype=torch.int64)))
        del raw, sources
    content = [getattr(d, "_fingerprint", None) for d in (train_ds, val_ds)]
    return DataSplits(
        train_images=parts[0][0],
        train_labels=parts[0][1],
        val_images=parts[1][0],
        val_labels=parts[1][1],
        classes=classes,
        fingerprint=_hash(key, content),
    )


# ============================================================================ digits and synthetic


def _load_digits(cfg: TrainConfig) -> DataSplits:
    """sklearn's 1,797 8x8 digits, 0..16 -> 0..255, bilinear-upsampled to S, gray -> RGB.

    Not cached on disk: building it takes well under a second. The 80/20 stratified train/val
    split is seeded with a fixed seed, so every run shares it; limits pick a seeded subset.
    """
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise DataError("dataset=digits needs scikit-learn: pip install scikit-learn") from None
    digits = load_digits()
    x = torch.from_numpy(digits.images.astype(np.float32) * (255.0 / 16.0))  # (1797, 8, 8)
    y = torch.from_numpy(digits.target.astype(np.int64))
    classes = [str(c) for c in digits.target_names]
    _check_num_classes(cfg, classes, "dataset=digits")
    idx = np.arange(len(y))
    tr, va = train_test_split(idx, test_size=0.2, random_state=DIGITS_SPLIT_SEED, stratify=digits.target)
    tr, va = np.sort(tr), np.sort(va)
    tr = tr[_balanced_subset(y[tr].tolist(), cfg.train_limit, SUBSET_SEED, 1)]
    va = va[_balanced_subset(y[va].tolist(), cfg.val_limit, SUBSET_SEED, 2)]

    def upsample(sel: np.ndarray) -> torch.Tensor:
        s = cfg.img_size
        img = x[torch.from_numpy(sel)].unsqueeze(1)
        if s != 8:
            img = F.interpolate(img, size=(s, s), mode="bilinear", align_corners=False, antialias=s < 8)
        img = img.round_().clamp_(0, 255).to(torch.uint8)
        return img.expand(-1, 3, -1, -1).contiguous()

    fingerprint = _hash("digits", _CACHE_VERSION, cfg.img_size, DIGITS_SPLIT_SEED, tr.tolist(), va.tolist())
    return DataSplits(
        train_images=upsample(tr),
        train_labels=y[torch.from_numpy(tr)],
        val_images=upsample(va),
        val_labels=y[torch.from_numpy(va)],
        classes=classes,
        fingerprint=fingerprint,
    )


def _load_synthetic(cfg: TrainConfig) -> DataSplits:
    """Seeded random images and labels (benchmarks only): synthetic_size train, a quarter val."""
    n_train = max(1, cfg.synthetic_size)
    n_val = max(1, n_train // 4)
    s = cfg.img_size
    g = torch.Generator().manual_seed(cfg.seed)
    images = torch.randint(0, 256, (n_train + n_val, 3, s, s), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, cfg.num_classes, (n_train + n_val,), generator=g, dtype=torch.int64)
    return DataSplits(
        train_images=images[:n_train],
        train_labels=labels[:n_train],
        val_images=images[n_train:],
        val_labels=labels[n_train:],
        classes=[f"class_{i}" for i in range(cfg.num_classes)],
        fingerprint=_hash("synthetic", s, n_train, n_val, cfg.num_classes, cfg.seed),
    )
