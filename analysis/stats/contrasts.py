"""Direct contrasts at equal MSE: does a condition change accuracy *at equal reconstruction quality*?

Pooled points confound the condition with training time (every run improves as it trains), and a
pooled accuracy-vs-MSE curve of all runs lets one condition's effect move when another condition
is added. A condition's effect here is computed from its own runs and its reference's runs only
(pure functions, no I/O; definitions as in rliable):

1. **run curve**: a run's accuracy as a function of its MSE, linear interpolation between its
   epochs sorted by MSE (epochs at equal MSE averaged), on [min, max] of its MSE, never extrapolated;
2. **pair contrast** of run c against reference run r: over the MSE range both runs cover,
   [lo, hi] = [max(min_c, min_r), min(max_c, max_r)], the mean over `GRID_POINTS` equally spaced
   MSE values of acc_c(m) - acc_r(m). It is *estimable* when each run has >= `MIN_EPOCHS_INSIDE`
   measured epochs inside [lo, hi]: below that, the difference rests on one measured point of a run
   and a chord through it (the calibration of tests/test_contrasts.py shows the bias this brings on
   slivers, and that 2 points keep it under 0.5 pp);
3. **paired design** (the condition and its reference share >= `MIN_PAIRS` seeds; seed s gives both
   the same initial weights, shuffle and crops, so the pair removes the seed's shared effect):
   d_s = pair contrast of the two runs of seed s; effect_pp = 100 * mean_s d_s over the estimable
   pairs; interval: Student's t on n - 1 df; `t_p_value` its two-sided p; `p_value`: the exact
   sign-flip test of mean d = 0 (all 2^n sign arrangements when 2^n <= `EXACT_LIMIT`, Monte-Carlo
   above), whose `min_attainable_p` is 2 / 2^n (5 pairs: 0.0625, so 6 pairs are needed for p < 0.05);
4. **unpaired design** (fewer shared seeds): every run of both conditions on the MSE range all of
   them cover; effect = difference of the conditions' mean run averages; Welch's t interval; exact
   label permutation p (Monte-Carlo above `EXACT_LIMIT` arrangements);
5. **not estimable**: fewer than `MIN_PAIRS` estimable pairs (runs): no number, no interval, a reason;
6. **omnibus**: is any condition different from its reference? Bonferroni over the estimable
   conditions' p-values (valid under any dependence between them, conservative).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.stats

from analysis import RUN_ID, SEED
from analysis.stats.conditions import CONDITION, Reference, condition_order, parameter_columns, reference_of, runs_table

GRID_POINTS = 50
MIN_EPOCHS_INSIDE = 2
MIN_PAIRS = 2
EXACT_LIMIT = 100_000


def run_curve(mse, acc) -> tuple[np.ndarray, np.ndarray]:
    """(x, y): the run's finite points sorted by MSE, points at equal MSE averaged."""
    x, y = np.asarray(mse, float), np.asarray(acc, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return np.empty(0), np.empty(0)
    ux, inverse = np.unique(x[ok], return_inverse=True)
    return ux, np.bincount(inverse, weights=y[ok]) / np.bincount(inverse)


def inside(x: np.ndarray, lo: float, hi: float) -> int:
    return int(np.sum((x >= lo) & (x <= hi)))


def mean_on(curve, lo: float, hi: float, n_grid: int = GRID_POINTS) -> float:
    """Mean of the run curve over `n_grid` equally spaced MSE values in [lo, hi]."""
    return float(np.interp(np.linspace(lo, hi, n_grid), *curve).mean())


@dataclass(frozen=True)
class PairContrast:
    """One seed's contrast: run minus reference run over their shared MSE range (in pp)."""

    seed: int
    run: str
    reference_run: str
    estimable: bool
    effect_pp: float | None = None
    shared_mse: tuple[float, float] | None = None
    epochs_inside: tuple[int, int] = (0, 0)
    shared_fraction: tuple[float, float] = (0.0, 0.0)
    reason: str | None = None


def pair_contrast(curve, ref_curve, seed: int = -1, run: str = "", reference_run: str = "",
                  n_grid: int = GRID_POINTS) -> PairContrast:
    """The pair contrast of the module docstring (point 2)."""
    (x, y), (xr, yr) = curve, ref_curve
    if not x.size or not xr.size:
        return PairContrast(seed, run, reference_run, False, reason="a run has no finite point")
    lo, hi = max(x[0], xr[0]), min(x[-1], xr[-1])
    if hi <= lo:
        return PairContrast(seed, run, reference_run, False, reason="the MSE ranges do not overlap")
    n_in = (inside(x, lo, hi), inside(xr, lo, hi))
    frac = ((hi - lo) / max(x[-1] - x[0], 1e-300), (hi - lo) / max(xr[-1] - xr[0], 1e-300))
    common = dict(shared_mse=(float(lo), float(hi)), epochs_inside=n_in, shared_fraction=frac)
    if min(n_in) < MIN_EPOCHS_INSIDE:
        return PairContrast(seed, run, reference_run, False, **common,
                            reason=f"MSE {lo:.4g}-{hi:.4g} holds {n_in[0]} and {n_in[1]} measured epochs "
                                   f"(needs {MIN_EPOCHS_INSIDE} of each run)")
    grid = np.linspace(lo, hi, n_grid)
    d = float(np.mean(np.interp(grid, x, y) - np.interp(grid, xr, yr)))
    return PairContrast(seed, run, reference_run, True, 100 * d, **common)


def sign_flip_p(d, n_draws: int = 20_000, seed: int = 0) -> tuple[float, float, str]:
    """(p, min_attainable_p, method) of the two-sided sign-flip test of mean(d) = 0."""
    d = np.asarray(d, float)
    n, stat = d.size, abs(d.sum())
    tol = 1e-12 * max(1.0, np.abs(d).sum())
    if n <= math.log2(EXACT_LIMIT):
        signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)  # (2^n, n) every arrangement
        sums = np.abs(signs @ d)
        return float(np.mean(sums >= stat - tol)), float(np.mean(sums >= sums.max() - tol)), f"exact sign-flip, {2**n} arrangements"
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(n_draws, n))
    hits = int(np.sum(np.abs(signs @ d) >= stat - tol))
    return (1 + hits) / (1 + n_draws), 1 / (1 + n_draws), f"Monte-Carlo sign-flip, {n_draws} draws"


