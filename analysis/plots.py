"""Plots of the reconstruction gap (SPEC section 8.4): tidy table -> matplotlib Figure.

Every function takes the tidy table (one row per run and epoch, see `analysis`) and
returns a Figure (never shows it; the Agg backend is forced). `save_all` writes the PNGs
the CLI and the W&B upload use.

Conventions shared by all figures:
* x = validation reconstruction MSE, y = accuracy, in the units the runs logged (the
  metrics contract logs accuracy as a fraction in [0, 1]; the label says "(%)" instead if
  the values exceed 1). Γ is in the same units as the accuracy axis.
* colour = signed alpha on a diverging red–white–blue map (negative red, 0 white,
  positive blue) with a symmetric-log normalization (linear inside ±1e-5), so 1e-5 and 10
  are both distinguishable; every marker has a thin dark edge and α = 0 a thick black
  one, so white points stay visible.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: never open a window, work without a display

import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from analysis import ALPHA, DEFAULT_ACC_KEY, DEFAULT_MSE_KEY, EPOCH, LR, RUN_ID  # noqa: E402
from mae_gap import metrics as M  # noqa: E402

TUBE_SCATTER_PNG = "tube_scatter_signed_alpha.png"
ALPHA_VS_FINAL_PNG = "alpha_vs_final_metrics.png"
NEG_VS_POS_PNG = "negative_vs_positive_comparison.png"
LR_ALPHA_PNG = "lr_alpha_scatter.png"

ALPHA_LINTHRESH = 1e-5  # |alpha| below this is drawn on a linear scale (SymLogNorm, symlog x)
ALPHA_LINSCALE = 1.0  # width of that linear region, in decades
CMAP = "RdBu"  # low (negative) = red, middle = white, high (positive) = blue
DPI = 150

GROUP_COLORS = {"negative": "#c0392b", "zero": "#555555", "positive": "#2166ac"}
GROUP_TITLES = {"negative": "α < 0", "zero": "α = 0", "positive": "α > 0"}

_MSE_LABELS = {
    M.VAL_MSE: "val reconstruction MSE (norm-pix target)",
    M.VAL_MSE_PIXEL: "val reconstruction MSE (normalized pixels)",
    M.TRAIN_REC_LOSS: "train reconstruction loss",
}
_ACC_NAMES = {
    M.VAL_PROBE_ACC: "val probe accuracy",
    M.VAL_HEAD_ACC: "val head accuracy",
    M.VAL_KNN_ACC: "val k-NN accuracy",
    M.TRAIN_HEAD_ACC: "train head accuracy",
}
_LR_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


# --------------------------------------------------------------------------- labels, colours


def mse_label(key: str) -> str:
    """Axis label of an MSE metric key."""
    return _MSE_LABELS.get(key, key)


def acc_label(key: str, values=None) -> str:
    """Axis label of an accuracy key: "(fraction)", or "(%)" when the values exceed 1."""
    name = _ACC_NAMES.get(key, key)
    v = np.asarray(values if values is not None else [], dtype=float)
    v = v[np.isfinite(v)]
    unit = "%" if v.size and v.max() > 1.0 else "fraction"
    return f"{name} ({unit})"


def alpha_norm(alphas) -> mcolors.SymLogNorm:
    """SymLogNorm symmetric around 0: vmin = −max|α|, vmax = +max|α|, linear inside ±1e-5."""
    a = np.asarray(alphas, dtype=float)
    a = a[np.isfinite(a)]
    amax = float(np.abs(a).max()) if a.size else 1.0
    amax = max(amax, 10 * ALPHA_LINTHRESH)  # all-zero sweeps still get a valid scale
    return mcolors.SymLogNorm(linthresh=ALPHA_LINTHRESH, linscale=ALPHA_LINSCALE, vmin=-amax, vmax=amax, base=10)


def _alpha_ticks(norm: mcolors.SymLogNorm) -> list[float]:
    """0, and ±10^k for every other decade inside the norm's range (readable colour bar)."""
    top = math.floor(math.log10(norm.vmax))
    low = math.ceil(math.log10(ALPHA_LINTHRESH))
    decades = list(range(top, low - 1, -2)) if top >= low else []
    pos = sorted(10.0**k for k in decades)
    return [-p for p in reversed(pos)] + [0.0] + pos


