"""Direct contrasts at equal MSE (analysis.stats.contrasts): hand-computed values, the committed table
recomputed independently, invariance to other conditions, slivers, exact p-values, and the
calibration in the real sweep's regime (its figures are printed: run with -s to read them)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import ALPHA, ALPHA_MODE, RUN_ID, SEED
from analysis.stats.conditions import Reference, runs_table
from analysis.stats.contrasts import (
    MIN_EPOCHS_INSIDE,
    contrast,
    contrasts,
    label_permutation_p,
    pair_contrast,
    run_curve,
    sign_flip_p,
)
from analysis.pull.tidy import read_table
from mae_gap.metrics import VAL_LINEAR_ACC, VAL_MSE
from synthetic_sweeps import sweep, sweep_arrays

TABLE = Path(__file__).resolve().parents[1] / "analysis" / "results" / "imagenette_cpu" / "trajectories.csv"
ACC, MSE = VAL_LINEAR_ACC, VAL_MSE


def test_pair_contrast_by_hand():
    # run: acc = 1 - m on m in [0, 1]; reference: acc = 0.5 - m on [0.5, 2]: shared [0.5, 1], d = 0.5
    c = pair_contrast(run_curve([0.0, 0.5, 1.0], [1.0, 0.5, 0.0]), run_curve([0.5, 0.75, 2.0], [0.0, -0.25, -1.5]))
    assert c.estimable and c.effect_pp == pytest.approx(50.0)
    assert c.shared_mse == (0.5, 1.0) and c.epochs_inside == (2, 2)
    assert c.shared_fraction == pytest.approx((0.5, 1 / 3))
    sliver = pair_contrast(run_curve([0.0, 0.5, 1.0], [1, 0.5, 0]), run_curve([0.9, 1.5, 2.0], [0, 0, 0]))
    assert not sliver.estimable and sliver.effect_pp is None and "needs 2 of each run" in sliver.reason
    apart = pair_contrast(run_curve([0.0, 1.0], [1, 0]), run_curve([2.0, 3.0], [0, 0]))
    assert not apart.estimable and "do not overlap" in apart.reason


def test_sign_flip_and_permutation_p_by_hand():
    # d = 1, 2, 3: of the 8 sign arrangements |sum| >= 6 for 2 of them
    assert sign_flip_p([1.0, 2.0, 3.0])[:2] == (0.25, 0.25)
    # |sum| >= |1 - 2 + 3| = 2: sums are ±6, ±4, ±2, ±0 -> 6 of 8
    assert sign_flip_p([1.0, -2.0, 3.0])[0] == pytest.approx(6 / 8)
    assert sign_flip_p(np.ones(5))[1] == pytest.approx(2 / 32)  # 5 pairs can never reach 0.05
    # a = {3, 4} vs b = {1, 2}: of the C(4, 2) = 6 splits, {3, 4} and {1, 2} give the largest |difference|
    p, p_min, method = label_permutation_p([3.0, 4.0], [1.0, 2.0])
    assert (p, p_min) == pytest.approx((2 / 6, 2 / 6)) and "exact" in method


def test_run_curve_sorts_averages_ties_and_drops_non_finite_points():
    x, y = run_curve([0.9, 0.5, 0.7, 0.5, math.nan], [0.1, 0.4, 0.2, 0.6, 0.9])
    assert x.tolist() == [0.5, 0.7, 0.9] and y == pytest.approx([0.5, 0.2, 0.1])


def test_paired_interval_and_omnibus_by_hand():
    """On the committed table: the paired t interval is mean ± t(0.975, n - 1) · sd / √n of the seed
    pairs' contrasts, its p is 2 · P(T > |t|); the omnibus is Bonferroni (k times the smallest p)."""
    import scipy.stats

    found, omni = contrasts(read_table(TABLE), ACC, MSE)
    ok = [c for c in found if c.estimable]
    for c in ok:
        d = np.array([p.effect_pp for p in c.pairs])
        n, sd = len(d), d.std(ddof=1)
        half = scipy.stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
        assert (c.ci_low_pp, c.ci_high_pp) == pytest.approx((d.mean() - half, d.mean() + half))
        assert c.t_p_value == pytest.approx(2 * scipy.stats.t.sf(abs(d.mean()) / (sd / math.sqrt(n)), n - 1))
        assert c.min_attainable_p == pytest.approx(2 / 2 ** n)
    k = len(ok)
    assert omni.n_contrasts == k == 2
    assert omni.p_value == pytest.approx(min(1, k * min(c.p_value for c in ok)))
    assert omni.t_p_value == pytest.approx(min(1, k * min(c.t_p_value for c in ok)))
    assert omni.min_attainable_p == pytest.approx(k * 2 / 2 ** 5)  # 0.125: 5 seed pairs cannot say more


