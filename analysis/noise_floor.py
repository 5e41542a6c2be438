"""The noise floor of Γ: how much tube volume seed noise alone gives this sweep (pure functions).

Γ of a sweep sums, over MSE bins, the spread of accuracy. Part of it is there even when alpha does
nothing: seeds differ, and accuracy moves along the MSE axis within a bin. The floor is Γ of a
*null sweep* built from this sweep's own runs, with the same runs, the same points and the same bin
edges, in which accuracy depends on MSE alone and the runs differ by their measured seed noise:

1. conditions = (alpha, alpha_mode, lr); a condition with >= 2 runs (seeds) has, per epoch e with
   n_e >= 2 of its runs, a mean point (m_e, a_e) and each run a residual
   sqrt(n_e / (n_e - 1)) * (mse - m_e, acc - a_e) (the factor undoes the shrinkage towards the sample
   mean, so a residual has the variance of one seed's deviation);
2. the common curve f: per condition the curve of its mean points (linear in MSE, see
   `analysis.matched_mse.run_curve`), averaged over the conditions defined at each MSE (each
   condition's own range, never extrapolated; a condition with one run uses that run);
3. null point of run r at epoch e: (m_e + d_mse, f(m_e) + d_acc), with (m_e, a_e) its condition's
   mean and (d_mse, d_acc) its own residual, or, for a run without replicates, the residual at epoch e
   of a replicated run (taken in turn, `borrowed`);
4. floor = Γ of the null points on the sweep's bin edges; Γ_excess = Γ - floor.

Without any condition with >= 2 seeds there is no residual: the floor is None and the output says
why (no invented interval). Calibration (tests/test_noise_floor.py): on synthetic sweeps without an
alpha effect the mean Γ_excess is near 0 (the floor is slightly conservative: within-condition
residuals of 2 seeds are mirror images); a 5 pp effect for alpha > 0 makes it clearly positive.
"""

from __future__ import annotations

from itertools import cycle

import numpy as np
import pandas as pd

from analysis import DEFAULT_ACC_KEY, DEFAULT_BINS, DEFAULT_MSE_KEY, EPOCH, RUN_ID
from analysis.conditions import CONDITION, runs_table
from analysis.matched_mse import on_grid, run_curve
from analysis.stats import bin_edges, tube_volume


def residuals(df: pd.DataFrame, acc_key: str, mse_key: str) -> tuple[pd.DataFrame, list[str]]:
    """Per point: its condition's mean (m_mean, a_mean) and the scaled residual (d_mse, d_acc), NaN
    where the epoch has < 2 runs of the condition. Returns (table, conditions with >= 2 runs)."""
    runs = runs_table(df).set_index(RUN_ID)
    d = df[[RUN_ID, EPOCH, mse_key, acc_key]].copy()
    d[CONDITION] = d[RUN_ID].map(runs[CONDITION])
    grp = d.groupby([CONDITION, EPOCH])
    n = grp[RUN_ID].transform("size").to_numpy(float)
    d["m_mean"], d["a_mean"] = grp[mse_key].transform("mean"), grp[acc_key].transform("mean")
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(n >= 2, np.sqrt(n / np.maximum(n - 1, 1)), np.nan)
    d["d_mse"] = scale * (d[mse_key] - d["m_mean"])
    d["d_acc"] = scale * (d[acc_key] - d["a_mean"])
    replicated = [c for c, k in runs.groupby(CONDITION, sort=False).size().items() if k >= 2]
    return d, replicated


def common_curve(d: pd.DataFrame) -> callable:
    """f(m): the mean over conditions of their mean-point curves, each on its own MSE range."""
    curves = []
    for _, g in d.groupby(CONDITION, sort=False):
        means = g.drop_duplicates(EPOCH)
        curves.append(run_curve(means["m_mean"], means["a_mean"]))

    def f(m: np.ndarray) -> np.ndarray:
        values = on_grid(curves, np.asarray(m, float))
        out = np.full(values.shape[1], np.nan)
        defined = np.isfinite(values).any(axis=0)
        out[defined] = np.nanmean(values[:, defined], axis=0)
        return out

    return f


