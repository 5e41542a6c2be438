"""The matched-MSE test (analysis.matched_mse): hand-computed pieces, then calibration on
synthetic sweeps with a known truth (tests/synthetic_sweeps.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import ALPHA, ALPHA_MODE, EPOCH, LR, RUN_ID, SEED
from analysis.matched_mse import (
    between_ss,
    common_grid,
    difference_curves,
    matched_mse,
    min_attainable_p,
    on_grid,
    permutation_p,
    run_curve,
    run_scores,
    welch_interval,
)
from mae_gap.metrics import VAL_LINEAR_ACC, VAL_MSE
from synthetic_sweeps import sweep

approx = pytest.approx


def test_run_curve_sorts_and_averages_ties():
    x, y = run_curve([0.9, 0.5, 0.7, 0.5, np.nan], [0.1, 0.4, 0.2, 0.6, 0.9])
    assert x.tolist() == [0.5, 0.7, 0.9] and y.tolist() == approx([0.5, 0.2, 0.1])


def test_grid_interpolation_and_scores_by_hand():
    a = run_curve([0.0, 1.0], [0.0, 1.0])  # acc = mse on [0, 1]
    b = run_curve([0.5, 1.5], [1.0, 2.0])  # acc = mse + 0.5 on [0.5, 1.5]
    grid = common_grid([a, b], n=7)  # 0, .25, ..., 1.5; both defined on [0.5, 1] only
    assert grid.tolist() == approx([0.5, 0.75, 1.0])
    values = on_grid([a, b], np.array([0.25, 0.75, 1.25]))
    assert values[0].tolist()[:2] == approx([0.25, 0.75]) and np.isnan(values[0, 2])
    assert np.isnan(values[1, 0]) and values[1, 1:].tolist() == approx([1.25, 1.75])
    # on the common grid the pooled curve is mse + 0.25: a lies 0.25 below it, b 0.25 above
    assert run_scores(on_grid([a, b], grid)).tolist() == approx([-0.25, 0.25])


def test_between_ss_and_exact_permutation_p():
    s = np.array([1.0, 2.0, 3.0, 4.0])
    # groups {1,2} {3,4}: means 1.5, 3.5, grand 2.5 -> 2 * 1 + 2 * 1 = 4
    assert between_ss(s, np.array([0, 0, 1, 1])) == approx(4.0)
    # 6 ways to split 4 runs 2+2; the observed split and its mirror are the most extreme: p -> 2/6
    p, eta2 = permutation_p(s, [0, 0, 1, 1], n_perm=20000, seed=1)
    assert p == approx(1 / 3, abs=0.02) and eta2 == approx(4.0 / 5.0)
    assert all(np.isnan(v) for v in permutation_p([1.0, 2.0], [0, 1]))  # too few runs


def test_min_attainable_p_by_hand():
    # 4 conditions x 2 seeds: 8! / (2!^4 * 4!) = 105 unlabelled partitions -> 1/105
    assert min_attainable_p(np.repeat([0, 1, 2, 3], 2)) == pytest.approx(1 / 105)
    assert min_attainable_p([0, 0, 1, 1]) == pytest.approx(1 / 3)  # 2 vs 2 seeds
    assert min_attainable_p([0, 0, 0, 1, 1, 1]) == pytest.approx(1 / 10)
    # two lr strata of 2 vs 2 each: 1/3 * 1/3
    assert min_attainable_p([0, 0, 1, 1, 2, 2, 3, 3], [0, 0, 0, 0, 1, 1, 1, 1]) == pytest.approx(1 / 9)


def test_permutation_stays_within_lr_strata():
    # an lr effect (+1 for lr b) with no alpha effect: permuting within lr keeps it out of the test
    scores = np.array([0.0, 0.01, 0.02, 1.0, 1.01, 1.02, 0.005, 0.0, 0.015, 1.0, 1.005, 1.02])
    codes = np.repeat([0, 1, 2, 3], 3)  # (alpha, lr) conditions, 3 seeds each
    strata = np.repeat([0, 1, 0, 1], 3)
    assert permutation_p(scores, codes, strata, n_perm=4000)[0] > 0.2
    assert permutation_p(scores, codes, None, n_perm=4000)[0] < 0.05


def test_welch_interval_matches_scipy_and_needs_two_seeds():
    ci = welch_interval([1.0, 2.0, 3.0], [0.0, 0.5])
    assert ci[0] < 1.75 < ci[1]
    assert welch_interval([1.0], [0.0, 0.5]) is None


def _table(effect_by_alpha: dict, seeds=2) -> pd.DataFrame:
    rows = []
    for alpha, effect in effect_by_alpha.items():
        for seed in range(seeds):
            for e in range(1, 6):
                mse = 1.0 - 0.1 * e + 0.02 * abs(alpha)
                rows.append({RUN_ID: f"{alpha}-{seed}", ALPHA: alpha, ALPHA_MODE: "grl", LR: 1e-3, SEED: seed, EPOCH: e,
                             VAL_MSE: mse, VAL_LINEAR_ACC: 1.0 - mse + effect + 0.002 * seed})
    return pd.DataFrame(rows)


def test_matched_mse_recovers_a_known_shift_despite_mse_differences():
    # accuracy = 1 - mse (+ 0.03 for alpha = 1): alpha = -1 reconstructs worse but sits on the curve
    r = matched_mse(_table({-1.0: 0.0, 0.0: 0.0, 1.0: 0.03}), n_perm=999)
    assert r["effect_pp"]["α=-1"] == approx(0.0, abs=0.2)
    assert r["effect_pp"]["α=1"] == approx(3.0, abs=0.2)
    assert [c["condition"] for c in r["by_condition"]] == ["α=-1", "α=0", "α=1"]
    assert r["by_condition"][1]["effect_pp"] is None  # the reference itself
    assert r["by_condition"][2]["ci_pp"][0] < 3.0 < r["by_condition"][2]["ci_pp"][1]
    # alpha = 1 runs span MSE 0.52-0.92 like the reference's 0.5-0.9: they meet on [0.52, 0.9]
    lo, hi, n = r["by_condition"][2]["overlap_mse"]
    assert lo == approx(0.52, abs=0.01) and hi == approx(0.9, abs=0.01) and n > 10
    assert r["by_condition"][2]["min_attainable_p"] == approx(1 / 3) and r["min_attainable_p"] == approx(1 / 15)
    curves = difference_curves(_table({0.0: 0.0, 1.0: 0.03}))
    assert list(curves) == ["α=1"] and np.nanmean(curves["α=1"]["runs"]) == approx(3.0, abs=0.2)


def test_no_reference_and_disjoint_runs_are_reported():
    r = matched_mse(_table({-1.0: 0.0, 1.0: 0.0}), n_perm=99)
    assert r["effect_pp"] == {} and "no alpha = 0 runs" in r["note"]
    far = _table({0.0: 0.0, 1.0: 0.0})
    far.loc[far[RUN_ID] == "1.0-1", VAL_MSE] += 10.0  # this run overlaps no other run in MSE
    r = matched_mse(far, n_perm=99)
    assert r["runs_without_overlap"] == ["1.0-1"] and "overlap no other run" in r["note"] and r["n_runs"] == 3


# ----------------------------------------------------------------------------- calibration


def _rejection_rate(effect: float, n_sweeps: int = 200, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    ps = [matched_mse(sweep(rng, effect=effect), n_perm=199)["p_value"] for _ in range(n_sweeps)]
    return float(np.mean(np.asarray(ps) <= 0.05))


def test_null_calibration_false_positive_rate():
    # 200 sweeps, accuracy = f(MSE) + AR(1) noise, alpha moves MSE but not accuracy at equal MSE
    assert 0.02 <= _rejection_rate(0.0) <= 0.08


def test_power_for_a_5pp_effect():
    assert _rejection_rate(0.05, seed=1) >= 0.80


def test_welch_interval_covers_while_a_seed_bootstrap_does_not():
    # 2 seeds per condition, true effect of alpha = 0.5: +5 pp. Welch's interval over seeds covers it
    # at least at the nominal rate; a stratified percentile bootstrap of the same seeds does not.
    rng = np.random.default_rng(5)
    welch, boot = [], []
    for _ in range(150):
        r = matched_mse(sweep(rng, effect=0.05, seeds=2), n_perm=9)
        row = next(c for c in r["by_condition"] if c["condition"] == "α=0.5")
        ref = next(c for c in r["by_condition"] if c["condition"] == "α=0")
        welch.append(row["ci_pp"][0] <= 5.0 <= row["ci_pp"][1])
        a, b = np.asarray(row["scores_pp"]), np.asarray(ref["scores_pp"])
        reps = rng.choice(a, (400, a.size)).mean(1) - rng.choice(b, (400, b.size)).mean(1)
        lo, hi = np.percentile(reps, [2.5, 97.5])
        boot.append(lo <= 5.0 <= hi)
    assert np.mean(welch) >= 0.93
    assert np.mean(boot) < 0.85