def label_permutation_p(a, b, n_draws: int = 20_000, seed: int = 0) -> tuple[float, float, str]:
    """(p, min_attainable_p, method) of the two-sided permutation test of mean(a) = mean(b)."""
    pooled = np.concatenate([np.asarray(a, float), np.asarray(b, float)])
    n, k = pooled.size, len(a)
    total = pooled.sum()

    def stats(sums):  # |mean of group a - mean of group b| for group-a sums
        return np.abs(sums / k - (total - sums) / (n - k))

    stat = float(stats(np.asarray(a, float).sum()))
    tol = 1e-12 * max(1.0, np.abs(pooled).sum())
    if math.comb(n, k) <= EXACT_LIMIT:
        idx = np.array(list(itertools.combinations(range(n), k)))
        null = stats(pooled[idx].sum(axis=1))
        return float(np.mean(null >= stat - tol)), float(np.mean(null >= null.max() - tol)), \
            f"exact permutation, {len(idx)} arrangements"
    rng = np.random.default_rng(seed)
    perms = np.argsort(rng.random((n_draws, n)), axis=1)[:, :k]
    hits = int(np.sum(stats(pooled[perms].sum(axis=1)) >= stat - tol))
    return (1 + hits) / (1 + n_draws), 1 / (1 + n_draws), f"Monte-Carlo permutation, {n_draws} draws"


@dataclass(frozen=True)
class Contrast:
    """A condition against its reference at equal MSE (the module docstring); pp = percentage points."""

    condition: str
    parameters: dict
    reference: str
    design: str  # "paired" | "unpaired"
    estimable: bool
    n_pairs: int = 0
    effect_pp: float | None = None
    ci_low_pp: float | None = None
    ci_high_pp: float | None = None
    sd_pp: float | None = None  # SD over seeds of the pair contrasts (paired design)
    p_value: float | None = None
    t_p_value: float | None = None
    min_attainable_p: float | None = None
    p_method: str | None = None
    shared_mse: tuple[float, float] | None = None
    shared_fraction: dict = field(default_factory=dict)
    reason: str | None = None
    pairs: tuple[PairContrast, ...] = ()
    curve: dict = field(default_factory=dict)  # {"mse": grid, "pairs": [[pp]], "mean": [pp]} for the figure

    def to_json(self) -> dict:
        out = {**self.parameters, **{k: v for k, v in self.__dict__.items() if k not in ("parameters", "pairs")}}
        out["pairs"] = [p.__dict__ for p in self.pairs]
        return out


