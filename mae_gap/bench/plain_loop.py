"""The plain PyTorch reference loop: Lightning's overhead is measured against it, not assumed, so
it must do exactly the work of MAEGapModule's step (same model, data, optimizer, LR schedule and
precision) and nothing else."""

from __future__ import annotations

import time
from typing import Any

import torch

from ..config import TrainConfig
from .timing import Clock, SyncWatch, autocast, sync, timing_record


class PlainLoop:
    """The reference: the same model, data, optimizer, schedule and precision as MAEGapModule's step,
    with no Lightning: gather -> augment -> forward -> backward -> AdamW -> LR scheduler."""

    def __init__(self, cfg: TrainConfig, images: torch.Tensor, labels: torch.Tensor, device: torch.device,
                 precision: str, total_steps: int):
        from ..data import augment
        from ..model import MaskedAutoencoder, param_groups
        from ..module import lr_schedule

        self.cfg, self.device, self.precision = cfg, device, precision
        self.images, self.labels = images, labels  # already on the device (shared with the Lightning run)
        self._augment = augment
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
        cfg = self.cfg
        images, labels = self.images[idx], self.labels[idx]
        with autocast(self.device, self.precision):
            imgs = self._augment(images, generator=self.gen)
            noise = torch.rand(idx.shape[0], cfg.num_patches, device=self.device, generator=self.gen)
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

    def loop_for(self, module) -> PlainLoop:
        if self.loop is None:
            self.loop = PlainLoop(self.cfg, module.data.train_images, module.data.train_labels, self.device,
                                  self.precision, self.total_steps)
        return self.loop

    def block(self, mode: str, module) -> None:
        """An epoch's worth of plain steps, timed in `mode` (host syncs watched in warm-up)."""
        with torch.enable_grad(), torch.inference_mode(False):
            rec = self.loop_for(module).run_block(self.steps_per_epoch, self.cfg.batch_size, sync=mode != "events",
                                                  watch=self.watch if mode == "warmup" else None)
        rec["mode"] = mode
        self.records.append(rec)

    def paired(self, mode: str, module) -> tuple[float, float]:
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
