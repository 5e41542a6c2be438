"""Γ's null distribution: how much tube volume would this sweep show if the condition did nothing?

Γ sums, over MSE bins, the accuracy spread; part of it is there with no effect at all (seeds differ,
accuracy moves along MSE inside a bin). The null keeps everything of the sweep but the effect —
the same runs, the same MSE values, the same bin edges — and redraws accuracy `n_draws` times
(pure functions, no I/O):

1. **common curve** f: accuracy = a quadratic in MSE + one offset per condition, least squares
   over every point. A quadratic because it is smooth and cannot bend where a condition's range
   begins (a mean of per-condition curves jumps there); the offsets keep condition effects out of
   its shape. Under the null accuracy is f(MSE), the offsets' point-weighted mean as its level;
2. **noise model**, from the residuals r = acc - f(MSE) - offset_c arranged by epoch: a run's
   noise is a seed part shared by every run of that seed (the same init, shuffle and crops) plus
   its own part, each a Gaussian process over epochs with any E x E covariance, so within-run
   autocorrelation survives. Unbiased moment estimates from within-condition deviations
   D_i = r_i - mean_{c(i)} r: Σ_total = Σ_c Σ_{i in c} D_i D_i^T / Σ_c (n_c - 1), and Σ_seed =
   Σ over same-seed pairs (i in c, j in c', c != c') of D_i D_j^T / Σ k_cc' with
   k_cc' = 1 - 1/n_c - 1/n_c' + m_cc'/(n_c n_c') (m_cc': seeds c and c' share); Σ_run = Σ_total -
   Σ_seed; both clipped to positive semi-definite;
3. **null draws**: acc* = f(MSE) + u*_seed + e*_run, Γ* on the sweep's own bin edges (each point
   stays in its bin: MSE is unchanged);
4. **report**: noise_floor = median Γ*, noise_floor_q95, gamma_excess = Γ - median, and
   gamma_p = (1 + #{T* >= T}) / (1 + B) with T = Γ / s, s the pooled SD of accuracy within
   (condition, epoch) groups (recomputed in every draw): Γ scales with the noise the model was
   fitted to, and the studentized T makes gamma_p uniform (calibration), where Γ* >= Γ alone piles
   up mid-range. Per sign group the same null restricted to its points.

The covariances are averaged along each lag (stationary noise: E numbers instead of E^2 / 2, which
50 epochs and a few seeds cannot estimate).

No condition with >= 2 runs: no within-condition deviation, no noise model, no null (a reason
says so). Calibration (tests/test_gamma_null.py): gamma_p is uniform on synthetic null sweeps in
the real sweep's regime, and small with a 5 pp effect.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis import RUN_ID, SEED
from mae_gap.metrics import EPOCH
from analysis.stats.conditions import CONDITION, runs_table
from analysis.stats.tube import bin_index, tube_volume

N_DRAWS = 2000


@dataclass(frozen=True)
class GammaNull:
    """Γ against its null distribution (module docstring); None where there is no null."""

    gamma: float | None
    noise_floor: float | None = None
    noise_floor_q95: float | None = None
    gamma_excess: float | None = None
    gamma_p: float | None = None
    n_draws: int = 0
    null_spread: list = field(default_factory=list)  # median null spread per bin (the figure's hatching)
    reason: str | None = None


@dataclass(frozen=True)
class NoiseModel:
    """The fitted null: f(MSE) at every point, and the seed and run covariances over epochs."""

    level: np.ndarray  # (points,) f(MSE) under the null
    run_index: np.ndarray  # (points,) run of each point (0..runs-1)
    epoch_index: np.ndarray  # (points,) epoch column of each point
    seed_index: np.ndarray  # (runs,) seed block of each run
    sigma_seed: np.ndarray  # (E, E)
    sigma_run: np.ndarray  # (E, E)


def _psd(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.clip(w, 0, None)) @ v.T


def fit_noise_model(valid: pd.DataFrame, acc_key: str, mse_key: str) -> NoiseModel | str:
    """The common curve and the noise model of points 1-2; a reason (str) when there is none."""
    runs = runs_table(valid)
    run_ids = runs[RUN_ID].tolist()
    run_of = {r: i for i, r in enumerate(run_ids)}
    ri = valid[RUN_ID].map(run_of).to_numpy()
    cond_codes = runs[CONDITION].astype("category").cat.codes.to_numpy()
    cond = cond_codes[ri]
    n_c = np.bincount(cond_codes)
    if (n_c >= 2).sum() == 0:
        return "no condition has 2 or more seeds: seed noise cannot be measured, so Γ has no null (add seeds)"
    m, y = valid[mse_key].to_numpy(float), valid[acc_key].to_numpy(float)
    mc = m - m.mean()
    degree = min(2, len(np.unique(m)) - 1)
    design = np.column_stack([mc**k for k in range(1, degree + 1)] + [cond == k for k in range(len(n_c))]).astype(float)
    beta = np.linalg.lstsq(design, y, rcond=None)[0]
    offsets = beta[degree:]
    level = design[:, :degree] @ beta[:degree] + np.average(offsets[cond], axis=0)
    resid = y - design @ beta
    epochs = np.unique(valid[EPOCH].to_numpy())
    ei = np.searchsorted(epochs, valid[EPOCH].to_numpy())
    r = np.full((len(run_ids), epochs.size), np.nan)
    r[ri, ei] = resid
    sigma_total, sigma_seed = _covariances(r, cond_codes, runs[SEED].to_numpy())
    seeds = pd.factorize(runs[SEED].to_numpy())[0]
    sigma_seed = _psd(_toeplitz(sigma_seed))
    return NoiseModel(level, ri, ei, seeds, sigma_seed, _psd(_toeplitz(sigma_total) - sigma_seed))


def _toeplitz(a: np.ndarray) -> np.ndarray:
    """The stationary estimate: every lag's covariances averaged (E values instead of E^2 / 2)."""
    e = a.shape[0]
    lag = np.abs(np.subtract.outer(np.arange(e), np.arange(e)))
    return np.bincount(lag.ravel(), weights=a.ravel(), minlength=e)[lag] / np.bincount(lag.ravel(), minlength=e)[lag]


