"""Every statistic of a sweep, built once as typed objects (SPEC section 8.3): `gap_statistics`.

Pure: a tidy table in (states filtered beforehand), a `GapStatistics` out; `to_json()` is
gap_statistics.json, which the figures, the printed summary, summary.md, the W&B summary and the
report read. Nothing downstream recomputes a statistic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from analysis import ALPHA, ALPHA_MODE, DEFAULT_ACC_KEY, DEFAULT_BINS, DEFAULT_MSE_KEY, LR, RUN_ID, RUN_NAME, SEED, STEPS
from analysis.stats.conditions import CONDITION, Reference, condition_order, final_rows, runs_table
from analysis.stats.contrasts import Omnibus, contrasts
from analysis.stats.cross_run import CrossRunRho, cross_run_rho
from analysis.stats.gamma_null import N_DRAWS, GammaNull, gamma_nulls
from analysis.stats.planner import DEFAULT_EFFECTS, Planner, plan
from analysis.stats.tube import bin_edges, bin_table, spearman, tube_volume
from mae_gap.fileio import json_safe
from mae_gap import metrics as M

# Names of the per-sign groups in gap_statistics()["by_sign"], with their condition.
SIGN_GROUPS = {"negative": "alpha < 0", "zero": "alpha == 0", "positive": "alpha > 0"}
# Final metrics reported per condition (mean over seeds and every seed's value).
FINAL_METRICS = (M.VAL_LINEAR_ACC, M.VAL_KNN_ACC, M.VAL_PROBE_ACC, M.VAL_HEAD_ACC, M.VAL_MSE, M.VAL_MSE_PIXEL,
                 M.TRAIN_GRAD_RATIO, M.TRAIN_GRAD_RATIO_MEDIAN)
# An accuracy this high in every run leaves no room for a gap: the tube is flat by the ceiling.
CEILING = 0.95


@dataclass(frozen=True)
class SignGroup:
    """Γ and ρ of the runs with one sign of alpha, on the sweep's bin edges, with Γ's null."""

    condition: str
    n_runs: int
    n_points: int
    gamma: float | None
    gamma_own_bins: float | None  # binned over the group's own range: the original study's number
    null: GammaNull
    rho: float | None
    p: float | None


@dataclass(frozen=True)
class Readouts:
    """What the readouts say about themselves: probes that did not converge, an accuracy ceiling."""

    probe_not_converged: list
    at_ceiling: bool
    note: str | None


@dataclass(frozen=True)
class GapStatistics:
    """Every statistic of `gap_statistics` (its docstring says what each is)."""

    gamma: float
    rho: float
    p: float
    n_points: int
    n_runs: int
    n_dropped_nan: int
    bins: list
    null: GammaNull
    by_sign: dict
    contrasts: list
    omnibus: Omnibus
    reference: str
    cross_run: CrossRunRho
    planner: Planner
    conditions: list
    readouts: Readouts
    inputs: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """gap_statistics.json's statistics (NaN as None)."""
        null = asdict(self.null)
        return json_safe({
            "gamma": self.gamma, "rho": self.rho, "p": self.p, "n_points": self.n_points, "n_runs": self.n_runs,
            "n_dropped_nan": self.n_dropped_nan, "bins": self.bins,
            "noise_floor": null["noise_floor"], "noise_floor_q95": null["noise_floor_q95"],
            "gamma_excess": null["gamma_excess"], "gamma_p": null["gamma_p"], "gamma_null": null,
            "by_sign": {k: asdict(v) for k, v in self.by_sign.items()},
            "matched_mse": {"by_condition": [c.to_json() for c in self.contrasts], "omnibus": asdict(self.omnibus),
                            "reference": self.reference,
                            "definition": "direct paired contrast at equal MSE (analysis.stats.contrasts)"},
            "cross_run_rho": asdict(self.cross_run), "planner": asdict(self.planner),
            "conditions": self.conditions, "readouts": asdict(self.readouts), "inputs": self.inputs,
        })


