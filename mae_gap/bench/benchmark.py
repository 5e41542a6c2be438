"""One benchmark of the real training path (the package docstring says what each figure means), as
named steps: the run's config, device and data; the FLOP figures; the Lightning run beside its two
references (a plain PyTorch loop, and the classic host data path); the step figures; readout,
augmentation and peak memory; the fixed cost of a fresh process. So each number's provenance reads
in one place."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from ..config import ConfigError, TrainConfig, parse_key_value, preset
from ..data import DataSplits, augment, check_source, load_data, synthetic_splits
from ..data.decode_cache import cache_root, cached
from ..knn import knn_accuracy
from ..linear_probe import linear_probe
from ..model import MaskedAutoencoder, param_groups
from ..module import (EpochShuffle, FiniteLossWatch, FitResult, MAEGapModule, build_trainer, fit, lr_schedule,
                      quiet_lightning, resolve_precision)
from ..readout import pooled_features
from .flops import counted_flops_per_image, flop_breakdown
from .timing import Clock, FirstStep, StepTimer, SyncWatch, autocast, summarize, sync, timing_record

# Targets of SPEC section 9 (reported next to the numbers, never asserted).
TARGETS = {
    "img_per_s": 9000.0,  # full config, batch 512, one H100
    "aug_img_per_s": 50000.0,
    "fixed_cost_s": 15.0,
    "lightning_over_plain": 1.05,
    "epoch_over_steps": 1.10,
}

# Dense bf16 tensor-core peaks (TFLOP/s) from NVIDIA's data sheets, matched against the device
# name in this order. The MFU uses these unless --peak-tflops is given.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("B200", 2250.0),
    ("H200", 989.4),
    ("H100 PCIe", 756.0),
    ("H100", 989.4),  # SXM / HBM3
    ("A100", 312.0),
)

# Imagenette 2 (fast.ai): 9,469 train / 3,925 val images; the GPU suite's synthetic data has its shape.
IMAGENETTE_TRAIN, IMAGENETTE_VAL = 9469, 3925

REPO_ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------- the run's config, device, data


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("mae_gap.bench: --device cuda, but torch sees no CUDA device")
    return torch.device(name)


def build_config(args: argparse.Namespace, epochs: int | None) -> tuple[TrainConfig, torch.device]:
    """The TrainConfig of the benchmarked run: the preset, the bench's options, then --set key=value.
    The parent, its children and the suite all build it here, so every process trains the same thing."""
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


def bench_data(cfg: TrainConfig, n_train: int, n_val: int) -> DataSplits:
    """The benchmark's data, as training gets it: real data through load_data (`--data_dir`), or
    synthetic uint8 images of n_train / n_val (seed 0), decoded once and cached on disk through the
    same cache code as every source (so a fresh process finds a warm cache, like a sweep run)."""
    if cfg.source != "synthetic":
        check_source(cfg)
        return load_data(cfg)
    path = cache_root(cfg) / f"bench-synthetic-{cfg.img_size}px-{n_train}+{n_val}-c{cfg.num_classes}.pt"
    return cached(path, lambda: synthetic_splits(cfg.img_size, n_train, n_val, cfg.num_classes, seed=0))


# ---------------------------------------------------------------------- reference 1: the host data path


class HostGather:
    """collate_fn of the host data path: a list of indices -> (uint8 images, labels) gathered on the host."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __call__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(indices)
        return self.images[idx], self.labels[idx]


