"""The tidy table (SPEC section 8.2, `analysis.TIDY_COLUMNS`): one row per run and epoch, built
from runs (`RunInfo`) and their history rows, the same from the W&B API, its cache or offline files.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from analysis import (
    ALPHA,
    ALPHA_MODE,
    EPOCH,
    LR,
    METRIC_COLUMNS,
    RUN_ID,
    RUN_NAME,
    SEED,
    STATE,
    STEPS,
    TIDY_COLUMNS,
    TIDY_DTYPES,
)
from analysis.runs import RunInfo
from mae_gap.config import effective_alpha_mode


def as_float(value: Any) -> float:
    """A history/summary value as a float: numbers, bools, W&B's "NaN"/"Infinity" strings;
    anything else (None, media, text) is NaN."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)  # "NaN", "Infinity", "-Infinity", "1e-3"
        except ValueError:
            return math.nan
    return math.nan


def config_value(config: Mapping[str, Any], key: str) -> Any:
    """`config[key]`, unwrapped from the server's {"value": v, "desc": ...} form."""
    value = config.get(key)
    if isinstance(value, Mapping) and "value" in value:  # the server's {"value": v, "desc": ...}
        value = value["value"]
    return value


def numeric_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, float]]:
    """History rows reduced to their numeric values (what the cache stores): numbers, bools and
    W&B's "NaN"/"Infinity" strings; media, text and None are left out."""
    out = []
    for row in rows:
        clean = {}
        for k, v in row.items():
            if isinstance(v, (bool, int, float, np.integer, np.floating)):
                clean[str(k)] = float(v)
            elif isinstance(v, str) and v.strip().lstrip("+-").lower() in ("nan", "inf", "infinity"):
                clean[str(k)] = float(v.replace("Infinity", "inf"))
        out.append(clean)
    return out


def tidy_table(
    runs: Sequence[RunInfo], histories: Mapping[str, Sequence[Mapping[str, Any]]]
) -> tuple[pd.DataFrame, dict[str, int], int]:
    """The tidy table (one row per run and epoch, `analysis.TIDY_COLUMNS`) of runs + histories.

    Rows are matched on their `epoch` value (W&B's `_step` is not used: a resumed offline run
    restarts it). When an epoch appears in several rows (a resumed run re-logged it, or a
    logger split it), they are merged keeping, per column, the **last** non-missing value.
    Metric keys a row lacks are NaN. Rows without a finite epoch are ignored.

    Returns (table, {run id: number of epochs logged more than once}, rows ignored).
    Runs keep the order of `runs`; epochs are ascending.
    """
    records: list[dict[str, Any]] = []
    ignored = 0
    for run in runs:
        for row in histories.get(run.run_id) or ():
            epoch = as_float(row.get(EPOCH))
            if not math.isfinite(epoch):
                ignored += 1
                continue
            rec = {RUN_ID: run.run_id, EPOCH: int(round(epoch))}
            for key in METRIC_COLUMNS:
                rec[key] = as_float(row.get(key))
            records.append(rec)
    frame = pd.DataFrame.from_records(records, columns=[RUN_ID, EPOCH, *METRIC_COLUMNS])
    counts = frame.groupby([RUN_ID, EPOCH], sort=False).size() if len(frame) else pd.Series(dtype=int)
    dup = counts[counts > 1]
    duplicates = {str(r): int(n) for r, n in dup.groupby(level=0).size().items()} if len(dup) else {}
    if len(frame):
        frame = frame.groupby([RUN_ID, EPOCH], sort=False, as_index=False).last()

    info = {r.run_id: {RUN_NAME: r.run_name, **run_columns(r.config), STATE: r.state} for r in runs}
    order = {r.run_id: i for i, r in enumerate(runs)}
    for col in (RUN_NAME, ALPHA, ALPHA_MODE, LR, SEED, STEPS, STATE):
        frame[col] = [info[r][col] for r in frame[RUN_ID]] if len(frame) else pd.Series(dtype=object)
    if len(frame):
        frame["_order"] = frame[RUN_ID].map(order)
        frame = frame.sort_values(["_order", EPOCH], kind="stable").drop(columns="_order")
    frame = frame[list(TIDY_COLUMNS)].reset_index(drop=True)
    return frame.astype(TIDY_DTYPES), duplicates, ignored


def run_columns(config: Mapping[str, Any]) -> dict[str, Any]:
    """The per-run columns a run's config gives: alpha, the mode that ran (confusion at alpha >= 0
    is grl), the lr used (`effective_lr` when the run logged it: blr applied), seed, total steps."""
    alpha = as_float(config_value(config, ALPHA))
    mode = config_value(config, ALPHA_MODE)
    mode = str(mode) if mode not in (None, "") else "grl"  # runs from before alpha_mode existed ran grl
    lr = as_float(config_value(config, "effective_lr"))
    steps = as_float(config_value(config, STEPS))
    return {
        ALPHA: alpha,
        ALPHA_MODE: effective_alpha_mode(alpha, mode) if math.isfinite(alpha) else mode,
        LR: lr if math.isfinite(lr) else as_float(config_value(config, LR)),
        SEED: _seed(config_value(config, SEED)),
        STEPS: int(steps) if math.isfinite(steps) else -1,
    }


def _seed(value: Any) -> int:
    """Config seed as an int; -1 when the run's config has none."""
    x = as_float(value)
    return int(x) if math.isfinite(x) else -1

