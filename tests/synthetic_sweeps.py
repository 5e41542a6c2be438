"""Synthetic sweeps with a known truth, for the calibration tests of analysis' statistics.

A sweep: alphas x seeds runs of `epochs` epochs. MSE falls over training and rises with |alpha|
(alpha moves reconstruction, as in the real sweeps); accuracy = f(MSE) + AR(1) noise per run
(autocorrelated over epochs, as a seed's luck persists) + `effect` for the runs with alpha > 0.
With effect = 0 accuracy depends on MSE alone: any alpha effect "found" is a false positive.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import ALPHA, ALPHA_MODE, EPOCH, LR, RUN_ID, RUN_NAME, SEED, STATE, STEPS
from mae_gap import metrics as M

ALPHAS = (-1.0, -0.5, 0.0, 0.5, 1.0)


def f_true(mse):
    """The common accuracy-vs-MSE curve: convex, falling."""
    return 0.15 + 0.7 * np.exp(-3.0 * (mse - 0.4))  / (1 + np.exp(-3.0 * (mse - 0.4)))


def sweep(rng: np.random.Generator, alphas=ALPHAS, seeds: int = 3, epochs: int = 10, effect: float = 0.0,
          sigma: float = 0.02, phi: float = 0.7, mse_sigma: float = 0.005, identical: bool = False) -> pd.DataFrame:
    """The tidy table of one synthetic sweep (see the module docstring). `identical`: every run
    follows the same MSE trajectory whatever its alpha (only noise tells runs apart)."""
    rows = []
    e = np.arange(1, epochs + 1)
    for alpha in alphas:
        for seed in range(seeds):
            shift = 0.0 if identical else 0.03 * abs(alpha)
            mse = 0.55 + 0.45 * np.exp(-e / 3.0) + shift + mse_sigma * rng.standard_normal(epochs)
            noise = np.empty(epochs)
            noise[0] = sigma * rng.standard_normal()
            for t in range(1, epochs):
                noise[t] = phi * noise[t - 1] + np.sqrt(1 - phi**2) * sigma * rng.standard_normal()
            acc = f_true(mse) + noise + (effect if alpha > 0 else 0.0)
            rid = f"a{alpha:g}-s{seed}"
            for t in range(epochs):
                rows.append({RUN_ID: rid, RUN_NAME: rid, ALPHA: alpha, ALPHA_MODE: "grl", LR: 1e-3, SEED: seed,
                             STEPS: 100, STATE: "finished", EPOCH: int(e[t]), M.VAL_MSE: mse[t],
                             M.VAL_LINEAR_ACC: acc[t]})
    return pd.DataFrame(rows)
