"""The local sources: an image folder (listed, fingerprinted, decoded by a thread pool of PIL
decoders) and scikit-learn's digits; and the rules every source follows (the class count, the
class-balanced train_limit/val_limit subset). Decoding is the slow step, so it happens once per
content: the folder's fingerprint hashes the files' bytes, and a warm start reuses those hashes by
(size, mtime_ns) instead of reading the files again."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..config import TrainConfig
from ..fileio import atomic_write
from .decode_cache import CACHE_VERSION, cache_path, cache_root, cached
from .types import DataError, DataSplits, hash_parts

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
DIGITS_SPLIT_SEED = 0  # fixed: every run, whatever its seed, shares the digits train/val split
SUBSET_SEED = 0  # fixed: train_limit/val_limit pick the same images for every run, so runs stay comparable
_LAYOUT = "train/<class>/*.JPEG and val/<class>/*.JPEG (fast.ai layout)"
_INDEX_VERSION = 1

# Images decoded by this process (tests use it to prove that a warm start does not decode).
decoded_images = 0
# Image files whose bytes this process hashed (tests use it to prove that a warm start reads none).
hashed_files = 0


# ============================================================================ rules of every source


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


# ============================================================================ folder listing


@dataclass
class Entry:
    rel: str  # path relative to the data folder, e.g. "train/cat/a.JPEG"
    size: int  # bytes
    mtime_ns: int
    label: int


@dataclass
class Listing:
    root: Path
    classes: list[str]
    train: list[Entry]
    val: list[Entry]


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _class_dirs(split_dir: Path) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
    except OSError as e:
        raise DataError(f"cannot read {split_dir} ({e.strerror or e}); check the path and its permissions") from None


def _list_class(split_dir: Path, name: str, label: int, split: str) -> list[Entry]:
    class_dir = split_dir / name
    try:
        found = [(e.name, e.stat()) for e in os.scandir(class_dir) if _is_image(e.name) and e.is_file()]
    except OSError as e:
        raise DataError(f"cannot read {class_dir} ({e.strerror or e}); check its permissions") from None
    if not found and split == "train":
        raise DataError(f"{class_dir} holds no .jpg/.jpeg/.png images: remove the folder or add its images")
    return [Entry(f"{split}/{name}/{fname}", st.st_size, st.st_mtime_ns, label) for fname, st in sorted(found)]


def _list_split(root: Path, split: str, classes: list[str] | None) -> tuple[list[str], list[Entry]]:
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
    items = [e for name in found for e in _list_class(split_dir, name, index[name], split)]
    if not items:
        raise DataError(f"{split_dir} holds no .jpg/.jpeg/.png images in its class sub-folders ({_LAYOUT})")
    return classes, items


def list_folder(root: Path) -> Listing:
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise DataError(f"data folder {root} {what}: pass --data_dir PATH to a folder holding {_LAYOUT}")
    classes, train = _list_split(root, "train", None)
    _, val = _list_split(root, "val", classes)
    return Listing(root, classes, train, val)


# ============================================================================ folder fingerprint


def _index_path(cfg: TrainConfig, root: Path) -> Path:
    return cache_root(cfg) / f"folder-index-{hash_parts(str(root.resolve()))}.json"


def _read_index(path: Path) -> dict[str, list]:
    """{relative path: [size, mtime_ns, digest]} from an earlier run; {} if none or unreadable."""
    try:
        blob = json.loads(path.read_text())
        return blob["files"] if blob.get("version") == _INDEX_VERSION else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _file_digest(path: Path) -> str:
    try:
        h = hashlib.sha1()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        return h.hexdigest()
    except OSError as e:
        raise DataError(f"unreadable image {path} ({e.strerror or e}); check its permissions") from None


def content_digests(cfg: TrainConfig, root: Path, entries: Sequence[Entry]) -> list[str]:
    """SHA-1 of each file's bytes. Files whose (size, mtime_ns) match the index kept in the cache
    folder are not read again; the others are hashed (a thread pool) and the index updated."""
    global hashed_files
    path = _index_path(cfg, root)
    index = _read_index(path)
    digests: list[str | None] = []
    for e in entries:
        known = index.get(e.rel)
        ok = isinstance(known, list) and len(known) == 3 and known[0] == e.size and known[1] == e.mtime_ns
        digests.append(str(known[2]) if ok else None)
    todo = [i for i, d in enumerate(digests) if d is None]
    if todo:
        with ThreadPoolExecutor(max_workers=num_workers()) as pool:
            for i, d in zip(todo, pool.map(lambda i: _file_digest(root / entries[i].rel), todo)):
                digests[i] = d
                index[entries[i].rel] = [entries[i].size, entries[i].mtime_ns, d]
        hashed_files += len(todo)
        try:
            atomic_write(path, json.dumps({"version": _INDEX_VERSION, "root": str(root), "files": index}))
        except OSError as e:
            print(f"mae_gap.data: could not write the hash index {path} ({e}); continuing without it", file=sys.stderr)
    return [str(d) for d in digests]


def folder_fingerprint(cfg: TrainConfig, listing: Listing, train: Sequence[Entry], val: Sequence[Entry]) -> str:
    """Identifies the decoded data: the chosen files' relative paths, labels and byte contents,
    plus the classes, the image size and the decoder version. Only the bytes count (not the
    timestamps), so a touched or copied folder keeps its fingerprint and its cache."""
    digests = content_digests(cfg, listing.root, [*train, *val])
    items = [(e.rel, d, e.label) for e, d in zip([*train, *val], digests)]
    return hash_parts("folder", CACHE_VERSION, cfg.img_size, listing.classes, items[: len(train)], items[len(train):])


def load_folder(cfg: TrainConfig) -> DataSplits:
    root = Path(cfg.data_dir).expanduser()
    listing = list_folder(root)
    check_num_classes(cfg, listing.classes, str(root))
    train = [listing.train[i] for i in balanced_subset([e.label for e in listing.train], cfg.train_limit, SUBSET_SEED, 1)]
    val = [listing.val[i] for i in balanced_subset([e.label for e in listing.val], cfg.val_limit, SUBSET_SEED, 2)]
    fingerprint = folder_fingerprint(cfg, listing, train, val)

    def build() -> DataSplits:
        size = cfg.img_size
        return DataSplits(
            train_images=decode_many([root / e.rel for e in train], size, root),
            train_labels=torch.tensor([e.label for e in train], dtype=torch.int64),
            val_images=decode_many([root / e.rel for e in val], size, root),
            val_labels=torch.tensor([e.label for e in val], dtype=torch.int64),
            classes=list(listing.classes),
            fingerprint=fingerprint,
        )

    return cached(cache_path(cfg, fingerprint), build)


# ============================================================================ decoding


def num_workers() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 64))


def decode_image(src: Any, size: int) -> np.ndarray:
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


def decode_many(sources: Sequence[Any], size: int, label: Any, names: Sequence[str] | None = None) -> torch.Tensor:
    """Decode in a thread pool (PIL releases the GIL) into one (N, 3, S, S) uint8 tensor."""
    global decoded_images
    n = len(sources)
    out = torch.empty((n, 3, size, size), dtype=torch.uint8)
    if n == 0:
        return out
    out_np = out.numpy()
    workers = num_workers()
    t0 = time.perf_counter()
    if n >= 1000:
        print(f"mae_gap.data: decoding {n} images from {label} at {size}px with {workers} threads", file=sys.stderr, flush=True)

    def work(i: int) -> None:
        try:
            arr = decode_image(sources[i], size)
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


# ============================================================================ digits


def load_digits(cfg: TrainConfig) -> DataSplits:
    """sklearn's 1,797 8x8 digits, 0..16 -> 0..255, bilinear-upsampled to S, gray -> RGB.

    Not cached on disk: building it takes well under a second. The 80/20 stratified train/val
    split is seeded with a fixed seed, so every run shares it; limits pick a seeded subset.
    """
    try:
        from sklearn.datasets import load_digits as sklearn_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise DataError("dataset=digits needs scikit-learn: pip install scikit-learn") from None
    digits = sklearn_digits()
    x = torch.from_numpy(digits.images.astype(np.float32) * (255.0 / 16.0))  # (1797, 8, 8)
    y = torch.from_numpy(digits.target.astype(np.int64))
    classes = [str(c) for c in digits.target_names]
    check_num_classes(cfg, classes, "dataset=digits")
    idx = np.arange(len(y))
    tr, va = train_test_split(idx, test_size=0.2, random_state=DIGITS_SPLIT_SEED, stratify=digits.target)
    tr, va = np.sort(tr), np.sort(va)
    tr = tr[balanced_subset(y[tr].tolist(), cfg.train_limit, SUBSET_SEED, 1)]
    va = va[balanced_subset(y[va].tolist(), cfg.val_limit, SUBSET_SEED, 2)]

    def upsample(sel: np.ndarray) -> torch.Tensor:
        s = cfg.img_size
        img = x[torch.from_numpy(sel)].unsqueeze(1)
        if s != 8:
            img = F.interpolate(img, size=(s, s), mode="bilinear", align_corners=False, antialias=s < 8)
        img = img.round_().clamp_(0, 255).to(torch.uint8)
        return img.expand(-1, 3, -1, -1).contiguous()

    fingerprint = hash_parts("digits", CACHE_VERSION, cfg.img_size, DIGITS_SPLIT_SEED, tr.tolist(), va.tolist())
    return DataSplits(
        train_images=upsample(tr),
        train_labels=y[torch.from_numpy(tr)],
        val_images=upsample(va),
        val_labels=y[torch.from_numpy(va)],
        classes=classes,
        fingerprint=fingerprint,
    )
