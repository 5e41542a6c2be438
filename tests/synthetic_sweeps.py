"""Synthetic sweeps with a known truth, in the real sweep's regime, for the calibration tests.

One sweep: conditions (alpha) x seeds runs of `epochs` epochs, shaped like
`sweeps/imagenette_cpu.yaml` (MSE 0.86 -> 0.75 at alpha = 0 over training, accuracy 0.35 -> 0.5):

* MSE falls over training, m_e = 0.74 + shift[alpha] + 0.12 exp(-3 (e - 1) / epochs) + seed and
  epoch noise: `shift` moves a condition along the MSE axis, so conditions overlap partly, down to
  slivers (SHIFTS: alpha = -1 meets alpha = 0 on about a fifth of its range);
* accuracy = f(m) + effect[alpha] + u_seed(e) + eps_run(e): a seed effect shared by every condition
  of that seed and a run's own noise, both AR(1) over epochs (a seed's luck persists).
With every effect 0, accuracy depends on MSE alone and any effect "found" is a false positive.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import ALPHA, ALPHA_MODE, LR, RUN_ID, RUN_NAME, SEED, STATE, STEPS
from mae_gap.metrics import EPOCH
from mae_gap import metrics as M

# MSE shift per alpha: alpha = +1 overlaps alpha = 0 on ~3/4 of its range, -0.5 on ~half, -1 on a sliver.
SHIFTS = {-1.0: 0.095, -0.5: 0.06, 0.0: 0.0, 0.5: -0.02, 1.0: 0.03}


def f_true(mse):
    """The common accuracy-vs-MSE curve: falling, curved."""
    m = np.asarray(mse, float) - 0.75
    return 0.5 - 0.8 * m + 1.5 * m**2


def ar1(rng: np.random.Generator, shape, sigma: float, phi: float) -> np.ndarray:
    """Stationary AR(1) series along the last axis, marginal SD `sigma`."""
    z = sigma * rng.standard_normal(shape)
    out = np.empty(shape)
    out[..., 0] = z[..., 0]
    for t in range(1, shape[-1]):
        out[..., t] = phi * out[..., t - 1] + np.sqrt(1 - phi**2) * z[..., t]
    return out


def sweep_arrays(rng: np.random.Generator, alphas=(0.0, 1.0), seeds: int = 5, epochs: int = 6, effects=None,
                 shifts=None, sigma_run: float = 0.01, sigma_seed: float = 0.01, phi: float = 0.6,
                 mse_sigma: float = 0.002) -> tuple[np.ndarray, np.ndarray]:
    """(mse, acc), each (conditions, seeds, epochs): the model of the module docstring."""
    effects, shifts = effects or {}, {**SHIFTS, **(shifts or {})}
    e = np.arange(epochs)
    base = 0.74 + 0.12 * np.exp(-3.0 * e / max(epochs - 1, 1))
    shift = np.array([shifts.get(a, 0.0) for a in alphas])[:, None, None]
    seed_mse = 0.004 * rng.standard_normal((1, seeds, 1))
    mse = base + shift + seed_mse + mse_sigma * rng.standard_normal((len(alphas), seeds, epochs))
    effect = np.array([effects.get(a, 0.0) for a in alphas])[:, None, None]
    acc = (f_true(mse) + effect + ar1(rng, (1, seeds, epochs), sigma_seed, phi)
           + ar1(rng, (len(alphas), seeds, epochs), sigma_run, phi))
    return mse, acc


def table(mse: np.ndarray, acc: np.ndarray, alphas) -> pd.DataFrame:
    """The tidy table of `sweep_arrays` output (run ids "a<alpha>-s<seed>")."""
    rows = []
    for i, alpha in enumerate(alphas):
        for s in range(mse.shape[1]):
            rid = f"a{alpha:g}-s{s}"
            for t in range(mse.shape[2]):
                rows.append({RUN_ID: rid, RUN_NAME: rid, ALPHA: float(alpha), ALPHA_MODE: "grl", LR: 1e-3, SEED: s,
                             STEPS: 100, STATE: "finished", EPOCH: t + 1, M.VAL_MSE: mse[i, s, t],
                             M.VAL_LINEAR_ACC: acc[i, s, t]})
    return pd.DataFrame(rows)


def sweep(rng: np.random.Generator, alphas=(-1.0, 0.0, 1.0), **kw) -> pd.DataFrame:
    """One synthetic sweep as a tidy table."""
    return table(*sweep_arrays(rng, alphas, **kw), alphas)
