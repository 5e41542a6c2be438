"""Training-speed benchmark of the real training path (SPEC section 9).

    python -m mae_gap.bench [--device cuda|cpu] [--config full|tiny] [--batch N] [--compile] [--steps N]
                            [--repeats R] [--data_dir PATH] [--peak-tflops X] [--json PATH]
    python -m mae_gap.bench --suite gpu --out DIR        # the whole GPU check in one call (< 8 min)

It builds the model and the data exactly as training does (`fit()` with the real MAEGapModule;
synthetic uint8 images by default, cached on disk like every source, or `--data_dir`), warms up,
then prints one table (and `--json PATH` writes the same numbers):

- train img/s of the Lightning run (images / epoch wall time of the timed epochs);
- step time: median of per-step timings, device-synchronized, of the Lightning step
  (on_train_batch_start -> on_train_batch_end, a Callback) and of a plain PyTorch loop over the
  same model, data, optimizer, schedule and precision (augment -> forward -> backward -> AdamW ->
  scheduler), so Lightning's overhead is measured, not assumed; on a CPU the two alternate step
  by step (so the shared machine's load hits both alike) and torch runs one thread (--threads);
  on a GPU the plain loop runs after the Lightning run, and the "events" epochs time the GPU's
  own timeline with CUDA events (no host sync) while the "sync" epochs synchronize per step;
- an epoch's wall time (on_train_epoch_start -> end of its last batch) / the sum of its steps;
- analytic FLOP per image from the config (`flop_breakdown`), cross-checked with
  torch.utils.flop_counter.FlopCounterMode on one real step; achieved TFLOP/s; MFU against
  `--peak-tflops` (defaults: bf16 dense peaks of H100 SXM, H100 PCIe, H200, B200, A100);
- device-side augmentation img/s (gather + `augment` of device-resident uint8 batches);
- peak device memory (torch.cuda.max_memory_allocated; on a CPU the process's peak RSS);
- the fixed cost: a fresh process, from its start to the end of its first optimizer step, with a
  warm data cache (what every sweep run pays before it trains);
- on a GPU, host syncs inside the step (torch.cuda.set_sync_debug_mode over warm-up steps).

No timed assertion lives in the tests: speed is measured here.
"""

from __future__ import annotations

import time

_T_IMPORT = time.time()  # first thing this module does: the fixed-cost child's "interpreter ready" stamp

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable, Sequence  # noqa: E402

import torch  # noqa: E402

from .config import ConfigError, TrainConfig, parse_args, preset  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]

# Dense bf16 tensor-core peaks (TFLOP/s) from NVIDIA's data sheets, matched against the device
# name in this order. The suite's MFU uses these unless --peak-tflops is given.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("B200", 2250.0),
    ("H200", 989.4),
    ("H100 PCIe", 756.0),
    ("H100", 989.4),  # SXM / HBM3
    ("A100", 312.0),
)

# Imagenette 2 (fast.ai): 9,469 train / 3,925 val images; the GPU suite's synthetic data has its shape.
IMAGENETTE_TRAIN, IMAGENETTE_VAL = 9469, 3925

# Targets of SPEC section 9 (reported next to the numbers, never asserted).
TARGETS = {
    "img_per_s": 9000.0,  # full config, batch 512, one H100
    "aug_img_per_s": 50000.0,
    "fixed_cost_s": 15.0,
    "lightning_over_plain": 1.05,
    "epoch_over_steps": 1.10,
}


# ============================================================================ FLOP per image


def _blocks_flop(tokens: int, width: int, depth: int, mlp_ratio: float) -> float:
    """Forward matmul FLOP of `depth` timm Blocks on `tokens` tokens (2 FLOP per multiply-add).

    Per block: qkv (3 d^2) + attention projection (d^2) + MLP (2 d h, h = int(d * mlp_ratio)) per
    token, plus the attention products QK^T and AV (T^2 d each). Norms, softmax, GELU, residual adds
    are not matmuls and are left out (well under 1%).
    """
    hidden = int(width * mlp_ratio)
    per_token = 3 * width * width + width * width + 2 * width * hidden
    macs = tokens * per_token + 2 * tokens * tokens * width
    return 2.0 * depth * macs


def flop_breakdown(cfg: TrainConfig) -> dict[str, float]:
    """Analytic FLOP per training image, from the config alone.

    With L = (S/p)^2 patches, K = int(L (1 - mask_ratio)) visible patches, P = 3 p^2 pixels per patch:

      patch_embed  = 2 L P D                         (the conv, on all L patches, before masking)
      encoder      = blocks(T = K + 1, D, depth)     (visible tokens + cls)
      decoder      = 2 (K+1) D Dd  +  blocks(T = L + 1, Dd, decoder_depth)  +  2 (L+1) Dd P  (embed, blocks, pred)
      head         = 2 D C
      probe_pass   = patch_embed + blocks(T = L + 1, D, depth) + 2 D C   (no-grad unmasked encoder + probe)

      train = 3 (patch_embed + encoder + decoder + head)   forward + backward (backward = 2 x forward)
              - patch_embed                                 no gradient w.r.t. the pixels: weight grad only
              + probe_pass + 2 D C                          the probe pass is forward only; the probe's
                                                            Linear gets its weight gradient

    `train` is what one optimizer step costs per image; `masked_fwd_bwd` (3 x the masked pass) is the
    figure SPEC section 9 quotes. At the full config: masked_fwd_bwd = 33.98 GFLOP (SPEC: "about 34"),
    the decoder's 8 blocks 93.1% of the masked pass (94.6% with its embed and pred layers; SPEC: 93%),
    the probe pass 2.51 GFLOP (+7.4%), train = 36.43 GFLOP per image -- equal to FlopCounterMode's
    count of a real step (tests/test_bench.py checks both). Without the online probe
    (`online_probe=False`) train = 33.92 GFLOP.
    """
    L, D, Dd, C = cfg.num_patches, cfg.embed_dim, cfg.decoder_embed_dim, cfg.num_classes
    K = int(L * (1 - cfg.mask_ratio))
    P = 3 * cfg.patch_size**2
    patch_embed = 2.0 * L * P * D
    encoder = _blocks_flop(K + 1, D, cfg.depth, cfg.mlp_ratio)
    decoder_embed = 2.0 * (K + 1) * D * Dd
    decoder_blocks = _blocks_flop(L + 1, Dd, cfg.decoder_depth, cfg.mlp_ratio)
    decoder_pred = 2.0 * (L + 1) * Dd * P
    decoder = decoder_embed + decoder_blocks + decoder_pred
    head = 2.0 * D * C
    probe_encoder = _blocks_flop(L + 1, D, cfg.depth, cfg.mlp_ratio)
    probe_pass = patch_embed + probe_encoder + head
    masked_fwd = patch_embed + encoder + decoder + head
    # --online_probe=False drops the probe's pass and its Linear's weight gradient
    train = 3 * masked_fwd - patch_embed + ((probe_pass + head) if cfg.online_probe else 0.0)
    return {
        "patch_embed": patch_embed,
        "encoder": encoder,
        "decoder": decoder,
        "decoder_blocks": decoder_blocks,
        "head": head,
        "masked_fwd": masked_fwd,
        "masked_fwd_bwd": 3 * masked_fwd,
        "probe_pass": probe_pass,
        "decoder_share_of_masked": decoder / masked_fwd,
        "decoder_blocks_share_of_masked": decoder_blocks / masked_fwd,
        "train": train,
    }


