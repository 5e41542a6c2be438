"""Plots of the reconstruction gap (SPEC section 8.4): tidy table -> matplotlib Figure.

Every function takes the tidy table (one row per run and epoch, see `analysis`) and
returns a Figure (never shows it; the Agg backend is forced). `save_all` writes the PNGs
the CLI and the W&B upload use. The shared conventions (colour = signed alpha, axes, units)
live in `analysis.figures.style`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analysis import ALPHA, ALPHA_MODE, DEFAULT_ACC_KEY, DEFAULT_MSE_KEY, LR, RUN_ID
from mae_gap.metrics import EPOCH
from analysis.figures.matched import matched_mse_accuracy
from mae_gap.fmt import num, plural
from analysis.figures.style import (
    ALPHA_LINSCALE, ALPHA_LINTHRESH, CMAP, DPI, GROUP_COLORS, GROUP_TITLES, LR_MARKERS, acc_label, alpha_colorbar,
    alpha_norm, matplotlib, mse_label, no_data, p_text, plt, scatter_alpha,
    symlog_alpha_ticks, trajectories, valid_points,
)

TUBE_SCATTER_PNG = "tube_scatter_signed_alpha.png"
ALPHA_VS_FINAL_PNG = "alpha_vs_final_metrics.png"
NEG_VS_POS_PNG = "negative_vs_positive_comparison.png"
LR_ALPHA_PNG = "lr_alpha_scatter.png"
MATCHED_MSE_PNG = "matched_mse_accuracy.png"


# --------------------------------------------------------------------------- figures


def tube_scatter(
    df: pd.DataFrame, stats: dict, acc_key: str = DEFAULT_ACC_KEY, mse_key: str = DEFAULT_MSE_KEY
) -> Figure:
    """Every (run, epoch) point: MSE vs accuracy, colour = signed alpha, runs as faint lines.

    Grey bands show Γ's bins: per MSE bin, the accuracy range [min, max] whose heights Γ sums.
    Hatched bands: the noise floor, i.e. the median spread of the same bin under Γ's null (seed
    noise only, `analysis.stats.gamma_null`), drawn centred on the bin's mean accuracy. `stats` is
    `gap_statistics(df, ...).to_json()`.
    """
    d = valid_points(df, acc_key, mse_key)
    fig, ax = plt.subplots(figsize=(9, 6.2), layout="constrained")
    norm = alpha_norm(d[ALPHA] if len(d) else [])
    spreads = (stats.get("gamma_null") or {}).get("null_spread") or []
    for k, b in enumerate(stats.get("bins", [])):
        if b["count"] and b["count"] >= 2:
            ax.fill_between([b["left"], b["right"]], b["min"], b["max"], color="0.88", lw=0, zorder=0)
        s = spreads[k] if k < len(spreads) else None
        if s is not None and b["count"]:
            ax.fill_between([b["left"], b["right"]], b["mean"] - s / 2, b["mean"] + s / 2, facecolor="none",
                            edgecolor="0.55", hatch="////", lw=0, zorder=1)
    if len(d):
        trajectories(ax, d, acc_key, mse_key, norm)
        sc = scatter_alpha(ax, d, acc_key, mse_key, norm)
        alpha_colorbar(fig, sc, ax)
    else:
        no_data(ax)
    ax.set_xlabel(mse_label(mse_key))
    ax.set_ylabel(acc_label(acc_key, d[acc_key]))
    ax.grid(True, alpha=0.25, zorder=1)
    n_bins = stats.get("inputs", {}).get("bins", "?")
    cross = stats.get("cross_run_rho") or {}
    floor_text = (f"null median {num(stats.get('noise_floor'), '.3g')}, Γ − median = "
                  f"{num(stats.get('gamma_excess'), '+.3g')}, {p_text(stats.get('gamma_p'))}"
                  if stats.get("noise_floor") is not None else "no null for Γ (no seed replicates)")
    ax.set_title(
        f"Γ = {num(stats.get('gamma'), '.3g')} ({floor_text})\n"
        f"pooled ρ = {num(stats.get('rho'), '.2f')} (points, confounded by training time); "
        f"cross-run ρ = {num(cross.get('rho'), '.2f')} ({p_text(cross.get('p_value'))}, final epoch)\n"
        f"{plural(int(stats.get('n_runs') or 0), 'run')}, {plural(int(stats.get('n_points') or 0), 'point')}; "
        f"grey: accuracy range per MSE bin ({n_bins} bins); hatched: its median under the null",
        fontsize=9,
    )
    fig.suptitle("Reconstruction gap: MSE vs accuracy, colour = signed α", fontsize=12)
    return fig


def final_epoch(df: pd.DataFrame, keys) -> pd.DataFrame:
    """One row per run: its last epoch's value of each key (the last non-NaN epoch per key)."""
    rows = []
    for rid, run in df.sort_values(EPOCH).groupby(RUN_ID, sort=True):
        row = {RUN_ID: rid, ALPHA: float(run[ALPHA].iloc[0]), EPOCH: int(run[EPOCH].max()),
               ALPHA_MODE: str(run[ALPHA_MODE].iloc[0]) if ALPHA_MODE in run.columns else "grl"}
        if LR in run.columns:
            row[LR] = float(run[LR].iloc[0])
        for k in keys:
            v = run[k].dropna()
            row[k] = float(v.iloc[-1]) if len(v) else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def alpha_vs_final(df: pd.DataFrame, acc_key: str = DEFAULT_ACC_KEY, mse_key: str = DEFAULT_MSE_KEY) -> Figure:
    """Two panels: final-epoch MSE and final-epoch accuracy vs alpha (symlog x).

    One point per run (its last epoch with a value); a line through the per-alpha mean, one
    series per (learning rate, alpha_mode); where an alpha has several seeds, a bar spans their
    min..max (the seed band).
    """
    empty = pd.DataFrame(columns=[RUN_ID, ALPHA, ALPHA_MODE, LR, mse_key, acc_key])
    fin = final_epoch(df, [mse_key, acc_key]) if len(df) else empty
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
    series = sorted({(lr, m) for lr, m in zip(fin[LR], fin[ALPHA_MODE])}, key=lambda t: (t[0], t[1])) if len(fin) else []
    palette = plt.get_cmap("tab10")
    n_lr = len({lr for lr, _ in series})
    for ax, key, label in (
        (axes[0], mse_key, mse_label(mse_key)),
        (axes[1], acc_key, acc_label(acc_key, fin[acc_key] if len(fin) else None)),
    ):
        for i, (lr, mode) in enumerate(series):
            sub = fin[(fin[LR] == lr) & (fin[ALPHA_MODE] == mode)]
            sub = sub[np.isfinite(sub[key].to_numpy(float))]
            if not len(sub):
                continue
            color = "0.15" if len(series) == 1 else palette(i % 10)
            name = " ".join(([f"lr = {lr:g}"] if n_lr > 1 else []) + [mode])
            marker = LR_MARKERS[i % len(LR_MARKERS)]
            by = sub.groupby(ALPHA)[key]
            mean, lo, hi, n = by.mean().sort_index(), by.min().sort_index(), by.max().sort_index(), by.size().sort_index()
            ax.plot(mean.index, mean.to_numpy(), "-", color=color, lw=1.2, alpha=0.7, zorder=2)
            seeded = n > 1
            if seeded.any():
                ax.errorbar(mean.index[seeded], mean[seeded], yerr=[(mean - lo)[seeded], (hi - mean)[seeded]], fmt="none",
                            ecolor=color, elinewidth=4, alpha=0.3, capsize=0, zorder=2)
            ax.scatter(sub[ALPHA], sub[key], color=color, marker=marker, s=30, edgecolors="white", linewidths=0.5,
                       zorder=3, label=name)
        ax.set_xscale("symlog", linthresh=ALPHA_LINTHRESH, linscale=ALPHA_LINSCALE)
        ax.axvline(0, color="0.5", lw=0.8, ls=":", zorder=1)
        ax.set_xlabel("signed α (symlog; linear inside ±1e-5)")
        ax.set_ylabel(f"final-epoch {label}")
        ax.grid(True, alpha=0.25)
        symlog_alpha_ticks(ax, fin[ALPHA] if len(fin) else [])
        if not len(fin):
            no_data(ax)
    if len(series) > 1:
        axes[1].legend(title="series", fontsize=8, title_fontsize=8, loc="best")
    axes[0].set_title("reconstruction at the last epoch")
    axes[1].set_title("accuracy at the last epoch")
    fig.suptitle("Final-epoch metrics vs signed α (one point per run; line = mean, bar = seed range)", fontsize=12)
    return fig


