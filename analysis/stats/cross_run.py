"""Cross-run ρ: do runs that reconstruct better also classify better? (pure functions)

The pooled Spearman ρ over every (run, epoch) point is dominated by training time (trajectories
that improve together give ρ ≈ -0.9 with no effect at all) and its p-value assumes independent
points. Here each independent unit counts once:

* **units**: the runs when no seed is shared between conditions; otherwise (seed s gives every
  condition the same initial weights, shuffle and crops, so runs of one seed are not independent)
  the conditions, each at the mean over its seeds. `n_units` is the effective n;
* **final**: Spearman ρ across units of final MSE vs final accuracy (each run's last epoch where
  both are finite); **per epoch**: the same at every epoch e with >= `MIN_UNITS` units;
* **p-value**: permutation of accuracies among units, exact over all n! orders when n! <=
  `EXACT_LIMIT`, Monte-Carlo above; two-sided, p = #{|ρ_perm| >= |ρ|} / n! (exact);
* **interval**: Fisher's z with Bonett & Wright's (2000) Spearman variance (1 + ρ²/2) / (n - 3),
  for n >= 4 units (None below).
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.stats

from analysis import DEFAULT_ACC_KEY, DEFAULT_MSE_KEY, RUN_ID, SEED
from mae_gap.metrics import EPOCH
from analysis.stats.conditions import CONDITION, final_rows, runs_table

MIN_UNITS = 3
EXACT_LIMIT = 100_000


def spearman_permutation(x, y, n_perm: int = 5000, seed: int = 0) -> tuple[float, float]:
    """(ρ, two-sided permutation p) of the pairs (x_i, y_i); (nan, nan) below MIN_UNITS pairs or without spread."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < MIN_UNITS or np.all(x == x[0]) or np.all(y == y[0]):
        return math.nan, math.nan
    rx, ry = (scipy.stats.rankdata(v) for v in (x, y))
    rx, ry = ((r - r.mean()) / np.linalg.norm(r - r.mean()) for r in (rx, ry))
    rho = float(rx @ ry)  # Pearson of the ranks = Spearman (average ranks for ties)
    if math.factorial(x.size) <= EXACT_LIMIT:
        perms = _all_orders(x.size)
        return rho, float(np.mean(np.abs(ry[perms] @ rx) >= abs(rho) - 1e-12))
    perms = np.argsort(np.random.default_rng(seed).random((n_perm, ry.size)), axis=1)
    return rho, (1 + int(np.sum(np.abs(ry[perms] @ rx) >= abs(rho) - 1e-12))) / (1 + n_perm)


@functools.lru_cache(maxsize=8)
def _all_orders(n: int) -> np.ndarray:
    return np.array(list(itertools.permutations(range(n))))


def fisher_interval(rho: float, n: int, level: float = 0.95) -> tuple[float, float] | None:
    """Fisher-z interval of a Spearman ρ over n units (Bonett & Wright's variance); None for n < 4."""
    if n < 4 or not math.isfinite(rho):
        return None
    z = math.atanh(min(max(rho, -0.999999), 0.999999))
    half = scipy.stats.norm.ppf(0.5 + level / 2) * math.sqrt((1 + rho**2 / 2) / (n - 3))
    return math.tanh(z - half), math.tanh(z + half)


@dataclass(frozen=True)
class CrossRunRho:
    """Spearman ρ across independent units (module docstring)."""

    rho: float | None
    p_value: float | None
    ci: tuple[float, float] | None
    unit: str  # "run" | "condition"
    n_units: int
    n_runs: int
    per_epoch: list = field(default_factory=list)
    definition: str = "Spearman ρ of final MSE vs final accuracy across independent units; permutation p"


def _units(rows: pd.DataFrame, acc_key: str, mse_key: str, by_condition: bool) -> pd.DataFrame:
    if not by_condition:
        return rows[[mse_key, acc_key]]
    return rows.groupby(CONDITION, sort=False)[[mse_key, acc_key]].mean()


def cross_run_rho(df: pd.DataFrame, acc_key: str = DEFAULT_ACC_KEY, mse_key: str = DEFAULT_MSE_KEY, n_perm: int = 5000, seed: int = 0,
                  level: float = 0.95) -> CrossRunRho:
    runs = runs_table(df)
    by_condition = bool(len(runs)) and bool(
        (runs[runs[SEED] >= 0].groupby(SEED)[CONDITION].nunique() > 1).any())
    label = runs.set_index(RUN_ID)[CONDITION]
    fin = final_rows(df, [mse_key, acc_key]) if len(df) else df
    fin = fin.assign(**{CONDITION: fin[RUN_ID].map(label)}) if len(fin) else fin
    units = _units(fin, acc_key, mse_key, by_condition) if len(fin) else pd.DataFrame(columns=[mse_key, acc_key])
    rho, p = spearman_permutation(units[mse_key], units[acc_key], n_perm, seed) if len(units) else (math.nan, math.nan)
    per_epoch = []
    ok = df[np.isfinite(df[mse_key].to_numpy(float)) & np.isfinite(df[acc_key].to_numpy(float))] if len(df) else df
    for epoch, g in ok.groupby(EPOCH) if len(ok) else ():
        u = _units(g.assign(**{CONDITION: g[RUN_ID].map(label)}), acc_key, mse_key, by_condition)
        if len(u) >= MIN_UNITS:
            r, pe = spearman_permutation(u[mse_key], u[acc_key], n_perm, seed)
            per_epoch.append({"epoch": int(epoch), "rho": r, "p_value": pe, "n_units": int(len(u))})
    return CrossRunRho(rho, p, fisher_interval(rho, len(units), level), "condition" if by_condition else "run",
                       int(len(units)), int(len(fin)), per_epoch)
