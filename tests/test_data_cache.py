"""The folder fingerprint follows the files' bytes (not their byte sizes alone), a warm start reads
no image file, and the hub settings of a load_dataset call never leak into os.environ."""

from __future__ import annotations

import os
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mae_gap.config import TrainConfig
from mae_gap.data import DataError, load_data
from mae_gap.data import hf_hub, sources
from mae_gap.data.synthetic import synthetic_splits

OLD_NS = 1_600_000_000 * 10**9  # a fixed past mtime, so that a rewrite always moves it


def make_cfg(tmp_path: Path, **kw) -> TrainConfig:
    kw.setdefault("img_size", 8)
    kw.setdefault("patch_size", 4)
    kw.setdefault("cache_dir", str(tmp_path / "cache"))
    return TrainConfig(**kw)


def _png(path: Path, value: int, mtime_ns: int) -> None:
    """An 8x8 uncompressed PNG: its byte size depends on the image size only, not on the pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path, format="PNG", compress_level=0)
    os.utime(path, ns=(mtime_ns, mtime_ns))


@pytest.fixture
def png_folder(tmp_path: Path) -> Path:
    root = tmp_path / "pngs"
    for split, names in (("train", ("a", "b")), ("val", ("c",))):
        for cls in ("x", "y"):
            for i, name in enumerate(names):
                _png(root / f"{split}/{cls}/{name}.png", 40 * i + (100 if cls == "y" else 10), OLD_NS)
    return root


def test_same_size_reencode_changes_fingerprint_and_pixels(tmp_path, png_folder):
    cfg = make_cfg(tmp_path, data_dir=str(png_folder))
    first = load_data(cfg)
    assert list((tmp_path / "cache").glob("folder-8px-*.pt")), "the decode cache must be written"
    target = png_folder / "train/x/a.png"  # train index 0
    size = target.stat().st_size
    assert int(first.train_images[0].float().mean()) == 10
    _png(target, 222, OLD_NS + 5_000_000_000)  # new pixels, same byte size, a later mtime
    assert target.stat().st_size == size, "the fixture must keep the byte size"
    decoded = sources.decoded_images
    second = load_data(cfg)
    assert second.fingerprint != first.fingerprint
    assert sources.decoded_images > decoded, "changed content must be decoded again"
    assert int(second.train_images[0].float().mean()) == 222
    assert torch.equal(second.train_images[1:], first.train_images[1:])
    third = load_data(cfg)  # and the new content is now what the cache holds
    assert third.fingerprint == second.fingerprint and torch.equal(third.train_images, second.train_images)


def test_warm_start_reads_no_image_and_touch_keeps_cache(tmp_path, png_folder):
    cfg = make_cfg(tmp_path, data_dir=str(png_folder))
    first = load_data(cfg)
    decoded, hashed = sources.decoded_images, sources.hashed_files
    assert load_data(cfg).fingerprint == first.fingerprint
    assert (sources.decoded_images, sources.hashed_files) == (decoded, hashed), "a warm start must neither decode nor hash"
    touched = png_folder / "val/y/c.png"
    os.utime(touched, ns=(OLD_NS + 9_000_000_000,) * 2)  # same bytes, new mtime: hash once, keep the cache
    again = load_data(cfg)
    assert again.fingerprint == first.fingerprint and sources.decoded_images == decoded
    assert sources.hashed_files == hashed + 1
    load_data(cfg)
    assert sources.hashed_files == hashed + 1, "the index must remember the new mtime"


def test_broken_index_is_rebuilt(tmp_path, png_folder):
    cfg = make_cfg(tmp_path, data_dir=str(png_folder))
    first = load_data(cfg)
    (index,) = (tmp_path / "cache").glob("folder-index-*.json")
    index.write_text("{not json")
    decoded = sources.decoded_images
    assert load_data(cfg).fingerprint == first.fingerprint and sources.decoded_images == decoded


def test_synthetic_splits_seeded_and_shared(tmp_path):
    a = synthetic_splits(16, 12, 4, 5, seed=3)
    assert a.train_images.shape == (12, 3, 16, 16) and a.val_images.shape == (4, 3, 16, 16)
    assert a.train_images.dtype == torch.uint8 and a.train_labels.dtype == torch.int64
    assert int(a.train_labels.max()) < 5 and a.classes == [f"class_{i}" for i in range(5)]
    b = synthetic_splits(16, 12, 4, 5, seed=3)
    assert torch.equal(a.train_images, b.train_images) and a.fingerprint == b.fingerprint
    assert not torch.equal(synthetic_splits(16, 12, 4, 5, seed=4).train_images, a.train_images)
    rng = np.random.default_rng(0)  # the benchmark's generator, bit for bit
    ref = rng.integers(0, 256, size=(10, 3, 8, 8), dtype=np.uint8)
    assert np.array_equal(synthetic_splits(8, 8, 2, 3).train_images.numpy(), ref[:8])
    d = load_data(make_cfg(tmp_path, dataset="synthetic", synthetic_size=12, seed=3, img_size=16, num_classes=5))
    assert torch.equal(d.train_images, synthetic_splits(16, 12, 3, 5, seed=3).train_images)


def test_hub_settings_scoped_not_environ(tmp_path, monkeypatch):
    """A cached hub copy and an unreachable hub: load_dataset runs offline, and nothing leaks."""
    pytest.importorskip("huggingface_hub")
    from huggingface_hub import constants as hub_constants

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE",
                "HF_HUB_DOWNLOAD_TIMEOUT", "HF_HUB_ETAG_TIMEOUT", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    cfg = make_cfg(tmp_path, dataset="imagenette")
    (tmp_path / "hf/hub" / ("datasets--" + cfg.hf_dataset.replace("/", "--"))).mkdir(parents=True)
    seen = {}
    fake = types.SimpleNamespace(config=types.SimpleNamespace(HF_HUB_OFFLINE=False, HF_DATASETS_OFFLINE=False))

    def load_dataset(*args, **kwargs):
        seen.update(ds=fake.config.HF_HUB_OFFLINE, hub=hub_constants.HF_HUB_OFFLINE,
                    timeout=hub_constants.HF_HUB_DOWNLOAD_TIMEOUT)
        raise OSError("no parquet here")

    fake.load_dataset = load_dataset
    monkeypatch.setattr(hf_hub, "import_datasets", lambda: fake)
    before_env, before_hub = dict(os.environ), (hub_constants.HF_HUB_OFFLINE, hub_constants.HF_HUB_DOWNLOAD_TIMEOUT)
    with pytest.raises(DataError, match="could not load"):
        load_data(cfg)
    assert seen == {"ds": True, "hub": True, "timeout": 30}
    assert dict(os.environ) == before_env, "library code must not change os.environ"
    assert (hub_constants.HF_HUB_OFFLINE, hub_constants.HF_HUB_DOWNLOAD_TIMEOUT) == before_hub
    assert fake.config.HF_HUB_OFFLINE is False


def test_package_names_are_their_home_modules_objects():
    import mae_gap.data as D
    from mae_gap.data import augmentation, decode_cache, synthetic, types

    homes = {augmentation: ("IMAGENET_MEAN", "IMAGENET_STD", "augment", "normalize"), decode_cache: ("cache_root",),
             synthetic: ("synthetic_splits",), types: ("DataError", "DataSplits")}
    for home, names in homes.items():
        for name in names:
            assert getattr(D, name) is getattr(home, name), name
    assert callable(D.check_source) and callable(D.load_data)
    assert not [n for n in vars(D) if n.startswith("_") and not n.startswith("__") and n != "_SOURCES"]
