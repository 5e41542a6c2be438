"""Offline W&B runs (`wandb.init(mode="offline")`, `python -m agent.local`) -> the tidy table.

    result = load_offline_runs("wandb/")           # the table plus the runs, states, sweep id

The files are read by `analysis.wandb_io.offline_runs`; here the starts of one run id are merged:
a run resumed offline gets a new folder with the same run id each time it restarts, so the folders
of one run id are merged in start order (config and summary updated in turn, histories
concatenated) and the run takes the state of the last start. The analysis runs this package writes
(`job_type=ANALYSIS_JOB_TYPE`) are skipped.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from analysis import ANALYSIS_JOB_TYPE
from analysis.pull.runs import PullError, PullResult, RunInfo, tidy_state
from analysis.pull.tidy import tidy_table
from analysis.wandb_io.offline_runs import find_offline_run_files, offline_wandb_state, read_offline_run
from analysis.wandb_io.sweep_path import JOINED, SweepPathError, parse_sweep_path


def load_offline_runs(root: str | Path, sweeps: Sequence[str] = ()) -> PullResult:
    """The offline runs under `root` (of `sweeps`, if given) as a PullResult, source "offline".

    Runs, their order, the sweep filter and the errors (PullError, one line): `read_offline_sweep`.
    """
    t0 = time.monotonic()
    runs, histories, sweep_id = read_offline_sweep(root, sweeps)
    table, dups, ignored = tidy_table(runs, histories)
    return PullResult(
        table, runs, sweep_id, "offline", seconds=time.monotonic() - t0, duplicate_epochs=dups,
        ignored_rows=ignored, requests_made=False,
    )


def offline_state(info: dict[str, Any], summary: dict[str, Any] | None = None) -> tuple[str, str]:
    """(tidy state, W&B state with its detail) of one start, e.g. ("crashed", "preempted (exit
    code 143)"), ("failed", "failed (exit code 1)"), ("crashed", "crashed (no exit record)");
    `summary` (the run's, all starts merged) can make it failed (`runs.tidy_state`)."""
    raw = offline_wandb_state(info)
    if raw == "finished":
        return tidy_state(raw, summary), raw
    detail = f"exit code {info['exit_code']}" if info["complete"] else "no exit record"
    return tidy_state(raw, summary), f"{raw} ({detail})"


def read_offline_sweep(root: str | Path, sweeps: Sequence[str] = ()) -> tuple[list[RunInfo], dict[str, list], str]:
    """(runs, {run id: history rows}, sweep id) of the offline runs under `root`, read once.

    Runs are grouped by run id (resumed runs merged, see the module docstring) and ordered by
    their first start. Each of `sweeps` (an id, or `entity/project/id`) keeps the runs of that
    sweep: those whose W&B sweep id or group (agent.local groups runs by its local sweep id) is
    it; several are one study (their ids joined by JOINED). Without `sweeps`, the runs must come
    from one sweep (or group), whose id is returned. Raises PullError (one line) for a missing
    folder, no runs, several sweeps without `sweeps`, or a run kept by two of them.
    """
    root = Path(root)
    if not root.exists():
        raise PullError(f"--offline folder {root} does not exist")
    merged = sorted((_merge(rid, parts) for rid, parts in _read_starts(root).items()),
                    key=lambda m: (m.start, m.run.run_id))
    picked = [_of_sweep(merged, sweep, root) for sweep in sweeps] or [_of_sweep(merged, None, root)]
    keep: dict[str, _Merged] = {}
    for runs, sweep_id in picked:
        for m in runs:
            if m.run.run_id in keep:
                raise PullError(f"run {m.run.run_id} is in two of the sweeps given: give each sweep once")
            m.run.sweep_id = m.run.sweep_id or sweep_id
            keep[m.run.run_id] = m
    return ([m.run for m in keep.values()], {rid: m.history for rid, m in keep.items()},
            JOINED.join(sweep_id for _, sweep_id in picked))


class _Merged(NamedTuple):
    start: float  # the run's first start (POSIX seconds)
    run: RunInfo
    history: list[dict[str, Any]]
    names: frozenset[str]  # its W&B sweep id and group


def _read_starts(root: Path) -> dict[str, list[dict[str, Any]]]:
    """run id -> `read_offline_run` of each of its starts (training runs only)."""
    files = find_offline_run_files(root)
    if not files:
        raise PullError(f"no offline W&B runs (run-*.wandb) under {root}")
    pieces: dict[str, list[dict[str, Any]]] = {}
    for f in files:
        try:
            info = read_offline_run(f)
        except (OSError, ValueError) as exc:
            raise PullError(f"cannot read {f}: {exc}") from exc
        if info["job_type"] == ANALYSIS_JOB_TYPE:
            continue
        info["_start"] = info["start_time"] if info["start_time"] is not None else f.stat().st_mtime
        pieces.setdefault(info["run_id"], []).append(info)
    if not pieces:
        raise PullError(f"no training runs under {root} (only analysis runs)")
    return pieces


def _merge(rid: str, parts: list[dict[str, Any]]) -> _Merged:
    """The starts of one run id, merged in start order."""
    parts.sort(key=lambda info: (info["_start"], info["path"]))
    config: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    meta: dict[str, Any] = {}
    for part in parts:
        config.update(part["config"])
        summary.update(part["summary"])
        history.extend(part["history"])
        for k in ("run_name", "entity", "project", "sweep_id", "group"):
            meta[k] = part[k] or meta.get(k)
    state, raw = offline_state(parts[-1], summary)
    names = [n for n in (meta.get("sweep_id"), meta.get("group")) if n]
    run = RunInfo(
        run_id=rid,
        run_name=meta.get("run_name") or rid,
        state=state,
        wandb_state=raw,
        config=config,
        summary={k: v for k, v in summary.items() if v is None or isinstance(v, (bool, int, float, str))},
        sweep_id=names[0] if names else None,
        entity=meta.get("entity"),
        project=meta.get("project"),
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(parts[0]["_start"])),
        last_step=len(history) - 1,
        sources=[str(Path(p["path"]).parent) for p in parts],
    )
    return _Merged(parts[0]["_start"], run, history, frozenset(names))


def _of_sweep(merged: Sequence[_Merged], sweep: str | None, root: Path) -> tuple[list[_Merged], str]:
    """(the merged runs of `sweep`, its id); without `sweep`, all of them if they are of one sweep."""
    known = sorted({m.run.sweep_id for m in merged if m.run.sweep_id})
    if sweep is None:
        if len(known) > 1:
            raise PullError(
                f"the runs under {root} come from {len(known)} sweeps/groups ({', '.join(known)}): give the SWEEP to analyse"
            )
        return list(merged), known[0] if known else "offline"
    try:
        want = parse_sweep_path(sweep, use_env=False)[2]
    except SweepPathError as exc:
        raise PullError(str(exc)) from None

    def of_sweep(m: _Merged) -> bool:  # agent.local groups runs as "<name>-<local sweep id>"
        return any(n == want or n.endswith(f"-{want}") for n in m.names)

    keep = [m for m in merged if of_sweep(m) or (m.run.sweep_id is None and len(known) <= 1)]
    if not any(of_sweep(m) for m in keep):
        raise PullError(
            f"no offline runs of sweep {want} under {root}" + (f" (sweeps/groups found: {', '.join(known)})" if known else "")
        )
    return keep, want