def flops_per_image(cfg: TrainConfig) -> float:
    """FLOP of one training image (forward + backward + the probe's forward pass); see flop_breakdown."""
    return flop_breakdown(cfg)["train"]


def counted_flops_per_image(cfg: TrainConfig, device: torch.device | str = "cpu", batch: int = 2,
                            precision: str = "32") -> float:
    """FLOP per image of one real training step (forward + backward, no optimizer), counted by
    torch.utils.flop_counter.FlopCounterMode. On a CPU, SDPA is forced to its math kernel (the
    counter has no formula for the CPU flash kernel; math decomposes into counted matmuls)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from .data import normalize
    from .model import MaskedAutoencoder

    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        model = MaskedAutoencoder(cfg).to(device).train()
        imgs = normalize(torch.randint(0, 256, (batch, 3, cfg.img_size, cfg.img_size), dtype=torch.uint8, device=device))
        labels = torch.randint(0, cfg.num_classes, (batch,), device=device)
        kernel = sdpa_kernel([SDPBackend.MATH]) if device.type == "cpu" else contextlib.nullcontext()
        with FlopCounterMode(display=False) as counter, kernel:
            with _autocast(device, precision):
                out = model(imgs, labels, cfg.alpha, cfg.alpha_mode)
            out.loss.backward()
    return counter.get_total_flops() / batch


# ============================================================================ data


def _synthetic_splits(size: int, n_train: int, n_val: int, num_classes: int):
    import numpy as np

    from .data import DataSplits, _hash

    rng = np.random.default_rng(0)  # fixed: every run and seed shares the same "data set"
    images = torch.from_numpy(rng.integers(0, 256, size=(n_train + n_val, 3, size, size), dtype=np.uint8))
    labels = torch.from_numpy(rng.integers(0, num_classes, size=n_train + n_val).astype(np.int64))
    return DataSplits(
        train_images=images[:n_train], train_labels=labels[:n_train],
        val_images=images[n_train:], val_labels=labels[n_train:],
        classes=[f"class_{i}" for i in range(num_classes)],
        fingerprint=_hash("bench-synthetic", size, n_train, n_val, num_classes),
    )


def bench_data(cfg: TrainConfig, n_train: int, n_val: int):
    """The benchmark's data, as training gets it: real data through load_data (`--data_dir`), or
    synthetic uint8 images of n_train / n_val, decoded once and cached on disk through the same
    cache code as every source (so a fresh process finds a warm cache, like a sweep run)."""
    from . import data as D

    if cfg.source != "synthetic":
        D.check_source(cfg)
        return D.load_data(cfg)
    path = D.cache_root(cfg) / f"bench-synthetic-{cfg.img_size}px-{n_train}+{n_val}-c{cfg.num_classes}.pt"
    return D._cached(path, lambda: _synthetic_splits(cfg.img_size, n_train, n_val, cfg.num_classes))


# ============================================================================ timing helpers


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, precision: str):
    """What Lightning's precision plugin wraps the training step in."""
    if precision == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "16-mixed":
        return torch.autocast(device.type, dtype=torch.float16)
    return contextlib.nullcontext()


class Clock:
    """Timestamps of one device: host perf_counter after a device sync (`sync`), or CUDA events
    (recorded without any host sync, resolved once at the end; they time the GPU's own timeline)."""

    def __init__(self, device: torch.device, sync: bool):
        self.device, self.events = device, device.type == "cuda" and not sync

    def mark(self):
        if self.events:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        _sync(self.device)
        return time.perf_counter()

    def seconds(self, a, b) -> float:
        """b - a in seconds; call after the last mark (events need their work done)."""
        if self.events:
            return a.elapsed_time(b) / 1e3
        return b - a


def _timing_record(clock: Clock, t0, starts: list, ends: list, images: int) -> dict[str, Any]:
    _sync(clock.device)
    steps = [clock.seconds(a, b) for a, b in zip(starts, ends)]
    iters = [clock.seconds(a, b) for a, b in zip(starts, starts[1:])]
    return {"steps_s": steps, "iters_s": iters, "wall_s": clock.seconds(t0, ends[-1]) if ends else 0.0, "images": images}


class SyncWatch:
    """Counts host<->device synchronizations on a GPU (torch.cuda.set_sync_debug_mode('warn')),
    with the Python line that caused each. A no-op elsewhere."""

    def __init__(self, device: torch.device):
        self.active = device.type == "cuda"
        self.found: list[str] = []
        self.checked_steps = 0
        self._cm = None
        self._log: list = []

    def start(self) -> None:
        if not self.active:
            return
        self._cm = warnings.catch_warnings(record=True)
        self._log = self._cm.__enter__()
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")

    def stop(self) -> None:
        if not self.active or self._cm is None:
            return
        torch.cuda.set_sync_debug_mode("default")
        self._cm.__exit__(None, None, None)
        self._cm = None
        self.checked_steps += 1
        for w in self._log:
            if "synchroniz" in str(w.message):
                self.found.append(f"{w.filename}:{w.lineno}: {str(w.message).splitlines()[0][:120]}")

    def summary(self) -> dict[str, Any]:
        if not self.active:
            return {"checked_steps": 0, "syncs": None, "where": []}
        return {"checked_steps": self.checked_steps, "syncs": len(self.found), "where": sorted(set(self.found))[:10]}


# ============================================================================ the plain PyTorch loop