def _fmt_alpha(a: float) -> str:
    if a == 0:
        return "0"
    s = f"{a:g}"
    return s.replace("e-0", "e-").replace("e+0", "e").replace("e+", "e")


def _alpha_colorbar(fig: Figure, mappable, ax, label: str = "signed α (symlog)"):
    cb = fig.colorbar(mappable, ax=ax, pad=0.01, fraction=0.05, aspect=30)
    ticks = _alpha_ticks(mappable.norm)
    cb.set_ticks(ticks)
    cb.set_ticklabels([_fmt_alpha(t) for t in ticks])
    cb.ax.minorticks_off()
    cb.set_label(label)
    return cb


def _scatter_alpha(ax, d: pd.DataFrame, acc_key: str, mse_key: str, norm, size: float = 22, **kw):
    """Points coloured by alpha; thin dark edges, thick black edge on α = 0."""
    a = d[ALPHA].to_numpy(float)
    zero = a == 0
    base = dict(cmap=CMAP, norm=norm, s=size, zorder=3)
    base.update(kw)
    sc = ax.scatter(d.loc[~zero, mse_key], d.loc[~zero, acc_key], c=a[~zero], edgecolors="0.25", linewidths=0.35, **base)
    if zero.any():
        sc0 = ax.scatter(d.loc[zero, mse_key], d.loc[zero, acc_key], c=a[zero], edgecolors="black", linewidths=1.1, **base)
        if not (~zero).any():
            sc = sc0
    return sc


def _trajectories(ax, d: pd.DataFrame, acc_key: str, mse_key: str, norm, lw: float = 0.8, alpha: float = 0.35):
    """One faint line per run through its epochs in order, in the run's alpha colour."""
    cmap = plt.get_cmap(CMAP)
    for _, run in d.sort_values(EPOCH).groupby(RUN_ID, sort=False):
        if len(run) < 2:
            continue
        color = _line_color(cmap(norm(float(run[ALPHA].iloc[0]))))
        ax.plot(run[mse_key], run[acc_key], "-", color=color, lw=lw, alpha=alpha, zorder=2)


def _line_color(rgba) -> tuple:
    """A run's line colour: its alpha colour, but pale colours (near α = 0) fade to grey
    instead of white so their faint line stays visible."""
    r, g, b, _ = rgba
    pale = max(0.0, (0.2126 * r + 0.7152 * g + 0.0722 * b) - 0.55) / 0.45  # 0 = saturated, 1 = white
    grey = 0.45
    return (r + (grey - r) * pale, g + (grey - g) * pale, b + (grey - b) * pale, 1.0)


def _valid(df: pd.DataFrame, acc_key: str, mse_key: str) -> pd.DataFrame:
    for col in (acc_key, mse_key):
        if col not in df.columns:
            raise KeyError(f"column {col!r} not in the tidy table")
    ok = np.isfinite(df[acc_key].to_numpy(float)) & np.isfinite(df[mse_key].to_numpy(float))
    return df[ok]


def _num(x, fmt: str) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, fmt)


def _p_text(p) -> str:
    if p is None or not math.isfinite(p):
        return "p n/a"
    return f"p = {p:.2g}" if p >= 1e-300 else "p < 1e-300"


def _ci_text(ci, fmt: str) -> str:
    if not ci or ci[0] is None or ci[1] is None:
        return ""
    return f" [{format(ci[0], fmt)}, {format(ci[1], fmt)}]"


def _stats(df, stats, acc_key, mse_key):
    if stats is None:
        from analysis.stats import gap_statistics

        stats = gap_statistics(df, acc_key=acc_key, mse_key=mse_key, n_boot=0)
    return stats


