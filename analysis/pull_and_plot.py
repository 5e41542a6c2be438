"""The analysis command (SPEC section 8): pull a sweep, pick the runs, Γ and ρ, plots, upload.

    python -m analysis.pull_and_plot ENTITY/PROJECT/SWEEP_ID          # W&B API (cached)
    python -m analysis.pull_and_plot SWEEP_ID --entity E --project P
    python -m analysis.pull_and_plot E/P/SWEEP_A E/P/SWEEP_B          # one study in several sweeps
    python -m analysis.pull_and_plot --offline wandb/                 # offline runs, no account
    python -m analysis.pull_and_plot --table trajectories.csv         # re-analyse a saved tidy table
    python -m analysis.pull_and_plot --help

Writes into --out (default outputs/analysis/<sweep id>): trajectories.parquet and .csv (the
tidy table of the runs used), gap_statistics.json (Γ against its seed-noise null, pooled and
cross-run ρ, the direct contrasts at equal MSE, the seed planner, bins, per-sign and per-condition
statistics, run counts, exclusions and the exact inputs), summary.md, the PNGs of analysis.figures, and
cache/ (the pulled runs). Then, unless --no-upload, an analysis run on W&B (an offline run
under WANDB_MODE=offline); --report builds the sweep's W&B Report. Exit status 0 on success,
1 on an error (one line on stderr), 2 on a bad command line.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from analysis import DEFAULT_ACC_KEY, DEFAULT_BINS, DEFAULT_MSE_KEY, METRIC_COLUMNS, RUN_ID, SWEEP_ENV
from analysis.stats.conditions import Reference
from mae_gap.fmt import num, plural

PROG = "python -m analysis.pull_and_plot"
TRAJECTORIES = "trajectories"
STATS_JSON = "gap_statistics.json"
SUMMARY_MD = "summary.md"
DEFAULT_OUT = Path("outputs") / "analysis"


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Pull every run of a W&B sweep (or read offline runs), compute the tube volume Γ and "
            "Spearman's ρ between reconstruction MSE and accuracy, plot, and upload the analysis."
        ),
        epilog=(
            "SWEEP is ENTITY/PROJECT/SWEEP_ID, or SWEEP_ID with --entity/--project (or "
            "WANDB_ENTITY/WANDB_PROJECT). Several SWEEPs (or --offline folders) are analysed as one "
            "study, e.g. a study whose arms are separate sweep YAMLs. Runs that crashed, failed or still run, runs missing "
            "a metric and duplicate grid points are named and left out."
        ),
    )
    p.add_argument("sweep", nargs="*", metavar="SWEEP", help="the sweep(s) (with --offline: which of a folder's sweeps)")
    p.add_argument("--offline", metavar="DIR", action="append",
                   help="read offline W&B runs (run-*.wandb) under DIR instead of the API; repeatable")
    p.add_argument("--table", metavar="FILE", help="re-analyse a tidy table (trajectories.csv or .parquet) instead")
    p.add_argument("--out", metavar="DIR", help=f"output folder (default: {DEFAULT_OUT}/<sweep id>)")
    p.add_argument("--acc", default=DEFAULT_ACC_KEY, metavar="KEY", help=f"accuracy metric (default: {DEFAULT_ACC_KEY})")
    p.add_argument("--mse", default=DEFAULT_MSE_KEY, metavar="KEY", help=f"reconstruction metric (default: {DEFAULT_MSE_KEY})")
    p.add_argument("--bins", type=int, default=DEFAULT_BINS, metavar="N", help=f"MSE bins of Γ (default: {DEFAULT_BINS})")
    p.add_argument("--permutations", "--boot", dest="permutations", type=int, default=5000, metavar="N",
                   help="permutations of the run-level tests (matched-MSE, cross-run ρ) (default: 5000)")
    p.add_argument("--reference", default="alpha=0", metavar="KEY=VALUE",
                   help="the reference condition of the contrasts at equal MSE (default: alpha=0)")
    p.add_argument("--plan-effect", type=float, action="append", metavar="PP",
                   help="effect (pp) the seed planner sizes seeds for; repeatable (default: 1, 2, 5)")
    p.add_argument("--null-draws", type=int, default=2000, metavar="N", help="draws of Γ's null (default: 2000)")
    p.add_argument("--no-upload", action="store_true", help="do not log the analysis run to W&B")
    p.add_argument("--report", action="store_true", help="build the sweep's W&B Report (needs W&B online)")
    p.add_argument("--refresh", action="store_true", help="re-pull every run instead of reading the cache")
    p.add_argument("--include-unfinished", action="store_true", help="keep crashed, failed and running runs")
    p.add_argument("--entity", metavar="E", help="W&B entity of a bare SWEEP_ID (default: $WANDB_ENTITY or yours)")
    p.add_argument("--project", metavar="P", help="W&B project of a bare SWEEP_ID (default: $WANDB_PROJECT)")
    p.add_argument("--workers", type=int, default=8, metavar="N", help="parallel history pulls (default: 8; a rate limit pauses them all)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The analysis is never part of a sweep, even when started from an agent's shell.
    for var in SWEEP_ENV:
        os.environ.pop(var, None)
    try:
        return run(args)
    except CliError as err:
        print(f"{PROG.split()[-1]}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG.split()[-1]}: interrupted (pulled runs are cached; re-run to resume)", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def run(args: argparse.Namespace) -> int:
    from analysis.pull.runs import PullError
    from analysis.wandb_io.sweep_path import SweepPathError

    for flag, key in (("--acc", args.acc), ("--mse", args.mse)):
        if key not in METRIC_COLUMNS:
            raise CliError(f"unknown metric key {key!r} for {flag} (known: {', '.join(METRIC_COLUMNS)})")
    if args.bins < 1:
        raise CliError(f"--bins must be >= 1, got {args.bins}")
    if args.permutations < 1:
        raise CliError(f"--permutations must be >= 1, got {args.permutations}")
    if args.null_draws < 1:
        raise CliError(f"--null-draws must be >= 1, got {args.null_draws}")
    try:
        args.reference = Reference.parse(args.reference)
    except ValueError as err:
        raise CliError(str(err)) from None
    if not args.sweep and not args.offline and not args.table:
        raise CliError("give a SWEEP (ENTITY/PROJECT/SWEEP_ID), --offline DIR or --table FILE")
    for folder in args.offline or ():
        if not Path(folder).is_dir():
            raise CliError(f"--offline folder {folder} does not exist")
    if args.offline and len(args.offline) > 1 and args.sweep:
        raise CliError("give several SWEEPs of one --offline folder, or several --offline folders of one sweep each")
    if args.table and args.sweep:
        raise CliError("--table re-analyses a saved table: give no SWEEP with it")
    if args.table and not Path(args.table).is_file():
        raise CliError(f"--table file {args.table} does not exist")

    try:
        result = load(args)
    except (PullError, SweepPathError) as err:
        raise CliError(str(err)) from None
    out_dir = Path(args.out) if args.out else DEFAULT_OUT / result.sweep_id
    return analyse(args, result, out_dir)


def load(args: argparse.Namespace):
    """The PullResult of the API (cached) or of the offline folder."""
    if args.table:
        from analysis.pull.runs import PullResult
        from analysis.pull.tidy import read_table, table_runs

        t0 = time.monotonic()
        try:
            table = read_table(args.table)
        except (ValueError, OSError) as err:
            raise CliError(str(err)) from None
        return PullResult(table, table_runs(table), Path(args.table).parent.name or "table", "table",
                          seconds=time.monotonic() - t0)
    from analysis.pull.runs import combine

    if args.offline:
        from analysis.pull.offline import load_offline_runs

        return combine([load_offline_runs(folder, args.sweep) for folder in args.offline])
    from analysis.pull.api import pull_sweep
    from analysis.wandb_io.sweep_path import parse_sweep_path, study_id

    ids = [parse_sweep_path(sweep, args.entity, args.project)[2] for sweep in args.sweep]
    out_dir = Path(args.out) if args.out else DEFAULT_OUT / study_id(ids)
    return combine([
        pull_sweep(sweep, out_dir, entity=args.entity, project=args.project, refresh=args.refresh,
                   workers=max(1, args.workers), progress=lambda s: print(s, flush=True))
        for sweep in args.sweep
    ])


def analyse(args: argparse.Namespace, result, out_dir: Path) -> int:
    from analysis.figures import plots
    from analysis.pull.selection import select_runs
    from analysis.stats.gap import gap_statistics
    from analysis.stats.planner import DEFAULT_EFFECTS
    from analysis.publish.summary import render as render_summary
    from mae_gap.fileio import json_safe, write_json

    table = result.table
    if not result.runs:
        raise CliError(f"no runs found for sweep {result.sweep}")
    used, exclusions = select_runs(table, args.acc, args.mse, args.include_unfinished, runs=result.runs)
    print_runs(result, used, exclusions)
    n_used = int(used[RUN_ID].nunique()) if len(used) else 0
    if n_used == 0:
        raise CliError(
            f"no usable runs in sweep {result.sweep}: all {len(result.runs)} were left out"
            + ("" if args.include_unfinished else " (--include-unfinished keeps unfinished runs)")
        )

    try:
        stats = gap_statistics(used, acc_key=args.acc, mse_key=args.mse, bins=args.bins, n_perm=args.permutations,
                               reference=args.reference, n_draws=args.null_draws,
                               plan_effects=args.plan_effect or DEFAULT_EFFECTS).to_json()
    except ValueError as err:
        raise CliError(str(err)) from None
    out_dir.mkdir(parents=True, exist_ok=True)
    parquet, csv = out_dir / f"{TRAJECTORIES}.parquet", out_dir / f"{TRAJECTORIES}.csv"
    used.to_parquet(parquet, index=False)
    used.to_csv(csv, index=False)
    doc = json_safe(statistics_document(args, result, stats, used, exclusions))
    stats_path = out_dir / STATS_JSON
    write_json(stats_path, doc, indent=1)
    summary_path = out_dir / SUMMARY_MD
    summary_path.write_text(render_summary(doc))
    images = plots.save_all(used, stats, out_dir, acc_key=args.acc, mse_key=args.mse)
    print_stats(stats, args)
    print_pull(result)
    files = [parquet, csv, stats_path, summary_path, *images.values()]
    print(f"files: {out_dir}/ ({', '.join(p.name for p in files)})")

    upload = None
    mode = os.environ.get("WANDB_MODE", "").strip().lower()
    if args.no_upload:
        pass
    elif mode == "disabled":
        print("upload: skipped (WANDB_MODE=disabled)")
    elif result.source in ("offline", "table") and mode not in ("offline", "dryrun", "online", "run"):
        print("upload: skipped for --offline input (set WANDB_MODE=offline to write an offline analysis run, "
              "or WANDB_MODE=online to upload it)")
    else:
        upload = do_upload(args, result, used, stats, images, files, exclusions)

    if args.report:
        make_report(args, result, stats, exclusions, upload, mode)
    return 0


def statistics_document(args, result, stats: dict, used, exclusions) -> dict[str, Any]:
    """gap_statistics.json: the statistics plus the run accounting and the exact inputs."""
    states = Counter(r.state for r in result.runs)
    return {
        **stats,
        "sweep": result.sweep,
        "inputs": {
            **stats.get("inputs", {}),
            "sweep": result.sweep,
            "sweep_id": result.sweep_id,
            "source": result.source,
            "offline_dir": [str(Path(folder).resolve()) for folder in args.offline] if args.offline else None,
            "table": str(Path(args.table).resolve()) if args.table else None,
            "acc_key": args.acc,
            "mse_key": args.mse,
            "bins": args.bins,
            "n_perm": args.permutations,
            "include_unfinished": bool(args.include_unfinished),
        },
        "runs": {
            "found": len(result.runs),
            "used": int(used[RUN_ID].nunique()) if len(used) else 0,
            "excluded": len(exclusions),
            "by_state": dict(sorted(states.items())),
            "used_ids": list(dict.fromkeys(used[RUN_ID].tolist())) if len(used) else [],
        },
        "exclusions": [e._asdict() for e in exclusions],
        "duplicate_epochs": result.duplicate_epochs,
        "pull": {
            "source": result.source,
            "seconds": round(result.seconds, 3),
            "pulled": len(result.pulled),
            "from_cache": len(result.cached),
            "retries": result.retries,
            "failed_requests": result.failures,
            "ignored_rows_without_epoch": result.ignored_rows,
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# --------------------------------------------------------------------------- printing


def _ci(ci) -> str:
    return "" if not ci or ci[0] is None else f"  95% CI [{num(ci[0])}, {num(ci[1])}]"


def print_runs(result, used, exclusions) -> None:
    n_used = int(used[RUN_ID].nunique()) if len(used) else 0
    print(f"sweep {result.sweep}: {plural(len(result.runs), 'run')}, {n_used} used, {len(exclusions)} excluded")
    if exclusions:
        width = max(len(e.label) for e in exclusions)
        for i, e in enumerate(exclusions):
            head = "  excluded: " if i == 0 else " " * 12
            print(f"{head}{e.label.ljust(width)}  {e.reason}")
    if result.duplicate_epochs:
        names = {r.run_id: r.label for r in result.runs}
        dups = ", ".join(f"{names.get(r, r)} ({n})" for r, n in result.duplicate_epochs.items())
        print(f"  epochs logged more than once (last value kept): {dups}")


def print_stats(stats: dict, args) -> None:
    """The headline numbers, read from gap_statistics.json's statistics (nothing recomputed)."""
    from analysis.publish.summary import planner_line

    null = stats.get("gamma_null") or {}
    excess = (f"null median {num(stats.get('noise_floor'))} (95th pct {num(stats.get('noise_floor_q95'))}), "
              f"Γ − median = {num(stats.get('gamma_excess'), '+.4g')}, p = {num(stats.get('gamma_p'), '.2g')}"
              if stats.get("noise_floor") is not None else (null.get("reason") or "no null"))
    print(f"Γ = {num(stats.get('gamma'))}   ({excess}; {args.acc} spread over {args.bins} bins of {args.mse})")
    cross = stats.get("cross_run_rho") or {}
    ci = cross.get("ci") or [None, None]
    print(f"ρ = {num(stats.get('rho'))} pooled over {stats.get('n_points')} points of {stats.get('n_runs')} runs "
          f"(training time drives it); across {cross.get('n_units')} {cross.get('unit')}s at the final epoch "
          f"ρ = {num(cross.get('rho'), '.3f')} [{num(ci[0], '+.2f')}, {num(ci[1], '+.2f')}], "
          f"permutation p = {num(cross.get('p_value'), '.3g')}")
    test = stats.get("matched_mse") or {}
    omni = test.get("omnibus") or {}
    print(f"{args.acc} at equal {args.mse} vs {test.get('reference')} (paired over seeds): any condition ≠ reference "
          f"sign-flip p = {num(omni.get('p_value'), '.2g')} (smallest possible {num(omni.get('min_attainable_p'), '.2g')}), "
          f"t p = {num(omni.get('t_p_value'), '.2g')}")
    effects = {r["condition"]: r for r in test.get("by_condition") or []}
    for c in stats.get("conditions") or []:
        row = effects.get(c["condition"])
        if row is None:
            effect = "reference"
        elif not row.get("estimable"):
            effect = f"not estimable: {row.get('reason')}"
        else:
            effect = (f"{num(row['effect_pp'], '+.2f')} pp [{row['ci_low_pp']:+.2f}, {row['ci_high_pp']:+.2f}], "
                      f"sign-flip p = {num(row.get('p_value'), '.2g')} (smallest possible "
                      f"{num(row.get('min_attainable_p'), '.2g')}), t p = {num(row.get('t_p_value'), '.2g')}, "
                      f"{row['n_pairs']} pairs on MSE {row['shared_mse'][0]:.3g}–{row['shared_mse'][1]:.3g}")
        acc = (c.get("final_mean") or {}).get(args.acc)
        steps = c.get("total_steps", -1)
        print(f"  {c['condition']:<22} {c['n_seeds']} seed(s), {f'{steps} steps/run' if steps >= 0 else 'steps unknown'}"
              f", final {args.acc} {num(acc, '.3f')}: {effect}")
    print(planner_line(stats))
    note = (stats.get("readouts") or {}).get("note")
    if note:
        print(f"note: {note}")


