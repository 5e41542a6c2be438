"""GraphQL operations of the fake W&B backend: runs and their history (test infrastructure,
standard library only; pyarrow writes parquet history exports).

``Api.runs`` pages through ``Runs`` (filters and order evaluated by ``filters``); ``Run.history``
asks ``RunSampledHistory``; ``Run.scan_history`` runs inside wandb-core, which first asks
``RunParquetHistory`` (by default answered "no parquet export": then it pages through
``HistoryPage`` / ``SampledHistoryPage``; ``FakeWandb(parquet_history=True)`` exports ended runs,
see ``_op_RunParquetHistory``). ``_RunOps`` is a mixin of ``FakeWandb``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from .common import _b64, _GraphQLError, _new_id
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
        for row in run.history[self._exported_rows(run) :]:  # live rows only, as ``HistoryPage``
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
        # Only the rows not exported to parquet (all of them without an export): wandb 0.31's
        # wandb-core adds this page to the rows it read from the export for the same steps and
        # does not de-duplicate; wandb-core's own tests stub HistoryPage this way (its
        # runhistoryreader TestHistoryReader_GetHistorySteps_MixedParquetAndLiveData).
        live = run.history[self._exported_rows(run) :]
        rows = [r for r in live if lo <= r["_step"] < hi]
        rows = rows[: int(v.get("pageSize") or len(rows) or 1)]
        return {"project": {"run": {"history": [json.dumps(r) for r in rows]}}}

    def _exported_rows(self, run: FakeRun) -> int:
        """How many leading history rows of ``run`` are in its parquet export (``FakeRun.exported_rows``)."""
        if run.exported_rows is not None:
            return max(0, min(int(run.exported_rows), len(run.history)))
        return len(run.history) if self.parquet_history and run.state != "running" else 0

    def _op_RunParquetHistory(self, q, v):
        """``run.parquetHistory(liveKeys: ["_step"]) { parquetUrls liveData }``, the query wandb 0.31's
        wandb-core sends first for ``Run.scan_history`` and ``Run.download_history_exports``
        (``parquet.GetSignedUrlsWithLiveSteps``): signed URLs of the run's exported parquet files,
        and one object per live (not yet exported) row with only the ``liveKeys``, e.g.
        ``{"_step": 7}``. wandb-core reads the files (``_step`` column, int64) and asks
        ``HistoryPage`` only for pages that reach the first live step; ``download_history_exports``
        raises ``IncompleteRunHistoryError`` when ``liveData`` is not empty (unless
        ``require_complete_history=False``). No export (the default): both lists empty, which makes
        wandb-core page everything through ``HistoryPage``/``SampledHistoryPage``. The fake exports
        the first ``_exported_rows`` rows as one file (pyarrow, imported only here; a row's missing
        key is a null, which the client yields as None), served by ``_Handler._serve_file``.
        wandb-core caches a downloaded file as WANDB_CACHE_DIR/<entity>_<project>_<run>_<i>.runhistory.parquet
        and, with ``use_cache=True`` (the default), reads that copy on later scans, whatever the export
        is by then."""
        run = self._run_or_none(v)
        if run is None:
            return {"project": {"run": None}}
        n = self._exported_rows(run)
        urls = []
        if n:
            import io

            import pyarrow as pa
            import pyarrow.parquet as pq

            buf = io.BytesIO()
            rows = run.history[:n]
            keys = list(dict.fromkeys(k for r in rows for k in r))  # every key of any row: a null where a row lacks it
            pq.write_table(pa.table({k: [r.get(k) for r in rows] for k in keys}), buf)
            path = f"/_files/history/{run.entity}/{run.project}/{run.run_id}/{n}.parquet"
            self._files[path] = buf.getvalue()
            urls.append(self.url + path)
        keys = v.get("liveKeys") or ["_step"]
        live = [{k: r[k] for k in keys if k in r} for r in run.history[n:]]
        return {"project": {"run": {"parquetHistory": {"parquetUrls": urls, "liveData": live}}}}

    def _op_RunStoppedStatus(self, q, v):
        """``project.run.stopped``: has the run been stopped from the UI? (the query of wandb 0.31's
        ``LaunchApi.check_stop_requested``, which agent.train asks when a SIGTERM arrives)."""
        run = self._find_run(v.get("entityName"), v.get("projectName"), v.get("runId"))
        return {"project": {"run": None if run is None else {"stopped": bool(run.stop_requested)}}}

    def _op_StopRun(self, q, v):
        """``stopRun(input: {id: $id}) { success }``: a stop from the W&B UI, by the run's storage id. It is
        what the UI's Stop button sends and what wandb 0.31's public ``Run.stop()`` has wandb-core send
        (``StopRunRequest``; wandb-core reads nothing of the answer but an error). The run's ``stopped``
        flag is set: ``RunStoppedStatus`` answers it, the file stream's answers carry it (``file_stream``)
        and the agent running the run gets a ``stop`` command (``agents``)."""
        run = next((r for r in self.runs() if r.storage_id == v.get("id")), None)
        if run is None:
            raise _GraphQLError(f"run {v.get('id')!r} not found")
        run.stop_requested = True
        return {"stopRun": {"success": True}}

    def _op_OrganizationCoreWeaveOrganizationID(self, q, v):
        """``entity.organization.coreWeaveOrganizationId``, which wandb 0.31's wandb-core asks at
        ``wandb.init`` (for CoreWeave metadata): an entity outside any organization has none."""
        return {"entity": {"organization": None}}

    def _op_RunResumeStatus(self, q, v):
        """``model.bucket``: what wandb-core's resume (``resume="allow"``/``"must"``) reads of a stored
        run (wandb 0.31 wandb-core, ``runbranch.(*ResumeBranch).UpdateForResume``). The run counts as
        existing only if ``wandbConfig(keys: ["t"])`` has a ``t`` key (``runDataFromResponse``: a sweep
        run created ahead of time, never started, has none); otherwise the client starts it afresh
        under the same id. Of an existing run the client reads: ``config`` (``{k: {"value": v}}``,
        keys the new init leaves unset are added), ``summaryMetrics`` (becomes ``run.summary``; its
        ``_step``), ``historyTail`` (JSON list of JSON rows; the last row's ``_step``),
        ``historyLineCount`` (file-stream offset; starting step = max(last _step, count - 1) + 1),
        ``eventsLineCount``/``logLineCount`` (offsets), ``eventsTail`` (``_runtime``), ``tags``,
        ``notes``, ``id``. Missing counts or tails make the resume fail."""
        run = self._find_run(v.get("entity"), v.get("project"), v.get("name") or "")
        if run is None:
            return {"model": {"id": "p", "name": v.get("project"), "entity": {"id": "e", "name": v.get("entity")},
                              "bucket": None}}
        pid = self._project_id(run.entity, run.project)
        run.awaiting_attempt = True  # wandb.init of a new attempt asks this first, then upserts
        started = run.telemetry is not None  # wandb.init has upserted it (or a test stored it started)
        return {
            "model": {
                "id": pid,
                "name": run.project,
                "entity": {"id": _b64(f"Entity:{run.entity}"), "name": run.entity},
                "bucket": {
                    "id": run.storage_id,
                    "name": run.run_id,
                    "displayName": run.display_name or run.run_id,
                    "summaryMetrics": json.dumps(run.summary_metrics()),
                    "config": run.config_json(),
                    "historyLineCount": len(run.history),
                    "eventsLineCount": 0,
                    "logLineCount": 0,
                    "historyTail": json.dumps([json.dumps(r) for r in run.history[-10:]]),
                    "eventsTail": "[]",
                    "tags": list(run.tags),
                    "notes": None,
                    # the server answers the keys asked for of the run's `_wandb` config
                    "wandbConfig": json.dumps({"t": run.telemetry or {}} if started else {}),
                },
            }
        }

    def _op_UpsertBucket(self, q, v):
        """wandb.init (online) creates or updates the run (``upsertBucket``); wandb-core sends no
        ``state`` in 0.31. ``config`` is ``{k: {"value": v}}`` with ``_wandb.value.t`` (telemetry).
        The first upsert of an attempt (``FakeRun.awaiting_attempt``: a new run, or one whose
        RunResumeStatus was just asked) clears the last attempt's exit code (and its preempting mark,
        unless ``preempting_survives_resume``); wandb-core's later upserts of the same attempt (config,
        tags; they may carry the storage ``id`` or not) change only what they carry."""
        entity = v.get("entity") or self.entity
        project = v.get("project") or "uncategorized"
        name = v.get("name")
        run = self._find_run(entity, project, name) if name else None
        inserted = run is None
        if run is None:
            run = self.add_run(entity, project, name or _new_id(self._rng), state="running",
                               sweep_id=v.get("sweep") or None)
        if run.awaiting_attempt:  # the first upsert of an attempt (a new run, or a resume)
            run.awaiting_attempt, run.attempt_open = False, True
            run.exit_code = run.streamed_state = None
            if not self.preempting_survives_resume:
                run.preempting = False
        if v.get("config"):
            cfg = json.loads(v["config"])
            wb = cfg.pop("_wandb", {}).get("value", {})
            if "t" in wb:
                run.telemetry = wb["t"]
            run.config.update({k: (val.get("value") if isinstance(val, dict) else val) for k, val in cfg.items()})
            run.reported = True
        if v.get("summaryMetrics"):
            run.summary.update(json.loads(v["summaryMetrics"]))
        if v.get("state"):
            run.state = v["state"]
        elif run.state in ("pending", "preempted", "preempting", "crashed"):
            run.state = "running"
        for k, attr in (("displayName", "display_name"), ("groupName", "group"), ("jobType", "job_type")):
            if v.get(k):
                setattr(run, attr, v[k])
        if v.get("tags") is not None:
            run.tags = list(v["tags"])
        run.upserts.append({k: v.get(k) for k in ("state", "sweep")})
        pid = self._project_id(run.entity, run.project)
        return {"upsertBucket": {"inserted": inserted, "bucket": {
            "id": run.storage_id, "name": run.run_id, "displayName": run.display_name or run.run_id,
            "description": None, "config": run.config_json(), "sweepName": run.sweep_id,
            "project": {"id": pid, "name": run.project, "entity": {"id": _b64(f"Entity:{run.entity}"),
                                                                   "name": run.entity}},
            "historyLineCount": len(run.history)}}}

    def _op_CreateRunFiles(self, q, v):
        """Files wandb-core uploads (config.yaml, wandb-metadata.json, ...): upload URLs on this fake
        (``PUT /storage/...``, answered 200 and dropped)."""
        run = self._find_run(v.get("entity"), v.get("project"), v.get("run") or "")
        return {"createRunFiles": {
            "runID": run.storage_id if run else "", "uploadHeaders": [],
            "files": [{"name": f, "uploadUrl": f"{self.url}/storage/{v.get('run')}/{f}"} for f in v.get("files") or []]}}

    def file_stream(self, entity: str, project: str, run_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /files/<entity>/<project>/<run>/file_stream`` (wandb-core's file stream): history rows
        (``files["wandb-history.jsonl"]``: ``{offset, content: [json rows]}``), the summary
        (``wandb-summary.json``, the whole summary as one line), ``preempting: true``
        (``run.mark_preempting()``), ``complete: true`` + ``exitcode`` at ``run.finish``. The run's
        state follows: preempting, then finished (exit 0, preempting or not: W&B requeues only a
        non-zero exit), preempted (exit != 0 while preempting) or failed. The answer carries
        ``stopped`` (the run was stopped from the UI): wandb 0.31's wandb-core learns a stop only from
        it (its file stream keeps the flag; ``StopStatusRequest`` answers it, it sends no
        ``RunStoppedStatus`` of its own) and the SDK's ``RunStopChecker``, polling that every 15 s,
        then calls ``Settings.stop_fn``. wandb-core transmits at most every 15 s, so a run learns of a
        stop tens of seconds after it, while ``wandb agent`` (heartbeat every 5 s) normally gets its
        ``stop`` command, and sends the SIGTERM, first."""
        run = self._find_run(entity, project, run_id)
        if run is None:
            return {"exitcode": None, "limits": {}}
        files = body.get("files") or {}
        hist = files.get("wandb-history.jsonl")
        if hist:
            off = int(hist.get("offset", 0))
            rows = [json.loads(line) for line in hist.get("content") or []]
            run.history[off:off + len(rows)] = rows
        summ = files.get("wandb-summary.json")
        if summ and summ.get("content"):
            run.summary = json.loads(summ["content"][-1])
        if body.get("preempting"):
            run.preempting = True
            run.state = "preempting"
        if body.get("complete"):
            code = int(body.get("exitcode") or 0)
            run.exit_code = code
            run.attempt_open = False
            run.streamed_state = "finished" if code == 0 else ("preempted" if run.preempting else "failed")
            if run.agent_id is None:  # an agent's run gets its final state when the agent reports it gone
                run.state = run.streamed_state
        run.file_stream.append({k: body[k] for k in ("preempting", "complete", "exitcode") if k in body})
        return {"exitcode": None, "limits": {}, "stopped": bool(run.stop_requested)}
