"""The figures measured beside the training step (augmentation, the per-evaluation readout, peak
memory): each is a cost a run pays that the step timing alone would hide."""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import torch

from ..config import TrainConfig
from .timing import Clock, autocast, sync


def augmentation_throughput(images: torch.Tensor, batch: int, device: torch.device, reps: int = 20) -> dict[str, Any]:
    """Gather + `augment` of device-resident uint8 batches (what a training step does before the
    model), each call device-synchronized; median call time -> img/s."""
    from ..data import augment

    gen = torch.Generator(device).manual_seed(0)
    n = images.shape[0]
    batch = min(batch, n)
    times = []
    for i in range(reps + 3):
        idx = torch.randint(0, n, (batch,), device=device, generator=gen)
        sync(device)
        t = time.perf_counter()
        augment(images[idx], generator=gen)
        sync(device)
        if i >= 3:
            times.append(time.perf_counter() - t)
    med = statistics.median(times)
    return {"batch": batch, "ms_median": 1e3 * med, "img_per_s": batch / med}


def readout_cost(module, cfg: TrainConfig, device: torch.device, epochs: dict[str, Any], precision: str) -> dict[str, Any]:
    """Seconds of one evaluation's frozen-feature readout (SPEC §4: val/knn_acc + val/linear_acc):
    the unmasked feature pass over train + val (k-NN's, which the linear probe shares), the k-NN vote
    and the linear probe's fits, each and together over the wall time of a training epoch (the
    linear probe's own share has a target: under 5%)."""
    from ..knn import knn_accuracy
    from ..linear_probe import linear_probe
    from ..readout import pooled_features

    data, model = module.data, module.model
    model.eval()
    clock = Clock(device, sync=True)
    a = clock.mark()
    with autocast(device, precision):
        train = pooled_features(model, data.train_images, cfg.eval_batch_size, device)
        val = pooled_features(model, data.val_images, cfg.eval_batch_size, device)
    b = clock.mark()
    train_labels, val_labels = data.train_labels.to(device), data.val_labels.to(device)
    knn_accuracy(train, train_labels, val, val_labels, cfg.knn_k, cfg.knn_temperature, cfg.num_classes)
    c = clock.mark()
    probe = linear_probe(train, train_labels, val, val_labels, cfg.num_classes)
    d = clock.mark()
    model.train()
    images, wall = epochs.get("img_per_s"), None
    if images:
        wall = int(data.train_labels.shape[0]) // cfg.batch_size * cfg.batch_size / images
    total = clock.seconds(a, d)
    return {"features_s": clock.seconds(a, b), "knn_s": clock.seconds(b, c), "linear_s": clock.seconds(c, d),
            "linear_iterations": probe.iterations, "linear_converged": probe.converged, "total_s": total,
            "epoch_s": wall, "over_epoch": total / wall if wall else None,
            "linear_over_epoch": clock.seconds(c, d) / wall if wall else None}


def peak_memory(device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        return {"kind": "cuda_max_allocated", "bytes": torch.cuda.max_memory_allocated(device),
                "reserved_bytes": torch.cuda.max_memory_reserved(device)}
    try:
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        return {"kind": "host_peak_rss", "bytes": int(rss) * (1 if sys.platform == "darwin" else 1024)}
    except (ImportError, OSError):
        return {"kind": "n/a", "bytes": None}
