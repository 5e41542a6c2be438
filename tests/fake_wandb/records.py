"""The objects the fake W&B backend stores: runs and sweeps (test infrastructure, standard library
only). ``FakeRun.node`` is a run as the GraphQL answers carry it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .common import _b64, _iso


@dataclass
class FakeRun:
    entity: str
    project: str
    run_id: str
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    state: str = "finished"
    history: list[dict[str, Any]] = field(default_factory=list)
    sweep_id: str | None = None
    display_name: str | None = None
    created: float = 0.0
    agent_id: str | None = None
    # Whether the run has reported its config to the server (wandb.init's upsert). Runs added by a
    # test have; a run an agent was just handed has not, until it starts (see FakeWandb).
    reported: bool = True
    stop_requested: bool = False  # stopped from the UI: the agent gets a "stop" command for it
    stop_sent: bool = False
    tags: list[str] = field(default_factory=list)
    group: str | None = None
    job_type: str | None = None
    telemetry: dict[str, Any] | None = None  # config _wandb.t: set once wandb.init upserted the run
    preempting: bool = False  # marked preempting (file stream `preempting: true`)
    exit_code: int | None = None  # from the file stream's final `complete`/`exitcode`
    streamed_state: str | None = None  # the final state that exit code gives (finished/preempted/failed)
    attempt_open: bool = False  # an attempt has upserted the run and not ended yet
    # The next UpsertBucket starts an attempt: true for a stored run until one starts, and again once
    # wandb.init asks RunResumeStatus (a later attempt); an upsert of an attempt that has ended (a late
    # config or tags update) starts none.
    awaiting_attempt: bool = True
    upserts: list[dict[str, Any]] = field(default_factory=list)  # UpsertBucket `state`/`sweep` sent
    file_stream: list[dict[str, Any]] = field(default_factory=list)  # preempting/complete/exitcode sent
    # How many leading history rows W&B has exported to parquet (``RunParquetHistory``); None: all
    # of them once the run has ended if the fake exports history (``FakeWandb(parquet_history=True)``),
    # else none. The rows after them are "live" (not yet exported).
    exported_rows: int | None = None

    @property
    def storage_id(self) -> str:
        return _b64(f"Run:v1:{self.run_id}:{self.project}:{self.entity}")

    def config_json(self) -> str:
        # The server stores config as {key: {"value": v, "desc": None}}.
        out = {}
        for k, v in self.config.items():
            if isinstance(v, Mapping) and "value" in v:
                out[k] = dict(v)
            else:
                out[k] = {"value": v, "desc": None}
        return json.dumps(out)

    def summary_metrics(self) -> dict[str, Any]:
        """The summary as the server stores it: with the last history row's ``_step`` (and ``_runtime``,
        ``_timestamp`` when rows have them) unless the summary already has its own."""
        out = dict(self.summary)
        if self.history:
            for k in ("_step", "_runtime", "_timestamp"):
                if k in self.history[-1]:
                    out.setdefault(k, self.history[-1][k])
        return out

    def last_step(self) -> int:
        return max((int(r["_step"]) for r in self.history), default=-1)

    def history_keys(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for row in self.history:
            for k in row:
                counts[k] = counts.get(k, 0) + 1
        return {
            "lastStep": self.last_step(),
            "keys": {
                k: {"typeCounts": [{"type": "number", "count": c}]}
                for k, c in counts.items()
            },
        }

    def node(self, project_id: str, *, lightweight: bool = False) -> dict[str, Any]:
        node = {
            "id": self.storage_id,
            "projectId": project_id,
            "name": self.run_id,
            "displayName": self.display_name or self.run_id,
            "sweepName": self.sweep_id,
            "state": self.state,
            "tags": list(self.tags),
            "group": self.group,
            "jobType": self.job_type,
            "commit": None,
            "readOnly": False,
            "createdAt": _iso(self.created),
            "heartbeatAt": _iso(self.created + 60),
            "description": None,
            "notes": None,
            "historyLineCount": len(self.history),
            "user": {"name": self.entity, "username": self.entity},
            # SweepWithRuns / sweep poll fields
            "exitcode": 0 if self.state == "finished" else None,
            "shouldStop": False,
            "failed": self.state == "failed",
            "stopped": self.stop_requested,
            "running": self.state == "running",
        }
        if not lightweight:
            node.update(
                config=self.config_json(),
                summaryMetrics=json.dumps(self.summary),
                systemMetrics="{}",
                historyKeys=self.history_keys(),
            )
        return node


@dataclass
class FakeSweep:
    entity: str
    project: str
    sweep_id: str
    config: dict[str, Any]
    config_yaml: str
    state: str = "RUNNING"
    created: float = 0.0
    requeued: list[str] = field(default_factory=list)
    issued: list[dict[str, Any]] = field(default_factory=list)  # commands sent

    @property
    def storage_id(self) -> str:
        return _b64(f"Sweep:{self.sweep_id}")
