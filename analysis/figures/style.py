"""The visual conventions every analysis figure shares (SPEC section 8.4), and their helpers.

* x = validation reconstruction MSE, y = accuracy, in the units the runs logged (the metrics
  contract logs accuracy as a fraction in [0, 1]; the label says "(%)" instead if the values
  exceed 1). Γ is in the same units as the accuracy axis.
* colour = signed alpha on a diverging red–white–blue map (negative red, 0 white, positive blue)
  with a symmetric-log normalization (linear inside ±1e-5), so 1e-5 and 10 are both
  distinguishable; every marker has a thin dark edge and α = 0 a thick black one, so white points
  stay visible.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # before pyplot: never open a window, work without a display

import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from analysis import ALPHA, RUN_ID  # noqa: E402
from mae_gap.metrics import EPOCH  # noqa: E402
from mae_gap import metrics as M  # noqa: E402

ALPHA_LINTHRESH = 1e-5  # |alpha| below this is drawn on a linear scale (SymLogNorm, symlog x)
ALPHA_LINSCALE = 1.0  # width of that linear region, in decades
CMAP = "RdBu"  # low (negative) = red, middle = white, high (positive) = blue
DPI = 150

GROUP_COLORS = {"negative": "#c0392b", "zero": "#555555", "positive": "#2166ac"}
GROUP_TITLES = {"negative": "α < 0", "zero": "α = 0", "positive": "α > 0"}

MSE_LABELS = {
    M.VAL_MSE: "val reconstruction MSE (norm-pix target)",
    M.VAL_MSE_PIXEL: "val pixel MSE (target-moment oracle)",
    M.TRAIN_REC_LOSS: "train reconstruction loss",
}
ACC_NAMES = {
    M.VAL_LINEAR_ACC: "val linear-probe accuracy (converged)",
    M.VAL_PROBE_ACC: "val online-probe accuracy",
    M.VAL_HEAD_ACC: "val head accuracy",
    M.VAL_KNN_ACC: "val k-NN accuracy",
    M.TRAIN_HEAD_ACC: "train head accuracy",
}
LR_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


# --------------------------------------------------------------------------- labels, colours


def mse_label(key: str) -> str:
    """Axis label of an MSE metric key."""
    return MSE_LABELS.get(key, key)


def acc_label(key: str, values=None) -> str:
    """Axis label of an accuracy key: "(fraction)", or "(%)" when the values exceed 1."""
    name = ACC_NAMES.get(key, key)
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


def alpha_ticks(norm: mcolors.SymLogNorm) -> list[float]:
    """0, and ±10^k for every other decade inside the norm's range (readable colour bar)."""
    top = math.floor(math.log10(norm.vmax))
    low = math.ceil(math.log10(ALPHA_LINTHRESH))
    decades = list(range(top, low - 1, -2)) if top >= low else []
    pos = sorted(10.0**k for k in decades)
    return [-p for p in reversed(pos)] + [0.0] + pos


def fmt_alpha(a: float) -> str:
    if a == 0:
        return "0"
    s = f"{a:g}"
    return s.replace("e-0", "e-").replace("e+0", "e").replace("e+", "e")


def alpha_colorbar(fig: Figure, mappable, ax, label: str = "signed α (symlog)"):
    cb = fig.colorbar(mappable, ax=ax, pad=0.01, fraction=0.05, aspect=30)
    ticks = alpha_ticks(mappable.norm)
    cb.set_ticks(ticks)
    cb.set_ticklabels([fmt_alpha(t) for t in ticks])
    cb.ax.minorticks_off()
    cb.set_label(label)
    return cb


def scatter_alpha(ax, d: pd.DataFrame, acc_key: str, mse_key: str, norm, size: float = 22, **kw):
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


def trajectories(ax, d: pd.DataFrame, acc_key: str, mse_key: str, norm, lw: float = 0.8, alpha: float = 0.35):
    """One faint line per run through its epochs in order, in the run's alpha colour."""
    cmap = plt.get_cmap(CMAP)
    for _, run in d.sort_values(EPOCH).groupby(RUN_ID, sort=False):
        if len(run) < 2:
            continue
        color = line_color(cmap(norm(float(run[ALPHA].iloc[0]))))
        ax.plot(run[mse_key], run[acc_key], "-", color=color, lw=lw, alpha=alpha, zorder=2)


def line_color(rgba) -> tuple:
    """A run's line colour: its alpha colour, but pale colours (near α = 0) fade to grey
    instead of white so their faint line stays visible."""
    r, g, b, _ = rgba
    pale = max(0.0, (0.2126 * r + 0.7152 * g + 0.0722 * b) - 0.55) / 0.45  # 0 = saturated, 1 = white
    grey = 0.45
    return (r + (grey - r) * pale, g + (grey - g) * pale, b + (grey - b) * pale, 1.0)


def valid_points(df: pd.DataFrame, acc_key: str, mse_key: str) -> pd.DataFrame:
    for col in (acc_key, mse_key):
        if col not in df.columns:
            raise KeyError(f"column {col!r} not in the tidy table")
    ok = np.isfinite(df[acc_key].to_numpy(float)) & np.isfinite(df[mse_key].to_numpy(float))
    return df[ok]


def p_text(p) -> str:
    if p is None or not math.isfinite(p):
        return "p n/a"
    return f"p = {p:.2g}" if p >= 1e-300 else "p < 1e-300"


def ci_text(ci, fmt: str) -> str:
    if not ci or ci[0] is None or ci[1] is None:
        return ""
    return f" [{format(ci[0], fmt)}, {format(ci[1], fmt)}]"


def no_data(ax, text="no points"):
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")


def symlog_alpha_ticks(ax, alphas):
    norm = alpha_norm(alphas)
    ticks = alpha_ticks(norm)
    ax.set_xticks(ticks)
    ax.set_xticklabels([fmt_alpha(t) for t in ticks], fontsize=8)
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlim(-norm.vmax * 1.6, norm.vmax * 1.6)
