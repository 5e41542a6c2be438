"""Upload the analysis to W&B and build the sweep's W&B Report (SPEC section 8.5).

* `upload_analysis`: an analysis run (`job_type="analysis"`, never part of the sweep) with the
  PNGs as `wandb.Image`s, the tidy table as a `wandb.Table`, the statistics in its summary,
  and every output file (PNGs, parquet, csv, json) in one artifact of type "analysis".
  With WANDB_MODE=offline it writes an offline run (sync it with `wandb sync`).
* `build_report` / `save_report`: a W&B Report (wandb-workspaces, reports v2) on the sweep:
  a runset filtered to the sweep, the tube (a scatter of the runs' final val/mse vs accuracy
  and the per-epoch trajectories in that plane), accuracy and MSE vs epoch grouped by alpha,
  a parallel-coordinates panel over alpha, lr and the final metrics, and the analysis run's
  images in a media browser. `build_report` makes no request; `save_report` sends it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import ALPHA, ANALYSIS_JOB_TYPE, LR, SWEEP_ENV
from analysis.wandb_io.sweep_path import study_id, sweep_ids
from mae_gap.metrics import EPOCH
from mae_gap.fmt import num

ARTIFACT_TYPE = "analysis"
IMAGE_PREFIX = "plots/"  # history keys of the images: plots/<png stem>
TABLE_KEY = "trajectories"


def leave_sweep_context() -> list[str]:
    """Removes the sweep agent's variables from os.environ (and a W&B setup that already read
    them), so that the next `wandb.init` starts a run outside any sweep. Returns the names
    removed."""
    removed = [k for k in SWEEP_ENV if os.environ.pop(k, None) is not None]
    if removed:
        import wandb

        wandb.teardown()  # a W&B setup made before may have read them: start afresh (a no-op without one)
    return removed


def summary_of(stats: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Flat run-summary entries of gap_statistics.json (`GapStatistics.to_json()`) plus `extra`."""
    out: dict[str, Any] = {}
    for key in ("gamma", "rho", "p", "n_points", "n_runs", "n_dropped_nan", "noise_floor", "noise_floor_q95",
                "gamma_excess", "gamma_p"):
        if stats.get(key) is not None:
            out[key] = stats[key]
    test = stats.get("matched_mse") or {}
    for name, key in (("cross_run_rho", "rho"), ("cross_run_rho", "p_value"), ("cross_run_rho", "n_units"),
                      ("planner", "sd_pp"), ("planner", "mde_pp")):
        value = (stats.get(name) or {}).get(key)
        if value is not None:
            out[f"{name}/{key}"] = value
    for key in ("p_value", "t_p_value"):
        if (test.get("omnibus") or {}).get(key) is not None:
            out[f"matched_mse/omnibus/{key}"] = test["omnibus"][key]
    for row in test.get("by_condition") or []:
        for key in ("effect_pp", "ci_low_pp", "ci_high_pp", "p_value", "t_p_value"):
            if row.get(key) is not None:
                out[f"matched_mse/{row['condition']}/{key}"] = row[key]
    for group, vals in (stats.get("by_sign") or {}).items():
        for k in ("gamma", "rho", "p", "n_runs", "n_points"):
            if vals.get(k) is not None:
                out[f"by_sign/{group}/{k}"] = vals[k]
        for k in ("noise_floor", "gamma_excess", "gamma_p"):
            if (vals.get("null") or {}).get(k) is not None:
                out[f"by_sign/{group}/{k}"] = vals["null"][k]
    out.update(extra or {})
    return {k: v for k, v in out.items() if not (isinstance(v, float) and not math.isfinite(v))}