def print_pull(result) -> None:
    if result.source in ("offline", "table"):
        print(f"read {plural(len(result.runs), result.source + ' run')} in {result.seconds:.2f} s")
        return
    if result.source == "cache":
        print(f"pull: {plural(len(result.cached), 'run')} from the cache {result.cache_dir} (no request; --refresh re-pulls)")
    else:
        print(f"pull: {plural(len(result.pulled), 'run')} pulled, {len(result.cached)} from the cache, "
              f"in {result.seconds:.2f} s")
    failed = ", ".join(f"{k} x{n}" for k, n in sorted(result.failures.items()))
    print(f"retries: {result.retries}" + (f" (failed requests seen: {failed})" if failed else ""))


# --------------------------------------------------------------------------- upload, report


def do_upload(args, result, used, stats, images, files, exclusions) -> dict[str, Any] | None:
    from analysis.publish.report import upload_analysis

    entity, project = result.entity_project
    if result.source == "offline" and result.runs:
        entity = entity or result.runs[0].entity
        project = project or result.runs[0].project
    try:
        info = upload_analysis(
            table=used, stats=stats, images=images, files=files, sweep=result.sweep,
            entity=entity, project=project,
            config={"acc_key": args.acc, "mse_key": args.mse, "bins": args.bins, "n_perm": args.permutations,
                    "include_unfinished": bool(args.include_unfinished), "source": result.source},
            summary_extra={"runs_found": len(result.runs), "runs_excluded": len(exclusions)},
        )
    except Exception as err:  # noqa: BLE001 - any W&B failure: one line, files are written
        raise CliError(f"upload failed ({type(err).__name__}: {' '.join(str(err).split())[:300]}); "
                       "the files are written, --no-upload skips the upload") from None
    if info["offline"]:
        print(f"upload: offline analysis run {info['run_id']} in {info['dir']} (wandb sync {info['dir']})")
    else:
        print(f"upload: analysis run {info['url']}")
    return info


def make_report(args, result, stats, exclusions, upload, mode: str) -> None:
    from analysis.publish.report import build_report, save_report
    from analysis.wandb_io.sweep_path import sweep_ids

    entity, project = result.entity_project
    if result.source in ("offline", "table") or mode in ("offline", "dryrun", "disabled"):
        raise CliError("--report needs W&B online and a sweep pulled from the W&B API")
    if not entity:
        raise CliError("--report shows the sweeps of one W&B project: give sweeps of one ENTITY/PROJECT")
    report = build_report(
        entity, project, sweep_ids(result.sweep), acc_key=args.acc, mse_key=args.mse,
        analysis_run_id=(upload or {}).get("run_id"),
        analysis_project=(upload or {}).get("project"),
        image_keys=(upload or {}).get("image_keys", ()),
        stats=stats, exclusions=[str(e) for e in exclusions],
    )
    try:
        url = save_report(report)
    except Exception as err:  # noqa: BLE001
        raise CliError(f"saving the report failed ({type(err).__name__}: {' '.join(str(err).split())[:300]})") from None
    print(f"report: {url}")


if __name__ == "__main__":
    sys.exit(main())
