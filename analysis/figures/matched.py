"""matched_mse_accuracy.png: accuracy versus the reference *at equal MSE* (SPEC §8.4).

The figure that answers "do runs that reconstruct equally well learn equally useful features?",
drawn from gap_statistics.json's `matched_mse` (`analysis.stats.contrasts`), nothing recomputed: left,
per condition, acc − reference acc along the MSE axis for every seed pair (thin), their mean
(thick) and range (band); right, each condition's effect with its t interval over seed pairs, every
pair's contrast as a dot, its sign-flip p; conditions that are not estimable are named with why.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis import DEFAULT_ACC_KEY, DEFAULT_MSE_KEY
from analysis.figures.style import CMAP, alpha_norm, line_color, mse_label, no_data, p_text, plt
from mae_gap.fmt import num


def matched_mse_accuracy(df: pd.DataFrame, stats: dict, acc_key: str = DEFAULT_ACC_KEY,
                         mse_key: str = DEFAULT_MSE_KEY) -> Figure:
    """Two panels (see the module docstring); `stats` is `gap_statistics(df, ...).to_json()`."""
    test = stats.get("matched_mse") or {}
    rows = test.get("by_condition", [])
    norm, cmap = alpha_norm([r.get("alpha", 0.0) for r in rows] or [0.0]), plt.get_cmap(CMAP)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2), layout="constrained", gridspec_kw={"width_ratios": [3, 2]})
    ref = test.get("reference", "alpha=0")
    left.axhline(0, color="black", lw=1.2, label=f"{ref} (reference)")
    drawn = 0
    for r in rows:
        curve = r.get("curve") or {}
        if not r.get("estimable") or not curve:
            continue
        color = line_color(cmap(norm(r.get("alpha", 0.0))))
        ls = "--" if r.get("alpha_mode") == "confusion" else "-"
        x, pairs = np.asarray(curve["mse"], float), np.asarray(curve["pairs"], float)
        mean = np.asarray(curve["mean"], float)
        for y in pairs:
            left.plot(x, y, ls, color=color, lw=0.7, alpha=0.45)
        defined = np.isfinite(mean)
        if len(pairs) > 1:
            with np.errstate(all="ignore"):
                lo, hi = np.nanmin(pairs[:, defined], 0), np.nanmax(pairs[:, defined], 0)
            left.fill_between(x[defined], lo, hi, color=color, alpha=0.15, lw=0)
        left.plot(x[defined], mean[defined], ls, color=color, lw=2.2, gid=f"mean:{r['condition']}",
                  label=f"{r['condition']} ({r['n_pairs']} seed pair{'s' * (r['n_pairs'] != 1)})")
        drawn += 1
    left.set_xlabel(mse_label(mse_key))
    left.set_ylabel("accuracy − reference at equal MSE (pp)")
    left.grid(True, alpha=0.25)
    if drawn:
        left.legend(fontsize=8, loc="best")
    else:
        no_data(left, "no condition meets its reference in MSE")
    left.set_title("per seed pair (thin), mean (thick), range (band)", fontsize=10)
    _effects(right, rows, norm, cmap)
    omni = test.get("omnibus") or {}
    right.set_title(f"any condition ≠ reference: {p_text(omni.get('p_value'))} sign-flip, "
                    f"{p_text(omni.get('t_p_value'))} t (Bonferroni over {omni.get('n_contrasts', 0)})", fontsize=10)
    fig.suptitle(f"{acc_key} at equal reconstruction MSE, versus {ref}", fontsize=12)
    return fig


def _effects(ax, rows: list, norm, cmap) -> None:
    """The right panel: effect, t interval and pair dots per condition; 'not estimable' named."""
    for i, r in enumerate(rows):
        if not r.get("estimable"):
            ax.annotate("not estimable", (i, 0), xytext=(0, 8), textcoords="offset points", ha="center",
                        fontsize=8, color="0.4", rotation=90, va="bottom")
            continue
        color = line_color(cmap(norm(r.get("alpha", 0.0))))
        effect, lo, hi = r["effect_pp"], r.get("ci_low_pp"), r.get("ci_high_pp")
        if lo is not None and hi is not None:
            ax.errorbar([i], [effect], yerr=[[effect - lo], [hi - effect]], fmt="none", ecolor=color, elinewidth=2,
                        capsize=4, label=f"_ci:{r['condition']}")
        dots = [p["effect_pp"] for p in r.get("pairs", []) if p.get("estimable")]
        ax.scatter([i] * len(dots), dots, s=14, color=color, alpha=0.5, zorder=3)
        ax.scatter([i], [effect], s=60, color=color, edgecolors="black", zorder=4, gid=f"effect:{r['condition']}")
        ax.annotate(f"{num(effect, '+.2f')} pp, {p_text(r.get('p_value'))}\n(min {num(r.get('min_attainable_p'), '.2g')}"
                    f"; t {num(r.get('t_p_value'), '.2g')})", (i, effect), xytext=(6, 0), textcoords="offset points",
                    fontsize=7, va="center")
    ax.axhline(0, color="black", lw=1.2)
    ax.set_xticks(range(len(rows)), [r["condition"] for r in rows], rotation=20, fontsize=8)
    ax.set_ylabel("effect at equal MSE (pp), t interval over seed pairs")
    ax.grid(True, axis="y", alpha=0.25)
    if not rows:
        no_data(ax, "no condition to compare")
