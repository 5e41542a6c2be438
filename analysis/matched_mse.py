"""The matched-MSE test: does alpha change accuracy *at equal reconstruction quality*?

Pooled points (every epoch of every run) confound alpha with training time: all runs improve
together. Here each run is one unit (pure functions, no I/O; definitions as in rliable):

1. **curve**: a run's accuracy as a function of its MSE, linear interpolation between its epochs
   sorted by MSE (epochs at equal MSE averaged), defined on [min, max] of its MSE, never extrapolated;
2. **grid**: `GRID_POINTS` equally spaced MSE values over the union of the runs' ranges, kept where
   at least 2 runs are defined;
3. **pooled curve** f(m): the mean of the defined run curves at grid value m;
4. **score** s_r: the mean over the grid values where run r is defined of (acc_r(m) - f(m)): how far
   above the common accuracy-vs-MSE curve the run lies (NaN if it overlaps no grid value);
5. **effect** of a condition c (alpha, mode, lr) versus the alpha = 0 reference of its lr, in
   percentage points: effect_pp = 100 * (mean_{r in c} s_r - mean_{r in ref} s_r);
6. **p-value**: run-level permutation test. Statistic: the between-condition sum of squares of the
   scores, sum_c n_c (mean_c s - mean s)^2; condition labels are permuted within each lr stratum
   (so lr effects are not mistaken for alpha effects); p = (1 + #{T_perm >= T_obs}) / (1 + B).
   Per condition, the same test restricted to its runs and the reference's. Effect size: eta^2 =
   between / total sum of squares. With few seeds p cannot be small (`min_attainable_p`: 1/3 for
   2 vs 2 seeds). Scores are deviations from the *pooled* curve, so a condition that barely meets
   alpha = 0 in MSE is compared through the runs that overlap both; `overlap_mse` says on which MSE
   range (and on how many grid values) a condition meets its reference directly;
7. **interval** of effect_pp: Welch's t interval over the seeds (runs) of the condition and of the
   reference, None when either has fewer than 2. A percentile bootstrap of seeds cannot cover at
   2-3 seeds per condition (it sees at most 3 distinct resamples of 2 seeds); tests/test_matched_mse.py
   measures both.
"""

from __future__ import annotations

import contextlib
import math
import warnings

import numpy as np
import pandas as pd
import scipy.stats

from analysis import ALPHA, ALPHA_MODE, DEFAULT_ACC_KEY, DEFAULT_MSE_KEY, LR, RUN_ID
from analysis.conditions import CONDITION, condition_order, runs_table

GRID_POINTS = 50
MIN_OVERLAP = 2


