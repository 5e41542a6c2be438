"""The pull's cache of a sweep, `<out>/cache/<sweep_id>/`: `runs.json` (the listing, written once
per pull: sweep path, every run's id, name, state, config, summary, last step) and per run
`history/<run_id>.parquet` plus `<run_id>.json` (the state and last step it was pulled at), each
written once when that run's history is complete: a pull's writes grow linearly with its runs."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.pull.runs import ENDED_STATES, UNKNOWN_STEP, RunInfo
from analysis.pull.tidy import numeric_rows
from mae_gap.fileio import atomic_path, atomic_write

CACHE_VERSION = 2  # 2: per-run state files beside the histories (1 kept them in runs.json)
RUNS_JSON = "runs.json"
HISTORY_DIR = "history"


class Cache:
    """`<root>/runs.json` (the listing, written once per pull) + per run `<root>/history/<run_id>.parquet`
    and `<run_id>.json` (the state and last step it was pulled at, written after the parquet): a
    pull writes each run's files once and never rewrites a whole-sweep file (atomic writes,
    mae_gap.fileio)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def history_path(self, run_id: str) -> Path:
        return self.root / HISTORY_DIR / f"{run_id}.parquet"

    def read_listing(self) -> dict[str, Any] | None:
        p = self.root / RUNS_JSON
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError):
            return None
        if data.get("version") != CACHE_VERSION:
            return None
        return data

    def write_listing(self, sweep: str, runs: Sequence[RunInfo]) -> None:
        data = {
            "version": CACHE_VERSION,
            "sweep": sweep,
            "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "runs": [r.to_json() for r in runs],
        }
        atomic_write(self.root / RUNS_JSON, json.dumps(data, indent=1, sort_keys=True, default=str))

    def has_history(self, run_id: str) -> bool:
        return self.history_path(run_id).is_file()

    def history_state(self, run_id: str) -> dict[str, Any] | None:
        """{"state", "last_step"} of the run when its cached history was pulled; None if none."""
        try:
            return json.loads(self.history_path(run_id).with_suffix(".json").read_text())
        except (OSError, ValueError):
            return None

    def read_history(self, run_id: str) -> list[dict[str, float]]:
        frame = pd.read_parquet(self.history_path(run_id))
        rows = []
        for rec in frame.to_dict(orient="records"):
            rows.append({k: v for k, v in rec.items() if not (isinstance(v, float) and math.isnan(v))})
        return rows

    def write_history(self, run_id: str, rows: Sequence[Mapping[str, Any]], state: Mapping[str, Any]) -> None:
        clean = numeric_rows(rows)
        cols = sorted({k for r in clean for k in r})
        frame = pd.DataFrame.from_records(clean, columns=cols).astype("float64")
        with atomic_path(self.history_path(run_id)) as tmp:
            frame.to_parquet(tmp, index=False)
        atomic_write(self.history_path(run_id).with_suffix(".json"), json.dumps(dict(state), sort_keys=True))

    def cached_for_good(self, pulled: Mapping[str, Any] | None, run: RunInfo) -> bool:
        """Whether the cached history of `run` is complete and current: pulled after the run
        ended, in the state and with the last step W&B reports now."""
        return (
            pulled is not None
            and run.last_step != UNKNOWN_STEP  # without W&B's last step nothing says the cache is current
            and self.has_history(run.run_id)
            and pulled.get("state") in ENDED_STATES
            and pulled.get("state") == run.state
            and int(pulled.get("last_step", UNKNOWN_STEP)) == run.last_step
        )


def cache_root(out_dir: str | os.PathLike, sweep_id: str) -> Path:
    return Path(out_dir) / "cache" / sweep_id
