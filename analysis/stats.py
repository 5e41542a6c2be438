"""Statistics of the reconstruction gap (SPEC section 8.3): pure functions, no I/O.

Every epoch of every run is one point (x = validation reconstruction MSE, y = accuracy).
The question is whether points with the same reconstruction quality carry very different
semantic information (a "tube"). Two numbers answer it:

* the tube volume **Γ** (`tube_volume`): bin the MSE axis, sum the per-bin accuracy spread;
* Spearman's **ρ** (`spearman`) between MSE and accuracy.

`gap_statistics` computes both for the whole sweep and for α < 0, α = 0, α > 0 separately,
with bootstrap intervals that resample whole runs (`bootstrap_ci`), and returns a
JSON-serialisable dict (NaN is written as None).

Style follows google-research/rliable's metrics.py: small functions, each docstring states
the exact definition.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable

import numpy as np
import pandas as pd
import scipy.stats

from analysis import ALPHA, DEFAULT_ACC_KEY, DEFAULT_BINS, DEFAULT_MSE_KEY, RUN_ID

BIN_COLUMNS = ("left", "right", "count", "mean", "std", "min", "max", "spread")

# Names of the per-sign groups in gap_statistics()["by_sign"], with their condition.
SIGN_GROUPS = {
    "negative": "alpha < 0",
    "zero": "alpha == 0",
    "positive": "alpha > 0",
}


# --------------------------------------------------------------------------- helpers


def finite_pairs(mse, acc) -> tuple[np.ndarray, np.ndarray, int]:
    """Drops the pairs where either value is NaN (or ±inf).

    Returns:
      (mse, acc, n_dropped): float64 arrays of the kept pairs, in input order, and the
      number of pairs dropped.
    """
    x = np.asarray(mse, dtype=float).ravel()
    y = np.asarray(acc, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"mse and acc differ in length: {x.size} != {y.size}")
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep], int(x.size - keep.sum())


def bin_edges(mse, bins: int = DEFAULT_BINS) -> np.ndarray:
    """Edges of `bins` equal-width bins over [min(mse), max(mse)] (NaN ignored).

    Same edges as `np.histogram_bin_edges(mse, bins, range=(min, max))`. Degenerate case:
    when every point has the same MSE there is one bin, edges [m, m]. No points: empty
    array.
    """
    if int(bins) < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    x = np.asarray(mse, dtype=float).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        return np.empty(0)
    lo, hi = float(x.min()), float(x.max())
    if lo == hi:
        return np.array([lo, hi])
    return np.histogram_bin_edges(x, bins=int(bins), range=(lo, hi))


def bin_index(mse, edges: np.ndarray) -> np.ndarray:
    """Bin number (0-based) of each MSE value for the given edges.

    Bin k is [edges[k], edges[k+1]) for every bin but the last, which is closed on the
    right ([edges[-2], edges[-1]]), as in `np.histogram`: a point exactly on an interior
    edge goes to the bin on its right, the maximum lands in the last bin. Values outside
    [edges[0], edges[-1]] are clipped into the first/last bin.
    """
    x = np.asarray(mse, dtype=float).ravel()
    n_bins = max(len(edges) - 1, 1)
    idx = np.searchsorted(edges, x, side="right") - 1
    return np.clip(idx, 0, n_bins - 1)


# --------------------------------------------------------------------------- Γ


def bin_table(mse, acc, bins: int = DEFAULT_BINS) -> pd.DataFrame:
    """Per-bin summary of accuracy over equal-width MSE bins.

    Pairs where either value is NaN are dropped first. The MSE range [min, max] of the
    remaining points is cut into `bins` equal-width bins (`bin_edges`, `bin_index`:
    interior edges belong to the bin on their right, the last bin is closed), or one bin
    when all points share one MSE.

    Returns:
      DataFrame with one row per bin (index = bin number, empty bins included) and columns
        left, right: the bin's edges;
        count: points in the bin;
        mean: mean accuracy (NaN when empty);
        std: sample standard deviation of accuracy, ddof=1 (NaN when count < 2);
        min, max: accuracy extremes (NaN when empty);
        spread: max - min (0 for a single point, NaN when empty).
      No points at all: an empty frame with these columns.
    """
    x, y, _ = finite_pairs(mse, acc)
    edges = bin_edges(x, bins)
    if x.size == 0:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in BIN_COLUMNS}).astype({"count": "int64"})
    idx = bin_index(x, edges)
    n_bins = len(edges) - 1
    rows = []
    for k in range(n_bins):
        yk = y[idx == k]
        n = int(yk.size)
        rows.append(
            {
                "left": float(edges[k]),
                "right": float(edges[k + 1]),
                "count": n,
                "mean": float(yk.mean()) if n else math.nan,
                "std": float(yk.std(ddof=1)) if n >= 2 else math.nan,
                "min": float(yk.min()) if n else math.nan,
                "max": float(yk.max()) if n else math.nan,
                "spread": float(yk.max() - yk.min()) if n else math.nan,
            }
        )
    return pd.DataFrame(rows, columns=list(BIN_COLUMNS))


def tube_volume(mse, acc, bins: int = DEFAULT_BINS) -> float:
    """Tube volume Γ of a cloud of (MSE, accuracy) points.

    Definition (SPEC section 8.3): drop pairs where either value is NaN; cut the MSE range
    [min, max] of the remaining points into `bins` equal-width bins (np.histogram_bin_edges
    semantics: a point on an interior edge goes to the bin on its right, the maximum to the
    last bin; all points at one MSE -> a single bin); then

        Γ = Σ_{bins b with ≥ 2 points} ( max_{i∈b} acc_i − min_{i∈b} acc_i ).

    A bin with one point contributes 0; empty bins contribute nothing. Γ is in the units of
    `acc`. No points: NaN.
    """
    x, y, _ = finite_pairs(mse, acc)
    if x.size == 0:
        return math.nan
    edges = bin_edges(x, bins)
    idx = bin_index(x, edges)
    n_bins = len(edges) - 1
    hi = np.full(n_bins, -np.inf)
    lo = np.full(n_bins, np.inf)
    np.maximum.at(hi, idx, y)
    np.minimum.at(lo, idx, y)
    counts = np.bincount(idx, minlength=n_bins)
    return float(np.sum((hi - lo)[counts >= 2]))


# --------------------------------------------------------------------------- ρ


def spearman(mse, acc) -> tuple[float, float]:
    """Spearman's rank correlation ρ between MSE and accuracy, and its two-sided p-value.

    `scipy.stats.spearmanr` on the pairs left after dropping NaN (ties get average ranks).
    Fewer than 3 pairs, or either variable constant: (nan, nan), without warnings.
    """
    x, y, _ = finite_pairs(mse, acc)
    if x.size < 3 or np.all(x == x[0]) or np.all(y == y[0]):
        return math.nan, math.nan
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        res = scipy.stats.spearmanr(x, y)
    return float(res.statistic), float(res.pvalue)


# --------------------------------------------------------------------------- bootstrap


def bootstrap_ci(
    df: pd.DataFrame,
    statistic: Callable[[pd.DataFrame], Any],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    unit: str = RUN_ID,
):
    """Percentile bootstrap interval of `statistic(df)`, resampling whole runs.

    Definition: let U be the sorted distinct values of df[unit] (runs; each run's rows are
    its whole trajectory). For b = 1..n_boot draw |U| units uniformly with replacement
    (numpy Generator `default_rng(seed)`), build the table of all rows of the drawn units
    (a unit drawn twice appears twice) and evaluate s_b = statistic(table). The interval
    is the (1−level)/2 and (1+level)/2 percentiles of the finite s_b (np.nanpercentile,
    linear interpolation). Deterministic for a given seed and table.

    `statistic` may return a scalar or a 1-D array (several statistics from the same
    resamples); the interval then has the same shape per end.

    Returns:
      (low, high): floats (or arrays for a vector statistic); NaN when the table has no
      units, n_boot < 1 or every replicate is NaN.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    groups = df.groupby(unit, sort=True, dropna=True).indices if len(df) else {}
    units = [groups[k] for k in sorted(groups)]
    probe = np.asarray(statistic(df), dtype=float)
    nan_result = (np.full(probe.shape, np.nan), np.full(probe.shape, np.nan))
    if not units or n_boot < 1:
        return _unwrap(nan_result, probe.ndim)
    rng = np.random.default_rng(seed)
    reps = np.empty((int(n_boot), *probe.shape))
    for b in range(int(n_boot)):
        draw = rng.integers(0, len(units), size=len(units))
        rows = np.concatenate([units[i] for i in draw])
        reps[b] = np.asarray(statistic(df.iloc[rows]), dtype=float)
    q = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices -> NaN, on purpose
        lo, hi = np.nanpercentile(reps, q, axis=0)
    return _unwrap((lo, hi), probe.ndim)


