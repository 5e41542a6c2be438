"""A small fake W&B backend for tests (the offline ``.wandb`` readers live in analysis.offline).

``FakeWandb`` is an HTTP server (standard library ``http.server`` + a thread,
bound to 127.0.0.1 on a free port) that answers the GraphQL operations the real
wandb 0.31 client sends, so that the real ``wandb agent`` CLI and the real
``wandb.Api()`` run against it::

    with FakeWandb() as fake:
        monkeypatch.setenv("WANDB_BASE_URL", fake.url)
        monkeypatch.setenv("WANDB_API_KEY", fake.api_key)
        sid = fake.add_sweep("ent", "proj", {"method": "grid", ...})
        fake.add_run("ent", "proj", "run1", config={...}, history_rows=[...],
                     sweep_id=sid)
        api = wandb.Api()
        runs = api.runs("ent/proj", filters={"sweep": sid})

How wandb 0.31 talks to a server (read from its source and captured here): all
GraphQL goes through the Go sidecar ``wandb-core`` (``ServiceApi.execute_graphql``),
as ``POST /graphql`` with a JSON body ``{"query", "variables", "operationName"}``
and HTTP basic auth ``api:<API key>``. The agent, ``Api.runs``, ``Api.sweep`` and
``Run.history`` send Python-written queries that wandb-core forwards unchanged;
``Run.scan_history`` is run *inside* wandb-core (``RunParquetHistory``,
``HistoryPage``/``SampledHistoryPage``). wandb-core also posts OpenTelemetry
metrics to ``/sdk/otel/v1/metrics``; this fake answers 404 there, which makes
wandb-core switch that telemetry off.

Responses are supersets: every object carries all the fields any of those
queries asks for (GraphQL clients ignore extra fields), except that a run listed
through ``LightweightRunFragment`` (``Api.runs(lazy=True)``, the default) leaves
out config/summary/system metrics as the real server does, so the client's
lazy-loading path is exercised too.

The offline readers ``iter_wandb_records``, ``read_offline_history`` and
``read_offline_run`` (parsers of an offline run's ``run-*.wandb`` file) live in
``analysis.offline``; this module re-exports them for older imports.
"""

from __future__ import annotations

import base64
import gzip
import itertools
import json
import random
import re
import string
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# The offline ``.wandb`` readers are product code (``--offline`` needs them); re-exported here
# for the tests that import them from the fake.
from analysis.offline import (  # noqa: F401
    iter_wandb_records,
    read_offline_history,
    read_offline_run,
)

__all__ = [
    "FakeWandb",
    "FakeRequest",
    "FakeRun",
    "FakeSweep",
    "grid_points",
    "iter_wandb_records",
    "read_offline_history",
    "read_offline_run",
]

_ID_ALPHABET = string.ascii_lowercase + string.digits
_OP_RE = re.compile(r"\b(query|mutation)\s+([A-Za-z_][A-Za-z0-9_]*)")
_EPOCH = 1_700_000_000.0  # fixed "creation" clock base: deterministic createdAt


def _new_id(rng: random.Random, n: int = 8) -> str:
    return "".join(rng.choice(_ID_ALPHABET) for _ in range(n))


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))


# Unnamed queries some clients send, by their first field: wandb <= 0.30's login check is
# `query { viewer { id } }` (wandb/sdk/internal/internal_api.py:378-381 in 0.27).
_ANONYMOUS_OPS = {"viewer": "Viewer"}


def _first_field(query: str) -> str:
    m = re.search(r"\{\s*([A-Za-z_][A-Za-z0-9_]*)", query)
    return m.group(1) if m else ""