def _count(n, word: str) -> str:
    n = int(n or 0)
    return f"{n} {word}" + ("" if n == 1 else "s")


def _no_data(ax, text="no points"):
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")


# --------------------------------------------------------------------------- figures


def tube_scatter(
    df: pd.DataFrame, stats: dict | None = None, acc_key: str = DEFAULT_ACC_KEY, mse_key: str = DEFAULT_MSE_KEY
) -> Figure:
    """Every (run, epoch) point: MSE vs accuracy, colour = signed alpha, runs as faint lines.

    Grey bands show Γ's bins: per MSE bin, the accuracy range [min, max] whose heights
    Γ sums. `stats` is `gap_statistics(df, ...)` (computed without bootstrap when None);
    the title gives Γ and ρ with their bootstrap intervals.
    """
    stats = _stats(df, stats, acc_key, mse_key)
    d = _valid(df, acc_key, mse_key)
    fig, ax = plt.subplots(figsize=(9, 6.2), layout="constrained")
    norm = alpha_norm(d[ALPHA] if len(d) else [])
    for b in stats.get("bins", []):
        if b["count"] and b["count"] >= 2:
            ax.fill_between([b["left"], b["right"]], b["min"], b["max"], color="0.88", lw=0, zorder=0)
    if len(d):
        _trajectories(ax, d, acc_key, mse_key, norm)
        sc = _scatter_alpha(ax, d, acc_key, mse_key, norm)
        _alpha_colorbar(fig, sc, ax)
    else:
        _no_data(ax)
    ax.set_xlabel(mse_label(mse_key))
    ax.set_ylabel(acc_label(acc_key, d[acc_key]))
    ax.grid(True, alpha=0.25, zorder=1)
    n_bins = stats.get("inputs", {}).get("bins", "?")
    ax.set_title(
        f"Γ = {_num(stats.get('gamma'), '.3g')}{_ci_text(stats.get('gamma_ci'), '.3g')}   "
        f"ρ = {_num(stats.get('rho'), '.3f')}{_ci_text(stats.get('rho_ci'), '.2f')} ({_p_text(stats.get('p'))})\n"
        f"{_count(stats.get('n_runs'), 'run')}, {_count(stats.get('n_points'), 'point')} (one per run and epoch); "
        f"grey bands: accuracy range per MSE bin ({n_bins} bins)",
        fontsize=10,
    )
    fig.suptitle("Reconstruction gap: MSE vs accuracy, colour = signed α", fontsize=12)
    return fig


