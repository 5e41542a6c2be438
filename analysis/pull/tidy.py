"""The tidy table (SPEC section 8.2, `analysis.TIDY_COLUMNS`): one row per run and epoch, built
from runs (`RunInfo`) and their history rows, the same from the W&B API, its cache or offline files.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis import ALPHA, ALPHA_MODE, LR, METRIC_COLUMNS, RUN_ID, RUN_NAME, SEED, STATE, STEPS, TIDY_COLUMNS, TIDY_DTYPES
from mae_gap.metrics import EPOCH
from analysis.pull.runs import RunInfo
from mae_gap.alpha import AlphaPolicy
from mae_gap.config import TrainConfig

# TrainConfig fields that are a condition's parameters when a sweep varies them: every field but
# those the tidy table already has (alpha, alpha_mode, lr with blr applied, seed) and those that
# do not change what is trained (where files go, logging, the machine's accelerator).
NOT_PARAMETERS = frozenset({ALPHA, ALPHA_MODE, LR, "blr", SEED, "data_dir", "cache_dir", "ckpt_dir", "progress",
                            "recon_every", "compile", "accelerator", "eval_batch_size"})
PARAMETERS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name not in NOT_PARAMETERS)


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
    Runs keep the order of `runs`; epochs are ascending. Parameters the runs' configs vary beyond
    alpha, mode, lr and seed (`varied_parameters`) follow as extra columns.
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
    varied = varied_parameters(runs)
    for col, values in varied.items():
        frame[col] = frame[RUN_ID].map(values) if len(frame) else pd.Series(dtype=object)
    frame = frame[[*TIDY_COLUMNS, *varied]].reset_index(drop=True)
    return frame.astype(TIDY_DTYPES), duplicates, ignored


def varied_parameters(runs: Sequence[RunInfo]) -> dict[str, dict[str, Any]]:
    """{parameter: {run id: value}} for every `PARAMETERS` field whose value differs between runs
    (a sweep over mask_ratio or decoder_depth): the extra columns of the tidy table."""
    out = {}
    for name in PARAMETERS:
        values = {r.run_id: config_value(r.config, name) for r in runs}
        if len({repr(v) for v in values.values()}) > 1:
            out[name] = {k: (as_float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v))
                         for k, v in values.items()}
    return out


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
        ALPHA_MODE: AlphaPolicy(alpha, mode).runs if math.isfinite(alpha) else mode,
        LR: lr if math.isfinite(lr) else as_float(config_value(config, LR)),
        SEED: _seed(config_value(config, SEED)),
        STEPS: int(steps) if math.isfinite(steps) else -1,
    }


def _seed(value: Any) -> int:
    """Config seed as an int; -1 when the run's config has none."""
    x = as_float(value)
    return int(x) if math.isfinite(x) else -1



def read_table(path: str | Path) -> pd.DataFrame:
    """A saved tidy table (`trajectories.csv` or `.parquet`, as pull_and_plot writes it), in the
    tidy dtypes; metric columns it lacks (written before the metric existed) are NaN. Raises
    ValueError naming a missing run column."""
    path = Path(path)
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    missing = [c for c in (RUN_ID, ALPHA, EPOCH) if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} is not a tidy table: no column {', '.join(missing)} "
                         "(give the trajectories.csv or .parquet that pull_and_plot wrote)")
    defaults = {RUN_NAME: frame[RUN_ID], ALPHA_MODE: "grl", LR: math.nan, SEED: -1, STEPS: -1, STATE: "finished"}
    for col in TIDY_COLUMNS:
        if col not in frame.columns:
            frame[col] = defaults.get(col, math.nan)
    extra = [c for c in frame.columns if c not in TIDY_COLUMNS]
    return frame[[*TIDY_COLUMNS, *extra]].astype(TIDY_DTYPES)


def table_runs(frame: pd.DataFrame) -> list[RunInfo]:
    """One RunInfo per run of a tidy table (its config: the run columns and extra parameters)."""
    first = frame.drop_duplicates(RUN_ID)
    keep = [c for c in first.columns if c not in (RUN_ID, RUN_NAME, STATE, EPOCH) and "/" not in c]
    return [RunInfo(str(r[RUN_ID]), str(r[RUN_NAME]), str(r[STATE]), str(r[STATE]),
                    config={k: (r[k].item() if isinstance(r[k], np.generic) else r[k]) for k in keep})
            for _, r in first.iterrows()]
