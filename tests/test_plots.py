"""Plots of the reconstruction gap (analysis.figures.plots) on a synthetic tidy table.

Rendering only checks structure (labels, colour bars, files); look at the PNGs by eye
when changing the layout: `python tests/test_plots.py /tmp/plots` writes them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import ALPHA, ALPHA_MODE, LR, METRIC_COLUMNS, RUN_ID, RUN_NAME, SEED, STATE, STEPS, TIDY_COLUMNS
from mae_gap.metrics import EPOCH
from analysis.figures import plots
from analysis.stats.gap import gap_statistics
from mae_gap.metrics import VAL_KNN_ACC, VAL_LINEAR_ACC, VAL_MSE, VAL_PROBE_ACC

# SPEC section 6: the original study's 25 alphas.
FULL_ALPHAS = (-10, -5, -2, -1, -0.5, -0.1, -0.05, -0.01, -0.005, -0.001, -0.0001, -0.00001, 0,
               0.00001, 0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_sweep(alphas=FULL_ALPHAS, lrs=(1e-3, 1e-4), epochs=8, seed=0) -> pd.DataFrame:
    """A plausible tidy table: MSE falls and accuracy rises with epochs; positive alpha
    buys accuracy at a small MSE cost, negative alpha destroys accuracy; k-NN every 2 epochs."""
    rng = np.random.default_rng(seed)
    rows = []
    for j, lr in enumerate(lrs):
        speed = 1.0 if lr >= 1e-3 else 0.6
        for i, a in enumerate(alphas):
            s = np.sign(a) * np.log10(1 + abs(a) / 1e-5) / 6  # in [-1, 1]
            rid = f"r{j}{i:02d}"
            for e in range(1, epochs + 1):
                t = 1 - np.exp(-speed * e / 3)
                mse = 0.9 - 0.45 * t + 0.04 * abs(s) + 0.01 * rng.normal()
                acc = 0.2 + (0.35 + 0.25 * s) * t + 0.015 * rng.normal()
                row = {RUN_ID: rid, RUN_NAME: f"alpha={a:g} lr={lr:g}", ALPHA: float(a), LR: float(lr),
                       ALPHA_MODE: "grl", SEED: 0, STEPS: 100 * epochs, STATE: "finished", EPOCH: e}
                row.update({k: float(rng.uniform(0, 1)) for k in METRIC_COLUMNS})
                row.update({VAL_MSE: mse, VAL_PROBE_ACC: float(np.clip(acc, 0, 1))})
                row[VAL_KNN_ACC] = float(np.clip(acc - 0.05, 0, 1)) if e % 2 == 0 else np.nan
                rows.append(row)
    return pd.DataFrame(rows, columns=list(TIDY_COLUMNS))


@pytest.fixture(scope="module")
def sweep2():
    return make_sweep()


@pytest.fixture(scope="module")
def stats2(sweep2):
    return _stats(sweep2)


def _stats(df, acc_key=VAL_PROBE_ACC):
    return gap_statistics(df, acc_key=acc_key, n_perm=199, n_draws=100).to_json()


def _labelled(ax):
    return bool(ax.get_xlabel()) and bool(ax.get_ylabel())


def _colorbars(fig):
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def test_tube_scatter_labels_colorbar_title(sweep2, stats2):
    fig = plots.tube_scatter(sweep2, stats2, VAL_PROBE_ACC, VAL_MSE)
    main = fig.axes[0]
    assert "MSE" in main.get_xlabel() and "accuracy" in main.get_ylabel()
    assert "Γ" in main.get_title() and "ρ" in main.get_title()
    (cb,) = _colorbars(fig)
    assert "α" in cb.get_ylabel()
    # every valid point is drawn: non-zero alphas + zero alphas
    n = sum(len(c.get_offsets()) for c in main.collections if hasattr(c, "get_offsets") and c.get_array() is not None)
    assert n == len(sweep2)
    plots.plt.close(fig)


def test_alpha_vs_final_two_symlog_panels(sweep2):
    fig = plots.alpha_vs_final(sweep2, VAL_PROBE_ACC, VAL_MSE)
    ax_mse, ax_acc = fig.axes[:2]
    assert all(_labelled(ax) for ax in (ax_mse, ax_acc))
    assert ax_mse.get_xscale() == "symlog" and ax_acc.get_xscale() == "symlog"
    assert "MSE" in ax_mse.get_ylabel() and "accuracy" in ax_acc.get_ylabel()
    assert ax_acc.get_legend() is not None  # two lrs -> a legend
    plots.plt.close(fig)


def test_final_epoch_takes_last_non_nan(sweep2):
    fin = plots.final_epoch(sweep2, [VAL_KNN_ACC, VAL_MSE])
    assert len(fin) == sweep2[RUN_ID].nunique()
    run = sweep2[sweep2[RUN_ID] == fin[RUN_ID].iloc[0]].sort_values(EPOCH)
    assert fin[VAL_MSE].iloc[0] == run[VAL_MSE].iloc[-1]
    assert fin[VAL_KNN_ACC].iloc[0] == run[VAL_KNN_ACC].dropna().iloc[-1]


def test_negative_vs_positive_panels(sweep2, stats2):
    fig = plots.negative_vs_positive(sweep2, stats2, VAL_PROBE_ACC, VAL_MSE)
    titles = " ".join(ax.get_title() for ax in fig.axes)
    for text in ("α < 0", "α = 0", "α > 0", "Γ", "ρ"):
        assert text in titles
    assert len(_colorbars(fig)) == 1
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 5  # 3 scatter panels (shared y) + Γ bars + ρ bars
    assert all(ax.get_xlabel() for ax in panels[:3]) and "accuracy" in panels[0].get_ylabel()
    assert "Γ" in panels[3].get_ylabel() and "ρ" in panels[4].get_ylabel()
    plots.plt.close(fig)


def test_negative_vs_positive_with_empty_groups():
    df = make_sweep(alphas=(0.1, 1.0), lrs=(1e-4,), epochs=4)
    fig = plots.negative_vs_positive(df, _stats(df), VAL_PROBE_ACC, VAL_MSE)
    titles = " ".join(ax.get_title() for ax in fig.axes)
    assert "α < 0: 0 runs" in titles and "α = 0: 0 runs" in titles
    plots.plt.close(fig)


def test_lr_alpha_scatter(sweep2):
    fig = plots.lr_alpha_scatter(sweep2, VAL_PROBE_ACC, VAL_MSE)
    assert fig is not None
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 3  # all lrs + one per lr
    assert all(ax.get_xlabel() for ax in panels) and panels[0].get_ylabel()
    assert panels[0].get_legend() is not None and len(_colorbars(fig)) == 1
    plots.plt.close(fig)


def test_lr_alpha_scatter_none_with_one_lr():
    assert plots.lr_alpha_scatter(make_sweep(lrs=(1e-4,), epochs=3), VAL_PROBE_ACC, VAL_MSE) is None


def _assert_png(path: Path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 20_000  # a real figure, not a blank canvas


def test_save_all_two_lrs(tmp_path, sweep2, stats2):
    paths = plots.save_all(sweep2, stats2, tmp_path / "out", VAL_PROBE_ACC, VAL_MSE)
    assert set(paths) == {"tube_scatter_signed_alpha", "alpha_vs_final_metrics",
                          "negative_vs_positive_comparison", "lr_alpha_scatter", "matched_mse_accuracy"}
    for name, path in paths.items():
        assert path.name == f"{name}.png" and path.parent == tmp_path / "out"
        _assert_png(path)
    assert not plots.plt.get_fignums()  # every figure closed


def test_save_all_one_lr_no_lr_plot(tmp_path):
    df = make_sweep(lrs=(1.5e-4,), epochs=4)
    paths = plots.save_all(df, _stats(df), tmp_path, VAL_PROBE_ACC, VAL_MSE)
    assert "lr_alpha_scatter" not in paths and not (tmp_path / plots.LR_ALPHA_PNG).exists()
    assert len(paths) == 4
    for path in paths.values():
        _assert_png(path)


def test_other_accuracy_key_and_nan_rows(tmp_path):
    df = make_sweep(alphas=(-1.0, 0.0, 1.0), lrs=(1e-4,), epochs=6)  # k-NN NaN on odd epochs
    paths = plots.save_all(df, _stats(df, VAL_KNN_ACC), tmp_path, VAL_KNN_ACC, VAL_MSE)
    assert len(paths) == 4


def test_matched_figure_draws_the_json_numbers():
    """The effects, intervals and mean difference curves drawn are gap_statistics.json's numbers."""
    from analysis.figures.matched import matched_mse_accuracy
    from analysis.pull.tidy import read_table

    table = Path(__file__).resolve().parents[1] / "analysis" / "results" / "imagenette_cpu" / "trajectories.csv"
    df = read_table(table)
    stats = _stats(df, VAL_LINEAR_ACC)
    fig = matched_mse_accuracy(df, stats)
    left, right = fig.axes[:2]
    drawn_effects = {c.get_gid().split(":", 1)[1]: c.get_offsets()[0][1] for c in right.collections
                     if (c.get_gid() or "").startswith("effect:")}
    drawn_ci = {c.get_label().split(":", 1)[1]: c for c in right.containers if c.get_label().startswith("_ci:")}
    drawn_mean = {line.get_gid().split(":", 1)[1]: line for line in left.lines if (line.get_gid() or "").startswith("mean:")}
    rows = [r for r in stats["matched_mse"]["by_condition"] if r["estimable"]]
    assert rows and set(drawn_effects) == {r["condition"] for r in rows} == set(drawn_mean)
    for r in rows:
        assert drawn_effects[r["condition"]] == pytest.approx(r["effect_pp"])
        segment = drawn_ci[r["condition"]].lines[2][0].get_segments()[0]
        assert [segment[0][1], segment[1][1]] == pytest.approx([r["ci_low_pp"], r["ci_high_pp"]])
        mean = np.asarray(r["curve"]["mean"], float)
        assert drawn_mean[r["condition"]].get_ydata() == pytest.approx(mean[np.isfinite(mean)])
    plots.plt.close(fig)


def test_no_torch_import():
    """analysis knows the metric names, not the model: importing it must not load torch."""
    import subprocess

    code = "import analysis.figures.plots, analysis.stats, sys; print('torch' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "False"


if __name__ == "__main__":  # render the figures for a visual check
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/plots")
    df = make_sweep()
    print(plots.save_all(df, _stats(df), out / "two_lrs"))
    df1 = make_sweep(lrs=(1.5e-4,), epochs=8)
    print(plots.save_all(df1, _stats(df1), out / "one_lr"))
    dneg = make_sweep(alphas=(-1.0, -0.1, -1e-5), lrs=(1e-4,), epochs=8)
    print(plots.save_all(dneg, _stats(dneg), out / "neg_only"))
