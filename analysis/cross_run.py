"""Cross-run ρ: do runs that reconstruct better also classify better? (pure functions)

The pooled Spearman ρ over every (run, epoch) point is dominated by training time: trajectories
that all improve together give ρ ≈ -0.9 with no alpha effect at all, and its p-value assumes
independent points. Here each run counts once:

* **final**: Spearman ρ across runs between each run's final MSE and final accuracy (the last epoch
  where both are finite);
* **per epoch**: the same at every epoch e, over the runs that logged e (epochs with >= 3 runs);
* **p-value**: permutation over runs: accuracies shuffled among runs B times,
  p = (1 + #{|ρ_perm| >= |ρ_obs|}) / (1 + B), two-sided. Valid for any dependence within a run.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import scipy.stats

from analysis import DEFAULT_ACC_KEY, DEFAULT_MSE_KEY, EPOCH
from analysis.conditions import final_rows

MIN_RUNS = 3


def spearman_permutation(x, y, n_perm: int = 5000, seed: int = 0) -> tuple[float, float]:
    """(ρ, two-sided permutation p) of the pairs (x_i, y_i); (nan, nan) below MIN_RUNS pairs or without spread."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < MIN_RUNS or np.all(x == x[0]) or np.all(y == y[0]):
        return math.nan, math.nan
    rx, ry = scipy.stats.rankdata(x), scipy.stats.rankdata(y)
    rx, ry = (rx - rx.mean()) / np.linalg.norm(rx - rx.mean()), (ry - ry.mean()) / np.linalg.norm(ry - ry.mean())
    rho = float(rx @ ry)  # Pearson of the ranks = Spearman (average ranks for ties)
    rng = np.random.default_rng(seed)
    perms = np.argsort(rng.random((n_perm, ry.size)), axis=1)
    null = ry[perms] @ rx
    p = (1 + int(np.sum(np.abs(null) >= abs(rho) - 1e-12))) / (1 + n_perm)
    return rho, float(p)


def cross_run_rho(df: pd.DataFrame, acc_key: str = DEFAULT_ACC_KEY, mse_key: str = DEFAULT_MSE_KEY,
                  n_perm: int = 5000, seed: int = 0) -> dict:
    """{rho, p_value, n_runs (final epoch), per_epoch: [{epoch, rho, p_value, n_runs}], inputs}."""
    fin = final_rows(df, [mse_key, acc_key]) if len(df) else df
    rho, p = spearman_permutation(fin[mse_key], fin[acc_key], n_perm, seed) if len(fin) else (math.nan, math.nan)
    per_epoch = []
    ok = df[np.isfinite(df[mse_key].to_numpy(float)) & np.isfinite(df[acc_key].to_numpy(float))] if len(df) else df
    for epoch, g in ok.groupby(EPOCH) if len(ok) else ():
        if len(g) >= MIN_RUNS:
            r, pe = spearman_permutation(g[mse_key], g[acc_key], n_perm, seed)
            per_epoch.append({"epoch": int(epoch), "rho": r, "p_value": pe, "n_runs": int(len(g))})
    return {"rho": rho, "p_value": p, "n_runs": int(len(fin)), "per_epoch": per_epoch,
            "definition": "Spearman rho across runs of final MSE vs final accuracy; permutation p over runs",
            "inputs": {"acc_key": acc_key, "mse_key": mse_key, "n_perm": int(n_perm), "seed": int(seed)}}
