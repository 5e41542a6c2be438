"""matched_mse_accuracy.png: accuracy versus the alpha = 0 reference *at equal MSE* (SPEC §8.4).

The figure that answers "do runs that reconstruct equally well learn equally useful features?":
left, per condition, accuracy minus the alpha = 0 mean curve along the MSE axis (thin: each seed,
thick: their mean, band: their range); right, each condition's effect (`analysis.matched_mse`)
with its Welch interval over seeds and its permutation p.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis import DEFAULT_ACC_KEY, DEFAULT_MSE_KEY
from analysis.matched_mse import difference_curves
from mae_gap.fmt import num
from analysis.plot_style import CMAP, alpha_norm, line_color, mse_label, no_data, p_text, plt, stats_of


def matched_mse_accuracy(df: pd.DataFrame, stats: dict | None = None, acc_key: str = DEFAULT_ACC_KEY,
                         mse_key: str = DEFAULT_MSE_KEY) -> Figure:
    """Two panels (see the module docstring); `stats` is `gap_statistics(df, ...)` (computed when None)."""
    stats = stats_of(df, stats, acc_key, mse_key)
    test = stats.get("matched_mse") or {}
    curves = difference_curves(df, acc_key, mse_key) if len(df) else {}
    rows = [r for r in test.get("by_condition", []) if r.get("effect_pp") is not None]
    alphas = [r["alpha"] for r in test.get("by_condition", [])] or [0.0]
    norm, cmap = alpha_norm(alphas), plt.get_cmap(CMAP)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2), layout="constrained", gridspec_kw={"width_ratios": [3, 2]})

    left.axhline(0, color="black", lw=1.2, label="α = 0 (reference)")
    for cond, c in curves.items():
        row = next((r for r in test.get("by_condition", []) if r["condition"] == cond), {})
        color = line_color(cmap(norm(row.get("alpha", 0.0))))
        ls = "--" if row.get("alpha_mode") == "confusion" else "-"
        x, runs = np.asarray(c["mse"]), np.asarray(c["runs"], float)
        for y in runs:
            left.plot(x, y, ls, color=color, lw=0.7, alpha=0.45)
        defined = np.isfinite(runs).any(axis=0)
        if defined.any():
            with np.errstate(all="ignore"):
                lo, hi, mean = np.nanmin(runs[:, defined], 0), np.nanmax(runs[:, defined], 0), np.nanmean(runs[:, defined], 0)
            if len(runs) > 1:
                left.fill_between(x[defined], lo, hi, color=color, alpha=0.15, lw=0)
            left.plot(x[defined], mean, ls, color=color, lw=2.2, label=f"{cond} ({len(runs)} seed{'s' * (len(runs) > 1)})")
    left.set_xlabel(mse_label(mse_key))
    left.set_ylabel("accuracy − α = 0 reference at equal MSE (pp)")
    left.grid(True, alpha=0.25)
    if curves:
        left.legend(fontsize=8, loc="best")
    else:
        no_data(left, "no condition overlaps the α = 0 runs in MSE")
    left.set_title("per seed (thin), mean (thick), seed range (band)", fontsize=10)

    for i, r in enumerate(rows):
        color = line_color(cmap(norm(r["alpha"])))
        ci = r.get("ci_pp")
        if ci:
            right.errorbar([i], [r["effect_pp"]], yerr=[[r["effect_pp"] - ci[0]], [ci[1] - r["effect_pp"]]], fmt="none",
                           ecolor=color, elinewidth=2, capsize=4)
        right.scatter([i] * len(r["scores_pp"]), np.asarray(r["scores_pp"]) - _ref_mean(test, r), s=14, color=color,
                      alpha=0.5, zorder=3)
        right.scatter([i], [r["effect_pp"]], s=60, color=color, edgecolors="black", zorder=4)
        right.annotate(p_text(r.get("p_value")), (i, r["effect_pp"]), xytext=(6, 0), textcoords="offset points",
                       fontsize=8, va="center")
    right.axhline(0, color="black", lw=1.2)
    right.set_xticks(range(len(rows)), [r["condition"] for r in rows], rotation=20, fontsize=8)
    right.set_ylabel("effect at equal MSE (pp), Welch interval over seeds")
    right.grid(True, axis="y", alpha=0.25)
    if not rows:
        no_data(right, test.get("note") or "no effect to show")
    right.set_title(f"all conditions: permutation {p_text(test.get('p_value'))}, "
                    f"η² = {num(test.get('eta_squared'), '.2f')}", fontsize=10)
    fig.suptitle("Accuracy at equal reconstruction MSE, versus α = 0", fontsize=12)
    return fig


def _ref_mean(test: dict, row: dict) -> float:
    """Mean score (pp) of the reference runs of `row`: the seeds' dots are drawn relative to it."""
    return float(np.mean(row["scores_pp"])) - row["effect_pp"]
