"""One benchmark of the real training path, as named steps (set-up, FLOP figures, the Lightning run
with its plain-loop reference, step figures, readout and augmentation, fixed cost), so that each
number's provenance can be read in one place."""

from __future__ import annotations

import argparse
import platform
import time
from typing import Any

import torch

from ..config import TrainConfig
from .configure import build_config, default_peak, device_name, resolve_device
from .fixed_cost import measure_fixed_cost
from .flops import counted_flops_per_image, flop_breakdown
from .measures import augmentation_throughput, peak_memory, readout_cost
from .plain_loop import PlainRuns
from .step_timer import StepTimer
from .synthetic import bench_data
from .timing import SyncWatch, summarize

# Targets of SPEC section 9 (reported next to the numbers, never asserted).
TARGETS = {
    "img_per_s": 9000.0,  # full config, batch 512, one H100
    "aug_img_per_s": 50000.0,
    "fixed_cost_s": 15.0,
    "lightning_over_plain": 1.05,
    "epoch_over_steps": 1.10,
}


def timing_modes(on_gpu: bool, repeats: int) -> list[str]:
    """Epoch 0 warms up; then `repeats` epochs without host syncs (throughput; CUDA events on a GPU)
    and, on a GPU, `repeats` device-synchronized ones (step medians). On a CPU a sync is a no-op."""
    return ["warmup"] + ["events"] * repeats + (["sync"] * repeats if on_gpu else [])


def _setup(args: argparse.Namespace, modes: list[str]) -> tuple[TrainConfig, torch.device, str, Any, dict[str, Any]]:
    """The config, device, precision and data of the run, and the result's descriptive header."""
    import pytorch_lightning as pl

    from ..module import resolve_precision

    cfg, device = build_config(args, epochs=len(modes))
    precision = resolve_precision(cfg, "gpu" if device.type == "cuda" else "cpu")
    if cfg.source == "synthetic" and args.train_size <= 0:
        args.train_size = args.batch * args.steps
    if args.val_size <= 0:
        args.val_size = max(args.batch, 256)
    t = time.perf_counter()
    data = bench_data(cfg, args.train_size, args.val_size)
    data_s = time.perf_counter() - t
    n_train = int(data.train_labels.shape[0])
    steps_per_epoch = n_train // cfg.batch_size
    if steps_per_epoch < 3:
        raise SystemExit(f"mae_gap.bench: {n_train} training images give only {steps_per_epoch} steps of {cfg.batch_size}")
    header = {
        "device": str(device), "device_name": device_name(device), "torch": torch.__version__,
        "lightning_version": pl.__version__, "python": platform.python_version(),
        "config_name": args.config, "config": cfg.to_dict(), "batch": cfg.batch_size, "precision": precision,
        "compile": cfg.compile, "data_on_device": not args.host_data, "train_images": n_train,
        "val_images": int(data.val_labels.shape[0]), "steps_per_epoch": steps_per_epoch, "repeats": args.repeats,
        "data_source": cfg.source, "data_load_s": data_s,
    }
    return cfg, device, precision, data, header


def flop_figures(args: argparse.Namespace, cfg: TrainConfig, device: torch.device, precision: str) -> dict[str, Any]:
    """FLOP per image: the formula, and FlopCounterMode on one real step (unless --no-flop-count)."""
    flop = flop_breakdown(cfg)
    out: dict[str, Any] = {"flop": dict(flop), "flop_per_img": flop["train"]}
    if not args.no_flop_count:
        t = time.perf_counter()
        counted = counted_flops_per_image(cfg, device, batch=min(args.flop_batch, cfg.batch_size), precision=precision)
        out["flop_per_img_counted"] = counted
        out["flop_formula_over_counted"] = flop["train"] / counted if counted else None
        out["flop_count_s"] = time.perf_counter() - t
    return out