def upload_analysis(
    *,
    table: pd.DataFrame,
    stats: Mapping[str, Any],
    images: Mapping[str, str | os.PathLike],
    files: Sequence[str | os.PathLike],
    sweep: str,
    entity: str | None = None,
    project: str | None = None,
    config: Mapping[str, Any] | None = None,
    summary_extra: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Logs the analysis run; returns {"run_id", "entity", "project", "url", "dir", "offline",
    "image_keys", "artifact"}.

    images: {png stem: path}, logged as `plots/<stem>`; files: everything for the artifact.
    The run is started outside the sweep (`leave_sweep_context`), in `project`/`entity`
    (default: the sweep's, else $WANDB_PROJECT, else "mae-gap"), mode from WANDB_MODE.
    """
    import wandb

    leave_sweep_context()
    sweep_id = study_id(sweep_ids(sweep))
    run = wandb.init(
        project=project or os.environ.get("WANDB_PROJECT") or "mae-gap",
        entity=entity or None,
        job_type=ANALYSIS_JOB_TYPE,
        name=name or f"gap-analysis-{sweep_id}",
        config={"sweep": sweep, **dict(config or {})},
        tags=["analysis"],
        reinit="create_new",
    )
    try:
        image_keys = []
        row: dict[str, Any] = {}
        for stem, path in images.items():
            key = IMAGE_PREFIX + stem
            row[key] = wandb.Image(str(path), caption=Path(path).name)
            image_keys.append(key)
        row[TABLE_KEY] = wandb.Table(dataframe=_table_for_wandb(table))
        run.log(row)
        run.summary.update(summary_of(stats, summary_extra))
        artifact = wandb.Artifact(
            f"gap-analysis-{_artifact_safe(sweep_id)}",
            type=ARTIFACT_TYPE,
            description=f"Reconstruction-gap analysis of sweep {sweep}",
            metadata={"sweep": sweep, **summary_of(stats)},
        )
        for f in files:
            artifact.add_file(str(f))
        run.log_artifact(artifact)
        info = {
            "run_id": run.id,
            "entity": getattr(run, "entity", None) or entity,
            "project": run.project,
            "url": None if run.offline else run.url,
            "dir": os.path.dirname(run.dir),
            "offline": bool(run.offline),
            "image_keys": image_keys,
            "artifact": artifact.name,
        }
    except BaseException:
        run.finish(exit_code=1)
        raise
    run.finish()
    return info


def _table_for_wandb(table: pd.DataFrame) -> pd.DataFrame:
    # wandb.Table wants plain Python/numpy column types (pandas' string dtype -> object).
    out = table.copy()
    for col in out.columns:
        if pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].astype(object)
    return out


def _artifact_safe(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in s)


# --------------------------------------------------------------------------- the report


def _tube_panels(wr, acc_key: str, mse_key: str) -> list[Any]:
    """The sweep's panels: the tube (final points and per-epoch trajectories), both metrics by
    epoch grouped by alpha, and alpha / lr / final metrics in parallel coordinates."""

    def by_alpha(key: str, x: int) -> Any:
        return wr.LinePlot(title=f"{key} vs epoch, by alpha", x=EPOCH, y=[key], groupby=wr.Config(ALPHA),
                           layout=wr.Layout(x=x, y=9, w=12, h=8))

    columns = [wr.ParallelCoordinatesPlotColumn(metric=wr.Config(ALPHA)),
               wr.ParallelCoordinatesPlotColumn(metric=wr.Config(LR), log=True),
               wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric(mse_key)),
               wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric(acc_key))]
    return [
        wr.ScatterPlot(title=f"tube: final {mse_key} vs {acc_key} (one point per run)",
                       x=wr.SummaryMetric(mse_key), y=wr.SummaryMetric(acc_key),
                       layout=wr.Layout(x=0, y=0, w=12, h=9)),
        wr.LinePlot(title=f"tube trajectories: {acc_key} along {mse_key} (every epoch)", x=mse_key, y=[acc_key],
                    layout=wr.Layout(x=12, y=0, w=12, h=9)),
        by_alpha(acc_key, 0),
        by_alpha(mse_key, 12),
        wr.ParallelCoordinatesPlot(title="alpha, lr and final metrics", columns=columns,
                                   layout=wr.Layout(x=0, y=17, w=24, h=9)),
    ]


def _analysis_blocks(wr, expr, entity: str, project: str, run_id: str, image_keys: Sequence[str]) -> list[Any]:
    """The analysis run's figures in a media browser."""
    runs = wr.Runset(entity=entity, project=project, name="analysis run", filters=expr.And(expr.Metric("ID") == run_id))
    browser = wr.MediaBrowser(title="analysis figures", media_keys=list(image_keys), num_columns=2,
                              layout=wr.Layout(x=0, y=0, w=24, h=14))
    return [wr.H2("Analysis figures"), wr.PanelGrid(runsets=[runs], panels=[browser])]


def build_report(
    entity: str,
    project: str,
    sweep_id: str | Sequence[str],
    *,
    acc_key: str,
    mse_key: str,
    analysis_run_id: str | None = None,
    analysis_project: str | None = None,
    image_keys: Sequence[str] = (),
    stats: Mapping[str, Any] | None = None,
    exclusions: Sequence[Any] = (),
    title: str | None = None,
):
    """A `wandb_workspaces.reports.v2.Report` for the sweep, or for several sweeps of one project
    analysed as one study (no request is made here)."""
    import wandb_workspaces.reports.v2 as wr
    from wandb_workspaces import expr

    ids = [sweep_id] if isinstance(sweep_id, str) else list(sweep_id)
    sweep_id = study_id(ids)
    in_sweeps = expr.Metric("Sweep") == ids[0] if len(ids) == 1 else expr.Metric("Sweep").isin(ids)
    sweep_runs = wr.Runset(entity=entity, project=project, name=f"sweep {sweep_id}", filters=expr.And(in_sweeps))
    blocks: list[Any] = [
        wr.P(_stats_text(sweep_id, stats, acc_key, mse_key)),
        wr.H2("The sweep"),
        wr.PanelGrid(runsets=[sweep_runs], panels=_tube_panels(wr, acc_key, mse_key)),
    ]
    if exclusions:
        blocks += [wr.H2("Runs left out"), wr.UnorderedList(items=[str(e) for e in exclusions])]
    if analysis_run_id:
        blocks += _analysis_blocks(wr, expr, entity, analysis_project or project, analysis_run_id, image_keys)
    return wr.Report(
        entity=entity,
        project=project,
        title=(title or f"Reconstruction gap: sweep {sweep_id}")[:128],
        description=f"Tube plot, per-alpha curves and statistics of sweep {entity}/{project}/{sweep_id}.",
        blocks=blocks,
        width="fluid",
    )


def _stats_text(sweep_id: str, stats: Mapping[str, Any] | None, acc_key: str, mse_key: str) -> str:
    if not stats:
        return f"Sweep {sweep_id}: {acc_key} against {mse_key}."
    cross = stats.get("cross_run_rho") or {}
    test = stats.get("matched_mse") or {}
    effects = ", ".join(
        f"{r['condition']} {num(r['effect_pp'], '+.2f')} pp [{num(r['ci_low_pp'], '+.2f')}, {num(r['ci_high_pp'], '+.2f')}]"
        if r.get("estimable") else f"{r['condition']} not estimable" for r in test.get("by_condition") or [])
    return (
        f"Sweep {sweep_id}: {stats.get('n_runs')} runs, {stats.get('n_points')} points "
        f"({acc_key} against {mse_key}). Tube volume Γ = {num(stats.get('gamma'))}; under the seed-noise null its "
        f"median is {num(stats.get('noise_floor'))} (95th percentile {num(stats.get('noise_floor_q95'))}), "
        f"Γ − median = {num(stats.get('gamma_excess'))}, p = {num(stats.get('gamma_p'), '.3g')}. Pooled Spearman ρ = "
        f"{num(stats.get('rho'))}; across {cross.get('n_units')} independent units ({cross.get('unit')}s) ρ = "
        f"{num(cross.get('rho'))} (permutation p = {num(cross.get('p_value'), '.3g')}). Accuracy at equal MSE versus "
        f"{test.get('reference', 'alpha=0')} (paired over seeds, 95% t interval): {effects or 'n/a'}."
    )


def save_report(report) -> str:
    """Saves (creates) the report on W&B; returns its URL."""
    report.save()
    return report.url
