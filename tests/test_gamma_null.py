"""Γ's null distribution (analysis.stats.gamma_null): the noise model recovers known covariances, the
vectorized Γ equals stats.tube_volume, and gamma_p is calibrated in the real sweep's regime
(uniform under the null, small with an effect; its figures are printed: run with -s)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from analysis import ALPHA, SEED
from analysis.stats.gamma_null import fit_noise_model, gamma_nulls, gamma_of_draws, null_draws
from analysis.stats.tube import bin_edges, tube_volume
from mae_gap.metrics import VAL_LINEAR_ACC, VAL_MSE
from synthetic_sweeps import sweep

ACC, MSE = VAL_LINEAR_ACC, VAL_MSE


def _all(df):
    return {"all": np.ones(len(df), bool)}


def test_gamma_of_draws_is_tube_volume():
    rng = np.random.default_rng(0)
    mse, acc = rng.random(40), rng.random((3, 40))
    edges = bin_edges(mse, 7)
    g, _, _ = gamma_of_draws(acc, mse, edges)
    assert g == pytest.approx([tube_volume(mse, a, edges=edges) for a in acc])


def test_noise_model_recovers_seed_and_run_variance():
    """20 seeds x 4 conditions: the seed part (SD 1 pp) and the run part (SD 1 pp) are told apart."""
    rng = np.random.default_rng(1)
    seed_var, run_var = [], []
    for _ in range(20):
        model = fit_noise_model(sweep(rng, (-0.5, 0.0, 0.5, 1.0), seeds=20, epochs=6), ACC, MSE)
        seed_var.append(np.diag(model.sigma_seed).mean())
        run_var.append(np.diag(model.sigma_run).mean())
    print(f"seed SD {np.sqrt(np.mean(seed_var)):.4f}, run SD {np.sqrt(np.mean(run_var)):.4f} (truth 0.0100 each)")
    assert np.sqrt(np.mean(seed_var)) == pytest.approx(0.01, rel=0.15)
    assert np.sqrt(np.mean(run_var)) == pytest.approx(0.01, rel=0.15)


def test_a_condition_of_one_run_gets_the_noise_measured_on_the_others():
    """alpha = 1 has one seed (no deviation of its own to measure); its null draws still carry the
    seed + run noise the replicated conditions show (truth: 1 pp each, 1.41 pp together)."""
    df = sweep(np.random.default_rng(3), (-1.0, 0.0, 1.0), seeds=8, epochs=6)
    df = df[(df[ALPHA] != 1.0) | (df[SEED] == 0)]
    draws = null_draws(fit_noise_model(df, ACC, MSE), 4000, np.random.default_rng(0))
    lone = (df[ALPHA] == 1.0).to_numpy()
    sd_lone, sd_rest = draws[:, lone].std(axis=0).mean(), draws[:, ~lone].std(axis=0).mean()
    assert sd_lone == pytest.approx(sd_rest, rel=0.1) and sd_lone == pytest.approx(0.0141, rel=0.3)


def test_no_replicates_no_null():
    df = sweep(np.random.default_rng(2), (-1.0, 0.0, 1.0), seeds=1, epochs=6)
    out = gamma_nulls(df, ACC, MSE, bin_edges(df[MSE], 15), _all(df))["all"]
    assert out.noise_floor is None and out.gamma_p is None and "2 or more seeds" in out.reason
    assert out.gamma == pytest.approx(tube_volume(df[MSE], df[ACC], 15))


def _gamma_ps(n: int, effect: float, seeds: int, epochs: int, rng, draws: int = 200) -> np.ndarray:
    ps = []
    for i in range(n):
        df = sweep(rng, (-1.0, 0.0, 1.0), seeds=seeds, epochs=epochs, effects={1.0: effect})
        ps.append(gamma_nulls(df, ACC, MSE, bin_edges(df[MSE], 15), _all(df), draws, seed=i)["all"].gamma_p)
    return np.asarray(ps)


@pytest.mark.parametrize("seeds, epochs", [(5, 6), (3, 50)])
def test_gamma_p_is_uniform_under_the_null(seeds, epochs):
    ps = _gamma_ps(200, 0.0, seeds, epochs, np.random.default_rng(seeds * 100 + epochs))
    ks = scipy.stats.kstest(ps, "uniform").pvalue
    print(f"{seeds} seeds, {epochs} epochs, no effect: gamma_p KS p = {ks:.3f}, P(gamma_p <= 0.05) = {np.mean(ps <= 0.05):.3f}")
    assert ks > 0.01


def test_gamma_p_sees_a_5pp_effect():
    ps = _gamma_ps(100, 0.05, 5, 6, np.random.default_rng(9))
    print(f"5 seeds, 6 epochs, 5 pp effect at alpha = 1: P(gamma_p <= 0.05) = {np.mean(ps <= 0.05):.3f}")
    assert np.mean(ps <= 0.05) >= 0.8


def test_sign_groups_share_the_draws():
    df = sweep(np.random.default_rng(4), (-1.0, 0.0, 1.0), seeds=3, epochs=6)
    alpha = df["alpha"].to_numpy()
    out = gamma_nulls(df, ACC, MSE, bin_edges(df[MSE], 15), {"all": alpha == alpha, "zero": alpha == 0,
                                                             "none": alpha > 5}, 300)
    assert out["zero"].noise_floor < out["all"].noise_floor and out["zero"].n_draws == 300
    assert out["none"].gamma is None and out["none"].reason == "no points"