class HostDataModule(MAEGapModule):
    """MAEGapModule with the training images on the host, gathered by the loader and copied over by
    Lightning (the classic data path); validation data still moves to the device."""

    def on_fit_start(self) -> None:
        self.data = dataclasses.replace(self.data, val_images=self.data.val_images.to(self.device),
                                        val_labels=self.data.val_labels.to(self.device))
        self.make_val_noise()

    def train_dataloader(self) -> DataLoader:
        n = self.data.train_labels.shape[0]
        return DataLoader(range(n), batch_size=self.cfg.batch_size, sampler=EpochShuffle(n, self.cfg.seed),
                          drop_last=n >= self.cfg.batch_size, num_workers=0,
                          collate_fn=HostGather(self.data.train_images, self.data.train_labels),
                          pin_memory=self.device.type == "cuda")  # pinned batches: asynchronous copies

    def gather(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = batch  # already gathered on the host and copied over by Lightning
        return images, labels


def fit_host_data(cfg: TrainConfig, data: DataSplits, callbacks: Sequence[pl.Callback] = ()) -> FitResult:
    """What `fit(cfg, data=data)` does, with the training images on the host (HostDataModule): the
    same seed, Trainer and callbacks."""
    pl.seed_everything(cfg.seed, workers=False, verbose=False)
    module = HostDataModule(cfg, data)
    with quiet_lightning():
        trainer = build_trainer(cfg, callbacks=[FiniteLossWatch(), *callbacks])
        trainer.fit(module)
    return FitResult(module.history, module, trainer, data.fingerprint)


# ---------------------------------------------------------------------- reference 2: the plain PyTorch loop


class PlainLoop:
    """Lightning's overhead is measured against this loop, not assumed, so it does exactly the work of
    MAEGapModule's step and nothing else: the same model, data, optimizer, LR schedule and precision,
    gather -> augment -> forward -> backward -> AdamW -> LR scheduler, no Lightning."""

    def __init__(self, cfg: TrainConfig, images: torch.Tensor, labels: torch.Tensor, device: torch.device,
                 precision: str, total_steps: int):
        self.cfg, self.device, self.precision = cfg, device, precision
        self.images, self.labels = images, labels  # already on the device (shared with the Lightning run)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(cfg.seed)
            self.model = MaskedAutoencoder(cfg).to(device).train()
        self.forward = torch.compile(self.model) if cfg.compile else self.model
        self.opt = torch.optim.AdamW(param_groups(self.model, cfg), lr=cfg.effective_lr, betas=(cfg.beta1, cfg.beta2),
                                     fused=device.type == "cuda")
        self.sched = lr_schedule(self.opt, cfg, total_steps)  # warmup_epochs, then cosine: the module's own
        self.scaler = torch.amp.GradScaler(device.type) if precision == "16-mixed" else None
        self.gen = torch.Generator(device).manual_seed(cfg.seed + 12345)
        self._order, self._pos = None, labels.shape[0]
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # as build_trainer sets it on a GPU

    def step(self, idx: torch.Tensor) -> torch.Tensor:
        images, labels = self.images[idx], self.labels[idx]
        with autocast(self.device, self.precision):
            imgs = augment(images, generator=self.gen)
            noise = torch.rand(idx.shape[0], self.cfg.num_patches, device=self.device, generator=self.gen)
            out = self.forward(imgs, labels, noise=noise)
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
        if self._pos + batch > n:
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
        return timing_record(clock, t0, starts, ends, steps * batch)

    def one_step(self, batch: int) -> tuple[float, float]:
        """One synchronized step -> (start, end) perf_counter stamps (the CPU's paired timing)."""
        sync(self.device)
        t0 = time.perf_counter()
        self.step(self.next_batch(batch))
        sync(self.device)
        return t0, time.perf_counter()


class PlainRuns:
    """The plain loop's timing records of one benchmark, one per mode's epoch: whole blocks after the
    Lightning run (a GPU) or one step after each Lightning step (`paired`, the CPU). The loop itself
    is built on first use, from the data the Lightning module holds on the device."""

    def __init__(self, cfg: TrainConfig, device: torch.device, precision: str, steps_per_epoch: int, epochs: int):
        self.cfg, self.device, self.precision = cfg, device, precision
        self.steps_per_epoch, self.total_steps = steps_per_epoch, epochs * steps_per_epoch
        self.records: list[dict[str, Any]] = []
        self.watch = SyncWatch(device)
        self.loop: PlainLoop | None = None

    def loop_for(self, module: MAEGapModule) -> PlainLoop:
        if self.loop is None:
            self.loop = PlainLoop(self.cfg, module.data.train_images, module.data.train_labels, self.device,
                                  self.precision, self.total_steps)
        return self.loop

    def block(self, mode: str, module: MAEGapModule) -> None:
        """An epoch's worth of plain steps, timed in `mode` (host syncs watched in warm-up)."""
        with torch.enable_grad(), torch.inference_mode(False):
            rec = self.loop_for(module).run_block(self.steps_per_epoch, self.cfg.batch_size, sync=mode != "events",
                                                  watch=self.watch if mode == "warmup" else None)
        rec["mode"] = mode
        self.records.append(rec)

    def paired(self, mode: str, module: MAEGapModule) -> tuple[float, float]:
        """One plain step, timed on the host clock, appended to the current mode's record."""
        if not self.records or self.records[-1]["mode"] != mode:
            self.records.append({"mode": mode, "steps_s": [], "iters_s": [], "wall_s": 0.0, "images": 0})
        rec = self.records[-1]
        with torch.inference_mode(False):
            a, b = self.loop_for(module).one_step(self.cfg.batch_size)
        rec["steps_s"].append(b - a)
        rec["iters_s"].append(b - a)  # a plain loop has nothing between its steps (next indices are in the step)
        rec["wall_s"] += b - a
        rec["images"] += self.cfg.batch_size
        return a, b


# ---------------------------------------------------------------------- costs beside the step


def augmentation_throughput(images: torch.Tensor, batch: int, device: torch.device, reps: int = 20) -> dict[str, Any]:
    """Gather + `augment` of device-resident uint8 batches (what a training step does before the
    model), each call device-synchronized; median call time -> img/s."""
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


def readout_cost(module: MAEGapModule, cfg: TrainConfig, device: torch.device, epochs: dict[str, Any],
                 precision: str) -> dict[str, Any]:
    """Seconds of one evaluation's frozen-feature readout (SPEC §4: val/knn_acc + val/linear_acc):
    the unmasked feature pass over train + val (k-NN's, which the linear probe shares), the k-NN vote
    and the linear probe's fits, each and together over the wall time of a training epoch (the
    linear probe's own share has a target: under 5%)."""
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


# ---------------------------------------------------------------------- the fixed cost of a fresh process


def child_argv(args: argparse.Namespace, extra: Sequence[str]) -> list[str]:
    """A `python -m mae_gap.bench` command line with the parent's run options and `extra`."""
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


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def parse_child_line(stdout: str, tag: str) -> dict[str, Any] | None:
    """The JSON a child printed after `tag ` (its last such line), else None."""
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
        proc = subprocess.run(child_argv(args, ["--_child", "fixed_cost", "--_t0", repr(t0)]),
                              capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT, env=child_env())
    except subprocess.TimeoutExpired:
        return {"total_s": None, "error": f"timed out after {timeout:.0f} s"}
    info = parse_child_line(proc.stdout, "FIXED_COST")
    if info is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"total_s": None, "error": f"child exited {proc.returncode}: {' | '.join(tail)}"}
    return info