def test_no_reference_runs_is_said_not_estimated():
    df = sweep(np.random.default_rng(1), (-1.0, 1.0), seeds=3, epochs=6)
    found, omni = contrasts(df, ACC, MSE)
    assert [c.condition for c in found] == ["α=-1", "α=1"]
    for c in found:
        assert not c.estimable and c.effect_pp is None and c.ci_low_pp is None and c.design == "none"
        assert c.reason == "no reference runs (alpha=0 with the other parameters equal)"
    assert omni.p_value is None and omni.n_contrasts == 0


def test_many_pairs_never_overflow():
    """2,000 pairs (400 seeds x 5 conditions are 2,000 runs): Monte-Carlo p, no float overflow."""
    d = np.random.default_rng(0).standard_normal(2000) + 0.1
    p, p_min, method = sign_flip_p(d, n_draws=999)
    assert 0 < p <= 1 and p_min == pytest.approx(1 / 1000) and "Monte-Carlo" in method
    p, p_min, method = label_permutation_p(d[:1000], d[1000:], n_draws=999)
    assert 0 < p <= 1 and "Monte-Carlo" in method


def _by_hand(df: pd.DataFrame, run: str, ref: str) -> float:
    """An independent recomputation of one pair contrast (pp): interpolate both runs on 50 MSE
    values over the intersection of their ranges and average the difference."""
    def curve(rid):
        g = df[df[RUN_ID] == rid].groupby(MSE)[ACC].mean().sort_index()
        return g.index.to_numpy(float), g.to_numpy(float)
    (x, y), (xr, yr) = curve(run), curve(ref)
    grid = np.linspace(max(x.min(), xr.min()), min(x.max(), xr.max()), 50)
    return 100 * float(np.mean(np.interp(grid, x, y) - np.interp(grid, xr, yr)))


def test_committed_table_effects_are_direct_paired_contrasts():
    df = read_table(TABLE)
    found, _ = contrasts(df, ACC, MSE)
    runs = runs_table(df)
    ref = runs[runs[ALPHA] == 0].set_index(SEED)[RUN_ID]
    estimable = [c for c in found if c.estimable]
    assert estimable, "the committed sweep has estimable contrasts"
    for c in estimable:
        mine = runs[runs["condition"] == c.condition].set_index(SEED)[RUN_ID]
        by_hand = [_by_hand(df, mine[s], ref[s]) for s in mine.index]
        assert c.effect_pp == pytest.approx(np.mean(by_hand), abs=0.01)
        assert [p.effect_pp for p in c.pairs] == pytest.approx(by_hand, abs=0.01)
        print(f"{c.condition}: {c.effect_pp:+.2f} pp = mean of {', '.join(f'{d:+.2f}' for d in by_hand)}")


def test_dropping_another_condition_changes_no_effect():
    df = read_table(TABLE)
    full = {c.condition: c.effect_pp for c in contrasts(df, ACC, MSE)[0]}
    runs = runs_table(df)
    others = [c for c in full if c != "α=0"]
    for dropped in others:
        keep = runs[runs["condition"] != dropped][RUN_ID]
        part = {c.condition: c.effect_pp for c in contrasts(df[df[RUN_ID].isin(keep)], ACC, MSE)[0]}
        assert part == {k: v for k, v in full.items() if k != dropped}


def test_sliver_overlap_is_not_estimable():
    """grl α = -1 meets α = 0 only at the edge of its range (one α = 0 epoch inside): no number."""
    df = read_table(TABLE)
    sliver = next(c for c in contrasts(df, ACC, MSE)[0] if c.condition == "α=-1")
    assert not sliver.estimable
    assert sliver.effect_pp is None and sliver.ci_low_pp is None and sliver.p_value is None
    assert "estimable seed pair" in sliver.reason and "measured epochs" in sliver.reason


