"""Conditions and replicates: runs equal in (alpha, alpha_mode, lr) are seed replicates of one
condition of the experiment (pure functions over the tidy table, no I/O).

The reference condition of an lr is alpha = 0 (in every mode the encoder then gets nothing from
the head). Labels read "α=-1 confusion", "α=0", "α=0.5 lr=1e-3" (lr only when the sweep has several).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import ALPHA, ALPHA_MODE, CONDITION_COLUMNS, EPOCH, LR, RUN_ID, SEED

CONDITION = "condition"  # the label column added by `runs_table`


def _mode(df: pd.DataFrame) -> pd.Series:
    return df[ALPHA_MODE].astype(str) if ALPHA_MODE in df.columns else pd.Series("grl", index=df.index)


def condition_label(alpha: float, mode: str, lr: float, with_lr: bool = False) -> str:
    """"α=-1 confusion": the mode is named unless it is grl (the default) or alpha is 0."""
    text = f"α={alpha:g}" + ("" if mode == "grl" or alpha == 0 else f" {mode}")
    return text + (f" lr={lr:g}" if with_lr else "")


def runs_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run of the tidy table: run_id, alpha, alpha_mode, lr, seed, condition, in the
    order of first appearance. Conditions sort by lr, then alpha, then mode."""
    if not len(df):
        return pd.DataFrame(columns=[RUN_ID, ALPHA, ALPHA_MODE, LR, SEED, CONDITION])
    first = df.drop_duplicates(RUN_ID).copy()
    first[ALPHA_MODE] = _mode(first)
    if LR not in first.columns:
        first[LR] = np.nan
    if SEED not in first.columns:
        first[SEED] = -1
    with_lr = first[LR].nunique(dropna=True) > 1
    first[CONDITION] = [condition_label(float(a), str(m), float(lr), with_lr)
                        for a, m, lr in zip(first[ALPHA], first[ALPHA_MODE], first[LR])]
    return first[[RUN_ID, ALPHA, ALPHA_MODE, LR, SEED, CONDITION]].reset_index(drop=True)


def condition_order(runs: pd.DataFrame) -> list[str]:
    """Condition labels sorted by (lr, alpha, mode)."""
    keys = runs.drop_duplicates(CONDITION).sort_values([LR, ALPHA, ALPHA_MODE], kind="stable")
    return keys[CONDITION].tolist()


def is_reference(runs: pd.DataFrame) -> np.ndarray:
    """Boolean per row of `runs_table`: the run belongs to an alpha = 0 condition."""
    return runs[ALPHA].to_numpy(float) == 0


def replicate_counts(runs: pd.DataFrame) -> dict[str, int]:
    """{condition: number of runs (seeds)}."""
    return {str(k): int(v) for k, v in runs.groupby(CONDITION, sort=False).size().items()}


def final_rows(df: pd.DataFrame, keys) -> pd.DataFrame:
    """Per run, the row of its last epoch where every key in `keys` is finite (runs without one are left out)."""
    keys = list(keys)
    ok = np.isfinite(df[keys].to_numpy(float)).all(axis=1) if keys else np.ones(len(df), bool)
    d = df[ok].sort_values([RUN_ID, EPOCH], kind="stable")
    return d.groupby(RUN_ID, sort=False).tail(1).reset_index(drop=True)


__all__ = ["CONDITION", "CONDITION_COLUMNS", "condition_label", "condition_order", "final_rows", "is_reference",
           "replicate_counts", "runs_table"]
