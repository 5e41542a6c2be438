"""The two ways the bench reads time (device-synchronized host stamps, or CUDA events that never
stall the host), host-sync detection, and the medians the table reports: timing code shared by the
Lightning run, the plain loop and the readout, so that all of them are measured alike."""

from __future__ import annotations

import contextlib
import math
import statistics
import time
import warnings
from typing import Any, Sequence

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