def _unwrap(pair, ndim):
    lo, hi = pair
    if ndim == 0:
        return float(lo), float(hi)
    return np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)


# --------------------------------------------------------------------------- all together


def gap_statistics(
    df: pd.DataFrame,
    acc_key: str = DEFAULT_ACC_KEY,
    mse_key: str = DEFAULT_MSE_KEY,
    bins: int = DEFAULT_BINS,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """Γ, ρ, bin table, per-sign statistics and bootstrap intervals of a tidy table.

    Every row of `df` (one per run and epoch; filter states beforehand) is one point
    (df[mse_key], df[acc_key]); rows where either is NaN are dropped and counted.

    Returns a JSON-serialisable dict (NaN written as None, so
    `json.dumps(result, allow_nan=False)` works):
      gamma: tube_volume of all points; gamma_ci: [low, high] bootstrap interval;
      rho, p: spearman of all points; rho_ci: [low, high];
      n_points: points kept; n_runs: distinct run ids among them;
      n_dropped_nan: rows dropped because mse or acc was NaN;
      bins: bin_table of all points as a list of dicts (one per bin);
      by_sign: {"negative", "zero", "positive"} -> {condition, n_runs, n_points, gamma,
        rho, p}: the same definitions applied to the points of runs with alpha < 0,
        == 0, > 0 (Γ bins each group's own MSE range); empty groups give zeros and None;
      inputs: {acc_key, mse_key, bins, n_boot, seed, level, unit}.
    Bootstrap intervals resample runs (`bootstrap_ci`, unit = run_id) n_boot times;
    n_boot = 0 skips them (intervals None). Note that Γ is a sum of per-bin ranges, so its
    resampled values are biased low (a resample misses about a third of the runs): read
    the interval as the sampling variability of Γ, not as centred on the estimate.
    """
    for col in (mse_key, acc_key):
        if col not in df.columns:
            raise KeyError(f"column {col!r} not in the tidy table (columns: {', '.join(map(str, df.columns))})")
    valid = df[np.isfinite(df[mse_key].to_numpy(float)) & np.isfinite(df[acc_key].to_numpy(float))]
    n_dropped = int(len(df) - len(valid))

    def both(t: pd.DataFrame) -> np.ndarray:
        return np.array([tube_volume(t[mse_key], t[acc_key], bins), spearman(t[mse_key], t[acc_key])[0]])

    gamma = tube_volume(valid[mse_key], valid[acc_key], bins)
    rho, p = spearman(valid[mse_key], valid[acc_key])
    if n_boot > 0 and len(valid):
        (g_lo, r_lo), (g_hi, r_hi) = bootstrap_ci(valid, both, n_boot=n_boot, seed=seed, level=level, unit=RUN_ID)
        gamma_ci, rho_ci = [g_lo, g_hi], [r_lo, r_hi]
    else:
        gamma_ci = rho_ci = None

    by_sign = {}
    alpha = valid[ALPHA].to_numpy(float) if ALPHA in valid.columns else np.full(len(valid), np.nan)
    masks = {"negative": alpha < 0, "zero": alpha == 0, "positive": alpha > 0}
    for name, cond in SIGN_GROUPS.items():
        sub = valid[masks[name]]
        r, pv = spearman(sub[mse_key], sub[acc_key])
        by_sign[name] = {
            "condition": cond,
            "n_runs": _n_runs(sub),
            "n_points": int(len(sub)),
            "gamma": tube_volume(sub[mse_key], sub[acc_key], bins),
            "rho": r,
            "p": pv,
        }

    out = {
        "gamma": gamma,
        "gamma_ci": gamma_ci,
        "rho": rho,
        "p": p,
        "rho_ci": rho_ci,
        "n_points": int(len(valid)),
        "n_runs": _n_runs(valid),
        "n_dropped_nan": n_dropped,
        "bins": bin_table(valid[mse_key], valid[acc_key], bins).to_dict(orient="records"),
        "by_sign": by_sign,
        "inputs": {
            "acc_key": acc_key,
            "mse_key": mse_key,
            "bins": int(bins),
            "n_boot": int(n_boot),
            "seed": int(seed),
            "level": float(level),
            "unit": RUN_ID,
        },
    }
    return to_json_safe(out)


def _n_runs(df: pd.DataFrame) -> int:
    return int(df[RUN_ID].nunique()) if RUN_ID in df.columns else 0


def to_json_safe(obj):
    """Recursively converts numpy scalars/arrays to Python types and NaN/±inf to None."""
    if isinstance(obj, dict):
        return {str(k): to_json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [to_json_safe(v) for v in obj.tolist()]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if obj is None or obj is pd.NA or obj is pd.NaT:
        return None
    return obj
