"""The seed planner (analysis.stats.planner): power by simulation, MDE and seeds needed consistent with
it, the pooled SD by hand, and no plan without paired contrasts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from analysis.stats.contrasts import Contrast
from analysis.stats.planner import mde, min_seeds_sign_flip, plan, power, seeds_needed


def test_power_matches_simulation():
    rng = np.random.default_rng(0)
    sd, n = 0.7, 5
    effect = mde(sd, n)
    d = effect + sd * rng.standard_normal((4000, n))
    rejected = scipy.stats.ttest_1samp(d, 0.0, axis=1).pvalue < 0.05
    print(f"MDE {effect:.3f} pp at sd {sd} pp, {n} seeds: simulated power {rejected.mean():.3f} (target 0.80)")
    assert rejected.mean() == pytest.approx(0.8, abs=0.025)
    assert power(effect, sd, n) == pytest.approx(0.8, abs=1e-6)


def test_seeds_needed_is_the_smallest_n_with_enough_power():
    for effect, sd in ((1.0, 0.7), (2.0, 3.0), (0.1, 1.0)):
        n = seeds_needed(effect, sd)
        assert power(effect, sd, n) >= 0.8 and (n == 2 or power(effect, sd, n - 1) < 0.8)
    assert seeds_needed(1e-4, 10.0) is None and seeds_needed(0.0, 1.0) is None
    assert min_seeds_sign_flip() == 6 and 2 / 2**6 < 0.05 < 2 / 2**5


def _contrast(n_pairs, sd):
    return Contrast("c", {}, "alpha=0", "paired", True, n_pairs=n_pairs, sd_pp=sd, effect_pp=1.0)


def test_pooled_sd_by_hand_and_no_plan_without_pairs():
    p = plan([_contrast(5, 0.5), _contrast(3, 1.0), Contrast("x", {}, "alpha=0", "paired", False)], effects=(2,))
    assert p.sd_pp == pytest.approx(math.sqrt((4 * 0.25 + 2 * 1.0) / 6)) and p.sd_df == 6 and p.n_seeds == 4
    assert p.mde_pp == pytest.approx(mde(p.sd_pp, 4)) and p.seeds_for == {"2": seeds_needed(2.0, p.sd_pp)}
    none = plan([Contrast("x", {}, "alpha=0", "unpaired", True, effect_pp=1.0)])
    assert none.sd_pp is None and "no estimable paired contrast" in none.reason
