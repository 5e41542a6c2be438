"""What the analysis knows of a sweep's runs besides their histories (pandas-free).

`RunInfo` (one run), `PullResult` (a pull or offline read), the run states of the tidy table
(`tidy_state`: W&B's state -> finished | failed | crashed | running) and the errors of a pull.
Shared by the API pull (`analysis.pull.api`) and the offline one (`analysis.pull.offline`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analysis import STATE_CRASHED, STATE_FAILED, STATE_FINISHED, STATE_RUNNING
from analysis.wandb_io.sweep_path import JOINED, study_id, sweep_ids
from mae_gap.metrics import FAILURE_DETERMINISTIC

if TYPE_CHECKING:
    import pandas as pd

# W&B run states -> the tidy table's four states.
WANDB_STATES = {
    "finished": STATE_FINISHED,
    "failed": STATE_FAILED,
    "killed": STATE_FAILED,  # stopped by a user
    "crashed": STATE_CRASHED,  # heartbeat lost
    "preempted": STATE_CRASHED,  # preempted, not (yet) resumed
    "running": STATE_RUNNING,
    "pending": STATE_RUNNING,
    "preempting": STATE_RUNNING,
}
ENDED_STATES = (STATE_FINISHED, STATE_FAILED, STATE_CRASHED)  # histories that are cached for good

NO_HISTORY, UNKNOWN_STEP = -1, -2  # RunInfo.last_step: the run has no history row / W&B did not say


class PullError(RuntimeError):
    """A pull (or offline read) that cannot go on; the message is one line for the user."""


class PullIncomplete(PullError):
    """Some runs' histories could not be pulled; the others are cached (a re-run resumes)."""

    def __init__(self, message: str, failed: Mapping[str, str]):
        super().__init__(message)
        self.failed = dict(failed)


def tidy_state(wandb_state: str | None, summary: Mapping[str, Any] | None = None) -> str:
    """W&B's run state (any case) as one of the tidy table's states; unknown -> crashed. A run whose
    summary records a deterministic failure (`failure/deterministic`) is failed whatever W&B says:
    agent.train ends such a sweep run with exit code 0 on W&B, the only way a run marked preempting
    is not requeued for ever."""
    if (summary or {}).get(FAILURE_DETERMINISTIC) is True:
        return STATE_FAILED
    return WANDB_STATES.get(str(wandb_state or "").lower(), STATE_CRASHED)


def run_label(run_id: str, run_name: str) -> str:
    """"name (id)", or just the id when the run has no other name."""
    return run_name if run_name == run_id else f"{run_name} ({run_id})"


@dataclass
class RunInfo:
    """What the analysis keeps of one run besides its history."""

    run_id: str
    run_name: str
    state: str  # tidy state: finished | failed | crashed | running
    wandb_state: str = ""  # the state W&B (or the offline files) reported
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    sweep_id: str | None = None
    entity: str | None = None
    project: str | None = None
    created: str = ""
    last_step: int = -1  # last history step W&B knows of (NO_HISTORY = -1: none, UNKNOWN_STEP = -2: not said)
    sources: list[str] = field(default_factory=list)  # offline folders it was read from

    @property
    def label(self) -> str:
        return run_label(self.run_id, self.run_name)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RunInfo:
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class PullResult:
    """The tidy table of a sweep plus what the pull (or offline read) learnt on the way."""

    table: pd.DataFrame  # the tidy table of every run (TIDY_COLUMNS)
    runs: list[RunInfo]  # every run found, in W&B's order (creation time), with or without rows
    sweep: str  # "entity/project/id" (API) or the sweep id / group found offline
    source: str  # "api", "cache" or "offline"
    pulled: list[str] = field(default_factory=list)  # run ids whose history was fetched now
    cached: list[str] = field(default_factory=list)  # run ids whose history came from the cache
    retries: int = 0  # operations re-tried by analysis.pull
    failures: dict[str, int] = field(default_factory=dict)  # failed HTTP attempts seen, by kind
    seconds: float = 0.0  # wall time of the pull (or read)
    duplicate_epochs: dict[str, int] = field(default_factory=dict)  # run id -> epochs logged > once
    ignored_rows: int = 0  # history rows without an epoch
    requests_made: bool = False  # False when everything came from the cache
    cache_dir: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def entity_project(self) -> tuple[str | None, str | None]:
        """(entity, project) of the sweep(s) when all are `entity/project/id` of one project."""
        places = {tuple(path.split("/")[:2]) if path.count("/") == 2 else None for path in self.sweep.split(JOINED)}
        place = places.pop() if len(places) == 1 else None
        return place if place else (None, None)

    @property
    def sweep_id(self) -> str:
        """The sweep's id; several sweeps' ids joined by "+"."""
        return study_id(sweep_ids(self.sweep))


def combine(results: Sequence[PullResult]) -> PullResult:
    """Several sweeps' pulls (or offline reads) as one study: their runs, tables and accounting
    side by side. Raises PullError when a run turns up in two of them."""
    import pandas as pd

    if len(results) == 1:
        return results[0]
    seen: dict[str, str] = {}
    for res in results:
        for run in res.runs:
            if run.run_id in seen:
                raise PullError(f"run {run.run_id} is in both {seen[run.run_id]} and {res.sweep}: give each sweep once")
            seen[run.run_id] = res.sweep
    failures: dict[str, int] = {}
    for res in results:
        for kind, n in res.failures.items():
            failures[kind] = failures.get(kind, 0) + n
    sources = {res.source for res in results}
    return PullResult(
        pd.concat([res.table for res in results], ignore_index=True),
        [run for res in results for run in res.runs],
        JOINED.join(res.sweep for res in results),
        sources.pop() if len(sources) == 1 else "api",
        pulled=[rid for res in results for rid in res.pulled],
        cached=[rid for res in results for rid in res.cached],
        retries=sum(res.retries for res in results),
        failures=failures,
        seconds=sum(res.seconds for res in results),
        duplicate_epochs={k: v for res in results for k, v in res.duplicate_epochs.items()},
        ignored_rows=sum(res.ignored_rows for res in results),
        requests_made=any(res.requests_made for res in results),
        cache_dir=results[0].cache_dir.parent if results[0].cache_dir else None,
        notes=[note for res in results for note in res.notes],
    )
