"""The benchmarked run's TrainConfig and device, built the same way by the parent, its children and
the suite, so that every process of one benchmark trains the same thing."""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
from typing import Any

import torch

from ..config import ConfigError, TrainConfig, parse_key_value, preset

# Dense bf16 tensor-core peaks (TFLOP/s) from NVIDIA's data sheets, matched against the device
# name in this order. The suite's MFU uses these unless --peak-tflops is given.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("B200", 2250.0),
    ("H200", 989.4),
    ("H100 PCIe", 756.0),
    ("H100", 989.4),  # SXM / HBM3
    ("A100", 312.0),
)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("mae_gap.bench: --device cuda, but torch sees no CUDA device")
    return torch.device(name)


def build_config(args: argparse.Namespace, epochs: int | None) -> tuple[TrainConfig, torch.device]:
    """The TrainConfig of the benchmarked run: the preset, the bench's options, then --set key=value."""
    device = resolve_device(args.device)
    base: dict[str, Any] = dict(
        dataset="synthetic", batch_size=args.batch, accelerator="gpu" if device.type == "cuda" else "cpu",
        compile=args.compile, knn_every=0,
    )
    if epochs is not None:
        base["epochs"] = epochs
    if args.precision:
        base["precision"] = args.precision
    if args.data_dir:
        base.update(dataset="folder", data_dir=args.data_dir)
    try:
        sets = dict(parse_key_value(kv) for kv in args.set)
        cfg = preset(args.config, **base)
        if sets:
            cfg = dataclasses.replace(cfg, **sets)  # validated again (TrainConfig.__post_init__)
    except ConfigError as err:
        raise SystemExit(f"mae_gap.bench: {err}") from None
    return cfg, device


def default_peak(device: torch.device) -> tuple[float | None, str]:
    if device.type != "cuda":
        return None, "none for a CPU; pass --peak-tflops"
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16_TFLOPS:
        if key.lower() in name.lower():
            return value, f"{key} bf16 dense"
    return None, f"unknown device {name!r}; pass --peak-tflops"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()})"