def negative_vs_positive(
    df: pd.DataFrame, stats: dict, acc_key: str = DEFAULT_ACC_KEY, mse_key: str = DEFAULT_MSE_KEY
) -> Figure:
    """α < 0, α = 0 and α > 0 side by side (shared axes), then Γ and ρ per group as bars.

    Per group Γ uses the whole sweep's bin edges, so the groups compare; the hatched part of a
    bar is the median Γ of the group under the null (see `analysis.stats.gamma_null`).
    """
    d = valid_points(df, acc_key, mse_key)
    norm = alpha_norm(d[ALPHA] if len(d) else [])
    fig = plt.figure(figsize=(13, 8), layout="constrained")
    mosaic = [["negative", "negative", "zero", "zero", "positive", "positive"],
              ["gamma", "gamma", "gamma", "rho", "rho", "rho"]]
    axd = fig.subplot_mosaic(mosaic, height_ratios=[3, 1.6])
    a = d[ALPHA].to_numpy(float)
    masks = {"negative": a < 0, "zero": a == 0, "positive": a > 0}
    by_sign = stats.get("by_sign", {})
    first = axd["negative"]
    sc = None
    for g in ("negative", "zero", "positive"):
        ax = axd[g]
        if g != "negative":
            ax.sharex(first)
            ax.sharey(first)
            ax.tick_params(labelleft=False)
        sub = d[masks[g]]
        s = by_sign.get(g, {})
        if len(sub):
            trajectories(ax, sub, acc_key, mse_key, norm)
            sc_g = scatter_alpha(ax, sub, acc_key, mse_key, norm, size=18)
            sc = sc if (sc is not None and g == "zero") else sc_g
        else:
            no_data(ax, "no runs in this group")
        ax.set_title(
            f"{GROUP_TITLES[g]}: {plural(int(s.get('n_runs') or 0), 'run')}, {plural(int(s.get('n_points') or 0), 'point')}\n"
            f"Γ = {num(s.get('gamma'), '.3g')}, ρ = {num(s.get('rho'), '.2f')} ({p_text(s.get('p'))})",
            fontsize=10, color=GROUP_COLORS[g],
        )
        ax.set_xlabel(mse_label(mse_key), fontsize=9)
        ax.grid(True, alpha=0.25)
    first.set_ylabel(acc_label(acc_key, d[acc_key]))
    if sc is not None:
        alpha_colorbar(fig, sc, [axd["negative"], axd["zero"], axd["positive"]])

    groups = ("negative", "zero", "positive")
    names = [GROUP_TITLES[g] for g in groups]
    colors = [GROUP_COLORS[g] for g in groups]
    for key, ax, ylabel in (("gamma", axd["gamma"], "Γ (accuracy units)"), ("rho", axd["rho"], "Spearman ρ (MSE vs acc)")):
        vals = [by_sign.get(g, {}).get(key) for g in groups]
        heights = [v if v is not None else 0.0 for v in vals]
        bars = ax.bar(names, heights, color=colors, alpha=0.85, width=0.6)
        if key == "gamma":
            floors = [(by_sign.get(g, {}).get("null") or {}).get("noise_floor") for g in groups]
            ax.bar(names, [f or 0.0 for f in floors], facecolor="none", edgecolor="0.15", hatch="////", width=0.6,
                   lw=0.5, label="null median (seed noise)")
            if any(f is not None for f in floors):
                ax.legend(fontsize=8, loc="upper right")
        for bar, v in zip(bars, vals):
            txt = num(v, ".3g" if key == "gamma" else "+.2f")
            y = bar.get_height()
            va = "bottom" if y >= 0 else "top"
            ax.annotate(txt, (bar.get_x() + bar.get_width() / 2, y), xytext=(0, 3 if y >= 0 else -3),
                        textcoords="offset points", ha="center", va=va, fontsize=9)
        ax.set_ylabel(ylabel)
        ax.axhline(0, color="0.3", lw=0.8)
        ax.grid(True, axis="y", alpha=0.25)
        if key == "rho":
            ax.set_ylim(-1.15, 1.15)
            ax.set_title("Spearman ρ per group (all: " + num(stats.get("rho"), ".2f") + ")", fontsize=10)
        else:
            top = max([h for h in heights if h is not None] + [stats.get("gamma") or 0.0, 1e-12])
            ax.set_ylim(0, top * 1.2)
            ax.axhline(stats.get("gamma") or 0.0, color="0.2", lw=1, ls="--")
            ax.set_title("tube volume Γ per group (dashed: all points, Γ = "
                         + num(stats.get("gamma"), ".3g") + ")", fontsize=10)
    fig.suptitle("Negative vs zero vs positive α: MSE vs accuracy per group", fontsize=12)
    return fig