def contrast(curves: dict, runs: pd.DataFrame, condition: str, reference: Reference = Reference(),
             level: float = 0.95, n_grid: int = GRID_POINTS, seed: int = 0) -> Contrast | None:
    """The contrast of `condition` (a label of `runs_table`) with its reference; None for a
    reference condition. `curves`: {run id: run_curve}."""
    mine = runs[runs[CONDITION] == condition]
    params = {c: _plain(mine[c].iloc[0]) for c in runs.columns if c not in (RUN_ID, SEED, CONDITION)}
    ref_ids = reference_of(runs, condition, reference)
    if reference.matches(mine[reference.key]).all() if reference.key in mine.columns else False:
        return None
    base = dict(condition=condition, parameters=params, reference=str(reference))
    if not ref_ids:
        return Contrast(**base, design="none", estimable=False,
                        reason=f"no reference runs ({reference} with the other parameters equal)")
    ref = runs[runs[RUN_ID].isin(ref_ids)]
    ref_by_seed = dict(zip(ref[SEED], ref[RUN_ID]))  # one reference run per seed (the first)
    shared = [s for s in dict.fromkeys(mine[SEED]) if s in ref_by_seed and s >= 0]
    if len(shared) >= MIN_PAIRS:
        return _paired(base, curves, mine, ref_by_seed, shared, level, n_grid, seed)
    return _unpaired(base, curves, mine[RUN_ID].tolist(), ref[RUN_ID].tolist(), level, n_grid, seed)


def _paired(base, curves, mine, ref_by_seed, shared, level, n_grid, seed) -> Contrast:
    run_of = dict(zip(mine[SEED], mine[RUN_ID]))
    pairs = tuple(pair_contrast(curves[run_of[s]], curves[ref_by_seed[s]], int(s), run_of[s], ref_by_seed[s], n_grid)
                  for s in shared)
    ok = [p for p in pairs if p.estimable]
    common = dict(**base, design="paired", pairs=pairs, n_pairs=len(ok), curve=_curve(curves, pairs, n_grid))
    if len(ok) < MIN_PAIRS:
        why = "; ".join(f"seed {p.seed}: {p.reason}" for p in pairs if not p.estimable)
        return Contrast(**common, estimable=False,
                        reason=f"{len(ok)} estimable seed pair(s), needs {MIN_PAIRS}" + (f" ({why})" if why else ""))
    d = np.array([p.effect_pp for p in ok])
    ci_low, ci_high, t_p = _t_interval(d, level)
    p, p_min, method = sign_flip_p(d, seed=seed)
    lo, hi = min(p.shared_mse[0] for p in ok), max(p.shared_mse[1] for p in ok)
    fractions = {"condition": float(np.mean([p.shared_fraction[0] for p in ok])),
                 "reference": float(np.mean([p.shared_fraction[1] for p in ok]))}
    return Contrast(**common, estimable=True, effect_pp=float(d.mean()), ci_low_pp=ci_low, ci_high_pp=ci_high,
                    sd_pp=float(d.std(ddof=1)), p_value=p, t_p_value=t_p, min_attainable_p=p_min, p_method=method,
                    shared_mse=(lo, hi), shared_fraction=fractions)