def test_reference_ignores_alpha_mode_and_follows_other_parameters():
    rng = np.random.default_rng(0)
    df = sweep(rng, (-1.0, 0.0, 1.0), seeds=3, epochs=6, shifts={-1.0: 0.02}, effects={-1.0: -0.05})
    conf = df[df[ALPHA] == -1].assign(**{ALPHA_MODE: "confusion", RUN_ID: lambda d: d[RUN_ID] + "c"})
    df = pd.concat([df, conf])
    effects = {c.condition: c for c in contrasts(df, ACC, MSE)[0]}
    assert set(effects) == {"α=-1", "α=-1 confusion", "α=1"}
    assert effects["α=-1 confusion"].effect_pp == pytest.approx(effects["α=-1"].effect_pp)
    # a mask_ratio sweep: the reference is mask_ratio = 0.75 with the same alpha
    mask = df[df[ALPHA_MODE] == "grl"].assign(mask_ratio=0.75)
    high = mask.assign(mask_ratio=0.9, **{RUN_ID: mask[RUN_ID] + "m"})
    high[ACC] += 0.02
    both = pd.concat([mask, high])
    by_mask = {c.condition: c for c in contrasts(both, ACC, MSE, Reference.parse("mask_ratio=0.75"))[0]}
    assert set(by_mask) == {"α=-1 mask_ratio=0.9", "α=0 mask_ratio=0.9", "α=1 mask_ratio=0.9"}
    assert all(c.effect_pp == pytest.approx(2.0) for c in by_mask.values())
    with pytest.raises(ValueError, match="not a parameter"):
        contrasts(both, ACC, MSE, Reference.parse("depth=3"))


def test_unpaired_seeds_fall_back_to_condition_means():
    rng = np.random.default_rng(2)
    df = sweep(rng, (0.0, 1.0), seeds=6, epochs=8, shifts={1.0: 0.0}, effects={1.0: 0.04}, sigma_seed=0.0)
    df = df[((df[ALPHA] == 0) & (df[SEED] < 3)) | ((df[ALPHA] == 1) & (df[SEED] >= 3))]
    (c,), _ = contrasts(df, ACC, MSE)
    assert c.design == "unpaired" and c.estimable and c.n_pairs == 0
    assert c.effect_pp == pytest.approx(4.0, abs=1.5) and c.ci_low_pp < c.effect_pp < c.ci_high_pp
    assert c.min_attainable_p == pytest.approx(2 / 20)  # C(6, 3) = 20 splits, the two extreme ones


# --------------------------------------------------------------------------- calibration

def _simulate(alpha: float, effect: float, seeds: int, epochs: int, n: int, rng, **kw) -> dict:
    """n synthetic sweeps (alpha vs 0) through `contrast` on the real code path (run_curve ->
    pair contrasts -> t interval, sign-flip p); returns arrays of the estimates."""
    alphas = (0.0, alpha)
    runs = runs_table(sweep(rng, alphas, seeds=seeds, epochs=2))
    cond = runs[runs[ALPHA] == alpha]["condition"].iloc[0]
    out = {"effect": [], "covered": [], "t_reject": [], "sf_reject": [], "not_estimable": 0}
    for _ in range(n):
        mse, acc = sweep_arrays(rng, alphas, seeds=seeds, epochs=epochs, effects={alpha: effect}, **kw)
        curves = {f"a{a:g}-s{s}": run_curve(mse[i, s], acc[i, s]) for i, a in enumerate(alphas) for s in range(seeds)}
        c = contrast(curves, runs, cond)
        if not c.estimable:
            out["not_estimable"] += 1
            continue
        out["effect"].append(c.effect_pp)
        out["covered"].append(c.ci_low_pp <= 100 * effect <= c.ci_high_pp)
        out["t_reject"].append(c.t_p_value < 0.05)
        out["sf_reject"].append(c.p_value < 0.05)
    return {k: np.asarray(v, float) if isinstance(v, list) else v for k, v in out.items()}