def null_sweep(df: pd.DataFrame, acc_key: str = DEFAULT_ACC_KEY, mse_key: str = DEFAULT_MSE_KEY) -> tuple[pd.DataFrame, dict]:
    """The null points of the module docstring -> (table with mse_key, acc_key, run_id, epoch; info)."""
    d, replicated = residuals(df, acc_key, mse_key)
    info = {"replicated_conditions": replicated, "borrowed_runs": 0, "dropped_points": 0}
    if not replicated:
        return d.iloc[0:0], info
    f = common_curve(d)
    donors = d[np.isfinite(d["d_mse"]) & np.isfinite(d["d_acc"])]
    donor_runs = {rid: g.set_index(EPOCH)[["d_mse", "d_acc"]] for rid, g in donors.groupby(RUN_ID, sort=False)}
    turn = cycle(list(donor_runs))
    parts = []
    for rid, g in d.groupby(RUN_ID, sort=False):
        g = g.copy()
        if rid not in donor_runs:  # no replicate of its own at any epoch: borrow a replicated run's noise
            donor = donor_runs[next(turn)]
            g[["d_mse", "d_acc"]] = donor.reindex(g[EPOCH].to_numpy()).to_numpy()
            info["borrowed_runs"] += 1
        parts.append(g)
    d = pd.concat(parts)
    null = pd.DataFrame({RUN_ID: d[RUN_ID], EPOCH: d[EPOCH], mse_key: d["m_mean"] + d["d_mse"],
                         acc_key: f(d["m_mean"].to_numpy()) + d["d_acc"]})
    ok = np.isfinite(null[mse_key]) & np.isfinite(null[acc_key])
    info["dropped_points"] = int((~ok).sum())
    return null[ok].reset_index(drop=True), info


def noise_floor(df: pd.DataFrame, acc_key: str = DEFAULT_ACC_KEY, mse_key: str = DEFAULT_MSE_KEY,
                bins: int = DEFAULT_BINS, edges: np.ndarray | None = None) -> dict:
    """{gamma, floor, gamma_excess, null_spread (per bin of the null sweep), replicated_conditions,
    borrowed_runs, n_points, n_null_points, note}; floor and excess None without replicates.
    `edges`: bin edges to use for both (default: `bins` bins over these points' MSE range)."""
    ok = np.isfinite(df[mse_key].to_numpy(float)) & np.isfinite(df[acc_key].to_numpy(float))
    df = df[ok]
    edges = bin_edges(df[mse_key], bins) if edges is None else np.asarray(edges, float)
    gamma = tube_volume(df[mse_key], df[acc_key], edges=edges) if len(df) else float("nan")
    null, info = null_sweep(df, acc_key, mse_key) if len(df) else (df, {"replicated_conditions": [],
                                                                        "borrowed_runs": 0, "dropped_points": 0})
    out = {"gamma": gamma, "floor": None, "gamma_excess": None, "null_spread": None, "n_points": int(len(df)),
           "n_null_points": int(len(null)), **info, "note": None}
    if not info["replicated_conditions"]:
        out["note"] = ("no seed replicates (no condition has 2 or more seeds): the noise floor of Γ is unknown; "
                       "add a seed axis to the sweep")
        return out
    floor = tube_volume(null[mse_key], null[acc_key], edges=edges)
    out.update(floor=floor, gamma_excess=gamma - floor, null_spread=bin_spreads(null[mse_key], null[acc_key], edges))
    if info["borrowed_runs"]:
        out["note"] = (f"{info['borrowed_runs']} run(s) without replicates borrowed the seed noise of replicated runs "
                       f"({', '.join(info['replicated_conditions'])})")
    return out


def bin_spreads(mse, acc, edges: np.ndarray) -> list[float | None]:
    """max - min of acc per bin of `edges` (None for bins with < 2 points), points outside clipped in."""
    from analysis.stats import bin_index

    x, y = np.asarray(mse, float), np.asarray(acc, float)
    idx = bin_index(x, edges)
    out = []
    for k in range(max(len(edges) - 1, 1)):
        yk = y[idx == k]
        out.append(float(yk.max() - yk.min()) if yk.size >= 2 else None)
    return out
