"""The seed planner: how many seeds does an effect at equal MSE need? (pure functions)

From the paired contrasts of the sweep (`analysis.stats.contrasts`): the seed SD of the pair
differences, pooled over the estimable paired conditions, sd = sqrt(Σ (n_c - 1) s_c² / Σ (n_c - 1))
(pp). For a two-sided paired t-test at level `ALPHA` with n seeds, power(δ) = P(|T| > t_crit) with
T noncentral t on n - 1 df, noncentrality δ √n / sd. Reported:

* `mde_pp`: the minimal detectable effect (power `POWER`) with the sweep's seed count;
* `seeds_for`: {effect pp: the fewest seeds (>= 2) reaching power `POWER`} for the planned effects;
* `min_seeds_sign_flip`: the fewest pairs with which the exact sign-flip test can reach p < ALPHA
  at all (2 / 2^n < ALPHA: 6).
The SD is itself estimated from few seeds (`sd_df` degrees of freedom); the plan is as good as it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.optimize
import scipy.stats

ALPHA = 0.05
POWER = 0.8
DEFAULT_EFFECTS = (1.0, 2.0, 5.0)
MAX_SEEDS = 10_000


def power(effect: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided one-sample (paired) t-test of n differences with SD `sd`."""
    if n < 2 or sd <= 0:
        return math.nan
    df = n - 1
    crit = scipy.stats.t.ppf(1 - alpha / 2, df)
    ncp = abs(effect) * math.sqrt(n) / sd
    upper = float(scipy.stats.nct.sf(crit, df, ncp))
    upper = 1.0 - float(scipy.stats.nct.cdf(crit, df, ncp)) if math.isnan(upper) else upper
    lower = float(scipy.stats.nct.cdf(-crit, df, ncp))  # the far tail: scipy's series can return NaN there
    return min(1.0, upper + (0.0 if math.isnan(lower) else lower))


def mde(sd: float, n: int, alpha: float = ALPHA, target: float = POWER) -> float:
    """The effect (same unit as sd) detected with power `target` by n seeds."""
    if n < 2 or sd <= 0:
        return math.nan
    return float(scipy.optimize.brentq(lambda d: power(d, sd, n, alpha) - target, 1e-9 * sd, 60 * sd))  # 60 sd: power ~1 even at n = 2


def seeds_needed(effect: float, sd: float, alpha: float = ALPHA, target: float = POWER) -> int | None:
    """The fewest seeds (>= 2) reaching power `target` for `effect`; None above MAX_SEEDS."""
    if sd <= 0 or effect == 0:
        return None
    lo, hi = 2, 2
    while power(effect, sd, hi, alpha) < target:
        lo, hi = hi, hi * 2
        if hi > MAX_SEEDS:
            return None
    while lo < hi:  # power rises with n: bisect
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if power(effect, sd, mid, alpha) < target else (lo, mid)
    return lo


def min_seeds_sign_flip(alpha: float = ALPHA) -> int:
    return int(math.floor(math.log2(2 / alpha))) + 1


@dataclass(frozen=True)
class Planner:
    """The plan of the module docstring (None fields where no paired contrast measures the SD)."""

    sd_pp: float | None
    sd_df: int
    n_seeds: int
    mde_pp: float | None
    seeds_for: dict = field(default_factory=dict)
    min_seeds_sign_flip: int = min_seeds_sign_flip()
    alpha: float = ALPHA
    power: float = POWER
    reason: str | None = None


def plan(contrasts, effects=DEFAULT_EFFECTS) -> Planner:
    """The planner from the estimable paired `Contrast`s (their `sd_pp` and `n_pairs`)."""
    paired = [c for c in contrasts if c.estimable and c.design == "paired" and c.n_pairs >= 2]
    effects = sorted({float(e) for e in effects})
    if not paired:
        return Planner(None, 0, 0, None, {f"{e:g}": None for e in effects},
                       reason="no estimable paired contrast: the seed SD of the differences is unknown")
    dof = sum(c.n_pairs - 1 for c in paired)
    sd = math.sqrt(sum((c.n_pairs - 1) * c.sd_pp**2 for c in paired) / dof)
    n = int(np.median([c.n_pairs for c in paired]))
    return Planner(sd, dof, n, mde(sd, n), {f"{e:g}": seeds_needed(e, sd) for e in effects})