# (alpha, seeds, epochs): alpha -0.5 overlaps alpha = 0 on about half its range, +1 on ~3/4,
# -1 on a sliver at 6 epochs (never estimable there) and on a thin band at 50 epochs.
REGIMES = ((-0.5, 5, 6), (1.0, 2, 6), (1.0, 3, 50), (-1.0, 5, 50))


def test_calibration_bias_coverage_false_positives():
    rng = np.random.default_rng(20261202)
    covered, rejected = [], []
    for alpha, seeds, epochs in REGIMES:
        hit = _simulate(alpha, -0.03, seeds, epochs, 400, rng)
        null = _simulate(alpha, 0.0, seeds, epochs, 400, rng)
        bias, cover, fp = hit["effect"].mean() + 3.0, hit["covered"].mean(), null["t_reject"].mean()
        print(f"alpha {alpha:+g}, {seeds} seeds, {epochs} epochs: bias {bias:+.3f} pp, 95% coverage {cover:.3f}, "
              f"false positives {fp:.3f} (t), {hit['not_estimable']}/400 not estimable")
        assert abs(bias) <= 0.5
        assert 0.92 <= cover <= 0.98 and 0.01 <= fp <= 0.09
        covered.append(hit["covered"])
        rejected.append(null["t_reject"])
    cover, fp = np.concatenate(covered).mean(), np.concatenate(rejected).mean()
    print(f"all regimes: coverage {cover:.3f}, false positives {fp:.3f}")
    assert 0.93 <= cover <= 0.97 and 0.02 <= fp <= 0.08


def test_calibration_power_and_the_sign_flip_test():
    rng = np.random.default_rng(7)
    power = _simulate(1.0, 0.05, 5, 6, 200, rng)
    print(f"5 pp, 5 seeds, 6 epochs: power {power['t_reject'].mean():.3f} (t); sign-flip cannot go below "
          f"p = 0.0625 with 5 pairs: power {power['sf_reject'].mean():.3f}")
    assert power["t_reject"].mean() >= 0.8 and power["sf_reject"].mean() == 0
    null8 = _simulate(1.0, 0.0, 8, 6, 600, rng)
    hit8 = _simulate(1.0, 0.05, 8, 6, 100, rng)
    print(f"8 seeds: sign-flip false positives {null8['sf_reject'].mean():.3f}, power at 5 pp {hit8['sf_reject'].mean():.3f}")
    assert 0.02 <= null8["sf_reject"].mean() <= 0.08 and hit8["sf_reject"].mean() >= 0.8


def test_calibration_justifies_the_minimum_overlap(monkeypatch):
    """Why MIN_EPOCHS_INSIDE = 2: on a strongly curved accuracy-vs-MSE curve, slivers where a run
    has one measured epoch inside the shared range are compared through a chord, and the contrast
    is biased and its interval under-covers; 2 measured epochs of each run keep the bias under 0.5 pp
    and the coverage at its level."""
    import synthetic_sweeps

    monkeypatch.setattr(synthetic_sweeps, "f_true", lambda m: 0.5 - 0.8 * (m - 0.75) + 12 * (m - 0.75) ** 2)
    import analysis.stats.contrasts as contrasts_module

    biases = {}
    for minimum in (1, MIN_EPOCHS_INSIDE):
        monkeypatch.setattr(contrasts_module, "MIN_EPOCHS_INSIDE", minimum)
        res = _simulate(-1.0, -0.03, 5, 6, 250, np.random.default_rng(3), shifts={-1.0: 0.06})
        biases[minimum] = (res["effect"].mean() + 3.0, res["covered"].mean(), res["not_estimable"])
        print(f"min {minimum} epoch(s) inside: bias {biases[minimum][0]:+.3f} pp, coverage {biases[minimum][1]:.3f}, "
              f"{biases[minimum][2]}/250 not estimable")
    assert abs(biases[1][0]) > abs(biases[MIN_EPOCHS_INSIDE][0]) and abs(biases[MIN_EPOCHS_INSIDE][0]) <= 0.5
    assert biases[1][1] < 0.92 <= biases[MIN_EPOCHS_INSIDE][1]  # a one-epoch sliver under-covers
    assert not math.isnan(biases[MIN_EPOCHS_INSIDE][0])