def _covariances(r: np.ndarray, cond: np.ndarray, seed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Σ_total, Σ_seed) of point 2, from the (runs, E) residuals (NaN where a run lacks an epoch)."""
    present = np.isfinite(r)
    dev = np.zeros_like(r)
    dof = np.zeros((r.shape[1], r.shape[1]))
    for c in np.unique(cond):
        rows = cond == c
        with np.errstate(invalid="ignore"):
            mean = np.nanmean(np.where(present[rows], r[rows], np.nan), axis=0) if present[rows].any() else 0
        dev[rows] = np.where(present[rows], r[rows] - mean, 0.0)
        p = present[rows].astype(float)
        dof += np.maximum(p.T @ p - 1, 0) * (p.T @ p > 0)
    total = (dev.T @ dev) / np.maximum(dof, 1)
    n = np.bincount(cond)
    shared = {}
    for a in np.unique(cond):
        for b in np.unique(cond):
            if a < b:
                shared[a, b] = len(set(seed[cond == a]) & set(seed[cond == b]))
    num, den = np.zeros_like(total), 0.0
    for i in range(len(cond)):
        for j in range(len(cond)):
            if cond[i] < cond[j] and seed[i] == seed[j] and seed[i] >= 0:
                k = 1 - 1 / n[cond[i]] - 1 / n[cond[j]] + shared[cond[i], cond[j]] / (n[cond[i]] * n[cond[j]])
                num += np.outer(dev[i], dev[j]) + np.outer(dev[j], dev[i])
                den += 2 * k
    return total, (num / den if den > 0 else np.zeros_like(total))


def null_draws(model: NoiseModel, n_draws: int, rng: np.random.Generator) -> np.ndarray:
    """(n_draws, points) null accuracies of point 3."""
    e = model.sigma_run.shape[0]
    n_runs, n_seeds = model.seed_index.size, int(model.seed_index.max()) + 1
    u = rng.multivariate_normal(np.zeros(e), model.sigma_seed, size=(n_draws, n_seeds), method="eigh")
    eps = rng.multivariate_normal(np.zeros(e), model.sigma_run, size=(n_draws, n_runs), method="eigh")
    noise = u[:, model.seed_index, :] + eps  # (B, runs, E)
    return model.level + noise[:, model.run_index, model.epoch_index]


def gamma_of_draws(acc: np.ndarray, mse: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Γ (`stats.tube_volume` on fixed `edges`) of every row of `acc` (draws, points) at once ->
    (Γ per draw, (draws, occupied bins) spreads, the occupied bins' numbers)."""
    idx = bin_index(mse, edges)
    order = np.argsort(idx, kind="stable")
    idx_sorted = idx[order]
    starts = np.flatnonzero(np.r_[True, np.diff(idx_sorted) > 0])
    counts = np.diff(np.r_[starts, idx_sorted.size])
    a = acc[:, order]
    spread = np.maximum.reduceat(a, starts, axis=1) - np.minimum.reduceat(a, starts, axis=1)
    return spread[:, counts >= 2].sum(axis=1), spread, idx_sorted[starts]


