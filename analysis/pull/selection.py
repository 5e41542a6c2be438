"""The runs the statistics use (SPEC section 7): `select_runs` and its reasons for leaving a run out.

    used, exclusions = select_runs(result.table, acc_key, mse_key, include_unfinished=False,
                                   runs=result.runs)
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from analysis import ALPHA, ALPHA_MODE, LR, RUN_ID, RUN_NAME, SEED, STATE, STATE_FINISHED, STATE_RUNNING
from analysis.pull.runs import RunInfo, run_label
from analysis.pull.tidy import as_float, config_value, run_columns
from mae_gap import metrics as M

# Config keys that are not part of a grid point: provenance and machine-local paths/display.
NON_GRID_CONFIG_KEYS = frozenset(
    {"git_commit", "package_version", "data_fingerprint", "cache_dir", "ckpt_dir", "data_dir", "progress",
     "effective_lr", "steps_per_epoch", "total_steps"}  # derived from the grid point, not part of it
)


class Exclusion(NamedTuple):
    """A run left out of the statistics, and why (`str()` gives "name (id): reason")."""

    run_id: str
    run_name: str
    reason: str

    @property
    def label(self) -> str:
        return run_label(self.run_id, self.run_name)

    def __str__(self) -> str:
        return f"{self.label}: {self.reason}"


def grid_point(config: Mapping[str, Any]) -> str:
    """Canonical form of a run's grid point: its config without provenance, local paths and
    W&B's private keys; integral floats equal ints (as W&B's grid de-duplication does)."""

    def canon(v: Any) -> Any:
        if isinstance(v, Mapping):
            if set(v) <= {"value", "desc"} and "value" in v:
                return canon(v["value"])
            return {str(k): canon(x) for k, x in sorted(v.items())}
        if isinstance(v, (list, tuple)):
            return [canon(x) for x in v]
        if isinstance(v, float) and v.is_integer():
            return int(v)
        return v

    keep = {k: canon(v) for k, v in config.items() if not str(k).startswith("_") and k not in NON_GRID_CONFIG_KEYS}
    return json.dumps(keep, sort_keys=True, default=str)


def select_runs(
    df: pd.DataFrame,
    acc_key: str,
    mse_key: str,
    include_unfinished: bool = False,
    *,
    runs: Sequence[RunInfo] | None = None,
) -> tuple[pd.DataFrame, list[Exclusion]]:
    """The runs the statistics use, and every other run with the reason it is left out.

    Pure function (no I/O). Checked in this order, one reason per run:

    1. state: crashed, failed and running runs are excluded unless `include_unfinished`
       (the reason names the state, W&B's own state when it differs, and the failure reason
       the run wrote to its summary, if any);
    2. no history: a run without a single epoch row (only visible when `runs` is given);
    3. no alpha in its config;
    4. a missing metric: no finite `acc_key` or `mse_key` value in any epoch;
    5. duplicate grid points: among the runs left, runs with the same alpha, lr, seed and
       other config (`grid_point`; with `runs` the whole config, else alpha, lr, seed) keep
       the first finished one (else the first) and exclude the rest as duplicates of it.

    Args:
      df: the tidy table.
      runs: the pull's RunInfo list (gives run order, configs, failure reasons, and runs with
        no rows at all); without it, runs come from the table in order of appearance.

    Returns (rows of the used runs, in table order; exclusions in run order).
    """
    by_id = _runs_by_id(df, runs)
    rows = df.groupby(RUN_ID, sort=False).groups if len(df) else {}
    exclusions: list[Exclusion] = []
    candidates: list[RunInfo] = []
    for rid, run in by_id.items():
        reason = _exclusion_reason(df, rows, run, acc_key, mse_key, include_unfinished)
        if reason:
            exclusions.append(Exclusion(rid, run.run_name, reason))
        else:
            candidates.append(run)
    dropped = _duplicates(candidates, full_config=runs is not None)
    used_ids = [r.run_id for r in candidates if r.run_id not in dropped]
    order = {rid: i for i, rid in enumerate(by_id)}  # exclusions in run order
    exclusions = sorted([*exclusions, *dropped.values()], key=lambda e: order[e.run_id])
    used = df[df[RUN_ID].isin(used_ids)] if len(df) else df
    return used, exclusions


def _runs_by_id(df: pd.DataFrame, runs: Sequence[RunInfo] | None) -> dict[str, RunInfo]:
    """The runs of `runs` (first of each id), then those only the table knows of, in order."""
    by_id: dict[str, RunInfo] = {}
    for r in runs or ():
        by_id.setdefault(r.run_id, r)
    if len(df):
        first = df.drop_duplicates(RUN_ID)
        for rid, name, state, a, mode, lr, seed in zip(
            first[RUN_ID], first[RUN_NAME], first[STATE], first[ALPHA], first[ALPHA_MODE], first[LR], first[SEED]
        ):
            rid = str(rid)
            if rid not in by_id:
                cfg = {ALPHA: float(a), ALPHA_MODE: str(mode), LR: float(lr), SEED: int(seed)}
                by_id[rid] = RunInfo(rid, str(name), str(state), config=cfg)
    return by_id


def _exclusion_reason(
    df: pd.DataFrame, rows: Mapping[Any, Any], run: RunInfo, acc_key: str, mse_key: str, include_unfinished: bool
) -> str | None:
    """Why `run` is left out (checks 1-4 of `select_runs`), None when it is a candidate."""
    if run.state != STATE_FINISHED and not include_unfinished:
        return _state_reason(run)
    if run.run_id not in rows:
        return "no history (no epoch was logged)"
    if not math.isfinite(as_float(config_value(run.config, ALPHA))):
        return "no alpha in its config"

    def finite_any(key: str) -> bool:
        if key not in df.columns:
            return False
        vals = pd.to_numeric(df.loc[rows[run.run_id], key], errors="coerce").to_numpy(float)
        return bool(np.isfinite(vals).any())

    missing = [k for k in (acc_key, mse_key) if not finite_any(k)]
    return f"no {' and no '.join(missing)} values" if missing else None


def _duplicates(candidates: Sequence[RunInfo], full_config: bool) -> dict[str, Exclusion]:
    """Check 5 of `select_runs`: run id -> its exclusion as a duplicate grid point."""
    groups: dict[str, list[RunInfo]] = {}
    for run in candidates:
        groups.setdefault(_dedupe_key(run, full_config), []).append(run)
    dropped: dict[str, Exclusion] = {}
    for members in groups.values():
        keep = next((m for m in members if m.state == STATE_FINISHED), members[0])
        for m in members:
            if m is not keep:
                dropped[m.run_id] = Exclusion(
                    m.run_id, m.run_name, f"duplicate grid point of {keep.label} (same alpha, lr, seed and config)"
                )
    return dropped


def _dedupe_key(run: RunInfo, full_config: bool) -> str:
    cols = run_columns(run.config)
    # the mode as it ran: confusion at alpha >= 0 trains exactly what grl trains
    point = {ALPHA: cols[ALPHA], ALPHA_MODE: cols[ALPHA_MODE], LR: cols[LR], SEED: cols[SEED]}
    if full_config:
        return grid_point({**run.config, **point})
    return grid_point(point)


def _state_reason(run: RunInfo) -> str:
    reason = run.state
    raw = (run.wandb_state or "").lower()
    if raw and raw != run.state:
        reason += f" (W&B state {raw})"
    if run.state == STATE_RUNNING:
        reason += " (still in progress)"
    why = run.summary.get(M.FAILURE_REASON) if isinstance(run.summary, Mapping) else None
    if why:
        reason += f": {why}"
    return reason
