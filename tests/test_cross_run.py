"""Cross-run ρ (analysis.stats.cross_run) versus the pooled ρ: the training-time confound, independent
units, exact p-values, the interval, and calibration."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from analysis import ALPHA, RUN_ID, SEED
from mae_gap.metrics import EPOCH
from analysis.stats.conditions import final_rows
from analysis.stats.cross_run import cross_run_rho, fisher_interval, spearman_permutation
from analysis.stats.tube import spearman
from mae_gap.metrics import VAL_LINEAR_ACC, VAL_MSE


def identical_trajectories(rng, n_runs=200, epochs=10, noise=0.01, seeds=None, seed_sd=0.0) -> pd.DataFrame:
    """Every run follows one trajectory (MSE falls, accuracy rises with epochs), plus independent
    noise on each metric: no run is better than another except by chance. With `seeds`, run i has
    seed i % seeds and alpha i // seeds, and a seed effect (SD `seed_sd`) shared by its runs."""
    e = np.arange(1, epochs + 1)
    mse, acc = 0.5 + 0.5 * np.exp(-e / 3), 0.6 - 0.4 * np.exp(-e / 3)
    shared = seed_sd * rng.standard_normal((seeds or 1, 2))
    rows = []
    for i in range(n_runs):
        s = i % seeds if seeds else i
        u = shared[s] if seeds else (0.0, 0.0)
        for t, m, a in zip(e, mse, acc):
            rows.append({RUN_ID: f"r{i}", ALPHA: float(i // seeds if seeds else i % 5 - 2), SEED: s, EPOCH: int(t),
                         VAL_MSE: m + u[0] + noise * rng.standard_normal(),
                         VAL_LINEAR_ACC: a + u[1] + noise * rng.standard_normal()})
    return pd.DataFrame(rows)


def test_spearman_permutation_matches_scipy_and_its_p():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(30)
    y = 0.5 * x + rng.standard_normal(30)
    rho, p = spearman_permutation(x, y, n_perm=20000)
    ref = scipy.stats.spearmanr(x, y)
    assert rho == pytest.approx(ref.statistic)
    assert p == pytest.approx(ref.pvalue, abs=0.01)
    assert all(np.isnan(v) for v in spearman_permutation([1.0, 2.0], [2.0, 1.0]))


def test_small_n_is_enumerated_exactly():
    # 4 units in perfect order: 2 of the 24 orders reach |ρ| = 1, so p = 1/12 exactly
    rho, p = spearman_permutation([1, 2, 3, 4], [4, 3, 2, 1])
    assert rho == pytest.approx(-1.0) and p == pytest.approx(2 / 24)


def test_fisher_interval_by_hand():
    lo, hi = fisher_interval(0.5, 13)
    half = 1.959963984540054 * math.sqrt((1 + 0.125) / 10)
    assert (lo, hi) == pytest.approx((math.tanh(math.atanh(0.5) - half), math.tanh(math.atanh(0.5) + half)))
    assert fisher_interval(0.5, 3) is None


def test_identical_trajectories_pooled_rho_lies_cross_run_rho_does_not():
    df = identical_trajectories(np.random.default_rng(3))
    pooled, _ = spearman(df[VAL_MSE], df[VAL_LINEAR_ACC])
    assert pooled < -0.8  # training time alone
    out = cross_run_rho(df, n_perm=2000)
    assert out.unit == "run" and out.n_units == 200 and abs(out.rho) < 0.2 and out.p_value > 0.05
    assert out.ci[0] < 0 < out.ci[1]
    assert [r["epoch"] for r in out.per_epoch] == list(range(1, 11))
    assert all(r["n_units"] == 200 for r in out.per_epoch)


def test_shared_seeds_make_conditions_the_units():
    df = identical_trajectories(np.random.default_rng(1), n_runs=12, seeds=3)  # 4 alphas x 3 seeds
    out = cross_run_rho(df, n_perm=99)
    assert out.unit == "condition" and out.n_units == 4 and out.n_runs == 12


def test_cross_run_permutation_p_is_calibrated():
    rng = np.random.default_rng(7)
    ps = [cross_run_rho(identical_trajectories(rng, n_runs=12, epochs=3), n_perm=499).p_value for _ in range(200)]
    rate = np.mean(np.asarray(ps) <= 0.05)
    print(f"cross-run ρ, 12 independent runs: false-positive rate {rate:.3f} at 0.05")
    assert 0.02 <= rate <= 0.08


def test_seed_blocks_would_fool_a_run_level_test_condition_means_do_not():
    """8 conditions x 3 seeds, a seed effect shared by a seed's runs on both metrics and no
    condition effect: runs are not independent (their seed correlates MSE and accuracy), units are
    the conditions and the false-positive rate stays at its level."""
    rng = np.random.default_rng(11)
    ps, naive = [], []
    for _ in range(150):
        df = identical_trajectories(rng, n_runs=24, epochs=3, seeds=3, seed_sd=0.02)
        ps.append(cross_run_rho(df, n_perm=99).p_value)
        fin = final_rows(df, [VAL_MSE, VAL_LINEAR_ACC])
        naive.append(spearman_permutation(fin[VAL_MSE], fin[VAL_LINEAR_ACC], n_perm=199)[1])
    rate, naive_rate = np.mean(np.asarray(ps) <= 0.05), np.mean(np.asarray(naive) <= 0.05)
    print(f"cross-run ρ, 8 conditions x 3 seeds with a shared seed effect: false-positive rate {rate:.3f} "
          f"(condition means) vs {naive_rate:.3f} (24 runs as if independent)")
    assert rate <= 0.08 and naive_rate > 0.2


def test_cross_run_rho_sees_a_real_across_run_relation():
    # runs that end at a lower MSE end at a higher accuracy: final cross-run ρ = -1
    rows = [{RUN_ID: f"r{i}", ALPHA: 0.0, EPOCH: e, VAL_MSE: 1.0 - 0.05 * i - 0.01 * e, VAL_LINEAR_ACC: 0.1 * i + 0.01 * e}
            for i in range(8) for e in (1, 2)]
    out = cross_run_rho(pd.DataFrame(rows), n_perm=2000)
    assert out.rho == pytest.approx(-1.0) and out.p_value < 0.01