def final_epoch(df: pd.DataFrame, keys) -> pd.DataFrame:
    """One row per run: its last epoch's value of each key (the last non-NaN epoch per key)."""
    rows = []
    for rid, run in df.sort_values(EPOCH).groupby(RUN_ID, sort=True):
        row = {RUN_ID: rid, ALPHA: float(run[ALPHA].iloc[0]), EPOCH: int(run[EPOCH].max())}
        if LR in run.columns:
            row[LR] = float(run[LR].iloc[0])
        for k in keys:
            v = run[k].dropna()
            row[k] = float(v.iloc[-1]) if len(v) else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def alpha_vs_final(df: pd.DataFrame, acc_key: str = DEFAULT_ACC_KEY, mse_key: str = DEFAULT_MSE_KEY) -> Figure:
    """Two panels: final-epoch MSE and final-epoch accuracy vs alpha (symlog x).

    One point per run (its last epoch with a value); a line through the per-alpha mean,
    one series per learning rate.
    """
    fin = final_epoch(df, [mse_key, acc_key]) if len(df) else pd.DataFrame(columns=[RUN_ID, ALPHA, LR, mse_key, acc_key])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
    lrs = sorted(fin[LR].dropna().unique()) if LR in fin.columns and len(fin) else [None]
    cmap = plt.get_cmap("viridis")
    for ax, key, label in (
        (axes[0], mse_key, mse_label(mse_key)),
        (axes[1], acc_key, acc_label(acc_key, fin[acc_key] if len(fin) else None)),
    ):
        for i, lr in enumerate(lrs):
            sub = fin if lr is None else fin[fin[LR] == lr]
            sub = sub[np.isfinite(sub[key].to_numpy(float))]
            if not len(sub):
                continue
            color = "0.15" if len(lrs) == 1 else cmap(i / max(len(lrs) - 1, 1) * 0.85)
            name = "runs" if lr is None or len(lrs) == 1 else f"lr = {lr:g}"
            marker = _LR_MARKERS[i % len(_LR_MARKERS)]
            mean = sub.groupby(ALPHA)[key].mean().sort_index()
            ax.plot(mean.index, mean.to_numpy(), "-", color=color, lw=1.2, alpha=0.7, zorder=2)
            ax.scatter(sub[ALPHA], sub[key], color=color, marker=marker, s=30, edgecolors="white", linewidths=0.5,
                       zorder=3, label=name)
        ax.set_xscale("symlog", linthresh=ALPHA_LINTHRESH, linscale=ALPHA_LINSCALE)
        ax.axvline(0, color="0.5", lw=0.8, ls=":", zorder=1)
        ax.set_xlabel("signed α (symlog; linear inside ±1e-5)")
        ax.set_ylabel(f"final-epoch {label}")
        ax.grid(True, alpha=0.25)
        _symlog_alpha_ticks(ax, fin[ALPHA] if len(fin) else [])
        if not len(fin):
            _no_data(ax)
    if len(lrs) > 1:
        axes[1].legend(title="learning rate", fontsize=8, title_fontsize=8, loc="best")
    axes[0].set_title("reconstruction at the last epoch")
    axes[1].set_title("accuracy at the last epoch")
    fig.suptitle("Final-epoch metrics vs signed α (one point per run; line = mean over runs)", fontsize=12)
    return fig


def _symlog_alpha_ticks(ax, alphas):
    norm = alpha_norm(alphas)
    ticks = _alpha_ticks(norm)
    ax.set_xticks(ticks)
    ax.set_xticklabels([_fmt_alpha(t) for t in ticks], fontsize=8)
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlim(-norm.vmax * 1.6, norm.vmax * 1.6)


