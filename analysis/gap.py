"""Every statistic of a sweep in one JSON-ready dict (SPEC section 8.3): `gap_statistics`.

Pure: a tidy table in (states filtered beforehand), numbers out; NaN written as None.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import ALPHA, ALPHA_MODE, DEFAULT_ACC_KEY, DEFAULT_BINS, DEFAULT_MSE_KEY, LR, RUN_ID, SEED, STEPS
from analysis.conditions import CONDITION, condition_order, final_rows, runs_table
from analysis.cross_run import cross_run_rho
from analysis.matched_mse import matched_mse
from analysis.noise_floor import noise_floor
from analysis.stats import bin_edges, bin_table, spearman, to_json_safe, tube_volume
from mae_gap import metrics as M

# Names of the per-sign groups in gap_statistics()["by_sign"], with their condition.
SIGN_GROUPS = {"negative": "alpha < 0", "zero": "alpha == 0", "positive": "alpha > 0"}
# Final metrics reported per condition (mean over seeds and every seed's value).
FINAL_METRICS = (M.VAL_LINEAR_ACC, M.VAL_KNN_ACC, M.VAL_PROBE_ACC, M.VAL_HEAD_ACC, M.VAL_MSE, M.VAL_MSE_PIXEL,
                 M.TRAIN_GRAD_RATIO)


def gap_statistics(df: pd.DataFrame, acc_key: str = DEFAULT_ACC_KEY, mse_key: str = DEFAULT_MSE_KEY,
                   bins: int = DEFAULT_BINS, n_perm: int = 5000, seed: int = 0, level: float = 0.95) -> dict:
    """Γ, ρ, bins, per-sign groups, noise floor, matched-MSE test, cross-run ρ, per-condition finals.

    Every row of `df` (one per run and epoch) is one point (df[mse_key], df[acc_key]); rows where
    either is NaN are dropped and counted. Keys:
      gamma, rho, p: the original study's Γ (`stats.tube_volume`, `bins` bins) and pooled Spearman ρ
        with its point-level p (it treats epochs as independent and is dominated by training time:
        read cross_run_rho instead); n_points, n_runs, n_dropped_nan; bins: `stats.bin_table`;
      by_sign: {negative, zero, positive} -> {condition, n_runs, n_points, gamma (on the sweep's
        common bin edges, so groups compare), gamma_own_bins (each group binned over its own range,
        the original study's number), floor, gamma_excess, rho, p};
      noise_floor: `noise_floor.noise_floor` (floor, null_spread, replicated conditions, note);
      gamma_excess: Γ - floor (None without seed replicates);
      matched_mse: `matched_mse.matched_mse` (effect_pp per condition, p_value, intervals);
      cross_run_rho: `cross_run.cross_run_rho` (final-epoch ρ across runs, permutation p, per epoch);
      conditions: per (alpha, mode, lr): n_seeds, total_steps, final_mean {metric: mean over seeds},
        final {metric: [per seed]};
      inputs: the exact arguments.
    """
    for col in (mse_key, acc_key):
        if col not in df.columns:
            raise KeyError(f"column {col!r} not in the tidy table (columns: {', '.join(map(str, df.columns))})")
    valid = df[np.isfinite(df[mse_key].to_numpy(float)) & np.isfinite(df[acc_key].to_numpy(float))]
    edges = bin_edges(valid[mse_key], bins)
    rho, p = spearman(valid[mse_key], valid[acc_key])
    floor = noise_floor(valid, acc_key, mse_key, bins, edges=edges)
    out = {
        "gamma": tube_volume(valid[mse_key], valid[acc_key], bins),
        "rho": rho,
        "p": p,
        "n_points": int(len(valid)),
        "n_runs": _n_runs(valid),
        "n_dropped_nan": int(len(df) - len(valid)),
        "bins": bin_table(valid[mse_key], valid[acc_key], bins).to_dict(orient="records"),
        "by_sign": by_sign(valid, acc_key, mse_key, bins, edges),
        "noise_floor": floor,
        "gamma_excess": floor["gamma_excess"],
        "matched_mse": matched_mse(valid, acc_key, mse_key, n_perm=n_perm, seed=seed, level=level),
        "cross_run_rho": cross_run_rho(valid, acc_key, mse_key, n_perm=n_perm, seed=seed),
        "conditions": condition_finals(df),
        "inputs": {"acc_key": acc_key, "mse_key": mse_key, "bins": int(bins), "n_perm": int(n_perm),
                   "seed": int(seed), "level": float(level), "unit": RUN_ID},
    }
    return to_json_safe(out)


def by_sign(valid: pd.DataFrame, acc_key: str, mse_key: str, bins: int, edges: np.ndarray) -> dict:
    alpha = valid[ALPHA].to_numpy(float) if ALPHA in valid.columns else np.full(len(valid), np.nan)
    masks = {"negative": alpha < 0, "zero": alpha == 0, "positive": alpha > 0}
    out = {}
    for name, cond in SIGN_GROUPS.items():
        sub = valid[masks[name]]
        r, pv = spearman(sub[mse_key], sub[acc_key])
        floor = noise_floor(sub, acc_key, mse_key, bins, edges=edges) if len(sub) else {}
        out[name] = {
            "condition": cond,
            "n_runs": _n_runs(sub),
            "n_points": int(len(sub)),
            "gamma": tube_volume(sub[mse_key], sub[acc_key], edges=edges),
            "gamma_own_bins": tube_volume(sub[mse_key], sub[acc_key], bins),
            "floor": floor.get("floor"),
            "gamma_excess": floor.get("gamma_excess"),
            "rho": r,
            "p": pv,
        }
    return out


def condition_finals(df: pd.DataFrame) -> list[dict]:
    """Per condition (in `condition_order`): seeds, training steps and final metrics."""
    runs = runs_table(df)
    if not len(runs):
        return []
    steps = df.drop_duplicates(RUN_ID).set_index(RUN_ID)[STEPS] if STEPS in df.columns else None
    keys = [k for k in FINAL_METRICS if k in df.columns]
    finals = {k: final_rows(df, [k]).set_index(RUN_ID)[k] for k in keys}
    out = []
    for c in condition_order(runs):
        mine = runs[runs[CONDITION] == c]
        ids = mine[RUN_ID].tolist()
        per_seed = {k: [finals[k].get(r, np.nan) for r in ids] for k in keys}
        out.append({
            "condition": c, "alpha": float(mine[ALPHA].iloc[0]), "alpha_mode": str(mine[ALPHA_MODE].iloc[0]),
            "lr": float(mine[LR].iloc[0]), "n_seeds": len(ids), "seeds": mine[SEED].tolist(), "run_ids": ids,
            "total_steps": _max_steps(steps, ids),
            "final_mean": {k: float(np.nanmean(v)) if np.isfinite(v).any() else None
                           for k, v in ((k, np.asarray(v, float)) for k, v in per_seed.items())},
            "final": per_seed,
        })
    return out


def _max_steps(steps: pd.Series | None, ids: list[str]) -> int:
    """The longest training of a condition's runs, -1 when unknown."""
    values = pd.to_numeric(steps[ids], errors="coerce").to_numpy(float) if steps is not None else np.empty(0)
    values = values[np.isfinite(values)]
    return int(values.max()) if values.size else -1


def _n_runs(df: pd.DataFrame) -> int:
    return int(df[RUN_ID].nunique()) if RUN_ID in df.columns else 0
