"""GraphQL operations of the fake W&B backend: runs and their history (test infrastructure,
standard library only).

``Api.runs`` pages through ``Runs`` (filters and order evaluated by ``filters``); ``Run.history``
asks ``RunSampledHistory``; ``Run.scan_history`` runs inside wandb-core, which first asks
``RunParquetHistory`` (answered "no parquet export, all live data") and then pages through
``HistoryPage`` / ``SampledHistoryPage``. ``_RunOps`` is a mixin of ``FakeWandb``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from .common import _b64
from .filters import _matches, _sort_runs
from .records import FakeRun


def _sample(rows: list, samples: Any) -> list:
    if samples is None or int(samples) >= len(rows):
        return list(rows)
    n = max(int(samples), 1)
    idx = sorted({round(i * (len(rows) - 1) / max(n - 1, 1)) for i in range(n)})
    return [rows[i] for i in idx]


def _lightweight(query: str) -> bool:
    """Does the query list runs through ``LightweightRunFragment`` (no config/summary)?"""
    return "...LightweightRunFragment" in query.replace(" ", "")


class _RunOps:
    """The run and history operations of a ``FakeWandb``."""

    def _filtered_runs(self, entity, project, filters) -> list[FakeRun]:
        runs = [
            r for r in self.runs() if r.entity == entity and r.project == project
        ]
        return [r for r in runs if _matches(r, filters)]

    def _op_Runs(self, q, v):
        entity, project = v.get("entity"), v.get("project")
        filters = json.loads(v.get("filters") or "{}")
        runs = self._filtered_runs(entity, project, filters)
        order = v.get("order") or "+created_at"
        runs = _sort_runs(runs, order)
        per_page = int(v.get("perPage") or 50)
        start = int(base64.b64decode(v["cursor"]).decode()) + 1 if v.get("cursor") else 0
        page = runs[start : start + per_page]
        pid = self._project_id(entity, project)
        light = _lightweight(q)
        edges = [
            {"node": r.node(pid, lightweight=light), "cursor": _b64(str(start + i))}
            for i, r in enumerate(page)
        ]
        return {
            "project": {
                "internalId": pid,
                "runCount": len(runs),
                "readOnly": False,
                "runs": {
                    "edges": edges,
                    "pageInfo": {
                        "endCursor": edges[-1]["cursor"] if edges else None,
                        "hasNextPage": start + per_page < len(runs),
                    },
                },
            }
        }

    def _run_or_none(self, v: dict[str, Any]) -> FakeRun | None:
        name = v.get("name") or v.get("run") or v.get("runName") or ""
        return self._find_run(v.get("entity"), v.get("project"), name)

    def _op_Run(self, q, v):
        run = self._run_or_none(v)
        if run is None:
            return {"project": {"run": None}}
        pid = self._project_id(run.entity, run.project)
        return {"project": {"run": run.node(pid, lightweight=_lightweight(q))}}

    def _op_RunState(self, q, v):
        run = self._run_or_none(v)
        return {"project": {"run": {"state": run.state} if run else None}}

    def _op_QueryRunInfo(self, q, v):
        run = self._run_or_none(v)
        if run is None:
            return {"project": {"run": None}}
        pid = self._project_id(run.entity, run.project)
        return {"project": {"run": run.node(pid)}}

    def _op_RunHistoryKeys(self, q, v):
        run = self._run_or_none(v)
        return {"project": {"run": {"historyKeys": run.history_keys()} if run else None}}

    def _op_RunFullHistory(self, q, v):
        run = self._run_or_none(v)
        if run is None:
            return {"project": {"run": None}}
        rows = _sample(run.history, v.get("samples"))
        lines = [json.dumps(r) for r in rows]
        return {"project": {"run": {"history": lines, "events": []}}}

    def _sampled(self, run: FakeRun, spec: dict[str, Any]) -> list[dict[str, Any]]:
        keys = list(spec.get("keys") or [])
        lo = spec.get("minStep")
        hi = spec.get("maxStep")
        rows = []
        for row in run.history:
            step = row["_step"]
            # wandb-core sends an inclusive maxStep (scan of steps [a, b) asks
            # for minStep=a, maxStep=b-1), so the bound is inclusive here.
            if lo is not None and step < lo or hi is not None and step > hi:
                continue
            if keys and not all(k in row for k in keys if k != "_step"):
                continue  # W&B returns only rows that have every requested key
            rows.append({k: row[k] for k in keys if k in row} if keys else dict(row))
        return _sample(rows, spec.get("samples"))

    def _op_RunSampledHistory(self, q, v):
        run = self._run_or_none(v)
        if run is None:
            return {"project": {"run": None}}
        specs = [json.loads(s) if isinstance(s, str) else s for s in v.get("specs") or []]
        return {"project": {"run": {"sampledHistory": [self._sampled(run, s) for s in specs]}}}

    def _op_SampledHistoryPage(self, q, v):
        run = self._run_or_none(v)
        if run is None:
            return {"project": {"run": None}}
        spec = v.get("spec")
        spec = json.loads(spec) if isinstance(spec, str) else (spec or {})
        return {"project": {"run": {"sampledHistory": [self._sampled(run, spec)]}}}

    def _op_HistoryPage(self, q, v):
        run = self._run_or_none(v)
        if run is None:
            return {"project": {"run": None}}
        lo, hi = int(v.get("minStep", 0)), int(v.get("maxStep", 2**62))
        rows = [r for r in run.history if lo <= r["_step"] < hi]
        rows = rows[: int(v.get("pageSize") or len(rows) or 1)]
        return {"project": {"run": {"history": [json.dumps(r) for r in rows]}}}

    def _op_RunParquetHistory(self, q, v):
        # No parquet export: everything is "live" data, which makes wandb-core
        # fall back to paging through HistoryPage/SampledHistoryPage.
        run = self._run_or_none(v)
        if run is None:
            return {"project": {"run": None}}
        return {"project": {"run": {"parquetHistory": {"parquetUrls": [], "liveData": []}}}}

    def _op_RunStoppedStatus(self, q, v):
        """``project.run.stopped``: has the run been stopped from the UI? (the query of wandb 0.31's
        ``LaunchApi.check_stop_requested``, which agent.train asks when a SIGTERM arrives)."""
        run = self._find_run(v.get("entityName"), v.get("projectName"), v.get("runId"))
        return {"project": {"run": None if run is None else {"stopped": bool(run.stop_requested)}}}

    def _op_RunResumeStatus(self, q, v):
        return {"model": None}
