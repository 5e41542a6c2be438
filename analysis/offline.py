"""Offline W&B runs (`wandb.init(mode="offline")`, `python -m agent.local`) -> the tidy table.

    table = load_offline("wandb/")                 # same tidy table as pulling the runs from W&B
    result = load_offline_runs("wandb/")           # the table plus the runs, states, sweep id

The files are read by `analysis.offline_runs` (pandas-free: folders, records, states, resumed
runs merged); this module builds the tidy table on top. The reader's names stay importable
from here.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from analysis import ANALYSIS_JOB_TYPE
from analysis.offline_runs import (
    find_offline_run_files,
    iter_wandb_records,
    offline_state,
    offline_wandb_state,
    read_offline_history,
    read_offline_run,
    read_offline_sweep,
    run_folders,
)
from analysis.runs import PullResult
from analysis.tidy import tidy_table

__all__ = [
    "ANALYSIS_JOB_TYPE",
    "find_offline_run_files",
    "iter_wandb_records",
    "load_offline",
    "load_offline_runs",
    "offline_state",
    "offline_wandb_state",
    "read_offline_history",
    "read_offline_run",
    "run_folders",
]


def load_offline_runs(root: str | Path, sweep: str | None = None) -> PullResult:
    """All offline runs under `root` as a PullResult (table, runs, sweep id), source "offline".

    Runs, their order, the sweep filter and the errors (PullError, one line): see
    `analysis.offline_runs.read_offline_sweep`.
    """
    t0 = time.monotonic()
    runs, histories, sweep_id = read_offline_sweep(root, sweep)
    table, dups, ignored = tidy_table(runs, histories)
    return PullResult(
        table, runs, sweep_id, "offline", seconds=time.monotonic() - t0, duplicate_epochs=dups,
        ignored_rows=ignored, requests_made=False,
    )


def load_offline(root: str | Path, sweep: str | None = None) -> pd.DataFrame:
    """The tidy table of the offline runs under `root` (see `load_offline_runs`)."""
    return load_offline_runs(root, sweep).table
