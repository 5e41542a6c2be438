"""GraphQL operations of the fake W&B backend: the sweep agent protocol (test infrastructure,
standard library only; grid points come from ``grid``, i.e. W&B's ``sweeps`` engine).

``wandb agent`` registers with ``CreateAgent``, then polls ``Heartbeat`` (``AgentHeartbeat``) with
the runs it has alive; the answer is a JSON list of commands: ``run`` (a new grid point),
``resume`` (a requeued run, same args), ``stop`` (runs stopped from the UI), ``exit`` (sweep over),
or nothing. ``_AgentOps`` is a mixin of ``FakeWandb`` and reads its settings (``agent_run_state``,
``run_state_from``, ``run_reported_from``, ``points_taken_on_upsert``, ``heartbeat_timeout_s``; see
its docstring).
"""

from __future__ import annotations

import json
import time
from typing import Any

from .common import _b64, _GraphQLError, _new_id, _wire
from .grid import next_grid_point
from .records import FakeRun, FakeSweep

_OVER = ("CANCELED", "FINISHED", "CANCELLED")  # sweep states whose agents get "exit"
# Run states of a live attempt: "preempting" too (the file stream's mark), which a run that then ends
# or goes silent leaves for "preempted".
_LIVE = ("pending", "running", "preempting")


