"""The Callback that notes a run's first optimizer step: the end of its fixed cost. Its own module
(importing Lightning) so that fixed_cost.py can stay light until the child has stamped its start."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import pytorch_lightning as pl
import torch

from .timing import sync


def fixed_cost_info(stamps: dict[str, float], t0: float, compile_: bool) -> dict[str, Any]:
    """Seconds of each start-up phase (each stamp minus the one before; the first minus t0)."""
    names = list(stamps)
    parts = {f"{b}_s": stamps[b] - (stamps[a] if i else t0) for i, (a, b) in enumerate(zip([None, *names], names))}
    return {"total_s": stamps["first_step"] - t0, **parts, "compile": compile_}


class FirstStep(pl.Callback):
    """Records the time of the first optimizer step (`t_first_step`). With `stamps` (the fixed-cost
    child) it also stamps the model-and-trainer phase, prints the FIXED_COST breakdown at the first
    step and ends the process there: nothing else is measured."""

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
