"""Cross-run ρ (analysis.cross_run) versus the pooled ρ: the training-time confound, and calibration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from analysis import ALPHA, EPOCH, RUN_ID
from analysis.cross_run import cross_run_rho, spearman_permutation
from analysis.stats import spearman
from mae_gap.metrics import VAL_LINEAR_ACC, VAL_MSE


def identical_trajectories(rng, n_runs=200, epochs=10, noise=0.01) -> pd.DataFrame:
    """Every run follows one trajectory (MSE falls, accuracy rises with epochs), plus independent
    noise on each metric: no run is better than another except by chance."""
    e = np.arange(1, epochs + 1)
    mse, acc = 0.5 + 0.5 * np.exp(-e / 3), 0.6 - 0.4 * np.exp(-e / 3)
    rows = [{RUN_ID: f"r{i}", ALPHA: float(i % 5 - 2), EPOCH: int(t), VAL_MSE: m + noise * rng.standard_normal(),
             VAL_LINEAR_ACC: a + noise * rng.standard_normal()}
            for i in range(n_runs) for t, m, a in zip(e, mse, acc)]
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


def test_identical_trajectories_pooled_rho_lies_cross_run_rho_does_not():
    df = identical_trajectories(np.random.default_rng(3))
    pooled, _ = spearman(df[VAL_MSE], df[VAL_LINEAR_ACC])
    assert pooled < -0.8  # training time alone
    out = cross_run_rho(df, n_perm=2000)
    assert out["n_runs"] == 200 and abs(out["rho"]) < 0.2 and out["p_value"] > 0.05
    assert [r["epoch"] for r in out["per_epoch"]] == list(range(1, 11))
    assert all(r["n_runs"] == 200 for r in out["per_epoch"])


def test_cross_run_permutation_p_is_calibrated():
    rng = np.random.default_rng(7)
    ps = [cross_run_rho(identical_trajectories(rng, n_runs=12), n_perm=499)["p_value"] for _ in range(200)]
    assert 0.02 <= np.mean(np.asarray(ps) <= 0.05) <= 0.08


def test_cross_run_rho_sees_a_real_across_run_relation():
    # runs that end at a lower MSE end at a higher accuracy: final cross-run ρ = -1
    rows = [{RUN_ID: f"r{i}", ALPHA: 0.0, EPOCH: e, VAL_MSE: 1.0 - 0.05 * i - 0.01 * e, VAL_LINEAR_ACC: 0.1 * i + 0.01 * e}
            for i in range(8) for e in (1, 2)]
    out = cross_run_rho(pd.DataFrame(rows), n_perm=2000)
    assert out["rho"] == pytest.approx(-1.0) and out["p_value"] < 0.01