def within_sd(acc: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Pooled SD of accuracy within (condition, epoch) groups, per row of `acc` (draws, points): the
    noise scale Γ is divided by, so that gamma_p compares like with like (a sweep whose seeds happen
    to scatter more also gets a wider null; without it the p-values pile up mid-range)."""
    n_groups = int(groups.max()) + 1
    counts = np.bincount(groups, minlength=n_groups).astype(float)
    onehot = np.zeros((groups.size, n_groups))
    onehot[np.arange(groups.size), groups] = 1.0
    means = (acc @ onehot) / np.maximum(counts, 1)
    dof = max(float(np.clip(counts - 1, 0, None).sum()), 1.0)
    return np.sqrt(((acc - means[:, groups]) ** 2).sum(axis=1) / dof)


def gamma_nulls(valid: pd.DataFrame, acc_key: str, mse_key: str, edges: np.ndarray, subsets: dict,
                n_draws: int = N_DRAWS, seed: int = 0) -> dict[str, GammaNull]:
    """{name: GammaNull} for each boolean point mask of `subsets` (e.g. "all", the sign groups), on
    the same null draws. Draws are made in chunks, so memory stays bounded on large sweeps."""
    mse, acc = valid[mse_key].to_numpy(float), valid[acc_key].to_numpy(float)
    observed = {k: tube_volume(mse[m], acc[m], edges=edges) if m.any() else None for k, m in subsets.items()}
    model = fit_noise_model(valid, acc_key, mse_key) if len(valid) else "no points"
    if isinstance(model, str):
        return {k: GammaNull(g, reason=model) for k, g in observed.items()}
    cond = runs_table(valid).set_index(RUN_ID)[CONDITION]
    groups = pd.factorize(valid[RUN_ID].map(cond).astype(str) + "|" + valid[EPOCH].astype(str))[0]
    scale = float(within_sd(acc[None, :], groups)[0])
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_draws, 4_000_000 // max(len(valid), 1)))
    null = {k: [] for k in subsets}
    spreads = {k: [] for k in subsets}
    scales = []
    for start in range(0, n_draws, chunk):
        draws = null_draws(model, min(chunk, n_draws - start), rng)
        scales.append(within_sd(draws, groups))
        for k, m in subsets.items():
            if m.any():
                g, spread, bins = gamma_of_draws(draws[:, m], mse[m], edges)
                null[k].append(g)
                spreads[k].append(spread)
    scales = np.concatenate(scales)
    out = {}
    for k, m in subsets.items():
        if not m.any():
            out[k] = GammaNull(None, reason="no points")
            continue
        g, gamma = np.concatenate(null[k]), observed[k]
        _, _, bins = gamma_of_draws(acc[None, m], mse[m], edges)
        per_bin = [None] * (len(edges) - 1)
        for b, v in zip(bins, np.median(np.concatenate(spreads[k]), axis=0)):
            per_bin[int(b)] = float(v)
        hits = int(np.sum(g / scales >= gamma / scale - 1e-12)) if scale > 0 else int(np.sum(g >= gamma - 1e-12))
        median = float(np.median(g))
        out[k] = GammaNull(gamma, median, float(np.quantile(g, 0.95)), gamma - median, (1 + hits) / (1 + g.size),
                           g.size, per_bin)
    return out