def _unpaired(base, curves, ids, ref_ids, level, n_grid, seed) -> Contrast:
    common = dict(**base, design="unpaired", n_pairs=0)
    if len(ids) < MIN_PAIRS or len(ref_ids) < MIN_PAIRS:
        return Contrast(**common, estimable=False, reason=f"unpaired seeds: {len(ids)} and {len(ref_ids)} runs, "
                                                          f"needs {MIN_PAIRS} of each")
    spans = [curves[r] for r in ids + ref_ids]
    if any(not x.size for x, _ in spans):
        return Contrast(**common, estimable=False, reason="a run has no finite point")
    lo, hi = max(x[0] for x, _ in spans), min(x[-1] for x, _ in spans)
    few = [r for r in ids + ref_ids if hi <= lo or inside(curves[r][0], lo, hi) < MIN_EPOCHS_INSIDE]
    if few:
        return Contrast(**common, estimable=False,
                        reason=f"unpaired seeds: the MSE range every run covers holds < {MIN_EPOCHS_INSIDE} "
                               f"measured epochs of {len(few)} run(s)")
    a = 100 * np.array([mean_on(curves[r], lo, hi, n_grid) for r in ids])
    b = 100 * np.array([mean_on(curves[r], lo, hi, n_grid) for r in ref_ids])
    ci = scipy.stats.ttest_ind(a, b, equal_var=False)
    low, high = ci.confidence_interval(level) if np.ptp(np.r_[a, b]) > 0 else (math.nan, math.nan)
    p, p_min, method = label_permutation_p(a, b, seed=seed)
    return Contrast(**common, estimable=True, effect_pp=float(a.mean() - b.mean()), ci_low_pp=float(low),
                    ci_high_pp=float(high), p_value=p, t_p_value=float(ci.pvalue), min_attainable_p=p_min,
                    p_method=method, shared_mse=(float(lo), float(hi)))


def _t_interval(d: np.ndarray, level: float) -> tuple[float, float, float]:
    if np.ptp(d) <= 1e-12 * max(1.0, float(np.abs(d).max())):  # no spread: t is undefined
        return float(d[0]), float(d[0]), 0.0 if d[0] != 0 else 1.0
    t = scipy.stats.ttest_1samp(d, 0.0)
    ci = t.confidence_interval(level)
    return float(ci.low), float(ci.high), float(t.pvalue)


def _curve(curves, pairs, n_grid) -> dict:
    """The difference acc_c - acc_ref (pp) of every pair on one grid over the pairs' shared ranges."""
    spans = [p.shared_mse for p in pairs if p.shared_mse]
    if not spans:
        return {}
    grid = np.linspace(min(s[0] for s in spans), max(s[1] for s in spans), n_grid)
    rows = []
    for p in pairs:
        row = np.full(grid.size, np.nan)
        if p.shared_mse:
            m = (grid >= p.shared_mse[0]) & (grid <= p.shared_mse[1])
            row[m] = 100 * (np.interp(grid[m], *curves[p.run]) - np.interp(grid[m], *curves[p.reference_run]))
        rows.append(row)
    rows = np.array(rows)
    defined = np.isfinite(rows).any(axis=0)
    mean = np.full(grid.size, np.nan)
    mean[defined] = np.nanmean(rows[:, defined], axis=0)
    return {"mse": grid.tolist(), "pairs": rows.tolist(), "seeds": [p.seed for p in pairs], "mean": mean.tolist()}


def _plain(v):
    return v.item() if isinstance(v, np.generic) else v


def run_curves(df: pd.DataFrame, acc_key: str, mse_key: str) -> dict:
    """{run id: run_curve} of every run of the tidy table."""
    return {rid: run_curve(g[mse_key], g[acc_key]) for rid, g in df.groupby(RUN_ID, sort=False)}


@dataclass(frozen=True)
class Omnibus:
    """Is any condition different from its reference? (Bonferroni over the estimable contrasts)."""

    p_value: float | None
    t_p_value: float | None
    min_attainable_p: float | None
    n_contrasts: int
    method: str = "Bonferroni over the estimable conditions' p-values"


def contrasts(df: pd.DataFrame, acc_key: str, mse_key: str, reference: Reference = Reference(),
              level: float = 0.95, n_grid: int = GRID_POINTS, seed: int = 0) -> tuple[list[Contrast], Omnibus]:
    """Every non-reference condition's `Contrast` (in `condition_order`) and the omnibus test."""
    runs = runs_table(df)
    if reference.key not in parameter_columns(df):
        raise ValueError(f"--reference {reference}: {reference.key!r} is not a parameter of these runs "
                         f"(parameters: {', '.join(parameter_columns(df))})")
    curves = run_curves(df, acc_key, mse_key)
    out = [c for c in (contrast(curves, runs, cond, reference, level, n_grid, seed) for cond in condition_order(runs))
           if c is not None]
    ok = [c for c in out if c.estimable]
    k = len(ok)
    omni = Omnibus(min(1.0, k * min(c.p_value for c in ok)) if k else None,
                   min(1.0, k * min(c.t_p_value for c in ok)) if k else None,
                   min(1.0, k * min(c.min_attainable_p for c in ok)) if k else None, k)
    return out, omni
