"""Times every step of the real Lightning run from a Callback, so that the numbers are those of
`fit()` itself and not of a re-implementation."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import pytorch_lightning as pl
import torch

from .timing import Clock, SyncWatch, timing_record


class StepTimer(pl.Callback):
    """A Callback timing every training step of the real Lightning run.

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