class _AgentOps:
    """The agent operations of a ``FakeWandb`` (see the module docstring)."""

    def _op_CreateAgent(self, q, v):
        entity = v.get("entityName") or self.entity
        project = v.get("projectName")
        sweep = self._find_sweep(entity, project, v.get("sweep") or "")
        if sweep is None:
            raise _GraphQLError(f"sweep {v.get('sweep')!r} not found", status=404)
        agent_id = _b64(f"Agent:{_new_id(self._rng)}")
        self._agents[agent_id] = {
            "id": agent_id,
            "host": v.get("host"),
            "sweep": sweep.sweep_id,
            "entity": sweep.entity,
            "project": sweep.project,
            "heartbeats": 0,
            "runs": [],
            "last_heartbeat": time.monotonic(),
            "gone": False,
        }
        return {"createAgent": {"agent": {"id": agent_id}}}

    def _op_Heartbeat(self, q, v):
        agent = self._agents.get(v.get("id"))
        if agent is None:
            raise _GraphQLError("agent not found", status=404)
        agent["heartbeats"] += 1
        agent["last_heartbeat"] = time.monotonic()
        sweep = self._find_sweep(agent["entity"], agent["project"], agent["sweep"])
        running = json.loads(v.get("runState") or "{}") or {}
        commands = self._agent_commands(agent, sweep, running)
        return {
            "agentHeartbeat": {
                "agent": {"id": agent["id"]},
                "commands": json.dumps(commands),
            }
        }

    _op_AgentHeartbeat = _op_Heartbeat

    def _run_over(self, run: FakeRun, sweep: FakeSweep | None, default: str) -> None:
        """An issued run's process is gone: its final state, and a requeue if preempted. W&B's rule
        (docs.wandb.ai/models/sweeps/signal-handling-sweep-runs): a run marked preempting that exits
        non-zero or goes silent is PREEMPTED and requeued, "repeatedly, including for bugs"; exit code 0
        is FINISHED, marked or not, and never requeued. The service learns the exit code only from the
        run's file stream (``run.finish(exit_code=N)``), never from the process."""
        reported = self.run_state_from(run) if self.run_state_from else None
        # An online child told the fake itself: the file stream's `complete`/`exitcode` (after `preempting`),
        # or `preempting` and then silence, which W&B ends "preempted" (wandb/wandb#2142: a preempting run
        # stale for 5 minutes is marked preempted).
        silent_preempting = "preempted" if run.preempting and run.exit_code is None else None
        run.state = reported or run.streamed_state or silent_preempting or default
        run.attempt_open = False
        if run.stop_requested and run.state != "preempted":
            run.state = "killed"  # stopped by the user and ended without a preemption: over
        # A run stopped from the UI that still ends preempted (marked preempting, exit non-zero) is
        # requeued like any other: the documented rule names no exception for stopped runs, so
        # agent.train must not end a stopped run that way.
        if run.state == "preempted" and sweep is not None and run.run_id not in sweep.requeued:
            sweep.requeued.append(run.run_id)  # W&B requeues a preempted sweep run

    def _expire_silent_agents(self, sweep: FakeSweep | None) -> None:
        now = time.monotonic()
        for other in self._agents.values():
            if other["gone"] or now - other["last_heartbeat"] < self.heartbeat_timeout_s:
                continue
            other["gone"] = True  # its runs went silent with it
            for rid in other["runs"]:
                run = self._runs.get((other["entity"], other["project"], rid))
                if run is not None and run.state in _LIVE:
                    self._run_over(run, sweep, "crashed")

    def _update_agent_runs(self, agent, sweep: FakeSweep, running: dict) -> None:
        """Runs this agent was handed and reports alive are running; the others are over."""
        for rid in agent["runs"]:
            run = self._runs.get((sweep.entity, sweep.project, rid))
            if run is None:
                continue
            if running.get(rid):
                run.state = "running"
            elif run.state in _LIVE:
                self._run_over(run, sweep, self.agent_run_state)

    def _stop_commands(self, agent, sweep: FakeSweep, running: dict) -> list[dict]:
        """A ``stop`` for each of this agent's live runs stopped from the UI and not yet told."""
        stops = [rid for rid in agent["runs"] if running.get(rid)
                 and (r := self._runs.get((sweep.entity, sweep.project, rid))) is not None
                 and r.stop_requested and not r.stop_sent]
        if not stops:
            return []
        for rid in stops:
            self._runs[(sweep.entity, sweep.project, rid)].stop_sent = True
        # one command per run: the agent reads command["run_id"] (wandb 0.31, Agent._command_stop)
        return [{"type": "stop", "run_id": rid, "id": _new_id(self._rng, 12)} for rid in stops]

    def _agent_commands(self, agent, sweep, running: dict) -> list[dict]:
        self._expire_silent_agents(sweep)
        self._update_agent_runs(agent, sweep, running)
        stops = self._stop_commands(agent, sweep, running)
        if stops:
            return stops
        if sweep is None or sweep.state in _OVER:
            return [{"type": "exit"}]
        if sweep.state == "PAUSED" or any(running.values()):
            return []  # one run at a time per agent, as the real server does
        cmd = self._resume_command(sweep) if sweep.requeued else self._run_command(sweep)
        if cmd is None:
            return [{"type": "exit"}]
        cmd["id"] = _new_id(self._rng, 12)
        run = self._runs[(sweep.entity, sweep.project, cmd["run_id"])]
        run.state = "pending"
        run.agent_id = agent["id"]
        agent["runs"].append(cmd["run_id"])
        sweep.issued.append(dict(cmd))
        return [cmd]

    def _resume_command(self, sweep: FakeSweep) -> dict:
        """The first requeued run again, with the args it was first handed."""
        rid = sweep.requeued.pop(0)
        first = next(c for c in sweep.issued if c["run_id"] == rid)
        return {"type": "resume", "run_id": rid, "args": first["args"],
                "program": sweep.config.get("program")}

    def _run_command(self, sweep: FakeSweep) -> dict | None:
        """A new run on the next grid point, or None when the grid is used up (the sweep is then
        FINISHED once no run of it is pending or running)."""
        point = self._next_grid_point(sweep)
        if point is None:
            if not any(r.state in _LIVE for r in self.runs(sweep.sweep_id)):
                sweep.state = "FINISHED"
            return None
        rid = _new_id(self._rng)
        args = {k: {"value": _wire(val)} for k, val in point.items()}
        new = self.add_run(
            sweep.entity, sweep.project, rid, config=point, state="pending",
            sweep_id=sweep.sweep_id,
        )
        # Taken at once, unless the test says when (offline children) or the run itself tells (online:
        # its first UpsertBucket with its config, see ``points_taken_on_upsert``).
        new.reported = self.run_reported_from is None and not self.points_taken_on_upsert
        return {"type": "run", "run_id": rid, "args": args, "program": sweep.config.get("program")}

    def _next_grid_point(self, sweep: FakeSweep) -> dict[str, Any] | None:
        """W&B's next grid point (``grid.next_grid_point``, the ``sweeps`` engine) given the runs
        the sweep has with their config; a handed-out run counts once it has reported it."""
        if sweep.config.get("method", "grid") != "grid":
            raise _GraphQLError("FakeWandb only runs grid sweeps")
        taken = []
        for r in self.runs(sweep.sweep_id):
            if not r.reported and self.run_reported_from is not None:
                r.reported = bool(self.run_reported_from(r))
            if r.reported:  # only runs the sweep already has, with their config, take a point
                taken.append(r.config)
        return next_grid_point(sweep.config, taken)
