"""Statistics of the reconstruction gap (SPEC section 8.3): pure functions, no I/O.

Every epoch of every run is one point (x = validation reconstruction MSE, y = accuracy).
The question is whether points with the same reconstruction quality carry very different
semantic information (a "tube"). Two numbers answer it:

* the tube volume **Γ** (`tube_volume`): bin the MSE axis, sum the per-bin accuracy spread;
* Spearman's **ρ** (`spearman`) between MSE and accuracy.

These are the original study's numbers, kept exactly. On their own they cannot tell an alpha
effect from noise and training time: `analysis.stats.gamma_null` (Γ's null distribution from seed
replicates), `analysis.stats.contrasts` (direct contrasts at equal MSE) and `analysis.stats.cross_run` (ρ across
independent units) add that, and `analysis.stats.gap.gap_statistics` puts everything together.

Style follows google-research/rliable's metrics.py: small functions, each docstring states
the exact definition.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import scipy.stats

from analysis import DEFAULT_BINS

BIN_COLUMNS = ("left", "right", "count", "mean", "std", "min", "max", "spread")


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


def tube_volume(mse, acc, bins: int = DEFAULT_BINS, edges: np.ndarray | None = None) -> float:
    """Tube volume Γ of a cloud of (MSE, accuracy) points.

    Definition (SPEC section 8.3): drop pairs where either value is NaN; cut the MSE range
    [min, max] of the remaining points into `bins` equal-width bins (np.histogram_bin_edges
    semantics: a point on an interior edge goes to the bin on its right, the maximum to the
    last bin; all points at one MSE -> a single bin); then

        Γ = Σ_{bins b with ≥ 2 points} ( max_{i∈b} acc_i − min_{i∈b} acc_i ).

    A bin with one point contributes 0; empty bins contribute nothing. Γ is in the units of
    `acc`. No points: NaN. `edges` (optional) replaces the bins by given edges (e.g. a whole
    sweep's, for a subset of its points); points outside them count in the first/last bin.
    """
    x, y, _ = finite_pairs(mse, acc)
    if x.size == 0:
        return math.nan
    edges = bin_edges(x, bins) if edges is None else np.asarray(edges, float)
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
