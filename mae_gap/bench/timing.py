"""How the bench reads time: device-synchronized host stamps or CUDA events that never stall the
host (Clock), host-sync detection (SyncWatch), the Callbacks that time the real Lightning run
(StepTimer, FirstStep), and the medians the table reports. The Lightning run, the plain loop and
the readout are all timed by this code, so that they are measured alike."""

from __future__ import annotations

import contextlib
import json
import math
import os
import statistics
import sys
import time
import warnings
from typing import Any, Callable, Sequence

import pytorch_lightning as pl
import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, precision: str):
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
        sync(self.device)
        return time.perf_counter()

    def seconds(self, a, b) -> float:
        """b - a in seconds; call after the last mark (events need their work done)."""
        if self.events:
            return a.elapsed_time(b) / 1e3
        return b - a


def timing_record(clock: Clock, t0, starts: list, ends: list, images: int) -> dict[str, Any]:
    """One epoch's (or plain block's) step and start-to-start times, wall time and image count."""
    sync(clock.device)
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


def finite_median(values: Sequence[float | None]) -> float | None:
    """The median of the finite values (None and NaN skipped), None when there are none."""
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(kept) if kept else None


def median_ms(values: Sequence[float]) -> float | None:
    return 1e3 * statistics.median(values) if values else None


def pct_ms(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return 1e3 * s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]


def summarize(records: list[dict[str, Any]], mode: str) -> dict[str, Any]:
    """The table's figures over the records (epochs or plain blocks) of one timing mode."""
    chosen = [r for r in records if r["mode"] == mode]
    steps = [s for r in chosen for s in r["steps_s"]]
    iters = [s for r in chosen for s in r["iters_s"]]
    images = sum(r["images"] for r in chosen)
    wall = sum(r["wall_s"] for r in chosen)
    ratios = [r["wall_s"] / sum(r["steps_s"]) for r in chosen if r["steps_s"]]
    return {
        "mode": mode, "epochs": len(chosen), "steps": len(steps),
        "step_ms_median": median_ms(steps), "step_ms_p10": pct_ms(steps, 0.1), "step_ms_p90": pct_ms(steps, 0.9),
        "iter_ms_median": median_ms(iters),
        "img_per_s": images / wall if wall > 0 else None,
        "epoch_over_steps_median": statistics.median(ratios) if ratios else None,
        "epoch_over_steps_max": max(ratios) if ratios else None,
    }


# ---------------------------------------------------------------------- Callbacks on the real fit()


class StepTimer(pl.Callback):
    """A Callback timing every training step of the real Lightning run (the numbers are those of
    `fit()` itself, not of a re-implementation).

    modes[e] for epoch e: 'warmup' (timed but not reported; host syncs are watched there),
    'events' (no host sync inside the epoch: CUDA events on a GPU, perf_counter on a CPU) or
    'sync' (device-synchronized host timestamps at every batch boundary).
    A step is on_train_batch_start -> on_train_batch_end (training_step, backward, optimizer and
    scheduler steps, the module's own hooks); the epoch is on_train_epoch_start -> the end of its
    last batch.

    `paired(mode, module) -> (start, end)` (the CPU): one plain-loop step right after each Lightning
    step, outside the Lightning step's own timing, so that both see the same machine load step by
    step. Its exact duration is taken out of the epoch's wall time and of the start-to-start
    iteration times, which then hold Lightning's loop alone.
    """

    def __init__(self, device: torch.device, modes: Sequence[str], paired: Callable | None = None,
                 watch: SyncWatch | None = None):
        self.device, self.modes, self.paired, self.watch = device, list(modes), paired, watch
        self.epochs: list[dict[str, Any]] = []

    def _watching(self, batch_idx: int) -> bool:
        return self.watch is not None and self.mode == "warmup" and batch_idx >= 2

    def on_train_epoch_start(self, trainer, pl_module):
        self.mode = self.modes[min(trainer.current_epoch, len(self.modes) - 1)]
        self.clock = Clock(self.device, sync=self.mode != "events")
        self.starts, self.ends, self.images, self.excluded = [], [], 0, []
        self.t0 = self.clock.mark()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.starts.append(self.clock.mark())
        if self._watching(batch_idx):
            self.watch.start()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self._watching(batch_idx):
            self.watch.stop()
        self.ends.append(self.clock.mark())
        self.images += (batch[1] if isinstance(batch, (tuple, list)) else batch).shape[0]
        if self.paired is not None:
            with torch.enable_grad():
                a, b = self.paired(self.mode, pl_module)
            self.excluded.append(b - a)

    def on_train_epoch_end(self, trainer, pl_module):
        record = timing_record(self.clock, self.t0, self.starts, self.ends, self.images)
        if self.excluded:  # host-clock epochs only (the CPU): take the paired plain steps out
            record["wall_s"] -= sum(self.excluded[: len(self.ends) - 1])
            record["iters_s"] = [t - x for t, x in zip(record["iters_s"], self.excluded)]
        record["mode"] = self.mode
        self.epochs.append(record)


def fixed_cost_info(stamps: dict[str, float], t0: float, compile_: bool) -> dict[str, Any]:
    """Seconds of each start-up phase (each stamp minus the one before; the first minus t0)."""
    names = list(stamps)
    parts = {f"{b}_s": stamps[b] - (stamps[a] if i else t0) for i, (a, b) in enumerate(zip([None, *names], names))}
    return {"total_s": stamps["first_step"] - t0, **parts, "compile": compile_}


class FirstStep(pl.Callback):
    """Records the time of the first optimizer step (`t_first_step`): the end of a run's fixed cost.
    With `stamps` (the fixed-cost child) it also stamps the model-and-trainer phase, prints the
    FIXED_COST breakdown at the first step and ends the process there: nothing else is measured."""

    def __init__(self, device: torch.device, stamps: dict[str, float] | None = None, t0: float = 0.0,
                 compile_: bool = False):
        self.device, self.stamps, self.t0, self.compile = device, stamps, t0, compile_
        self.t_first_step: float | None = None

    def on_fit_start(self, trainer, pl_module):
        if self.stamps is not None:
            self.stamps["model_and_trainer"] = time.time()  # model built, Trainer set up; data not yet on the device

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.t_first_step is not None:
            return
        sync(self.device)
        self.t_first_step = time.time()
        if self.stamps is not None:
            self.stamps["first_step"] = self.t_first_step
            print("FIXED_COST " + json.dumps(fixed_cost_info(self.stamps, self.t0, self.compile)), flush=True)
            sys.stderr.flush()
            os._exit(0)  # skip the rest of the run and the teardown