def lr_alpha_scatter(
    df: pd.DataFrame, acc_key: str = DEFAULT_ACC_KEY, mse_key: str = DEFAULT_MSE_KEY
) -> Figure | None:
    """MSE vs accuracy for sweeps over several learning rates; None when there is one lr.

    Colour = signed alpha (same scale as `tube_scatter`), marker = lr, opacity = epoch
    (faint = early, opaque = last epoch). Left: all lrs overlaid; then one panel per lr
    (shared axes) so overlapping clouds stay readable.
    """
    if LR not in df.columns:
        return None
    d = valid_points(df, acc_key, mse_key)
    lrs = sorted(pd.unique(d[LR].dropna()))
    if len(lrs) < 2:
        return None
    norm = alpha_norm(d[ALPHA])
    cmap = plt.get_cmap(CMAP)
    e = d[EPOCH].to_numpy(float)
    e_min, e_max = float(np.nanmin(e)), float(np.nanmax(e))
    opacity = 0.2 + 0.8 * ((e - e_min) / (e_max - e_min) if e_max > e_min else np.ones_like(e))
    rgba = cmap(norm(d[ALPHA].to_numpy(float)))
    rgba[:, 3] = opacity
    edge = np.zeros_like(rgba)
    edge[:, :3] = 0.15
    edge[:, 3] = opacity
    zero = d[ALPHA].to_numpy(float) == 0
    lw = np.where(zero, 1.1, 0.35)

    n = len(lrs)
    fig, axes = plt.subplots(1, n + 1, figsize=(5.2 * (n + 1), 5.2), layout="constrained", sharex=True, sharey=True)
    lr_vals = d[LR].to_numpy(float)
    for j, ax in enumerate(axes):
        for i, lr in enumerate(lrs):
            if j and j - 1 != i:
                continue
            m = lr_vals == lr
            ax.scatter(d.loc[m, mse_key], d.loc[m, acc_key], c=rgba[m], edgecolors=edge[m], linewidths=lw[m],
                       marker=LR_MARKERS[i % len(LR_MARKERS)], s=26, zorder=3)
        if j:
            trajectories(ax, d[lr_vals == lrs[j - 1]], acc_key, mse_key, norm, alpha=0.25)
        ax.set_title("all learning rates" if j == 0 else f"lr = {lrs[j - 1]:g}", fontsize=10)
        ax.set_xlabel(mse_label(mse_key))
        ax.grid(True, alpha=0.25)
    axes[0].set_ylabel(acc_label(acc_key, d[acc_key]))
    handles = [Line2D([], [], ls="", marker=LR_MARKERS[i % len(LR_MARKERS)], color="0.4", markeredgecolor="0.15",
                      label=f"lr = {lr:g}") for i, lr in enumerate(lrs)]
    handles += [Line2D([], [], ls="", marker="o", color="0.4", alpha=0.2, label=f"epoch {int(e_min)} (faint)"),
                Line2D([], [], ls="", marker="o", color="0.4", alpha=1.0, label=f"epoch {int(e_max)} (opaque)")]
    axes[0].legend(handles=handles, fontsize=8, loc="best", framealpha=0.9)
    sm = matplotlib.cm.ScalarMappable(norm=norm, cmap=CMAP)
    alpha_colorbar(fig, sm, list(axes))
    fig.suptitle("Learning rate × signed α: colour = α, marker = lr, opacity = epoch", fontsize=12)
    return fig


