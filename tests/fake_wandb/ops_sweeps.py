"""GraphQL operations of the fake W&B backend: the viewer, server info and sweeps (test
infrastructure, standard library only, except that ``UpsertSweep`` reads YAML with PyYAML, a
wandb dependency).

``_SweepOps`` is a mixin of ``FakeWandb``; ``FakeWandb._execute`` calls ``_op_<operationName>(query,
variables)`` under the fake's lock, and the return value is the answer's ``data``. The agent
protocol (CreateAgent, Heartbeat) is in ``agents``; runs and history in ``ops_runs``.
"""

from __future__ import annotations

from typing import Any

from .common import _b64, _GraphQLError, _iso
from .grid import grid_points
from .records import FakeSweep


class _SweepOps:
    """Viewer, server-info and sweep operations of a ``FakeWandb``."""

    # auth / server -------------------------------------------------------

    def _viewer(self) -> dict[str, Any]:
        return {
            "id": _b64(f"User:{self.entity}"),
            "entity": self.entity,
            "username": self.entity,
            "email": f"{self.entity}@example.com",
            "admin": False,
            "flags": "{}",
            "teams": {"edges": [{"node": {"name": self.entity}}]},
            "organizations": [],
            "apiKeys": {"edges": []},
        }

    def _op_Viewer(self, q, v):
        return {"viewer": self._viewer()}

    _op_GetViewer = _op_Viewer
    _op_GetDefaultEntity = _op_Viewer

    def _op_ServerFeaturesQuery(self, q, v):
        return {"serverInfo": {"features": []}}

    def _op_ServerInfo(self, q, v):
        return {
            "serverInfo": {
                "cliVersionInfo": {},
                "latestLocalVersionInfo": None,
                "features": [],
            }
        }

    # sweeps ---------------------------------------------------------------

    def _sweep_node(self, s: FakeSweep, v: dict[str, Any]) -> dict[str, Any]:
        runs = self.runs(s.sweep_id)
        pid = self._project_id(s.entity, s.project)
        specs = v.get("specs") or v.get("historySpecs") or []
        if isinstance(specs, str):
            specs = [specs]
        edges = []
        for r in runs:
            node = r.node(pid)
            node["sampledHistory"] = [[] for _ in specs]
            edges.append({"node": node, "cursor": _b64(r.run_id)})
        return {
            "__typename": "Sweep",
            "id": s.storage_id,
            "name": s.sweep_id,
            "displayName": s.config.get("name") or s.sweep_id,
            "method": s.config.get("method", "grid"),
            "state": s.state,
            "description": s.config.get("description"),
            "config": s.config_yaml,
            "createdAt": _iso(s.created),
            "updatedAt": _iso(s.created),
            "heartbeatAt": _iso(s.created),
            "earlyStopJobRunning": False,
            "bestLoss": None,
            "controller": None,
            "scheduler": None,
            "controllerRunName": None,
            "runCount": len(runs),
            "runCountExpected": len(grid_points(s.config))
            if s.config.get("method", "grid") == "grid"
            else None,
            "runs": {
                "edges": edges,
                "pageInfo": {"hasNextPage": False, "endCursor": None},
            },
            "project": {
                "id": _b64(f"Project:{s.project}"),
                "name": s.project,
                "entity": {"id": _b64(f"Entity:{s.entity}"), "name": s.entity},
            },
        }

    def _project_sweep(self, v: dict[str, Any], sid: str | None) -> dict[str, Any]:
        entity = v.get("entity") or v.get("entityName")
        project = v.get("project") or v.get("projectName")
        s = self._find_sweep(entity, project, sid or "")
        return {"project": {"sweep": self._sweep_node(s, v) if s else None}}

    def _op_SweepWithRuns(self, q, v):
        return self._project_sweep(v, v.get("sweep"))

    def _op_GetSweep(self, q, v):
        return self._project_sweep(v, v.get("name"))

    _op_GetSweepLegacy = _op_GetSweep

    def _op_Sweep(self, q, v):  # older clients' name
        return self._project_sweep(v, v.get("name") or v.get("sweep"))

    def _op_GetSweepState(self, q, v):
        return self._project_sweep(v, v.get("sweep"))

    def _op_SweepConfig(self, q, v):
        return self._project_sweep(v, v.get("sweep"))

    def _op_UpsertSweep(self, q, v):
        import yaml

        entity = v.get("entityName") or self.entity
        project = v.get("projectName") or "uncategorized"
        if v.get("id"):  # update (state change)
            sweep = next(
                (s for s in self._sweeps.values() if s.storage_id == v["id"]), None
            )
            if sweep is None:
                raise _GraphQLError(f"sweep {v['id']!r} not found")
            if v.get("state"):
                sweep.state = v["state"]
        else:
            sid = self.add_sweep(entity, project, yaml.safe_load(v["config"]))
            sweep = self._find_sweep(entity, project, sid)
        node = self._sweep_node(sweep, {})
        return {
            "upsertSweep": {
                "sweep": {"name": node["name"], "state": node["state"],
                          "project": node["project"]},
                "configValidationWarnings": [],
            }
        }

    _op_UpsertSweepState = _op_UpsertSweep
