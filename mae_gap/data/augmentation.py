"""Augmentation on the images' device, the hot path of every training step: RandomResizedCrop +
horizontal flip as one affine grid per image and a single ``F.grid_sample``, then ImageNet mean/std.
Kept free of any I/O or source code so that it imports in milliseconds and reads on its own."""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
    theta = crop_flip_theta(n, h, w, images.device, generator)
    out = F.grid_sample(x, axis_aligned_grid(theta, h, w), mode="bilinear", padding_mode="border", align_corners=False)
    return _normalize_(out, value_range)


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


def axis_aligned_grid(theta: torch.Tensor, h: int, w: int) -> torch.Tensor:
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


def crop_flip_theta(
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