def gap_statistics(df: pd.DataFrame, acc_key: str = DEFAULT_ACC_KEY, mse_key: str = DEFAULT_MSE_KEY,
                   bins: int = DEFAULT_BINS, n_perm: int = 5000, seed: int = 0, level: float = 0.95,
                   reference: Reference = Reference(), n_draws: int = N_DRAWS,
                   plan_effects=DEFAULT_EFFECTS) -> GapStatistics:
    """Γ, ρ, bins; Γ's null (`gamma_null`) for the sweep and per sign group; direct contrasts at
    equal MSE (`contrasts`) with the omnibus test; cross-run ρ (`cross_run`); the seed planner
    (`planner`); per-condition finals; the readouts' own checks.

    Every row of `df` (one per run and epoch) is one point (df[mse_key], df[acc_key]); rows where
    either is NaN are dropped and counted. gamma, rho, p: the original study's Γ (`stats.tube_volume`,
    `bins` bins) and pooled Spearman ρ with its point-level p (it treats epochs as independent and is
    dominated by training time: read cross_run instead). by_sign: Γ per sign group on the sweep's
    bin edges (so groups compare) and on its own (the original study's number).
    """
    for col in (mse_key, acc_key):
        if col not in df.columns:
            raise KeyError(f"column {col!r} not in the tidy table (columns: {', '.join(map(str, df.columns))})")
    valid = df[np.isfinite(df[mse_key].to_numpy(float)) & np.isfinite(df[acc_key].to_numpy(float))]
    edges = bin_edges(valid[mse_key], bins)
    rho, p = spearman(valid[mse_key], valid[acc_key])
    alpha = valid[ALPHA].to_numpy(float) if ALPHA in valid.columns else np.full(len(valid), np.nan)
    masks = {"all": np.ones(len(valid), bool), "negative": alpha < 0, "zero": alpha == 0, "positive": alpha > 0}
    nulls = gamma_nulls(valid, acc_key, mse_key, edges, masks, n_draws, seed) if len(valid) else \
        {k: GammaNull(None, reason="no points") for k in masks}
    found, omnibus = contrasts(valid, acc_key, mse_key, reference, level, seed=seed)
    return GapStatistics(
        gamma=tube_volume(valid[mse_key], valid[acc_key], bins), rho=rho, p=p, n_points=int(len(valid)),
        n_runs=_n_runs(valid), n_dropped_nan=int(len(df) - len(valid)),
        bins=bin_table(valid[mse_key], valid[acc_key], bins).to_dict(orient="records"),
        null=nulls["all"], by_sign=by_sign(valid, acc_key, mse_key, bins, masks, nulls),
        contrasts=found, omnibus=omnibus, reference=str(reference),
        cross_run=cross_run_rho(valid, acc_key, mse_key, n_perm=n_perm, seed=seed, level=level),
        planner=plan(found, plan_effects), conditions=condition_finals(df), readouts=readouts(df, acc_key),
        inputs={"acc_key": acc_key, "mse_key": mse_key, "bins": int(bins), "n_perm": int(n_perm), "seed": int(seed),
                "level": float(level), "reference": str(reference), "null_draws": int(n_draws),
                "plan_effects": [float(e) for e in plan_effects], "unit": RUN_ID},
    )


def by_sign(valid: pd.DataFrame, acc_key: str, mse_key: str, bins: int, masks: dict, nulls: dict) -> dict:
    out = {}
    for name, cond in SIGN_GROUPS.items():
        sub = valid[masks[name]]
        r, pv = spearman(sub[mse_key], sub[acc_key])
        out[name] = SignGroup(cond, _n_runs(sub), int(len(sub)), nulls[name].gamma,
                              tube_volume(sub[mse_key], sub[acc_key], bins) if len(sub) else None, nulls[name], r, pv)
    return out


def readouts(df: pd.DataFrame, acc_key: str) -> Readouts:
    """Runs whose linear probe did not converge at some evaluation, and whether `acc_key` sits at
    its ceiling (>= CEILING at the final epoch of every run)."""
    names = df.drop_duplicates(RUN_ID).set_index(RUN_ID)[RUN_NAME] if RUN_NAME in df.columns else None
    bad = []
    if M.VAL_LINEAR_CONVERGED in df.columns:
        flag = df[M.VAL_LINEAR_CONVERGED].to_numpy(float)
        bad = list(dict.fromkeys(df.loc[flag == 0, RUN_ID]))
    fin = final_rows(df, [acc_key]) if acc_key in df.columns and len(df) else pd.DataFrame()
    ceiling = bool(len(fin)) and bool((fin[acc_key].to_numpy(float) >= CEILING).all())
    notes = []
    if bad:
        notes.append(f"the linear probe did not converge in {len(bad)} run(s): "
                     + ", ".join(str(names.get(r, r)) if names is not None else r for r in bad))
    if ceiling:
        notes.append(f"{acc_key} is at its ceiling (>= {CEILING:g} at the final epoch of every run): a flat tube "
                     "here says nothing about the features; analyse a harder readout (--acc val/knn_acc)")
    return Readouts(bad, ceiling, "; ".join(notes) or None)


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
            "lr": float(mine[LR].iloc[0]), "parameters": {k: _plain(mine[k].iloc[0]) for k in runs.columns
                                                          if k not in (RUN_ID, SEED, CONDITION)}, "n_seeds": len(ids), "seeds": mine[SEED].tolist(), "run_ids": ids,
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


def _plain(v):
    return v.item() if isinstance(v, np.generic) else v


def _n_runs(df: pd.DataFrame) -> int:
    return int(df[RUN_ID].nunique()) if RUN_ID in df.columns else 0
