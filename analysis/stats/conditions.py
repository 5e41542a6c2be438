"""Conditions and replicates (pure functions over the tidy table, no I/O).

A **condition** is a distinct combination of every varied parameter but `seed`: alpha, the mode
that ran, lr, and any other `TrainConfig` field the sweep varies (the tidy table carries those as
extra columns, `parameter_columns`). Runs of one condition are its seed replicates.

The **reference** of a condition (`--reference alpha=0` by default) is the condition with the
reference value of that parameter and every other parameter equal. A parameter that does not
change what the reference trains is ignored: at alpha = 0 the encoder gets nothing from the head in
every mode, so `alpha_mode` never separates a condition from its alpha = 0 reference.
Labels read "α=-1 confusion", "α=0", "α=0.5 lr=0.001", "α=1 mask_ratio=0.9".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import ALPHA, ALPHA_MODE, LR, RUN_ID, SEED, TIDY_COLUMNS
from mae_gap.metrics import EPOCH

CONDITION = "condition"  # the label column added by `runs_table`


def parameter_columns(df: pd.DataFrame) -> list[str]:
    """The condition's parameters: alpha, alpha_mode, lr, then every extra (non-metric) column the
    table carries (a varied TrainConfig field, see `analysis.pull.tidy.varied_parameters`)."""
    extra = [c for c in df.columns if c not in TIDY_COLUMNS and "/" not in c and c != CONDITION]
    return [ALPHA, ALPHA_MODE, LR, *extra]


@dataclass(frozen=True)
class Reference:
    """`--reference KEY=VALUE`: the parameter and the value that define a condition's reference."""

    key: str = ALPHA
    value: float | str = 0.0

    @classmethod
    def parse(cls, text: str) -> "Reference":
        key, sep, value = text.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"--reference {text!r}: expected KEY=VALUE, e.g. alpha=0 or mask_ratio=0.75")
        value = value.strip()
        try:
            return cls(key.strip(), float(value))
        except ValueError:
            return cls(key.strip(), value)

    def ignored(self) -> tuple[str, ...]:
        """Parameters that do not change what the reference trains (alpha_mode at alpha = 0)."""
        return (ALPHA_MODE,) if self.key == ALPHA and self.value == 0 else ()

    def matches(self, values) -> np.ndarray:
        values = pd.Series(values)
        if isinstance(self.value, float):
            return np.isclose(pd.to_numeric(values, errors="coerce").to_numpy(float), self.value, rtol=1e-9, atol=0)
        return (values.astype(str) == self.value).to_numpy()

    def __str__(self) -> str:
        return f"{self.key}={self.value:g}" if isinstance(self.value, float) else f"{self.key}={self.value}"


def _mode(df: pd.DataFrame) -> pd.Series:
    return df[ALPHA_MODE].astype(str) if ALPHA_MODE in df.columns else pd.Series("grl", index=df.index)


def _fmt(value) -> str:
    return f"{value:g}" if isinstance(value, (float, int, np.floating, np.integer)) else str(value)


def condition_label(alpha: float, mode: str, lr: float, with_lr: bool = False, extra: dict | None = None) -> str:
    """"α=-1 confusion": the mode is named unless it is grl (the default) or alpha is 0; lr and the
    extra parameters are named when the sweep varies them."""
    text = f"α={alpha:g}" + ("" if mode == "grl" or alpha == 0 else f" {mode}")
    text += f" lr={lr:g}" if with_lr else ""
    return text + "".join(f" {k}={_fmt(v)}" for k, v in (extra or {}).items())


def runs_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run of the tidy table: run_id, the parameters, seed, condition, in the order of
    first appearance. Conditions sort by lr, the extra parameters, alpha, then mode."""
    params = parameter_columns(df)
    if not len(df):
        return pd.DataFrame(columns=[RUN_ID, *params, SEED, CONDITION])
    first = df.drop_duplicates(RUN_ID).copy()
    first[ALPHA_MODE] = _mode(first)
    if LR not in first.columns:
        first[LR] = np.nan
    if SEED not in first.columns:
        first[SEED] = -1
    extra = params[3:]
    with_lr = first[LR].nunique(dropna=True) > 1
    first[CONDITION] = [
        condition_label(float(r[ALPHA]), str(r[ALPHA_MODE]), float(r[LR]), with_lr, {k: r[k] for k in extra})
        for _, r in first.iterrows()]
    return first[[RUN_ID, *params, SEED, CONDITION]].reset_index(drop=True)


def condition_order(runs: pd.DataFrame) -> list[str]:
    """Condition labels sorted by (lr, extra parameters, alpha, mode)."""
    params = [c for c in runs.columns if c not in (RUN_ID, SEED, CONDITION)]
    keys = [LR, *params[3:], ALPHA, ALPHA_MODE]
    return runs.drop_duplicates(CONDITION).sort_values(keys, kind="stable")[CONDITION].tolist()


def reference_of(runs: pd.DataFrame, condition: str, reference: Reference = Reference()) -> list[str]:
    """The run ids of `condition`'s reference: runs with the reference value and every other
    parameter equal (`Reference.ignored` aside). Empty when the sweep has none or the condition
    is itself a reference."""
    if reference.key not in runs.columns:
        return []
    mine = runs[runs[CONDITION] == condition]
    is_ref = reference.matches(runs[reference.key])
    if not len(mine) or is_ref[mine.index].all():
        return []
    same = np.ones(len(runs), bool)
    for col in (c for c in runs.columns if c not in (RUN_ID, SEED, CONDITION, reference.key, *reference.ignored())):
        want = mine[col].iloc[0]
        values = runs[col]
        same &= (values.isna().to_numpy() if _isnan(want) else (values == want).to_numpy())
    return runs.loc[same & is_ref, RUN_ID].tolist()


def is_reference(runs: pd.DataFrame, reference: Reference = Reference()) -> np.ndarray:
    """Boolean per row of `runs_table`: the run belongs to a reference condition."""
    if reference.key not in runs.columns:
        return np.zeros(len(runs), bool)
    return reference.matches(runs[reference.key])


def _isnan(x) -> bool:
    return isinstance(x, float) and math.isnan(x)


def final_rows(df: pd.DataFrame, keys) -> pd.DataFrame:
    """Per run, the row of its last epoch where every key in `keys` is finite (runs without one are left out)."""
    keys = list(keys)
    ok = np.isfinite(df[keys].to_numpy(float)).all(axis=1) if keys else np.ones(len(df), bool)
    d = df[ok].sort_values([RUN_ID, EPOCH], kind="stable")
    return d.groupby(RUN_ID, sort=False).tail(1).reset_index(drop=True)
