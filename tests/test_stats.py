"""Statistics of the reconstruction gap (analysis.stats), on hand-computed fixtures.

The arithmetic of every expected value is written next to it.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.stats

from analysis.stats.tube import (
    BIN_COLUMNS,
    bin_edges,
    bin_table,
    finite_pairs,
    spearman,
    tube_volume,
)

approx = pytest.approx


# --------------------------------------------------------------------------- Γ and bins


def test_points_on_bin_edges_go_right_and_max_to_last_bin():
    # range [0, 4], 4 bins -> edges 0, 1, 2, 3, 4 (exact in binary).
    # 0 -> bin 0; 1, 2, 3 sit on interior edges -> bins 1, 2, 3 (the bin on the right);
    # 4 = max -> last bin (closed on the right), so bin 3 = {3, 4}.
    mse = [0.0, 1.0, 2.0, 3.0, 4.0]
    acc = [0.1, 0.5, 0.2, 0.3, 0.9]
    t = bin_table(mse, acc, bins=4)
    assert t["count"].tolist() == [1, 1, 1, 2]
    assert t["count"].tolist() == np.histogram(mse, bins=4)[0].tolist()  # same as numpy
    assert t["left"].tolist() == [0.0, 1.0, 2.0, 3.0] and t["right"].tolist() == [1.0, 2.0, 3.0, 4.0]
    # Γ = 0 + 0 + 0 + (0.9 - 0.3) = 0.6   (edges to the left would give 0.5 - 0.1 = 0.4)
    assert tube_volume(mse, acc, bins=4) == approx(0.6)


def test_bin_table_hand_computed():
    # range [0, 3], 3 bins -> edges 0, 1, 2, 3
    # bin 0: mse 0, 0.5       acc 0.2, 0.6        mean 0.4, std sqrt((0.2² + 0.2²)/1) = 0.28284, spread 0.4
    # bin 1: mse 1.5, 1.5     acc 0.4, 0.4        mean 0.4, std 0, spread 0
    # bin 2: mse 3, 3, 2.9    acc 0.1, 0.7, 0.5   mean 1.3/3 = 0.43333,
    #        deviations -0.33333, 0.26667, 0.06667 -> squares 0.11111 + 0.07111 + 0.00444 = 0.18667,
    #        std sqrt(0.18667 / 2) = 0.30551, spread 0.7 - 0.1 = 0.6
    # Γ = 0.4 + 0 + 0.6 = 1.0
    mse = [0.0, 0.5, 1.5, 1.5, 3.0, 3.0, 2.9]
    acc = [0.2, 0.6, 0.4, 0.4, 0.1, 0.7, 0.5]
    t = bin_table(mse, acc, bins=3)
    assert list(t.columns) == list(BIN_COLUMNS)
    assert t["count"].tolist() == [2, 2, 3]
    assert t["mean"].tolist() == approx([0.4, 0.4, 1.3 / 3])
    assert t["std"].tolist() == approx([math.sqrt(0.08), 0.0, math.sqrt(0.56 / 3 / 2)])
    assert t["min"].tolist() == approx([0.2, 0.4, 0.1])
    assert t["max"].tolist() == approx([0.6, 0.4, 0.7])
    assert t["spread"].tolist() == approx([0.4, 0.0, 0.6])
    assert tube_volume(mse, acc, bins=3) == approx(1.0)


def test_single_point_bin_contributes_zero_and_empty_bin_is_nan():
    # range [0, 10], 3 bins -> edges 0, 3.33, 6.67, 10
    # bin 0: mse 0, 0.1  acc 0.3, 0.5 -> spread 0.2;  bin 1: empty;  bin 2: mse 10 alone (acc 0.99) -> 0
    # Γ = 0.2 + 0 = 0.2 (the lone 0.99 does not count)
    mse, acc = [0.0, 0.1, 10.0], [0.3, 0.5, 0.99]
    assert tube_volume(mse, acc, bins=3) == approx(0.2)
    t = bin_table(mse, acc, bins=3)
    assert t["count"].tolist() == [2, 0, 1]
    assert math.isnan(t.loc[1, "mean"]) and math.isnan(t.loc[1, "spread"]) and math.isnan(t.loc[1, "std"])
    assert t.loc[2, "spread"] == 0.0 and math.isnan(t.loc[2, "std"])  # one point: spread 0, std undefined


def test_all_points_at_one_mse_is_one_bin():
    # one MSE value -> a single bin [2, 2] holding everything: Γ = max - min = 0.4 - 0.1 = 0.3
    mse, acc = [2.0, 2.0, 2.0], [0.1, 0.4, 0.3]
    assert tube_volume(mse, acc, bins=15) == approx(0.3)
    t = bin_table(mse, acc, bins=15)
    assert len(t) == 1
    assert t.iloc[0][["left", "right", "count", "min", "max"]].tolist() == approx([2.0, 2.0, 3, 0.1, 0.4])


def test_nan_pairs_dropped_and_counted():
    # pairs (0, 0.1) (nan, 0.9) (1, nan) (2, 0.5) (2, 0.2): two dropped.
    # kept range [0, 2], 2 bins -> edges 0, 1, 2: bin 0 = {0.1}, bin 1 = {0.5, 0.2}
    # Γ = 0 + (0.5 - 0.2) = 0.3
    mse = [0.0, np.nan, 1.0, 2.0, 2.0]
    acc = [0.1, 0.9, np.nan, 0.5, 0.2]
    x, y, dropped = finite_pairs(mse, acc)
    assert dropped == 2 and x.tolist() == [0.0, 2.0, 2.0] and y.tolist() == [0.1, 0.5, 0.2]
    assert tube_volume(mse, acc, bins=2) == approx(0.3)
    assert bin_table(mse, acc, bins=2)["count"].tolist() == [1, 2]


def test_no_points():
    assert math.isnan(tube_volume([], []))
    assert math.isnan(tube_volume([np.nan], [0.5]))
    t = bin_table([np.nan], [np.nan])
    assert len(t) == 0 and list(t.columns) == list(BIN_COLUMNS)
    with pytest.raises(ValueError):
        tube_volume([1.0, 2.0], [0.5])


def test_bin_counts_match_numpy_on_grid_points():
    # MSE on a 0.25 grid over [0, 3] with 12 bins: every point lies on an edge; numpy's
    # histogram is the reference for the edge convention.
    rng = np.random.default_rng(0)
    mse = np.concatenate([[0.0, 3.0], rng.integers(0, 13, size=200) * 0.25])
    acc = rng.uniform(size=mse.size)
    t = bin_table(mse, acc, bins=12)
    assert t["count"].tolist() == np.histogram(mse, bins=12)[0].tolist()
    assert tube_volume(mse, acc, bins=12) == approx(t["spread"][t["count"] >= 2].sum())


# --------------------------------------------------------------------------- ρ


def test_spearman_monotone_and_antimonotone():
    x = [0.9, 0.7, 0.5, 0.3]
    assert spearman(x, [1.0, 2.0, 3.0, 4.5]) == (approx(-1.0), approx(0.0, abs=1e-12))
    assert spearman(x, [4.0, 3.0, 2.0, 1.0])[0] == approx(1.0)


def test_spearman_hand_ranked():
    # x ranks 1..5, y = [2, 1, 4, 3, 5] ranks the same; d = -1, 1, -1, 1, 0 -> Σd² = 4
    # ρ = 1 - 6·4 / (5·(25 - 1)) = 1 - 24/120 = 0.8
    # p: t = ρ·sqrt((n-2)/(1-ρ²)) = 0.8·sqrt(3/0.36) = 2.3094, two-sided with 3 df
    rho, p = spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5])
    assert rho == approx(0.8)
    assert p == approx(2 * scipy.stats.t.sf(0.8 * math.sqrt(3 / 0.36), 3))
    # ties get average ranks: x = [1, 2, 2, 3] -> ranks 1, 2.5, 2.5, 4; y ranks 1..4
    # deviations from 2.5: dx = -1.5, 0, 0, 1.5; dy = -1.5, -0.5, 0.5, 1.5
    # ρ = Σdx·dy / sqrt(Σdx²·Σdy²) = 4.5 / sqrt(4.5·5) = sqrt(0.9) = 0.94868
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4])[0] == approx(math.sqrt(0.9))


def test_spearman_degenerate_is_nan_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for x, y in (
            ([1.0, 2.0], [1.0, 2.0]),  # fewer than 3 points
            ([1.0, 1.0, 1.0], [0.1, 0.2, 0.3]),  # constant mse
            ([1.0, 2.0, 3.0], [0.5, 0.5, 0.5]),  # constant acc
            ([1.0, np.nan, 3.0, 4.0], [0.1, 0.2, np.nan, 0.4]),  # 2 points left after NaN
            ([], []),
        ):
            rho, p = spearman(x, y)
            assert math.isnan(rho) and math.isnan(p)


def test_tube_volume_on_given_edges():
    # edges [0, 1, 2]: points (0.2, .1), (0.8, .5) in bin 0 -> 0.4; (1.5, .3) alone in bin 1 -> 0;
    # a point below the edges (-1, .9) is clipped into bin 0 -> spread .9 - .1 = .8
    x, y = [0.2, 0.8, 1.5], [0.1, 0.5, 0.3]
    assert tube_volume(x, y, edges=np.array([0.0, 1.0, 2.0])) == approx(0.4)
    assert tube_volume(x + [-1.0], y + [0.9], edges=np.array([0.0, 1.0, 2.0])) == approx(0.8)
    # with the points' own edges (2 bins over [0.2, 1.5]: split at 0.85) the same as bins=2
    assert tube_volume(x, y, edges=bin_edges(x, 2)) == tube_volume(x, y, 2)
