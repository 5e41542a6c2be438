"""The fake W&B backend's state: runs, sweeps and agents, and the calls tests make on it
(test infrastructure, standard library only, except that ``add_sweep`` reads YAML with PyYAML,
a wandb dependency).

``_Store`` is a mixin of ``FakeWandb``: it works on the attributes ``FakeWandb.__init__`` sets
(``_lock``, ``_rng``, ``_runs``, ``_sweeps``, ``_agents``, ``_clock``, ``entity``).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from typing import Any

from .common import _EPOCH, _new_id
from .grid import grid_points
from .records import FakeRun, FakeSweep


class _Store:
    """Stored runs, sweeps and agents of a ``FakeWandb`` (see the module docstring)."""

    def _tick(self) -> float:
        self._clock += 1
        return _EPOCH + self._clock

    def add_sweep(
        self,
        entity: str,
        project: str,
        sweep_config: Mapping[str, Any] | str,
        sweep_id: str | None = None,
        state: str = "RUNNING",
    ) -> str:
        """Store a sweep (a config dict, or YAML text) and return its id."""
        import yaml  # a wandb dependency

        if isinstance(sweep_config, str):
            config_yaml = sweep_config
            config = yaml.safe_load(sweep_config)
        else:
            config = json.loads(json.dumps(dict(sweep_config)))
            config_yaml = yaml.safe_dump(config, sort_keys=False)
        if config.get("method", "grid") == "grid":
            grid_points(config)  # validate early
        with self._lock:
            sid = sweep_id or _new_id(self._rng)
            self._sweeps[(entity, project, sid)] = FakeSweep(
                entity, project, sid, config, config_yaml, state, self._tick()
            )
        return sid

    def add_run(
        self,
        entity: str,
        project: str,
        run_id: str,
        config: Mapping[str, Any] | None = None,
        summary: Mapping[str, Any] | None = None,
        state: str = "finished",
        history_rows: list[Mapping[str, Any]] | None = None,
        sweep_id: str | None = None,
        *,
        display_name: str | None = None,
        tags: list[str] | None = None,
    ) -> FakeRun:
        """Store (or replace) a run. History rows get ``_step`` = their index
        unless they carry one. ``config`` is plain ``{key: value}``."""
        rows = []
        for i, row in enumerate(history_rows or []):
            row = dict(row)
            row.setdefault("_step", i)
            rows.append(row)
        with self._lock:
            key = (entity, project, run_id)
            old = self._runs.get(key)
            run = FakeRun(
                entity,
                project,
                run_id,
                dict(config or {}),
                dict(summary or {}),
                state,
                rows,
                sweep_id,
                display_name,
                old.created if old else self._tick(),
                tags=list(tags or []),
            )
            # A stored run has started (wandb.init upserted it: RunResumeStatus finds it) unless pending:
            # a run an agent was just handed exists before it starts, and is not resumable yet.
            run.telemetry = None if state == "pending" else {}
            self._runs[key] = run
        return run

    def get_run(self, entity: str, project: str, run_id: str) -> FakeRun | None:
        with self._lock:
            return self._runs.get((entity, project, run_id))

    def runs(self, sweep_id: str | None = None) -> list[FakeRun]:
        """Stored runs in creation order (of one sweep, if given)."""
        with self._lock:
            runs = sorted(self._runs.values(), key=lambda r: r.created)
        return [r for r in runs if sweep_id is None or r.sweep_id == sweep_id]

    def get_sweep(self, sweep_id: str) -> FakeSweep:
        with self._lock:
            for s in self._sweeps.values():
                if s.sweep_id == sweep_id:
                    return s
        raise KeyError(sweep_id)

    def issued(self, sweep_id: str) -> list[dict[str, Any]]:
        """The run/resume commands handed to agents for a sweep, in order."""
        with self._lock:
            return [dict(c) for c in self.get_sweep(sweep_id).issued]

    def requeue(self, run_id: str, sweep_id: str | None = None) -> None:
        """Hand ``run_id`` (already issued) to the next asking agent again,
        as a ``resume`` command with the same args — what W&B does with a
        preempted sweep run."""
        with self._lock:
            for s in self._sweeps.values():
                if sweep_id is not None and s.sweep_id != sweep_id:
                    continue
                if any(c["run_id"] == run_id for c in s.issued):
                    s.requeued.append(run_id)
                    run = self._runs.get((s.entity, s.project, run_id))
                    if run is not None:
                        run.state = "preempted"
                    return
        raise KeyError(f"run {run_id!r} was never issued by a sweep")

    def stop_run(self, run_id: str) -> None:
        """A stop from the W&B UI (see the ``FakeWandb`` docstring)."""
        with self._lock:
            run = self._find_run(None, None, run_id)
            if run is None:
                raise KeyError(run_id)
            run.stop_requested = True

    def set_sweep_state(self, sweep_id: str, state: str) -> None:
        with self._lock:
            self.get_sweep(sweep_id).state = state

    def agents(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(a) for a in self._agents.values()]

    # -- lookups ----------------------------------------------------------

    def _project_id(self, entity: str, project: str) -> str:
        return str(zlib.crc32(f"{entity}/{project}".encode()) % 100_000)

    def _find_sweep(self, entity: str | None, project: str | None, sid: str):
        with self._lock:
            for (e, p, s), sweep in self._sweeps.items():
                if s == sid and (not entity or e == entity) and (
                    not project or p == project
                ):
                    return sweep
        return None

    def _find_run(self, entity: str | None, project: str | None, rid: str):
        with self._lock:
            for (e, p, r), run in self._runs.items():
                if r == rid and (not entity or e == entity) and (
                    not project or p == project
                ):
                    return run
        return None