def lightning_run(args: argparse.Namespace, cfg: TrainConfig, device: torch.device, modes: list[str], data: Any,
                  plain: PlainRuns) -> tuple[Any, StepTimer, SyncWatch, dict[str, Any]]:
    """The real fit() under a StepTimer. On a GPU the plain loop runs after the fit (its memory stays
    out of the Lightning run's peak); on a shared CPU it runs step by step alongside, so that load
    spikes hit both alike."""
    from ..module import MAEGapModule, fit
    from .host_data import HostDataModule

    on_gpu = device.type == "cuda"
    pair = not on_gpu and not args.no_plain
    watch = SyncWatch(device)
    timer = StepTimer(device, modes, paired=plain.paired if pair else None, watch=watch)
    if on_gpu:
        torch.cuda.reset_peak_memory_stats(device)
    t = time.perf_counter()
    module_cls = HostDataModule if args.host_data else MAEGapModule
    fit_result = fit(cfg, data=data, callbacks=[timer], module_cls=module_cls)
    out = {"lightning_fit_s": time.perf_counter() - t,
           "peak_memory": peak_memory(device),  # the Lightning run's (on a GPU: before the plain loop exists)
           "params": sum(p.numel() for p in fit_result.module.model.parameters())}
    if not pair and not args.no_plain:
        module = fit_result.module
        if isinstance(module, HostDataModule):
            module.data = module.data.to(device)
        for mode in modes:
            plain.block(mode, module)
    return fit_result, timer, watch, out


def step_figures(args: argparse.Namespace, device: torch.device, modes: list[str], timer: StepTimer,
                 plain: PlainRuns, train_flop: float) -> dict[str, Any]:
    """Step medians, Lightning / plain, img/s, epoch / steps, TFLOP/s and MFU from the timings."""
    on_gpu = device.type == "cuda"
    light = {m: summarize(timer.epochs, m) for m in dict.fromkeys(modes[1:])}
    plain_sum = {m: summarize(plain.records, m) for m in dict.fromkeys(modes[1:])} if plain.records else {}
    step_mode = "sync" if on_gpu else "events"  # the device-synchronized step timings
    lt, pt = light[step_mode], plain_sum.get(step_mode)
    thr = light["events"]
    out: dict[str, Any] = {
        "lightning": light, "plain": plain_sum,
        "lightning_step_ms": lt["step_ms_median"],
        "plain_step_ms": pt["step_ms_median"] if pt else None,
        "lightning_over_plain": lt["step_ms_median"] / pt["step_ms_median"] if pt else None,
        "lightning_over_plain_iter": lt["iter_ms_median"] / pt["iter_ms_median"] if pt and pt["iter_ms_median"] else None,
        "img_per_s": thr["img_per_s"],
        "plain_img_per_s": plain_sum["events"]["img_per_s"] if plain_sum else None,
        "epoch_over_steps": thr["epoch_over_steps_median"],
        "epoch_over_steps_max": thr["epoch_over_steps_max"],
    }
    out["tflops"] = out["img_per_s"] * train_flop / 1e12 if out["img_per_s"] else None
    peak, peak_note = (args.peak_tflops, "--peak-tflops") if args.peak_tflops else default_peak(device)
    out["peak_tflops"], out["peak_note"] = peak, peak_note
    out["mfu"] = out["tflops"] / peak if peak and out["tflops"] else None
    out["raw"] = {"lightning_epochs": timer.epochs, "plain_blocks": plain.records}
    return out


def readout_and_augmentation(args: argparse.Namespace, module, cfg: TrainConfig, device: torch.device,
                             light_events: dict[str, Any], precision: str) -> dict[str, Any]:
    """The per-evaluation readout (k-NN + linear probe) against an epoch, and augmentation img/s."""
    readout = readout_cost(module, cfg, device, light_events, precision)
    images = module.data.train_images.to(device)
    augmentation = augmentation_throughput(images, args.aug_batch or cfg.batch_size, device)
    return {"readout": readout, "readout_over_epoch": readout["over_epoch"],
            "linear_probe_over_epoch": readout["linear_over_epoch"],
            "augmentation": augmentation, "aug_img_per_s": augmentation["img_per_s"]}


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Every figure of the table (see the package docstring), as one dict."""
    device = resolve_device(args.device)
    modes = timing_modes(device.type == "cuda", args.repeats)
    cfg, device, precision, data, result = _setup(args, modes)
    result.update(flop_figures(args, cfg, device, precision))
    plain = PlainRuns(cfg, device, precision, result["steps_per_epoch"], len(modes))
    fit_result, timer, watch, fit_figures = lightning_run(args, cfg, device, modes, data, plain)
    result.update(fit_figures)
    result["sync_check"] = {"lightning": watch.summary(), "plain": plain.watch.summary()}
    result.update(step_figures(args, device, modes, timer, plain, result["flop_per_img"]))
    result.update(readout_and_augmentation(args, fit_result.module, cfg, device, result["lightning"]["events"], precision))
    del fit_result, plain  # the device memory goes before the fixed-cost child starts
    if not args.no_fixed_cost:
        result["fixed_cost"] = measure_fixed_cost(args)
        result["fixed_cost_s"] = result["fixed_cost"].get("total_s")
    result["targets"] = TARGETS
    return result