def negative_vs_positive(
    df: pd.DataFrame, stats: dict | None = None, acc_key: str = DEFAULT_ACC_KEY, mse_key: str = DEFAULT_MSE_KEY
) -> Figure:
    """α < 0, α = 0 and α > 0 side by side (shared axes), then Γ and ρ per group as bars.

    Per group Γ bins the group's own MSE range (see `gap_statistics`).
    """
    stats = _stats(df, stats, acc_key, mse_key)
    d = _valid(df, acc_key, mse_key)
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
            _trajectories(ax, sub, acc_key, mse_key, norm)
            sc_g = _scatter_alpha(ax, sub, acc_key, mse_key, norm, size=18)
            sc = sc if (sc is not None and g == "zero") else sc_g
        else:
            _no_data(ax, "no runs in this group")
        ax.set_title(
            f"{GROUP_TITLES[g]}: {_count(s.get('n_runs'), 'run')}, {_count(s.get('n_points'), 'point')}\n"
            f"Γ = {_num(s.get('gamma'), '.3g')}, ρ = {_num(s.get('rho'), '.2f')} ({_p_text(s.get('p'))})",
            fontsize=10, color=GROUP_COLORS[g],
        )
        ax.set_xlabel(mse_label(mse_key), fontsize=9)
        ax.grid(True, alpha=0.25)
    first.set_ylabel(acc_label(acc_key, d[acc_key]))
    if sc is not None:
        _alpha_colorbar(fig, sc, [axd["negative"], axd["zero"], axd["positive"]])

    groups = ("negative", "zero", "positive")
    names = [GROUP_TITLES[g] for g in groups]
    colors = [GROUP_COLORS[g] for g in groups]
    for key, ax, ylabel in (("gamma", axd["gamma"], "Γ (accuracy units)"), ("rho", axd["rho"], "Spearman ρ (MSE vs acc)")):
        vals = [by_sign.get(g, {}).get(key) for g in groups]
        heights = [v if v is not None else 0.0 for v in vals]
        bars = ax.bar(names, heights, color=colors, alpha=0.85, width=0.6)
        for bar, v in zip(bars, vals):
            txt = "n/a" if v is None else (f"{v:.3g}" if key == "gamma" else f"{v:+.2f}")
            y = bar.get_height()
            va = "bottom" if y >= 0 else "top"
            ax.annotate(txt, (bar.get_x() + bar.get_width() / 2, y), xytext=(0, 3 if y >= 0 else -3),
                        textcoords="offset points", ha="center", va=va, fontsize=9)
        ax.set_ylabel(ylabel)
        ax.axhline(0, color="0.3", lw=0.8)
        ax.grid(True, axis="y", alpha=0.25)
        if key == "rho":
            ax.set_ylim(-1.15, 1.15)
            ax.set_title("Spearman ρ per group (all: " + _num(stats.get("rho"), ".2f") + ")", fontsize=10)
        else:
            top = max([h for h in heights if h is not None] + [stats.get("gamma") or 0.0, 1e-12])
            ax.set_ylim(0, top * 1.2)
            ax.axhline(stats.get("gamma") or 0.0, color="0.2", lw=1, ls="--")
            ax.set_title("tube volume Γ per group (dashed: all points, Γ = "
                         + _num(stats.get("gamma"), ".3g") + ")", fontsize=10)
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
    d = _valid(df, acc_key, mse_key)
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
                       marker=_LR_MARKERS[i % len(_LR_MARKERS)], s=26, zorder=3)
        if j:
            _trajectories(ax, d[lr_vals == lrs[j - 1]], acc_key, mse_key, norm, alpha=0.25)
        ax.set_title("all learning rates" if j == 0 else f"lr = {lrs[j - 1]:g}", fontsize=10)
        ax.set_xlabel(mse_label(mse_key))
        ax.grid(True, alpha=0.25)
    axes[0].set_ylabel(acc_label(acc_key, d[acc_key]))
    handles = [Line2D([], [], ls="", marker=_LR_MARKERS[i % len(_LR_MARKERS)], color="0.4", markeredgecolor="0.15",
                      label=f"lr = {lr:g}") for i, lr in enumerate(lrs)]
    handles += [Line2D([], [], ls="", marker="o", color="0.4", alpha=0.2, label=f"epoch {int(e_min)} (faint)"),
                Line2D([], [], ls="", marker="o", color="0.4", alpha=1.0, label=f"epoch {int(e_max)} (opaque)")]
    axes[0].legend(handles=handles, fontsize=8, loc="best", framealpha=0.9)
    sm = matplotlib.cm.ScalarMappable(norm=norm, cmap=CMAP)
    _alpha_colorbar(fig, sm, list(axes))
    fig.suptitle("Learning rate × signed α: colour = α, marker = lr, opacity = epoch", fontsize=12)
    return fig


# --------------------------------------------------------------------------- files


def save_all(
    df: pd.DataFrame,
    stats: dict | None,
    out_dir,
    acc_key: str = DEFAULT_ACC_KEY,
    mse_key: str = DEFAULT_MSE_KEY,
) -> dict[str, Path]:
    """Writes the analysis PNGs into out_dir (created) and closes the figures.

    Returns {file stem: path}: tube_scatter_signed_alpha, alpha_vs_final_metrics,
    negative_vs_positive_comparison, and lr_alpha_scatter only when the table has
    several learning rates.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stats = _stats(df, stats, acc_key, mse_key)
    figures = {
        TUBE_SCATTER_PNG: lambda: tube_scatter(df, stats, acc_key, mse_key),
        ALPHA_VS_FINAL_PNG: lambda: alpha_vs_final(df, acc_key, mse_key),
        NEG_VS_POS_PNG: lambda: negative_vs_positive(df, stats, acc_key, mse_key),
        LR_ALPHA_PNG: lambda: lr_alpha_scatter(df, acc_key, mse_key),
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