def _wire(value: Any) -> Any:
    """A parameter value as the server sends it to an agent: whole-number floats as ints."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def _canon(value: Any) -> str:
    """Canonical form of a config value for grid de-duplication.

    Like the ``sweeps`` package's ``yaml_hash``: integral floats equal ints.
    """
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return json.dumps(value, sort_keys=True)


# ---------------------------------------------------------------------------
# Grid expansion, W&B's own order
# ---------------------------------------------------------------------------


def grid_points(sweep_config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """All points of a ``method: grid`` sweep, in W&B's order.

    Parameter names sorted, values in listed order, the last name varying
    fastest (``itertools.product`` over the sorted names); constants (``value``)
    are part of every point; ``int_uniform`` (min/max ints) expands to its range.
    Each point is ``{name: value}``.
    """
    params = sweep_config.get("parameters") or {}
    names = sorted(params)
    choices: list[list[Any]] = []
    for name in names:
        spec = params[name]
        if not isinstance(spec, Mapping):
            raise ValueError(f"parameter {name!r}: expected a mapping, got {spec!r}")
        if "values" in spec:
            choices.append(list(spec["values"]))
        elif "value" in spec:
            choices.append([spec["value"]])
        elif isinstance(spec.get("min"), int) and isinstance(spec.get("max"), int):
            if spec.get("distribution", "int_uniform") != "int_uniform":
                raise ValueError(f"parameter {name!r}: grid needs discrete values")
            choices.append(list(range(spec["min"], spec["max"] + 1)))
        else:
            raise ValueError(
                f"parameter {name!r}: grid search needs 'values', 'value' or "
                f"int min/max, got {dict(spec)!r}"
            )
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*choices)]


# ---------------------------------------------------------------------------
# Stored objects
# ---------------------------------------------------------------------------


@dataclass
class FakeRequest:
    """One HTTP request the fake received."""

    op: str  # GraphQL operation name, or "METHOD /path" for other requests
    variables: dict[str, Any]
    status: int  # HTTP status the fake answered with
    path: str
    query: str = ""
    t: float = 0.0


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
            "stopped": False,
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


@dataclass
class _Fault:
    status: int
    times: int
    headers: dict[str, str]
    op: str | None
    body: bytes | None


class _GraphQLError(Exception):
    def __init__(self, message: str, status: int = 200):
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------


class FakeWandb:
    """A fake W&B server on 127.0.0.1 for the real wandb client.

    Args:
        entity: the viewer's default entity.
        api_key: the key tests should put in WANDB_API_KEY (40 characters).
        require_api_key: if True, any other key gets HTTP 401; otherwise any
            non-empty key is accepted (a missing one still gets 401).
        seed: seeds the generated sweep/run/agent ids.
        agent_run_state: state given to runs an agent was handed, once the
            agent reports them gone (agents do not report exit codes).
        run_state_from: optional ``f(run) -> state or None``, asked when an
            agent reports a run gone. W&B learns a run's final state from the
            run itself (its exit code; ``mark_preempting()`` first makes it
            "preempting", then "preempted"); a test whose children run offline
            can read that from the run's offline files. None falls back to
            ``agent_run_state``. A sweep run that ends "preempted" is requeued
            (handed to the next asking agent as ``resume``), as W&B does.
        run_reported_from: optional ``f(run) -> bool``: has the run an agent was handed
            reported its config yet (``wandb.init``)? W&B's grid search skips only the points
            of runs that exist in the sweep with their config (sweeps/grid_search.py:152-193,
            sweeps/run.py:213-215), and a run exists once ``wandb.init`` has upserted it; until
            then another agent asking can be handed the same point (a duplicate). Children
            that run offline never upsert: the test answers from their offline folders. None:
            a handed-out point counts as taken at once (no duplicates).
        heartbeat_timeout_s: an agent silent for this long is gone; its runs end with the state
            ``run_state_from`` gives (else crashed), and a preempted one is requeued. The real
            server marks a run crashed after about 5 minutes without a sign of life
            (docs.wandb.ai/models/sweeps/signal-handling-sweep-runs, "stale runs").

    Arguments are sent the way the server sends them: a whole-number float becomes an int
    (``--alpha=-10``, not ``-10.0``: sweeps/grid_search.py:22-25, "becomes an int when it becomes
    part of the run config in AgentHeartbeat"). ``stop_run`` plays a stop from the UI: the agent
    running the run gets ``{"type": "stop", "run_ids": [...]}`` (wandb/wandb_agent.py:571, 678-696)
    and the run ends "killed", never requeued.
    """

    def __init__(
        self,
        entity: str = "fake-entity",
        api_key: str = "f" * 40,
        *,
        require_api_key: bool = False,
        seed: int = 0,
        agent_run_state: str = "finished",
        run_state_from: Callable[[FakeRun], str | None] | None = None,
        run_reported_from: Callable[[FakeRun], bool] | None = None,
        heartbeat_timeout_s: float = 300.0,
    ) -> None:
        self.entity = entity
        self.api_key = api_key
        self.require_api_key = require_api_key
        self.agent_run_state = agent_run_state
        self.run_state_from = run_state_from
        self.run_reported_from = run_reported_from
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._runs: dict[tuple[str, str, str], FakeRun] = {}
        self._sweeps: dict[tuple[str, str, str], FakeSweep] = {}
        self._agents: dict[str, dict[str, Any]] = {}
        self._faults: list[_Fault] = []
        self._log: list[FakeRequest] = []
        self._clock = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> FakeWandb:
        if self._server is not None:
            return self
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="FakeWandb",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeWandb:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeWandb is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def env(self) -> dict[str, str]:
        """Environment variables that point a wandb client at this fake."""
        return {"WANDB_BASE_URL": self.url, "WANDB_API_KEY": self.api_key}

    # -- request log ------------------------------------------------------

    @property
    def requests(self) -> list[str]:
        """Operation names of the GraphQL requests received, in order.

        Includes requests that were answered with an injected fault.
        """
        with self._lock:
            return [r.op for r in self._log if r.path.rstrip("/").endswith("graphql")]

    @property
    def request_log(self) -> list[FakeRequest]:
        """Every HTTP request received (GraphQL and other paths), in order."""
        with self._lock:
            return list(self._log)

    def count(self, op: str | None = None) -> int:
        """Number of GraphQL requests received, or of those named ``op``."""
        ops = self.requests
        return len(ops) if op is None else sum(1 for o in ops if o == op)

    def clear_requests(self) -> None:
        with self._lock:
            self._log.clear()

    # -- fault injection --------------------------------------------------

    def fail_next(
        self,
        status: int = 429,
        times: int = 1,
        headers: Mapping[str, str] | None = None,
        *,
        op: str | None = None,
        body: str | bytes | None = None,
    ) -> None:
        """Answer the next ``times`` GraphQL requests (named ``op``, if given)
        with HTTP ``status`` and ``headers`` instead of the real answer.

        Several calls queue up in order. Example: ``fail_next(429, times=2,
        headers={"Retry-After": "1"})`` then ``fail_next(500)``.
        """
        if isinstance(body, str):
            body = body.encode()
        with self._lock:
            self._faults.append(
                _Fault(status, int(times), dict(headers or {}), op, body)
            )

    def rate_limit(self, seconds: float, op: str | None = None) -> None:
        """Answer every GraphQL request (named ``op``, if given) with HTTP 429 for the next ``seconds``,
        with the headers the real service sends when a quota is used up: ``RateLimit-Remaining: 0``
        and ``RateLimit-Reset: <seconds until the window ends>`` (docs.wandb.ai/support/models/
        articles/rate-limit-exceeded-on-metric-logging: "If RateLimit-Remaining is 0, wait for the
        number of seconds in RateLimit-Reset before retrying")."""
        with self._lock:
            self._rate_limit = (time.monotonic() + float(seconds), op)

    def _rate_limited(self, op: str) -> dict[str, str] | None:
        with self._lock:
            until, only = getattr(self, "_rate_limit", (0.0, None))
        left = until - time.monotonic()
        if left <= 0 or (only is not None and only != op):
            return None
        return {"RateLimit-Limit": "1000", "RateLimit-Remaining": "0", "RateLimit-Reset": str(max(1, round(left)))}

    def pending_faults(self) -> int:
        with self._lock:
            return sum(f.times for f in self._faults)

    def _take_fault(self, op: str) -> _Fault | None:
        with self._lock:
            for f in self._faults:
                if f.times > 0 and (f.op is None or f.op == op):
                    f.times -= 1
                    if f.times == 0:
                        self._faults.remove(f)
                    return f
        return None

    # -- data -------------------------------------------------------------

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
        """A stop from the W&B UI (see the class docstring)."""
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

    # -- GraphQL ------------------------------------------------------------

    def _execute(self, op: str, query: str, v: dict[str, Any]) -> dict[str, Any]:
        handler = getattr(self, f"_op_{op}", None)
        if handler is None:
            raise _GraphQLError(f"FakeWandb: unsupported operation {op!r}")
        with self._lock:
            return handler(query, v)

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
        """An issued run's process is gone: its final state, and a requeue if preempted."""
        if run.stop_requested:
            run.state = "killed"  # stopped by the user: over, whatever its exit code
            return
        reported = self.run_state_from(run) if self.run_state_from else None
        run.state = reported or default
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
                if run is not None and run.state in ("pending", "running"):
                    self._run_over(run, sweep, "crashed")

    def _agent_commands(self, agent, sweep, running: dict) -> list[dict]:
        self._expire_silent_agents(sweep)
        # Runs this agent was handed and no longer reports as running are over.
        for rid in agent["runs"]:
            run = self._runs.get((sweep.entity, sweep.project, rid))
            if run is None:
                continue
            if running.get(rid):
                run.state = "running"
            elif run.state in ("pending", "running"):
                self._run_over(run, sweep, self.agent_run_state)
        stops = [rid for rid in agent["runs"] if running.get(rid)
                 and (r := self._runs.get((sweep.entity, sweep.project, rid))) is not None
                 and r.stop_requested and not r.stop_sent]
        if stops:
            for rid in stops:
                self._runs[(sweep.entity, sweep.project, rid)].stop_sent = True
            return [{"type": "stop", "run_ids": stops, "id": _new_id(self._rng, 12)}]
        if sweep is None or sweep.state in ("CANCELED", "FINISHED", "CANCELLED"):
            return [{"type": "exit"}]
        if sweep.state == "PAUSED" or any(running.values()):
            return []  # one run at a time per agent, as the real server does
        program = sweep.config.get("program")
        if sweep.requeued:
            rid = sweep.requeued.pop(0)
            first = next(c for c in sweep.issued if c["run_id"] == rid)
            cmd = {"type": "resume", "run_id": rid, "args": first["args"],
                   "program": program}
        else:
            point = self._next_grid_point(sweep)
            if point is None:
                if not any(
                    r.state in ("pending", "running") for r in self.runs(sweep.sweep_id)
                ):
                    sweep.state = "FINISHED"
                return [{"type": "exit"}]
            rid = _new_id(self._rng)
            args = {k: {"value": _wire(val)} for k, val in point.items()}
            cmd = {"type": "run", "run_id": rid, "args": args, "program": program}
            new = self.add_run(
                sweep.entity, sweep.project, rid, config=point, state="pending",
                sweep_id=sweep.sweep_id,
            )
            new.reported = self.run_reported_from is None
        cmd["id"] = _new_id(self._rng, 12)
        run = self._runs[(sweep.entity, sweep.project, rid)]
        run.state = "pending"
        run.agent_id = agent["id"]
        agent["runs"].append(rid)
        sweep.issued.append(dict(cmd))
        return [cmd]

    def _next_grid_point(self, sweep: FakeSweep) -> dict[str, Any] | None:
        if sweep.config.get("method", "grid") != "grid":
            raise _GraphQLError("FakeWandb only runs grid sweeps")
        seen = set()
        for r in self.runs(sweep.sweep_id):
            if not r.reported and self.run_reported_from is not None:
                r.reported = bool(self.run_reported_from(r))
            if r.reported:  # only runs the sweep already has, with their config, take a point
                seen.add(tuple(sorted((k, _canon(val)) for k, val in r.config.items())))
        for point in grid_points(sweep.config):
            key = tuple(sorted((k, _canon(val)) for k, val in point.items()))
            if key not in seen:
                return point
        return None

    # runs ----------------------------------------------------------------

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
        light = "...LightweightRunFragment" in q.replace(" ", "")
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
        light = "...LightweightRunFragment" in q.replace(" ", "")
        pid = self._project_id(run.entity, run.project)
        return {"project": {"run": run.node(pid, lightweight=light)}}

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

    def _op_RunResumeStatus(self, q, v):
        return {"model": None}


def _sample(rows: list, samples: Any) -> list:
    if samples is None or int(samples) >= len(rows):
        return list(rows)
    n = max(int(samples), 1)
    idx = sorted({round(i * (len(rows) - 1) / max(n - 1, 1)) for i in range(n)})
    return [rows[i] for i in idx]


def _sort_runs(runs: list[FakeRun], order: str) -> list[FakeRun]:
    desc = order.startswith("-")
    key = order.lstrip("+-")
    if key in ("created_at", "createdAt", ""):
        return sorted(runs, key=lambda r: r.created, reverse=desc)
    if key in ("name", "display_name"):
        return sorted(runs, key=lambda r: r.run_id, reverse=desc)
    return sorted(runs, key=lambda r: r.created, reverse=desc)


def _lookup(run: FakeRun, path: str) -> tuple[bool, Any]:
    if path in ("sweep", "sweepName"):
        return True, run.sweep_id
    if path in ("name", "id"):
        return True, run.run_id
    if path == "displayName":
        return True, run.display_name or run.run_id
    if path == "state":
        return True, run.state
    if path == "tags":
        return True, run.tags
    for prefix, src in (("config.", run.config), ("summary_metrics.", run.summary)):
        if path.startswith(prefix):
            rest = path[len(prefix) :]
            if prefix == "config." and rest.endswith(".value"):
                rest = rest[: -len(".value")]
            if rest in src:
                return True, src[rest]
            return False, None
    return False, None


def _matches(run: FakeRun, flt: Any) -> bool:
    """A small MongoDB-style filter: $and/$or/$nor, equality, $eq/$ne/$in/$nin/
    $gt/$gte/$lt/$lte/$exists on run fields, ``config.X`` and ``summary_metrics.X``."""
    if not flt:
        return True
    for key, cond in flt.items():
        if key == "$and":
            if not all(_matches(run, c) for c in cond):
                return False
            continue
        if key == "$or":
            if not any(_matches(run, c) for c in cond):
                return False
            continue
        if key == "$nor":
            if any(_matches(run, c) for c in cond):
                return False
            continue
        found, val = _lookup(run, key)
        if isinstance(cond, Mapping) and any(k.startswith("$") for k in cond):
            if not all(_compare(o, found, val, arg) for o, arg in cond.items()):
                return False
        else:
            if isinstance(val, list) and not isinstance(cond, list):
                if cond not in val:
                    return False
            elif not found or val != cond:
                return False
    return True


def _compare(opname: str, found: bool, val: Any, arg: Any) -> bool:
    if opname == "$eq":
        return found and val == arg
    if opname == "$ne":
        return not found or val != arg
    if opname == "$in":
        if isinstance(val, list):
            return found and any(x in arg for x in val)
        return found and val in arg
    if opname == "$nin":
        return not found or val not in arg
    if opname == "$exists":
        return found == bool(arg)
    if opname in ("$gt", "$gte", "$lt", "$lte"):
        if not found or val is None:
            return False
        return {
            "$gt": val > arg, "$gte": val >= arg, "$lt": val < arg, "$lte": val <= arg
        }[opname]
    raise _GraphQLError(f"FakeWandb: unsupported filter op {opname!r}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real server
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle +
    # delayed ACKs add ~40 ms to every keep-alive request.
    disable_nagle_algorithm = True
    server_fake: FakeWandb

    def log_message(self, format: str, *args: Any) -> None:  # silence
        pass

    def _send(self, status: int, body: bytes, headers: Mapping[str, str] | None = None,
              ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, val in (headers or {}).items():
            self.send_header(k, val)
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            body = gzip.decompress(body)
        return body

    def _record(self, op, variables, status, query="") -> None:
        fake = self.server_fake
        with fake._lock:
            fake._log.append(
                FakeRequest(op, variables, status, self.path.split("?")[0], query,
                            time.monotonic())
            )

    def _authorized(self) -> bool:
        fake = self.server_fake
        auth = self.headers.get("Authorization", "")
        key = ""
        if auth.startswith("Basic "):
            try:
                user_key = base64.b64decode(auth[6:]).decode()
                key = user_key.split(":", 1)[1]
            except Exception:
                key = ""
        elif auth.startswith("Bearer "):
            key = auth[7:]
        if not key:
            return False
        return key == fake.api_key if fake.require_api_key else True

    def do_GET(self) -> None:
        self._body()
        self._record(f"GET {self.path}", {}, 404)
        self._send(404, b'{"error": "not found"}')

    def do_PUT(self) -> None:
        self._body()
        self._record(f"PUT {self.path}", {}, 404)
        self._send(404, b'{"error": "not found"}')

    def do_POST(self) -> None:
        fake = self.server_fake
        body = self._body()
        path = self.path.split("?")[0].rstrip("/")
        if not path.endswith("/graphql"):
            self._record(f"POST {path}", {}, 404)
            self._send(404, b'{"error": "not found"}')
            return
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            self._record("<invalid json>", {}, 400)
            self._send(400, b'{"errors": [{"message": "invalid JSON body"}]}')
            return
        batch = isinstance(payload, list)
        items = payload if batch else [payload]
        results = []
        status = 200
        for item in items:
            query = item.get("query") or ""
            variables = item.get("variables") or {}
            op = item.get("operationName")
            if not op:
                m = _OP_RE.search(query)
                op = m.group(2) if m else _ANONYMOUS_OPS.get(_first_field(query), "<anonymous>")
            limited = fake._rate_limited(op)
            if limited is not None:
                self._record(op, variables, 429, query)
                self._send(429, b'{"errors": [{"message": "rate limit exceeded"}]}', limited)
                return
            fault = fake._take_fault(op)
            if fault is not None:
                self._record(op, variables, fault.status, query)
                self._send(fault.status, fault.body or json.dumps(
                    {"errors": [{"message": f"injected HTTP {fault.status}"}]}
                ).encode(), fault.headers)
                return
            if not self._authorized():
                self._record(op, variables, 401, query)
                self._send(401, b'{"errors": [{"message": "unauthorized"}]}')
                return
            try:
                data = fake._execute(op, query, variables)
                results.append({"data": data})
            except _GraphQLError as e:
                if e.status != 200:
                    status = e.status
                results.append({"data": None, "errors": [{"message": str(e)}]})
            self._record(op, variables, status, query)
        out = results if batch else results[0]
        self._send(status, json.dumps(out).encode())