# --------------------------------------------------------------------------- files


def save_all(
    df: pd.DataFrame,
    stats: dict,
    out_dir,
    acc_key: str = DEFAULT_ACC_KEY,
    mse_key: str = DEFAULT_MSE_KEY,
) -> dict[str, Path]:
    """Writes the analysis PNGs into out_dir (created) and closes the figures.

    Returns {file stem: path}: tube_scatter_signed_alpha, alpha_vs_final_metrics,
    negative_vs_positive_comparison, matched_mse_accuracy, and lr_alpha_scatter only when
    the table has several learning rates.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = {
        TUBE_SCATTER_PNG: lambda: tube_scatter(df, stats, acc_key, mse_key),
        ALPHA_VS_FINAL_PNG: lambda: alpha_vs_final(df, acc_key, mse_key),
        NEG_VS_POS_PNG: lambda: negative_vs_positive(df, stats, acc_key, mse_key),
        LR_ALPHA_PNG: lambda: lr_alpha_scatter(df, acc_key, mse_key),
        MATCHED_MSE_PNG: lambda: matched_mse_accuracy(df, stats, acc_key, mse_key),
    }
    written: dict[str, Path] = {}
    for fname, make in figures.items():
        fig = make()
        if fig is None:
            continue
        path = out / fname
        try:
            fig.savefig(path, dpi=DPI)
        finally:
            plt.close(fig)
        written[Path(fname).stem] = path
    return written