class PlainLoop:
    """The reference: the same model, data, optimizer, schedule and precision as MAEGapModule's step,
    with no Lightning: gather -> augment -> forward -> backward -> AdamW -> LR scheduler."""

    def __init__(self, cfg: TrainConfig, images: torch.Tensor, labels: torch.Tensor, device: torch.device,
                 precision: str, total_steps: int):
        from .data import augment
        from .model import MaskedAutoencoder, param_groups
        from .module import warmup_cosine

        self.cfg, self.device, self.precision = cfg, device, precision
        self.images, self.labels = images, labels  # already on the device (shared with the Lightning run)
        self._augment = augment
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(cfg.seed)
            self.model = MaskedAutoencoder(cfg).to(device).train()
        if cfg.alpha_mode == "weighted" and cfg.alpha == 0:
            self.model.head.requires_grad_(False)
        self.forward = torch.compile(self.model) if cfg.compile else self.model
        self.opt = torch.optim.AdamW(param_groups(self.model, cfg), lr=cfg.effective_lr, betas=(cfg.beta1, cfg.beta2),
                                     fused=device.type == "cuda")
        warm = max(1, total_steps // max(1, cfg.epochs))
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: warmup_cosine(s, warm, total_steps, cfg.min_lr / cfg.effective_lr))
        self.scaler = torch.amp.GradScaler(device.type) if precision == "16-mixed" else None
        self.gen = torch.Generator(device).manual_seed(cfg.seed + 12345)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # as build_trainer sets it on a GPU

    def step(self, idx: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        images, labels = self.images[idx], self.labels[idx]
        with _autocast(self.device, self.precision):
            imgs = self._augment(images, generator=self.gen)
            noise = torch.rand(idx.shape[0], cfg.num_patches, device=self.device, generator=self.gen)
            out = self.forward(imgs, labels, cfg.alpha, cfg.alpha_mode, noise=noise)
        self.opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(out.loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            out.loss.backward()
            self.opt.step()
        self.sched.step()
        return out.loss

    def next_batch(self, batch: int) -> torch.Tensor:
        """The next `batch` indices of a device-side permutation (a new one each pass; no host sync)."""
        n = self.labels.shape[0]
        if getattr(self, "_pos", n) + batch > n:
            self._order, self._pos = torch.randperm(n, device=self.device, generator=self.gen), 0
        idx = self._order[self._pos : self._pos + batch]
        self._pos += batch
        return idx

    def run_block(self, steps: int, batch: int, sync: bool, watch: SyncWatch | None = None) -> dict[str, Any]:
        """`steps` steps back to back (an epoch's worth), each timed like the Lightning step."""
        clock = Clock(self.device, sync)
        starts, ends = [], []
        t0 = clock.mark()
        for i in range(steps):
            starts.append(clock.mark())
            if watch is not None and i >= 2:
                watch.start()
            self.step(self.next_batch(batch))
            if watch is not None and i >= 2:
                watch.stop()
            ends.append(clock.mark())
        return _timing_record(clock, t0, starts, ends, steps * batch)

    def one_step(self, batch: int) -> tuple[float, float]:
        """One synchronized step -> (start, end) perf_counter stamps (the CPU's paired timing)."""
        _sync(self.device)
        t0 = time.perf_counter()
        self.step(self.next_batch(batch))
        _sync(self.device)
        return t0, time.perf_counter()


# ============================================================================ the Lightning run


def _lightning_callback_base():
    import pytorch_lightning as pl

    return pl.Callback


def make_step_timer(device: torch.device, modes: Sequence[str], after_epoch: Callable | None = None,
                    paired: Callable | None = None, watch: SyncWatch | None = None):
    """A Callback timing every training step of the real Lightning run.

    modes[e] for epoch e: 'warmup' (timed but not reported; host syncs are watched there),
    'events' (no host sync inside the epoch: CUDA events on a GPU, perf_counter on a CPU) or
    'sync' (device-synchronized host timestamps at every batch boundary).
    A step is on_train_batch_start -> on_train_batch_end (training_step, backward, optimizer and
    scheduler steps, the module's own hooks); the epoch is on_train_epoch_start -> the end of its
    last batch. `after_epoch(mode, module)` runs after each epoch.

    `paired(mode, module) -> (start, end)` (the CPU): one plain-loop step right after each Lightning
    step, outside the Lightning step's own timing, so that both see the same machine load step by
    step. Its exact duration is taken out of the epoch's wall time and of the start-to-start
    iteration times, which then hold Lightning's loop alone.
    """
    Base = _lightning_callback_base()

    class StepTimer(Base):
        def __init__(self):
            self.epochs: list[dict[str, Any]] = []

        def on_train_epoch_start(self, trainer, pl_module):
            self.mode = modes[min(trainer.current_epoch, len(modes) - 1)]
            self.clock = Clock(device, sync=self.mode != "events")
            self.starts, self.ends, self.images, self.excluded = [], [], 0, []
            self.t0 = self.clock.mark()

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.starts.append(self.clock.mark())
            if watch is not None and self.mode == "warmup" and batch_idx >= 2:
                watch.start()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if watch is not None and self.mode == "warmup" and batch_idx >= 2:
                watch.stop()
            self.ends.append(self.clock.mark())
            self.images += (batch[1] if isinstance(batch, (tuple, list)) else batch).shape[0]
            if paired is not None:
                with torch.enable_grad():
                    a, b = paired(self.mode, pl_module)
                self.excluded.append(b - a)

        def on_train_epoch_end(self, trainer, pl_module):
            record = _timing_record(self.clock, self.t0, self.starts, self.ends, self.images)
            if self.excluded:  # host-clock epochs only (the CPU): take the paired plain steps out
                record["wall_s"] -= sum(self.excluded[: len(self.ends) - 1])
                record["iters_s"] = [t - x for t, x in zip(record["iters_s"], self.excluded)]
            record["mode"] = self.mode
            self.epochs.append(record)
            if after_epoch is not None:
                after_epoch(self.mode, pl_module)

    return StepTimer()


def _median_ms(values: Sequence[float]) -> float | None:
    return 1e3 * statistics.median(values) if values else None


def _pct_ms(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return 1e3 * s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]


def _summarize(records: list[dict[str, Any]], mode: str) -> dict[str, Any]:
    chosen = [r for r in records if r["mode"] == mode]
    steps = [s for r in chosen for s in r["steps_s"]]
    iters = [s for r in chosen for s in r["iters_s"]]
    images = sum(r["images"] for r in chosen)
    wall = sum(r["wall_s"] for r in chosen)
    ratios = [r["wall_s"] / sum(r["steps_s"]) for r in chosen if r["steps_s"]]
    return {
        "mode": mode, "epochs": len(chosen), "steps": len(steps),
        "step_ms_median": _median_ms(steps), "step_ms_p10": _pct_ms(steps, 0.1), "step_ms_p90": _pct_ms(steps, 0.9),
        "iter_ms_median": _median_ms(iters),
        "img_per_s": images / wall if wall > 0 else None,
        "epoch_over_steps_median": statistics.median(ratios) if ratios else None,
        "epoch_over_steps_max": max(ratios) if ratios else None,
    }


# ============================================================================ augmentation, memory


def augmentation_throughput(images: torch.Tensor, batch: int, device: torch.device, reps: int = 20) -> dict[str, Any]:
    """Gather + `augment` of device-resident uint8 batches (what a training step does before the
    model), each call device-synchronized; median call time -> img/s."""
    from .data import augment

    gen = torch.Generator(device).manual_seed(0)
    n = images.shape[0]
    batch = min(batch, n)
    times = []
    for i in range(reps + 3):
        idx = torch.randint(0, n, (batch,), device=device, generator=gen)
        _sync(device)
        t = time.perf_counter()
        augment(images[idx], generator=gen)
        _sync(device)
        if i >= 3:
            times.append(time.perf_counter() - t)
    med = statistics.median(times)
    return {"batch": batch, "ms_median": 1e3 * med, "img_per_s": batch / med}


def readout_cost(module, cfg: TrainConfig, device: torch.device, epochs: dict[str, Any], precision: str) -> dict[str, Any]:
    """Seconds of one evaluation's frozen-feature readout (SPEC §4: val/knn_acc + val/linear_acc):
    the unmasked feature pass over train + val (k-NN's, which the linear probe shares), the k-NN vote
    and the linear probe's fits, each and together over the wall time of a training epoch (the
    linear probe's own share has a target: under 5%)."""
    from .knn import knn_accuracy
    from .linear_probe import linear_probe
    from .readout import pooled_features

    data, model = module.data, module.model
    model.eval()
    clock = Clock(device, sync=True)
    a = clock.mark()
    with _autocast(device, precision):
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


# ============================================================================ fixed cost (a fresh process)


def _child_argv(args: argparse.Namespace, extra: Sequence[str]) -> list[str]:
    argv = [sys.executable, "-m", "mae_gap.bench", "--device", args.device, "--config", args.config,
            "--batch", str(args.batch), "--train-size", str(args.train_size), "--val-size", str(args.val_size)]
    if args.compile:
        argv.append("--compile")
    if args.precision:
        argv += ["--precision", args.precision]
    argv += ["--threads", str(args.threads)]
    if args.data_dir:
        argv += ["--data_dir", args.data_dir]
    for kv in args.set:
        argv += ["--set", kv]
    return argv + list(extra)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _parse_child_line(stdout: str, tag: str) -> dict[str, Any] | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith(tag + " "):
            return json.loads(line[len(tag) + 1 :])
    return None


def measure_fixed_cost(args: argparse.Namespace, timeout: float = 300.0) -> dict[str, Any]:
    """A fresh `python -m mae_gap.bench` process (the data cache is warm: the parent built it) runs
    the real fit() and stops right after its first optimizer step. Seconds from just before the
    process is spawned, with the breakdown the child reports."""
    t0 = time.time()
    try:
        proc = subprocess.run(_child_argv(args, ["--_child", "fixed_cost", "--_t0", repr(t0)]),
                              capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT, env=_child_env())
    except subprocess.TimeoutExpired:
        return {"total_s": None, "error": f"timed out after {timeout:.0f} s"}
    info = _parse_child_line(proc.stdout, "FIXED_COST")
    if info is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"total_s": None, "error": f"child exited {proc.returncode}: {' | '.join(tail)}"}
    return info


def _child_fixed_cost(args: argparse.Namespace) -> None:
    t0 = args._t0
    stamps = {"interpreter": _T_IMPORT}  # process start -> this module runs (python itself, mae_gap/__init__)
    import pytorch_lightning as pl

    from .module import fit

    stamps["imports"] = time.time()  # torch, Lightning, timm, mae_gap
    cfg, device = build_config(args, epochs=1)
    data = bench_data(cfg, args.train_size, args.val_size)
    stamps["data"] = time.time()  # warm cache: memory-mapped, not decoded

    class FirstStep(pl.Callback):
        def on_fit_start(self, trainer, pl_module):
            stamps["model_and_trainer"] = time.time()  # model built, Trainer set up; data not yet on the device

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            _sync(device)
            stamps["first_step"] = time.time()
            names = list(stamps)
            parts = {f"{b}_s": stamps[b] - (stamps[a] if i else t0) for i, (a, b) in enumerate(zip([None, *names], names))}
            info = {"total_s": stamps["first_step"] - t0, **parts, "compile": cfg.compile}
            print("FIXED_COST " + json.dumps(info), flush=True)
            sys.stderr.flush()
            os._exit(0)  # nothing else to measure: skip the rest of the run and the teardown

    fit(cfg, data=data, callbacks=[FirstStep()])
    raise SystemExit("mae_gap.bench: the fixed-cost child never reached an optimizer step")


def _child_run(args: argparse.Namespace) -> None:
    """One whole training run (the GPU suite's quick sweep): fit() on the bench data, JSON out."""
    import pytorch_lightning as pl

    from .module import fit

    t_start = time.time()
    cfg, device = build_config(args, epochs=None)
    data = bench_data(cfg, args.train_size, args.val_size)
    first: dict[str, float] = {}

    class FirstStep(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if not first:
                _sync(device)
                first["t"] = time.time()

    result = fit(cfg, data=data, callbacks=[FirstStep()])
    _sync(device)
    t_end = time.time()
    info = {
        "alpha": cfg.alpha, "lr": cfg.lr, "epochs": cfg.epochs, "batch": cfg.batch_size,
        "train_images": int(data.train_labels.shape[0]), "val_images": int(data.val_labels.shape[0]),
        "t_first_step": first.get("t"), "t_end": t_end, "in_process_s": t_end - t_start,
        "history": result.history,
        "peak_memory": peak_memory(device),
    }
    print("RUN_RESULT " + json.dumps(info), flush=True)


# ============================================================================ the benchmark


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
    sets = {}
    for kv in args.set:
        key, eq, value = kv.partition("=")
        if not eq:
            raise SystemExit(f"mae_gap.bench: --set needs key=value, got {kv!r}")
        sets[key] = value
    try:
        cfg = preset(args.config, **base)
        if sets:
            fields = {**cfg.to_dict(), **sets}
            cfg = parse_args([f"--{k}={v}" for k, v in fields.items()], TrainConfig)
    except ConfigError as err:
        raise SystemExit(f"mae_gap.bench: {err}") from None
    return cfg, device


def _default_peak(device: torch.device) -> tuple[float | None, str]:
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


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    import pytorch_lightning as pl

    from .module import fit, resolve_precision

    device = resolve_device(args.device)
    repeats = args.repeats
    on_gpu = device.type == "cuda"
    # epoch 0 warms up; then `repeats` epochs without host syncs (throughput; CUDA events on a GPU)
    # and, on a GPU, `repeats` device-synchronized ones (step medians). On a CPU a sync is a no-op.
    modes = ["warmup"] + ["events"] * repeats + (["sync"] * repeats if on_gpu else [])
    cfg, device = build_config(args, epochs=len(modes))
    precision = resolve_precision(cfg, "gpu" if on_gpu else "cpu")
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

    result: dict[str, Any] = {
        "device": str(device), "device_name": device_name(device), "torch": torch.__version__,
        "lightning_version": pl.__version__, "python": platform.python_version(),
        "config_name": args.config, "config": cfg.to_dict(), "batch": cfg.batch_size, "precision": precision,
        "compile": cfg.compile, "data_on_device": not args.host_data, "train_images": n_train,
        "val_images": int(data.val_labels.shape[0]), "steps_per_epoch": steps_per_epoch, "repeats": repeats,
        "data_source": cfg.source, "data_load_s": data_s,
    }
    params = None

    # --- FLOP per image: the formula, and FlopCounterMode on one real step
    flop = flop_breakdown(cfg)
    result["flop"] = {k: v for k, v in flop.items()}
    result["flop_per_img"] = flop["train"]
    if not args.no_flop_count:
        t = time.perf_counter()
        counted = counted_flops_per_image(cfg, device, batch=min(args.flop_batch, cfg.batch_size), precision=precision)
        result["flop_per_img_counted"] = counted
        result["flop_formula_over_counted"] = flop["train"] / counted if counted else None
        result["flop_count_s"] = time.perf_counter() - t

    # --- the Lightning run (the real fit()), with the plain loop interleaved on a CPU
    watch = SyncWatch(device)
    plain_watch = SyncWatch(device)
    plain_records: list[dict[str, Any]] = []
    plain_state: dict[str, Any] = {}
    total_plain_steps = len(modes) * steps_per_epoch

    def plain_loop(module) -> PlainLoop:
        if "loop" not in plain_state:
            plain_state["loop"] = PlainLoop(cfg, module.data.train_images, module.data.train_labels, device,
                                            precision, total_plain_steps)
        return plain_state["loop"]

    def plain_block(mode: str, module) -> None:
        with torch.enable_grad(), torch.inference_mode(False):
            rec = plain_loop(module).run_block(steps_per_epoch, cfg.batch_size, sync=mode != "events",
                                               watch=plain_watch if mode == "warmup" else None)
        rec["mode"] = mode
        plain_records.append(rec)

    def plain_paired(mode: str, module) -> tuple[float, float]:
        if not plain_records or plain_records[-1]["mode"] != mode:
            plain_records.append({"mode": mode, "steps_s": [], "iters_s": [], "wall_s": 0.0, "images": 0})
        rec = plain_records[-1]
        with torch.inference_mode(False):
            a, b = plain_loop(module).one_step(cfg.batch_size)
        rec["steps_s"].append(b - a)
        rec["iters_s"].append(b - a)  # a plain loop has nothing between its steps (next indices are in the step)
        rec["wall_s"] += b - a
        rec["images"] += cfg.batch_size
        return a, b

    # On a GPU the plain loop runs after the fit (its memory stays out of the Lightning run's peak);
    # on a shared CPU it runs step by step alongside, so that load spikes hit both alike.
    pair = not on_gpu and not args.no_plain
    timer = make_step_timer(device, modes, paired=plain_paired if pair else None, watch=watch)
    if on_gpu:
        torch.cuda.reset_peak_memory_stats(device)
    t = time.perf_counter()
    fit_result = fit(cfg, data=data, callbacks=[timer], data_on_device=not args.host_data)
    result["lightning_fit_s"] = time.perf_counter() - t
    result["peak_memory"] = peak_memory(device)  # the Lightning run's (on a GPU: before the plain loop exists)
    module = fit_result.module
    params = sum(p.numel() for p in module.model.parameters())
    result["params"] = params
    if not pair and not args.no_plain:
        if not module.data_on_device:
            module.data = module.data.to(device)
        for mode in modes:
            plain_block(mode, module)
    result["sync_check"] = {"lightning": watch.summary(), "plain": plain_watch.summary()}

    light = {m: _summarize(timer.epochs, m) for m in dict.fromkeys(modes[1:])}
    plain = {m: _summarize(plain_records, m) for m in dict.fromkeys(modes[1:])} if plain_records else {}
    result["lightning"] = light
    result["plain"] = plain
    step_mode = "sync" if on_gpu else "events"  # the device-synchronized step timings
    lt, pt = light[step_mode], plain.get(step_mode)
    result["lightning_step_ms"] = lt["step_ms_median"]
    result["plain_step_ms"] = pt["step_ms_median"] if pt else None
    result["lightning_over_plain"] = lt["step_ms_median"] / pt["step_ms_median"] if pt else None
    result["lightning_over_plain_iter"] = lt["iter_ms_median"] / pt["iter_ms_median"] if pt and pt["iter_ms_median"] else None
    thr = light["events"]
    result["img_per_s"] = thr["img_per_s"]
    result["plain_img_per_s"] = plain["events"]["img_per_s"] if plain else None
    result["epoch_over_steps"] = thr["epoch_over_steps_median"]
    result["epoch_over_steps_max"] = thr["epoch_over_steps_max"]
    result["tflops"] = result["img_per_s"] * flop["train"] / 1e12 if result["img_per_s"] else None
    peak, peak_note = (args.peak_tflops, "--peak-tflops") if args.peak_tflops else _default_peak(device)
    result["peak_tflops"], result["peak_note"] = peak, peak_note
    result["mfu"] = result["tflops"] / peak if peak and result["tflops"] else None
    result["raw"] = {"lightning_epochs": timer.epochs, "plain_blocks": plain_records}

    # --- the per-evaluation readout (k-NN + linear probe) against an epoch of training
    result["readout"] = readout_cost(module, cfg, device, light["events"], precision)
    result["readout_over_epoch"] = result["readout"]["over_epoch"]
    result["linear_probe_over_epoch"] = result["readout"]["linear_over_epoch"]

    # --- augmentation throughput on device-resident uint8
    images = module.data.train_images.to(device)
    aug_batch = args.aug_batch or cfg.batch_size
    result["augmentation"] = augmentation_throughput(images, aug_batch, device)
    result["aug_img_per_s"] = result["augmentation"]["img_per_s"]
    del images, module, fit_result, plain_state

    # --- the fixed cost of a fresh process (warm data cache)
    if not args.no_fixed_cost:
        result["fixed_cost"] = measure_fixed_cost(args)
        result["fixed_cost_s"] = result["fixed_cost"].get("total_s")
    result["targets"] = TARGETS
    return result


# ============================================================================ output


def _fmt(value: Any, spec: str = ",.0f", unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and not math.isfinite(value):
        return "n/a"
    return f"{value:{spec}}{unit}"


def format_table(r: dict[str, Any]) -> str:
    light = r["lightning"]["events"]
    step_mode = "sync" if r["device"].startswith("cuda") else "events"
    lt = r["lightning"][step_mode]
    pt = r["plain"].get(step_mode) if r["plain"] else None
    mem = r["peak_memory"]
    mem_txt = ("n/a" if mem["bytes"] is None else
               f"{mem['bytes'] / 2**30:.2f} GiB" + (" (host peak RSS)" if mem["kind"] == "host_peak_rss" else ""))
    fc = r.get("fixed_cost") or {}
    fc_parts = ", ".join(f"{k[:-2]} {v:.1f}" for k, v in fc.items() if k.endswith("_s") and k != "total_s" and v is not None)
    sync = r["sync_check"]["lightning"]
    rows = [
        ("train img/s (Lightning, epoch wall)", _fmt(r["img_per_s"]),
         f"{light['epochs']} epochs x {r['steps_per_epoch']} steps; plain loop {_fmt(r['plain_img_per_s'])}"),
        ("step time, Lightning (median)", _fmt(lt["step_ms_median"], ".2f", " ms"),
         f"p10 {_fmt(lt['step_ms_p10'], '.2f')} / p90 {_fmt(lt['step_ms_p90'], '.2f')} ms, n={lt['steps']}, device-synced"),
        ("step time, plain PyTorch loop (median)", _fmt(pt and pt["step_ms_median"], ".2f", " ms"),
         f"p10 {_fmt(pt and pt['step_ms_p10'], '.2f')} / p90 {_fmt(pt and pt['step_ms_p90'], '.2f')} ms, n={pt and pt['steps']}"),
        ("Lightning / plain, step", _fmt(r["lightning_over_plain"], ".3f"),
         f"target <= {TARGETS['lightning_over_plain']}; start-to-start iterations: {_fmt(r['lightning_over_plain_iter'], '.3f')}"),
        ("epoch wall / sum of its steps", _fmt(r["epoch_over_steps"], ".3f"),
         f"median of {light['epochs']} epochs (max {_fmt(r['epoch_over_steps_max'], '.3f')}); target <= {TARGETS['epoch_over_steps']}"),
        ("FLOP per image (formula)", _fmt(r["flop_per_img"] / 1e9, ".4g", " GFLOP"),
         f"3x masked pass {r['flop']['masked_fwd_bwd'] / 1e9:.4g} (decoder blocks {100 * r['flop']['decoder_blocks_share_of_masked']:.1f}%)"
         f" - pixel grad + probe pass {r['flop']['probe_pass'] / 1e9:.3g}"),
        ("FLOP per image (FlopCounterMode)", _fmt(r.get("flop_per_img_counted") and r["flop_per_img_counted"] / 1e9, ".4g", " GFLOP"),
         f"formula / counted = {_fmt(r.get('flop_formula_over_counted'), '.4f')}"),
        ("achieved TFLOP/s", _fmt(r["tflops"], ".3g"), "img/s x formula FLOP"),
        ("MFU", _fmt(r["mfu"] and 100 * r["mfu"], ".1f", " %"),
         f"peak {_fmt(r['peak_tflops'], '.1f')} TFLOP/s ({r['peak_note']})"),
        ("augmentation img/s (gather + augment)", _fmt(r["aug_img_per_s"]),
         f"batch {r['augmentation']['batch']}, {r['augmentation']['ms_median']:.2f} ms/call; target >= {TARGETS['aug_img_per_s']:,.0f} on a GPU"),
        ("linear probe per evaluation / epoch", _fmt(r["linear_probe_over_epoch"] and 100 * r["linear_probe_over_epoch"], ".1f", " %"),
         f"{_fmt(r['readout']['linear_s'], '.2f')} s, {r['readout']['linear_iterations']} L-BFGS iterations, vs epoch "
         f"{_fmt(r['readout']['epoch_s'], '.1f')} s; target < 5%"),
        ("whole readout per evaluation / epoch", _fmt(r["readout_over_epoch"] and 100 * r["readout_over_epoch"], ".1f", " %"),
         f"unmasked feature pass {_fmt(r['readout']['features_s'], '.2f')} s (k-NN's, shared) + k-NN vote "
         f"{_fmt(r['readout']['knn_s'], '.2f')} s + linear probe; every knn_every epochs"),
        ("peak memory", mem_txt, "Lightning run" + (f", reserved {mem['reserved_bytes'] / 2**30:.2f} GiB" if mem.get("reserved_bytes") else "")),
        ("fixed cost: start -> 1st optimizer step", _fmt(fc.get("total_s"), ".1f", " s") if fc else "skipped",
         (fc_parts or fc.get("error", "")) + ("" if not fc else f"; target <= {TARGETS['fixed_cost_s']:.0f} s")),
        ("host syncs inside the step", "n/a" if sync["syncs"] is None else str(sync["syncs"]),
         "CPU: see tests/test_fast_path.py" if sync["syncs"] is None else f"{sync['checked_steps']} warm-up steps watched"),
    ]
    head = (f"mae_gap.bench: {r['device_name']} | torch {r['torch']} | lightning {r['lightning_version']} | "
            f"config {r['config_name']} | batch {r['batch']} | {r['precision']} | compile {r['compile']} | "
            f"data {r['data_source']} {r['train_images']}+{r['val_images']} on {'device' if r['data_on_device'] else 'host'} | "
            f"{r['params'] / 1e6:.2f} M params")
    w1 = max(len(a) for a, _, _ in rows)
    w2 = max(len(b) for _, b, _ in rows)
    lines = [head, "-" * min(len(head), 160)]
    lines += [f"{a:<{w1}}  {b:>{w2}}  {c}" for a, b, c in rows]
    return "\n".join(lines)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(obj), indent=2) + "\n")


# ============================================================================ the GPU suite


def run_gpu_suite(args: argparse.Namespace) -> int:
    """Everything the GPU check needs, in one call, within --budget-s seconds (default 450):

    1. eager: full config, batch 512, Imagenette-sized synthetic data (9,469 train / 3,925 val at
       224 px): img/s, MFU, step times, Lightning vs plain, augmentation img/s (batch 512), peak
       memory, fixed cost, host syncs in the step;
    2. the quick sweep, eager, timed end to end: 3 runs (alpha -0.5, 0, 0.5; lr 1.5e-4) x 10 epochs
       at batch 64 (k-NN every epoch, as sweeps/quick.yaml), each a fresh process (its fixed cost
       included), one after the other;
    3. --compile: the same as 1 for the Lightning run (no plain loop: one compilation per process),
       and the fixed cost of a fresh compiling process (inductor's cache then warm);
    4. if time is left: the quick sweep's 3 runs at once on the one GPU.
    Files under --out: summary.md, summary.json, eager.json, compile.json, sweep.json, log.txt.
    `--device cpu --config tiny --batch 64 --train-size 256 --val-size 64 --sweep-epochs 1` rehearses
    the whole suite on a CPU in a few minutes.
    """
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_suite = time.time()
    budget = float(args.budget_s)
    log = open(out / "log.txt", "a", buffering=1)
    os.environ.setdefault("MAE_GAP_CACHE", str(Path(os.environ.get("TMPDIR", "/tmp")) / "mae_gap_bench_cache"))
    env = _child_env()
    device = "cpu" if args.device == "cpu" else "cuda"
    n_train = args.train_size if args.train_size > 0 else IMAGENETTE_TRAIN
    n_val = args.val_size if args.val_size > 0 else IMAGENETTE_VAL
    summary: dict[str, Any] = {"budget_s": budget, "device": device, "config": args.config, "batch": args.batch,
                               "train_images": n_train, "val_images": n_val, "steps": {}}

    def say(text: str) -> None:
        print(text, flush=True)
        log.write(text + "\n")

    def left() -> float:
        return budget - (time.time() - t_suite)

    def run_child(argv: list[str], cap: float) -> tuple[int | None, str, float]:
        timeout = max(1.0, min(cap, left()))
        say(f"$ {' '.join(argv[1:])}   (timeout {timeout:.0f} s)")
        t = time.time()
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT, env=env)
            rc, text = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as e:
            partial = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            rc, text = None, f"{partial}\nTIMED OUT after {timeout:.0f} s"
        log.write(text + "\n")
        return rc, text, time.time() - t

    py = [sys.executable, "-m", "mae_gap.bench", "--device", device, "--config", args.config]
    if args.threads > 0:
        py += ["--threads", str(args.threads)]
    data_args = ["--data_dir", args.data_dir] if args.data_dir else ["--train-size", str(n_train), "--val-size", str(n_val)]
    sweep_args = ["--batch", str(args.sweep_batch), *data_args, "--set", "lr=0.00015",
                  "--set", f"epochs={args.sweep_epochs}", "--set", "knn_every=1", "--_child", "run"]
    say(f"mae_gap.bench suite: {device_name(resolve_device(device))}, torch {torch.__version__}, "
        f"budget {budget:.0f} s, out {out}")

    # 0. the data cache (decoded / generated once; every later process finds it warm)
    t = time.time()
    ns = argparse.Namespace(device=device, config=args.config, batch=args.batch, compile=False, precision="",
                            data_dir=args.data_dir, set=[], train_size=n_train, val_size=n_val)
    cfg0, _ = build_config(ns, epochs=1)
    bench_data(cfg0, n_train, n_val)
    summary["data_cache_s"] = time.time() - t
    say(f"data cache ready in {summary['data_cache_s']:.1f} s ({os.environ['MAE_GAP_CACHE']})")

    # 1. eager benchmark
    rc, text, secs = run_child(py + ["--batch", str(args.batch), *data_args, "--repeats", "3",
                                     "--json", str(out / "eager.json")], cap=200)
    say(_table_of(text))
    summary["steps"]["eager"] = {"rc": rc, "s": secs}

    # 2. quick sweep, sequential, each run a fresh process, timed end to end
    sweep: dict[str, Any] = {"runs": [], "mode": "sequential", "epochs": args.sweep_epochs, "batch": args.sweep_batch}
    t_sweep = time.time()
    for alpha in (-0.5, 0.0, 0.5):
        if left() < 30:
            sweep["incomplete"] = "budget"
            break
        t0 = time.time()
        rc, text, secs = run_child(py + sweep_args + ["--set", f"alpha={alpha}"], cap=180)
        info = _parse_child_line(text, "RUN_RESULT")
        run: dict[str, Any] = {"alpha": alpha, "rc": rc, "wall_s": secs}
        if info:
            hist = info.pop("history")
            run.update(info)
            run["fixed_cost_s"] = info["t_first_step"] - t0 if info.get("t_first_step") else None
            run["epoch_s"] = [h.get("perf/epoch_s") for h in hist]
            run["train_img_per_s"] = [h.get("perf/train_img_per_s") for h in hist]
            run["last_epoch"] = hist[-1] if hist else None
        sweep["runs"].append(run)
        say(f"quick sweep run alpha={alpha}: rc {rc}, {secs:.1f} s end to end"
            + (f", fixed cost {_fmt(run['fixed_cost_s'], '.1f')} s, median epoch {statistics.median(run['epoch_s']):.2f} s, "
               f"median train img/s {statistics.median(run['train_img_per_s']):,.0f}" if info and run["epoch_s"] else ""))
    sweep["total_s"] = time.time() - t_sweep
    write_json(out / "sweep.json", sweep)
    summary["steps"]["sweep"] = {"s": sweep["total_s"], "runs": len(sweep["runs"])}

    # 3. compiled benchmark (Lightning run only: one compilation per process)
    if left() > 90:
        rc, text, secs = run_child(py + ["--batch", str(args.batch), *data_args, "--repeats", "2", "--compile",
                                         "--no-plain", "--json", str(out / "compile.json")], cap=left() - 5)
        say(_table_of(text))
        summary["steps"]["compile"] = {"rc": rc, "s": secs}
    else:
        summary["steps"]["compile"] = {"skipped": f"{left():.0f} s left"}

    # 4. the quick sweep's runs side by side on the one GPU, if time is left
    if left() > 150:
        t0 = time.time()
        procs = [subprocess.Popen(py + sweep_args + ["--set", f"alpha={alpha}"], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT, env=env)
                 for alpha in (-0.5, 0.0, 0.5)]
        outs = []
        for proc in procs:
            try:
                outs.append(proc.communicate(timeout=max(1.0, left() - 5))[0])
            except subprocess.TimeoutExpired:
                proc.kill()
                outs.append(proc.communicate()[0] + "\nTIMED OUT")
        sweep["parallel"] = {"mode": "3 processes at once, one device", "total_s": time.time() - t0,
                             "rcs": [proc.returncode for proc in procs]}
        for text in outs:
            log.write(text + "\n")
        say(f"quick sweep, 3 runs at once: {sweep['parallel']['total_s']:.1f} s end to end, "
            f"exit codes {sweep['parallel']['rcs']}")
    else:
        sweep["parallel"] = {"skipped": f"{left():.0f} s left"}
    write_json(out / "sweep.json", sweep)

    # summary
    def load(name: str) -> dict[str, Any]:
        with contextlib.suppress(OSError, ValueError):
            return json.loads((out / name).read_text())
        return {}

    eager, comp = load("eager.json"), load("compile.json")
    lines = [f"suite: {eager.get('device_name', device)} | torch {torch.__version__} | config {args.config} | "
             f"batch {args.batch} | data {n_train}+{n_val}",
             "",
             "| run | img/s (>= 9,000) | MFU | TFLOP/s | aug img/s (>= 50,000) | peak mem | fixed cost (<= 15 s) "
             "| step ms | Lightning/plain | epoch/steps | syncs in step |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for label, r in (("eager", eager), ("compile", comp)):
        if not r:
            lines.append(f"| {label} | failed or skipped: see log.txt |  |  |  |  |  |  |  |  |  |")
            continue
        mem = (r.get("peak_memory") or {}).get("bytes")
        syncs = ((r.get("sync_check") or {}).get("lightning") or {}).get("syncs")
        lines.append(
            f"| {label} | {_fmt(r.get('img_per_s'))} | {_fmt(r.get('mfu') and 100 * r['mfu'], '.1f', ' %')} | "
            f"{_fmt(r.get('tflops'), '.3g')} | {_fmt(r.get('aug_img_per_s'))} | {_fmt(mem and mem / 2**30, '.2f', ' GiB')} | "
            f"{_fmt(r.get('fixed_cost_s'), '.1f', ' s')} | {_fmt(r.get('lightning_step_ms'), '.1f')} | "
            f"{_fmt(r.get('lightning_over_plain'), '.3f')} | {_fmt(r.get('epoch_over_steps'), '.3f')} | "
            f"{syncs if syncs is not None else 'n/a'} |")
    lines.append("")
    lines.append(f"quick sweep (3 runs x {args.sweep_epochs} epochs, batch {args.sweep_batch}, {n_train}+{n_val} images), "
                 f"one after the other, end to end: {sweep['total_s']:.1f} s" + (" (incomplete)" if sweep.get("incomplete") else ""))
    for run in sweep["runs"]:
        if run.get("epoch_s"):
            lines.append(f"  alpha {run['alpha']:+.1f}: {run['wall_s']:.1f} s, fixed cost {_fmt(run.get('fixed_cost_s'), '.1f')} s, "
                         f"median epoch {statistics.median(run['epoch_s']):.2f} s, median train img/s "
                         f"{statistics.median(run['train_img_per_s']):,.0f}")
        else:
            lines.append(f"  alpha {run['alpha']:+.1f}: failed (rc {run['rc']}), see log.txt")
    if "total_s" in sweep["parallel"]:
        lines.append(f"  the same 3 runs at once on the device: {sweep['parallel']['total_s']:.1f} s")
    summary["suite_s"] = time.time() - t_suite
    lines.append(f"\nsuite wall time {summary['suite_s']:.0f} s (budget {budget:.0f} s)")
    text = "\n".join(lines)
    (out / "summary.md").write_text(text + "\n")
    summary.update({"eager": {k: eager.get(k) for k in _SUMMARY_KEYS}, "compile": {k: comp.get(k) for k in _SUMMARY_KEYS},
                    "sweep": {k: sweep.get(k) for k in ("total_s", "incomplete", "parallel", "epochs", "batch")}})
    write_json(out / "summary.json", summary)
    say("\n" + text)
    log.close()
    return 0 if eager and sweep["runs"] and all(r.get("rc") == 0 for r in sweep["runs"]) else 1


def _table_of(text: str) -> str:
    """The printed table of a bench child (from its header line on), else the end of its output."""
    lines = text.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("mae_gap.bench: ") and " | torch " in lines[i]:
            return "\n".join(lines[i : i + 20])
    return "\n".join(lines[-15:])


_SUMMARY_KEYS = ("device_name", "img_per_s", "plain_img_per_s", "mfu", "tflops", "peak_tflops", "flop_per_img",
                 "flop_per_img_counted", "aug_img_per_s", "peak_memory", "fixed_cost_s", "fixed_cost",
                 "lightning_step_ms", "plain_step_ms", "lightning_over_plain", "epoch_over_steps", "sync_check")


# ============================================================================ command line


def parse_cli(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m mae_gap.bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    p.add_argument("--config", default="full", choices=("full", "tiny"), help="model size preset (mae_gap.config.PRESETS)")
    p.add_argument("--batch", type=int, default=0, help="training batch (default: 512 on a GPU, the preset's batch_size on a CPU)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (Lightning run and plain loop)")
    p.add_argument("--steps", type=int, default=0, help="steps per epoch = timed steps per repeat (default: 30); "
                   "synthetic data gets batch x steps training images")
    p.add_argument("--repeats", type=int, default=0, help="timed epochs after one warm-up epoch (default: 3 on a GPU, 2 on a CPU)")
    p.add_argument("--threads", type=int, default=-1,
                   help="torch.set_num_threads (default on a CPU: 1, since on a shared machine intra-op threads that "
                        "wait on each other turn other jobs' load into 3-10x step-time noise; 0 keeps torch's own)")
    p.add_argument("--train-size", type=int, default=0, help="synthetic training images (overrides batch x steps)")
    p.add_argument("--val-size", type=int, default=0, help="synthetic validation images (default: max(batch, 256))")
    p.add_argument("--data_dir", "--data-dir", default="", help="benchmark on a real fast.ai-layout folder (decoded once, cached)")
    p.add_argument("--precision", default="", choices=("", "32", "bf16-mixed", "16-mixed"),
                   help="default: the training default (bf16-mixed on a GPU, 32 on a CPU)")
    p.add_argument("--peak-tflops", type=float, default=None, help="peak TFLOP/s for the MFU (default: bf16 dense peak by device name)")
    p.add_argument("--aug-batch", type=int, default=0, help="batch of the augmentation timing (default: --batch)")
    p.add_argument("--flop-batch", type=int, default=4, help="batch of the FlopCounterMode step")
    p.add_argument("--host-data", action="store_true", help="keep the training images on the host (reference data path)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any TrainConfig field")
    p.add_argument("--no-plain", action="store_true", help="skip the plain PyTorch loop")
    p.add_argument("--no-fixed-cost", action="store_true", help="skip the fresh-process fixed-cost measurement")
    p.add_argument("--no-flop-count", action="store_true", help="skip the FlopCounterMode cross-check")
    p.add_argument("--json", default="", metavar="PATH", help="write every number (and the raw timings) as JSON")
    p.add_argument("--suite", default="", choices=("", "gpu"), help="gpu: the whole GPU check (see run_gpu_suite)")
    p.add_argument("--out", default="", help="--suite: folder for its files")
    p.add_argument("--budget-s", type=float, default=450.0, help="--suite: wall-clock budget in seconds")
    p.add_argument("--sweep-epochs", type=int, default=10, help="--suite: epochs of each quick-sweep run")
    p.add_argument("--sweep-batch", type=int, default=64, help="--suite: batch of the quick-sweep runs")
    p.add_argument("--_child", default="", help=argparse.SUPPRESS)
    p.add_argument("--_t0", type=float, default=0.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    gpu = resolve_device(args.device).type == "cuda" if not args.suite else args.device != "cpu"
    if args.batch <= 0:
        args.batch = 512 if gpu else preset(args.config).batch_size
    if args.steps <= 0:
        args.steps = 30
    if args.repeats <= 0:
        args.repeats = 3 if gpu else 2
    if args.threads < 0:
        args.threads = 1 if not gpu and not args.suite else 0
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.suite and not args.out:
        p.error("--suite needs --out DIR")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_cli(argv)
    if args._child == "fixed_cost":
        _child_fixed_cost(args)
        return 1
    if args._child == "run":
        _child_run(args)
        return 0
    if args.suite == "gpu":
        if args.device != "cpu" and not torch.cuda.is_available():
            raise SystemExit("mae_gap.bench: --suite gpu needs a CUDA device (--device cpu only rehearses it)")
        return run_gpu_suite(args)
    result = run_benchmark(args)
    print(format_table(result), flush=True)
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