def run_curve(mse, acc) -> tuple[np.ndarray, np.ndarray]:
    """(x, y): the run's finite points sorted by MSE, points at equal MSE averaged."""
    x, y = np.asarray(mse, float), np.asarray(acc, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return np.empty(0), np.empty(0)
    ux, inverse = np.unique(x[ok], return_inverse=True)
    uy = np.bincount(inverse, weights=y[ok]) / np.bincount(inverse)
    return ux, uy


def on_grid(curves: list[tuple[np.ndarray, np.ndarray]], grid: np.ndarray) -> np.ndarray:
    """(runs, G): each curve interpolated at the grid, NaN outside its own MSE range."""
    out = np.full((len(curves), grid.size), np.nan)
    for i, (x, y) in enumerate(curves):
        if x.size:
            inside = (grid >= x[0]) & (grid <= x[-1])
            out[i, inside] = np.interp(grid[inside], x, y)
    return out


def common_grid(curves, n: int = GRID_POINTS, min_runs: int = MIN_OVERLAP) -> np.ndarray:
    """`n` equally spaced MSE values over the union of the curves' ranges, kept where >= min_runs are defined."""
    spans = [(x[0], x[-1]) for x, _ in curves if x.size]
    if not spans:
        return np.empty(0)
    lo, hi = min(s[0] for s in spans), max(s[1] for s in spans)
    grid = np.linspace(lo, hi, n) if hi > lo else np.array([lo])
    covered = np.sum([(grid >= a) & (grid <= b) for a, b in spans], axis=0)
    return grid[covered >= min_runs]


def run_scores(values: np.ndarray) -> np.ndarray:
    """(runs,) mean deviation of each run from the pooled curve over the grid values it covers."""
    if values.size == 0:
        return np.full(values.shape[0], np.nan)
    with np.errstate(invalid="ignore"), _quiet():
        pooled = np.nanmean(values, axis=0)  # (G,)
        return np.nanmean(values - pooled, axis=1)


@contextlib.contextmanager
def _quiet():
    """Silences numpy's mean-of-empty-slice warnings: an empty slice is NaN on purpose here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def between_ss(scores: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Between-group sum of squares of `scores` for label codes (..., n) -> (...)."""
    k = int(codes.max()) + 1
    onehot = codes[..., None] == np.arange(k)  # (..., n, k)
    sums = np.einsum("...nk,n->...k", onehot, scores)
    counts = onehot.sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        per = np.where(counts > 0, sums**2 / np.maximum(counts, 1), 0.0)
    return per.sum(axis=-1) - scores.sum() ** 2 / scores.size


def permutation_p(scores, codes, strata=None, n_perm: int = 5000, seed: int = 0) -> tuple[float, float]:
    """(p, eta^2) of the between-group sum of squares, labels permuted within strata (see module doc)."""
    s, g = np.asarray(scores, float), np.asarray(codes, int)
    strata = np.zeros(s.size, int) if strata is None else np.asarray(strata)
    total = float(((s - s.mean()) ** 2).sum())
    if s.size < 3 or len(np.unique(g)) < 2 or total == 0:
        return math.nan, math.nan
    observed = float(between_ss(s, g))
    rng = np.random.default_rng(seed)
    perms = np.tile(g, (n_perm, 1))
    for stratum in np.unique(strata):
        idx = np.flatnonzero(strata == stratum)
        keys = rng.random((n_perm, idx.size))
        perms[:, idx] = g[idx][np.argsort(keys, axis=1)]
    null = between_ss(s, perms)
    p = (1 + int(np.sum(null >= observed - 1e-12 * max(1.0, abs(observed))))) / (1 + n_perm)
    return float(p), observed / total


def min_attainable_p(codes, strata=None) -> float:
    """The smallest p the permutation test can return for these group sizes, before Monte Carlo:
    1 / (number of distinct unlabelled partitions of the runs into groups of these sizes), per stratum
    multiplied. 2 seeds x 4 conditions: 2!^4 * 4! / 8! = 0.0095; 2 vs 2 seeds: 1/3."""
    g = np.asarray(codes, int)
    strata = np.zeros(g.size, int) if strata is None else np.asarray(strata)
    p = 1.0
    for stratum in np.unique(strata):
        sizes = np.bincount(g[strata == stratum])
        sizes = sizes[sizes > 0]
        partitions = math.factorial(int(sizes.sum()))
        for size, count in zip(*np.unique(sizes, return_counts=True)):
            partitions //= math.factorial(int(size)) ** int(count) * math.factorial(int(count))
        p /= partitions
    return p


def welch_interval(a, b, level: float = 0.95) -> tuple[float, float] | None:
    """Welch's t interval of mean(a) - mean(b); None when either side has < 2 values or no spread."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size < 2 or b.size < 2 or (a.var() == 0 and b.var() == 0):
        return None
    ci = scipy.stats.ttest_ind(a, b, equal_var=False).confidence_interval(level)
    return float(ci.low), float(ci.high)


def matched_mse(df: pd.DataFrame, acc_key: str = DEFAULT_ACC_KEY, mse_key: str = DEFAULT_MSE_KEY,
                n_perm: int = 5000, seed: int = 0, level: float = 0.95, n_grid: int = GRID_POINTS) -> dict:
    """The matched-MSE test of the module docstring on a tidy table (states filtered beforehand).

    Returns a JSON-ready dict: p_value (all conditions, within lr strata), eta_squared, effect_pp
    {condition: pp vs alpha = 0}, by_condition [{condition, n_seeds, effect_pp, ci_pp, p_value,
    scores_pp}], grid {n, mse_min, mse_max}, runs_without_overlap, reference, inputs, note.
    """
    runs = runs_table(df)
    by_run = {rid: g for rid, g in df.groupby(RUN_ID, sort=False)}
    curves = [run_curve(by_run[r][mse_key], by_run[r][acc_key]) for r in runs[RUN_ID]]
    grid = common_grid(curves, n_grid)
    scores = run_scores(on_grid(curves, grid))
    runs = runs.assign(score=scores)
    lonely = runs[~np.isfinite(scores)][RUN_ID].tolist()
    used = runs[np.isfinite(scores)].reset_index(drop=True)
    order = condition_order(used) if len(used) else []
    codes = used[CONDITION].map({c: i for i, c in enumerate(order)}).to_numpy(int) if len(used) else np.empty(0, int)
    strata = used[LR].fillna(-1).to_numpy(float) if len(used) else np.empty(0)
    p, eta2 = permutation_p(used["score"], codes, strata, n_perm, seed) if len(used) else (math.nan, math.nan)

    values_used = on_grid([curves[i] for i in np.flatnonzero(np.isfinite(scores))], grid)
    by_condition, effect = [], {}
    for c in order:
        mine = used[used[CONDITION] == c]
        lr = mine[LR].iloc[0]
        ref = used[(used[ALPHA] == 0) & ((used[LR] == lr) | (np.isnan(lr) & used[LR].isna()))]
        row = {"condition": c, "alpha": float(mine[ALPHA].iloc[0]), "alpha_mode": str(mine[ALPHA_MODE].iloc[0]),
               "lr": lr, "n_seeds": int(len(mine)), "scores_pp": (100 * mine["score"]).tolist(),
               "effect_pp": None, "ci_pp": None, "p_value": None, "min_attainable_p": None, "overlap_mse": None}
        if len(ref) and not (mine[RUN_ID].isin(ref[RUN_ID]).all()):
            # where this condition and its reference both have a run: the MSE range the effect rests on
            both = (np.isfinite(values_used[mine.index]).any(0) & np.isfinite(values_used[ref.index]).any(0))
            row["overlap_mse"] = [float(grid[both].min()), float(grid[both].max()), int(both.sum())] if both.any() else None
            row["effect_pp"] = 100 * float(mine["score"].mean() - ref["score"].mean())
            ci = welch_interval(mine["score"], ref["score"], level)
            row["ci_pp"] = None if ci is None else [100 * ci[0], 100 * ci[1]]
            both_runs = pd.concat([mine, ref])
            pair_codes = (both_runs[CONDITION] == c).to_numpy(int)
            row["p_value"] = permutation_p(both_runs["score"], pair_codes, None, n_perm, seed)[0]
            row["min_attainable_p"] = min_attainable_p(pair_codes)
            effect[c] = row["effect_pp"]
        by_condition.append(row)
    note = []
    if len(order) < 2:
        note.append("one condition only: nothing to compare")
    if not (used[ALPHA] == 0).any() if len(used) else True:
        note.append("no alpha = 0 runs: no reference, effects are not defined")
    if lonely:
        note.append(f"{len(lonely)} run(s) overlap no other run in MSE and are left out of the test")
    return {
        "p_value": p, "eta_squared": eta2, "effect_pp": effect, "by_condition": by_condition,
        "min_attainable_p": min_attainable_p(codes, strata) if len(used) else None,
        "reference": "alpha = 0 at the same lr",
        "statistic": "between-condition sum of squares of run scores (permuted within lr)",
        "grid": {"n": int(grid.size), "mse_min": float(grid[0]) if grid.size else None,
                 "mse_max": float(grid[-1]) if grid.size else None},
        "n_runs": int(len(used)), "runs_without_overlap": lonely,
        "inputs": {"acc_key": acc_key, "mse_key": mse_key, "n_perm": int(n_perm), "seed": int(seed),
                   "level": float(level), "grid_points": int(n_grid), "min_overlap": MIN_OVERLAP},
        "note": "; ".join(note) or None,
    }


def difference_curves(df: pd.DataFrame, acc_key: str = DEFAULT_ACC_KEY, mse_key: str = DEFAULT_MSE_KEY,
                      n_grid: int = GRID_POINTS) -> dict[str, dict[str, list[float]]]:
    """For the plot: per non-reference condition, accuracy minus the alpha = 0 mean curve (pp) on the
    common grid, for each seed -> {condition: {"mse": [...], "runs": [[...], ...]}} (NaN where undefined)."""
    runs = runs_table(df)
    by_run = {rid: g for rid, g in df.groupby(RUN_ID, sort=False)}
    curves = [run_curve(by_run[r][mse_key], by_run[r][acc_key]) for r in runs[RUN_ID]]
    grid = common_grid(curves, n_grid)
    values = on_grid(curves, grid)
    out = {}
    for c in condition_order(runs) if len(runs) else []:
        mine = (runs[CONDITION] == c).to_numpy()
        lr = runs.loc[mine, LR].iloc[0]
        ref = (runs[ALPHA].to_numpy(float) == 0) & ((runs[LR] == lr).to_numpy() | (np.isnan(lr) & runs[LR].isna().to_numpy()))
        if not ref.any() or (mine & ref).all() or (ref[mine]).any():
            continue
        with _quiet():
            ref_curve = np.nanmean(values[ref], axis=0)
        out[c] = {"mse": grid.tolist(), "runs": (100 * (values[mine] - ref_curve)).tolist()}
    return out
