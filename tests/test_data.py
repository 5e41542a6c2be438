"""mae_gap.data: sources, cache, errors, per-sample device augmentation. CPU only, no network."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mae_gap.config import TrainConfig
from mae_gap.data import DataError, augment, check_source, load_data, normalize
from mae_gap.data import augmentation, hf_hub, sources
from mae_gap.data.augmentation import IMAGENET_MEAN, IMAGENET_STD, axis_aligned_grid, crop_flip_theta
from mae_gap.data.decode_cache import CACHE_VERSION, cache_path, save_atomic

REPO = Path(__file__).resolve().parents[1]
GRAY_FILE = "train/n02102040/n02102040_1408.JPEG"  # a grayscale (mode L) image of the real set
RGB_FILE = "val/n02102040/ILSVRC2012_val_00004650.JPEG"


def make_cfg(tmp_path: Path, **kw) -> TrainConfig:
    kw.setdefault("img_size", 16)
    kw.setdefault("patch_size", 4)
    kw.setdefault("cache_dir", str(tmp_path / "cache"))
    return TrainConfig(**kw)


@pytest.fixture
def imagenette_root() -> Path:
    root = Path(os.environ.get("MAE_GAP_IMAGENETTE") or REPO.parent / "shared/data/imagenette-224")
    if not (root / "train").is_dir():
        pytest.skip(f"real Imagenette folder not found at {root} (set MAE_GAP_IMAGENETTE)")
    return root


def _save(img: Image.Image, path: Path, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt)


def _stripes(w: int, h: int) -> Image.Image:
    """Left quarter red, middle half green, right quarter blue."""
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 4] = (255, 0, 0)
    a[:, w // 4 : 3 * w // 4] = (0, 255, 0)
    a[:, 3 * w // 4 :] = (0, 0, 255)
    return Image.fromarray(a)


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    """train/{cat,dog}, val/{cat,dog}: JPEGs of odd sizes, a grayscale JPEG, an RGBA PNG, a stray text file."""
    root = tmp_path / "tiny"
    _save(Image.new("RGB", (40, 30), (200, 30, 30)), root / "train/cat/a.JPEG")
    _save(_stripes(64, 32), root / "train/cat/stripes.png")  # wide: the centre crop is all green
    _save(Image.new("L", (30, 45), 128), root / "train/cat/gray.jpg")
    _save(Image.new("RGB", (20, 20), (30, 30, 200)), root / "train/dog/b.jpeg")
    _save(Image.new("RGBA", (24, 24), (30, 200, 30, 255)), root / "train/dog/c.PNG")
    (root / "train/dog/notes.txt").write_text("not an image")
    _save(Image.new("RGB", (17, 33), (200, 30, 30)), root / "val/cat/v1.JPEG")
    _save(Image.new("RGB", (33, 17), (30, 30, 200)), root / "val/dog/v2.JPEG")
    return root


# ----------------------------------------------------------------------------- folder source


def test_folder_tiny_shapes_labels_modes(tmp_path, tiny_folder):
    cfg = make_cfg(tmp_path, data_dir=str(tiny_folder))
    check_source(cfg)
    d = load_data(cfg)
    assert d.classes == ["cat", "dog"]
    assert d.train_images.shape == (5, 3, 16, 16) and d.train_images.dtype == torch.uint8
    assert d.val_images.shape == (2, 3, 16, 16) and d.val_images.dtype == torch.uint8
    assert d.train_labels.dtype == torch.int64 and d.train_labels.tolist() == [0, 0, 0, 1, 1]
    assert d.val_labels.tolist() == [0, 1]
    assert isinstance(d.fingerprint, str) and int(d.fingerprint, 16) >= 0 and len(d.fingerprint) <= 16
    # sorted order within a class: a.JPEG, gray.jpg, stripes.png
    gray = d.train_images[1].int()
    assert (gray - 128).abs().max() <= 2 and torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    stripes = d.train_images[2].int()  # 64x32 -> 32x16 -> centre 16x16 = the green middle half
    inner = stripes[:, :, 1:-1]  # the outer columns blend with red/blue (antialiased downscale)
    assert (inner[1] > 240).all() and (inner[0] < 15).all() and (inner[2] < 15).all()
    rgba = d.train_images[4].int()  # RGBA PNG -> RGB
    assert (rgba[1] - 200).abs().max() <= 2 and (rgba[0] - 30).abs().max() <= 2
    red = d.train_images[0].int()
    assert (red[0] - 200).abs().max() <= 6 and (red[2] - 30).abs().max() <= 6


def test_folder_cache_hit_does_not_decode(tmp_path, tiny_folder):
    cfg = make_cfg(tmp_path, data_dir=str(tiny_folder))
    first = load_data(cfg)
    files = sorted((tmp_path / "cache").iterdir())
    kept = [f.suffix for f in files if f.suffix != ".lock" and not f.name.startswith("folder-index-")]
    assert kept == [".pt"], files  # no temp file left
    before = sources.decoded_images
    second = load_data(cfg)
    assert sources.decoded_images == before, "a warm start must load the cache, not decode"
    assert second.fingerprint == first.fingerprint and second.classes == first.classes
    assert torch.equal(second.train_images, first.train_images) and torch.equal(second.val_labels, first.val_labels)


def test_cache_dir_from_env_and_changed_input_refreshes(tmp_path, tiny_folder, monkeypatch):
    monkeypatch.setenv("MAE_GAP_CACHE", str(tmp_path / "envcache"))
    cfg = make_cfg(tmp_path, data_dir=str(tiny_folder), cache_dir="")
    first = load_data(cfg)
    assert list((tmp_path / "envcache").glob("folder-16px-*.pt"))
    _save(Image.new("RGB", (50, 50), (0, 0, 0)), tiny_folder / "train/dog/b.jpeg")  # new content and size
    before = sources.decoded_images
    second = load_data(cfg)
    assert second.fingerprint != first.fingerprint
    assert sources.decoded_images == before + 7
    assert second.train_images[3].max() < 10
    other_size = load_data(make_cfg(tmp_path, data_dir=str(tiny_folder), cache_dir="", img_size=8, patch_size=4))
    assert other_size.train_images.shape[-1] == 8 and other_size.fingerprint != second.fingerprint


def _one_line_naming(err: pytest.ExceptionInfo, path: Path) -> str:
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg, msg
    return msg


def test_missing_folder_error(tmp_path):
    missing = tmp_path / "nope"
    cfg = make_cfg(tmp_path, data_dir=str(missing))
    for fn in (check_source, load_data):
        with pytest.raises(DataError) as err:
            fn(cfg)
        assert "--data_dir" in _one_line_naming(err, missing)


def test_no_class_folders_error(tmp_path):
    root = tmp_path / "flat"
    _save(Image.new("RGB", (8, 8)), root / "train/x.jpg")  # images directly in train/, no classes
    (root / "val").mkdir()
    with pytest.raises(DataError) as err:
        check_source(make_cfg(tmp_path, data_dir=str(root)))
    assert "class sub-folders" in _one_line_naming(err, root / "train")


def test_missing_val_and_unknown_val_class_errors(tmp_path, tiny_folder):
    cfg = make_cfg(tmp_path, data_dir=str(tiny_folder))
    (tiny_folder / "val/bird").mkdir()
    with pytest.raises(DataError) as err:
        check_source(cfg)
    _one_line_naming(err, tiny_folder / "val/bird")
    shutil.rmtree(tiny_folder / "val")
    with pytest.raises(DataError) as err:
        load_data(cfg)
    _one_line_naming(err, tiny_folder / "val")


@pytest.mark.parametrize("kind", ["garbage", "truncated"])
def test_corrupt_image_error(tmp_path, tiny_folder, kind):
    bad = tiny_folder / "train/dog/broken.JPEG"
    if kind == "garbage":
        bad.write_bytes(b"this is not a jpeg" * 10)
    else:
        _save(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)), bad, "JPEG")
        bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    cfg = make_cfg(tmp_path, data_dir=str(tiny_folder))
    check_source(cfg)  # cheap: does not decode
    with pytest.raises(DataError) as err:
        load_data(cfg)
    assert "unreadable image" in _one_line_naming(err, bad)
    assert err.value.__cause__ is None and err.value.__suppress_context__
    assert not list((tmp_path / "cache").glob("*.pt"))  # nothing cached for broken input


def test_too_many_classes_for_num_classes(tmp_path, tiny_folder):
    with pytest.raises(DataError, match="--num_classes=2"):
        check_source(make_cfg(tmp_path, data_dir=str(tiny_folder), num_classes=1))


def test_limits_balanced_fixed_file_level(tmp_path):
    root = tmp_path / "many"
    for c in ("a", "b", "c"):
        for i in range(6):
            _save(Image.new("RGB", (8, 8), (i * 40, 0, 0)), root / f"train/{c}/{i}.jpg")
        _save(Image.new("RGB", (8, 8)), root / f"val/{c}/0.jpg")
    cfg = make_cfg(tmp_path, data_dir=str(root), train_limit=7, val_limit=2, seed=3)
    before = sources.decoded_images
    d = load_data(cfg)
    assert sources.decoded_images - before == 9, "limits must be applied before decoding"
    counts = torch.bincount(d.train_labels, minlength=3).tolist()
    assert sorted(counts) == [2, 2, 3] and d.val_labels.numel() == 2
    again = load_data(make_cfg(tmp_path, data_dir=str(root), train_limit=7, val_limit=2, seed=3, cache_dir=str(tmp_path / "c2")))
    assert torch.equal(again.train_images, d.train_images) and again.fingerprint == d.fingerprint
    # Runs with different seeds must see the same subset, or their points are not comparable.
    others = {load_data(make_cfg(tmp_path, data_dir=str(root), train_limit=7, seed=s)).fingerprint for s in range(4)}
    assert len(others) == 1, "the subset must not depend on the run's seed"
    assert load_data(make_cfg(tmp_path, data_dir=str(root), train_limit=8)).fingerprint not in others


# ----------------------------------------------------------------------------- real Imagenette


def test_real_imagenette_subset(tmp_path, imagenette_root):
    cfg = make_cfg(tmp_path, data_dir=str(imagenette_root), img_size=224, patch_size=16, train_limit=20, val_limit=10)
    check_source(cfg)
    before = sources.decoded_images
    d = load_data(cfg)
    assert sources.decoded_images - before == 30
    assert d.train_images.shape == (20, 3, 224, 224) and d.val_images.shape == (10, 3, 224, 224)
    assert len(d.classes) == 10 and d.classes == sorted(d.classes) and d.classes[0] == "n01440764"
    assert torch.bincount(d.train_labels, minlength=10).tolist() == [2] * 10
    assert torch.bincount(d.val_labels, minlength=10).tolist() == [1] * 10
    assert d.train_images.float().std() > 20  # real pictures, not blanks


def test_real_grayscale_jpeg(tmp_path, imagenette_root):
    src = imagenette_root / GRAY_FILE
    with Image.open(src) as im:
        assert im.mode == "L", "the fixture must be a grayscale file"
        gray = torch.from_numpy(np.array(im.resize((112, 112), Image.BILINEAR)))
    root = tmp_path / "copy"
    for rel in (GRAY_FILE, RGB_FILE):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(imagenette_root / rel, root / rel)
    d = load_data(make_cfg(tmp_path, data_dir=str(root), img_size=112, patch_size=16))
    img = d.train_images[0]
    assert img.shape == (3, 112, 112)
    assert torch.equal(img[0], img[1]) and torch.equal(img[1], img[2])
    assert (img[0].int() - gray.int()).abs().max() <= 1  # same decode and resize as PIL's
    rgb = d.val_images[0]
    assert not torch.equal(rgb[0], rgb[1])


# ----------------------------------------------------------------------------- digits, synthetic


def test_digits_shapes_and_fixed_split(tmp_path):
    d = load_data(make_cfg(tmp_path, dataset="digits", img_size=32, seed=0))
    assert d.train_images.shape == (1437, 3, 32, 32) and d.val_images.shape == (360, 3, 32, 32)
    assert d.train_images.dtype == torch.uint8 and d.train_labels.dtype == torch.int64
    assert d.classes == [str(i) for i in range(10)]
    assert set(d.train_labels.tolist()) == set(range(10)) and set(d.val_labels.tolist()) == set(range(10))
    assert torch.equal(d.train_images[:, 0], d.train_images[:, 1])
    assert d.train_images.max() == 255 and d.train_images.min() == 0
    other_seed = load_data(make_cfg(tmp_path, dataset="digits", img_size=32, seed=7))
    assert torch.equal(other_seed.val_labels, d.val_labels) and torch.equal(other_seed.val_images, d.val_images)
    assert other_seed.fingerprint == d.fingerprint
    small = load_data(make_cfg(tmp_path, dataset="digits", img_size=8, train_limit=100, val_limit=20))
    assert small.train_images.shape == (100, 3, 8, 8) and torch.bincount(small.train_labels).tolist() == [10] * 10
    assert small.val_labels.numel() == 20


def test_synthetic(tmp_path):
    cfg = make_cfg(tmp_path, dataset="synthetic", synthetic_size=40, seed=1)
    check_source(cfg)
    d = load_data(cfg)
    assert d.train_images.shape == (40, 3, 16, 16) and d.val_images.shape == (10, 3, 16, 16)
    assert d.train_labels.max() < cfg.num_classes and len(d.classes) == cfg.num_classes
    assert torch.equal(load_data(cfg).train_images, d.train_images)
    assert not torch.equal(load_data(make_cfg(tmp_path, dataset="synthetic", synthetic_size=40, seed=2)).train_images, d.train_images)
    assert not list(tmp_path.glob("cache/*"))  # synthetic data is not cached


def test_splits_to_device(tmp_path):
    d = load_data(make_cfg(tmp_path, dataset="synthetic", synthetic_size=8))
    m = d.to("meta")
    assert all(t.device.type == "meta" for t in (m.train_images, m.train_labels, m.val_images, m.val_labels))
    assert m.classes == d.classes and m.fingerprint == d.fingerprint and d.train_images.device.type == "cpu"


# ----------------------------------------------------------------------------- Hugging Face source


def _hf_env(tmp_path, monkeypatch):
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf/datasets"))


def test_imagenette_offline_fails_fast(tmp_path, monkeypatch):
    pytest.importorskip("datasets")
    _hf_env(tmp_path, monkeypatch)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = make_cfg(tmp_path, dataset="imagenette")
    t0 = time.perf_counter()
    for fn in (check_source, load_data):
        with pytest.raises(DataError) as err:
            fn(cfg)
        msg = str(err.value)
        assert "\n" not in msg and "network" in msg and "--data_dir" in msg and cfg.hf_dataset in msg
    assert time.perf_counter() - t0 < 5


def test_imagenette_unreachable_hub_fails_fast(tmp_path, monkeypatch):
    _hf_env(tmp_path, monkeypatch)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: connection refused at once
    monkeypatch.setattr(hf_hub, "import_datasets", lambda: None)  # the probe alone must decide
    t0 = time.perf_counter()
    with pytest.raises(DataError, match="unreachable"):
        check_source(make_cfg(tmp_path, dataset="imagenette"))
    assert time.perf_counter() - t0 < 5


def test_imagenette_without_datasets_package(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` raises ImportError
    with pytest.raises(DataError, match="pip install datasets"):
        check_source(make_cfg(tmp_path, dataset="imagenette"))


def test_imagenette_warm_cache_needs_no_datasets_nor_network(tmp_path, monkeypatch):
    cfg = make_cfg(tmp_path, dataset="imagenette")
    fake = load_data(make_cfg(tmp_path, dataset="synthetic", synthetic_size=8))
    blob = {"version": CACHE_VERSION, "classes": fake.classes, "fingerprint": "abc123",
            "train_images": fake.train_images.clone(), "train_labels": fake.train_labels,
            "val_images": fake.val_images.clone(), "val_labels": fake.val_labels}
    save_atomic(blob, cache_path(cfg, hf_hub.hf_cache_key(cfg)))
    monkeypatch.setitem(sys.modules, "datasets", None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    check_source(cfg)
    d = load_data(cfg)
    assert d.fingerprint == "abc123" and torch.equal(d.train_images, fake.train_images)


def test_hf_splits_decode_like_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    images = [Image.new("RGB", (40, 30), (200, 30, 30)), Image.new("L", (30, 30), 90), Image.new("RGB", (20, 28), (0, 0, 250))]
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["red", "other"])})
    train = datasets.Dataset.from_dict({"image": images, "label": [0, 1, 1]}, features=feats)
    val = datasets.Dataset.from_dict({"image": images[:2], "label": [0, 1]}, features=feats)
    dsd = datasets.DatasetDict({"train": train, "validation": val})
    cfg = make_cfg(tmp_path, dataset="imagenette", train_limit=2)
    d = hf_hub.splits_from_hf(dsd, cfg, "key")
    assert d.classes == ["red", "other"] and d.train_images.shape == (2, 3, 16, 16)
    assert sorted(d.train_labels.tolist()) == [0, 1] and d.val_labels.tolist() == [0, 1]
    assert (d.val_images[1].int() - 90).abs().max() <= 2  # grayscale -> RGB


# ----------------------------------------------------------------------------- augmentation


def _manual_normalize(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x.float() / 255 - mean) / std


def test_normalize_matches_manual():
    x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    out = normalize(x)
    assert out.dtype == torch.float32 and out.shape == x.shape
    torch.testing.assert_close(out, _manual_normalize(x))
    assert x.dtype == torch.uint8  # input untouched


def test_augment_shape_dtype_range():
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    out = augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.float32 and out.device == x.device
    lo, hi = _manual_normalize(torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 2, 1).expand(1, 3, 2, 1)).unbind(2)
    assert (out >= lo.view(1, 3, 1, 1) - 1e-5).all() and (out <= hi.view(1, 3, 1, 1) + 1e-5).all()
    const = torch.full((2, 3, 16, 16), 77, dtype=torch.uint8)
    torch.testing.assert_close(augment(const), _manual_normalize(const))


def test_augment_per_sample_crops_and_seeding():
    img = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8).expand(16, -1, -1, -1).contiguous()
    out = augment(img, torch.Generator().manual_seed(0))
    flat = out.flatten(1)
    distinct = {tuple(torch.round(r[:64] * 1e3).tolist()) for r in flat}
    assert len(distinct) == 16, "every sample of one batch must get its own crop"
    torch.testing.assert_close(augment(img, torch.Generator().manual_seed(0)), out, rtol=0, atol=0)
    assert not torch.equal(augment(img, torch.Generator().manual_seed(1)), out)
    torch.manual_seed(5)
    a = augment(img)
    torch.manual_seed(5)
    assert torch.equal(augment(img), a)


def test_crop_parameters_follow_random_resized_crop():
    n, h, w = 4000, 224, 224
    theta = crop_flip_theta(n, h, w, torch.device("cpu"), torch.Generator().manual_seed(0))
    sx, sy = theta[:, 0, 0], theta[:, 1, 1]
    area = sx.abs() * sy
    assert area.min() >= 0.2 - 1e-6 and area.max() <= 1 + 1e-6
    ratio = sx.abs() / sy  # crop aspect w/h on a square image
    assert ratio.min() >= 3 / 4 - 1e-5 and ratio.max() <= 4 / 3 + 1e-5
    # the crop stays inside the image: |centre| + half-size <= 1 in normalized coordinates
    assert (theta[:, 0, 2].abs() + sx.abs() <= 1 + 1e-5).all() and (theta[:, 1, 2].abs() + sy <= 1 + 1e-5).all()
    flips = (sx < 0).float().mean()
    assert 0.45 < flips < 0.55
    assert area.std() > 0.1 and theta[:, 0, 2].std() > 0.05  # varied sizes and positions
    for c, half in ((theta[:, 0, 2], sx.abs()), (theta[:, 1, 2], sy)):  # crops touch neither edge often
        assert ((c - half) > -0.95).float().mean() > 0.3 and ((c + half) < 0.95).float().mean() > 0.3


@pytest.mark.parametrize("flip", [False, True])
def test_augment_geometry_matches_crop_then_resize(monkeypatch, flip):
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    x0, y0, cw, ch = 8, 4, 16, 20  # crop box in pixels, then resize to 32x32
    theta = torch.tensor([[[cw / 32, 0, (2 * x0 + cw) / 32 - 1], [0, ch / 32, (2 * y0 + ch) / 32 - 1]]]).repeat(2, 1, 1)
    if flip:
        theta[:, 0, 0] *= -1
    monkeypatch.setattr(augmentation, "crop_flip_theta", lambda n, h, w, device, generator: theta[:n])
    out = augment(x)
    ref = F.interpolate(x[:, :, y0 : y0 + ch, x0 : x0 + cw].float(), size=(32, 32), mode="bilinear", align_corners=False)
    if flip:
        ref = ref.flip(-1)
    ref = (ref / 255 - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    # interior pixels (the borders differ: interpolate clamps at the crop edge, grid_sample reads the neighbour)
    torch.testing.assert_close(out[..., 2:-2, 2:-2], ref[..., 2:-2, 2:-2], atol=1e-4, rtol=1e-4)


def test_axis_aligned_grid_equals_affine_grid():
    theta = crop_flip_theta(5, 12, 20, torch.device("cpu"), torch.Generator().manual_seed(3))
    ref = F.affine_grid(theta, [5, 3, 12, 20], align_corners=False)
    torch.testing.assert_close(axis_aligned_grid(theta, 12, 20), ref, atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------- packaging


def test_imports_without_wandb_datasets_torchvision(tmp_path):
    code = (
        "import sys\n"
        "for m in ('wandb', 'datasets', 'torchvision'): sys.modules[m] = None\n"
        "from mae_gap.config import TrainConfig\n"
        "from mae_gap import data\n"
        f"cfg = TrainConfig(dataset='synthetic', synthetic_size=8, img_size=16, patch_size=4, cache_dir={str(tmp_path)!r})\n"
        "data.check_source(cfg); d = data.load_data(cfg); data.augment(d.train_images[:4])\n"
        "assert 'datasets' not in sys.modules or sys.modules['datasets'] is None\n"
        "print('ok', tuple(d.train_images.shape))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "ok (8, 3, 16, 16)" in res.stdout