def child_fixed_cost(args: argparse.Namespace, t_main: float) -> None:
    """The fixed-cost child: stamps each start-up phase, then fit() up to its first optimizer step.
    `t_main` is when the command line started (its module imports only the standard library), so
    "interpreter" is the interpreter's own start-up and "imports" is torch, Lightning, timm, mae_gap."""
    stamps = {"interpreter": t_main, "imports": time.time()}
    cfg, device = build_config(args, epochs=1)
    data = bench_data(cfg, args.train_size, args.val_size)
    stamps["data"] = time.time()  # warm cache: memory-mapped, not decoded
    fit(cfg, data=data, callbacks=[FirstStep(device, stamps, args._t0, cfg.compile)])
    raise SystemExit("mae_gap.bench: the fixed-cost child never reached an optimizer step")


# ---------------------------------------------------------------------- the benchmark


def timing_modes(on_gpu: bool, repeats: int) -> list[str]:
    """Epoch 0 warms up; then `repeats` epochs without host syncs (throughput; CUDA events on a GPU)
    and, on a GPU, `repeats` device-synchronized ones (step medians). On a CPU a sync is a no-op."""
    return ["warmup"] + ["events"] * repeats + (["sync"] * repeats if on_gpu else [])


def _setup(args: argparse.Namespace, modes: list[str]) -> tuple[TrainConfig, torch.device, str, DataSplits, dict[str, Any]]:
    """The config, device, precision and data of the run, and the result's descriptive header."""
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


def lightning_run(args: argparse.Namespace, cfg: TrainConfig, device: torch.device, modes: list[str],
                  data: DataSplits, plain: PlainRuns) -> tuple[FitResult, StepTimer, SyncWatch, dict[str, Any]]:
    """The real fit() under a StepTimer (`--host-data`: its host data twin). On a GPU the plain loop
    runs after the fit (its memory stays out of the Lightning run's peak); on a shared CPU it runs
    step by step alongside, so that load spikes hit both alike."""
    on_gpu = device.type == "cuda"
    pair = not on_gpu and not args.no_plain
    watch = SyncWatch(device)
    timer = StepTimer(device, modes, paired=plain.paired if pair else None, watch=watch)
    if on_gpu:
        torch.cuda.reset_peak_memory_stats(device)
    t = time.perf_counter()
    fit_result = (fit_host_data if args.host_data else fit)(cfg, data=data, callbacks=[timer])
    out = {"lightning_fit_s": time.perf_counter() - t,
           "peak_memory": peak_memory(device),  # the Lightning run's (on a GPU: before the plain loop exists)
           "params": sum(p.numel() for p in fit_result.module.model.parameters())}
    if not pair and not args.no_plain:
        module = fit_result.module
        if args.host_data:
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


def readout_and_augmentation(args: argparse.Namespace, module: MAEGapModule, cfg: TrainConfig, device: torch.device,
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
