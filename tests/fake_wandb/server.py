"""``FakeWandb``: the fake W&B server on 127.0.0.1 (test infrastructure, standard library only,
grid sweeps expanded by W&B's ``sweeps`` engine).

The class is assembled from one mixin per concern: ``store._Store`` (runs, sweeps, agents),
``handler._Traffic`` (request log, faults, rate-limit windows), and the GraphQL operations
``ops_sweeps._SweepOps``, ``agents._AgentOps`` and ``ops_runs._RunOps``. An operation named
``X`` is the method ``_op_X(query, variables)``: a subclass (or a test's monkeypatch) adds or
replaces operations by defining such methods.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from typing import Any

from .agents import _AgentOps
from .common import FakeRequest, _GraphQLError
from .handler import _Fault, _Handler, _Traffic
from .ops_runs import _RunOps
from .ops_sweeps import _SweepOps
from .records import FakeRun, FakeSweep
from .store import _Store


class FakeWandb(_Store, _Traffic, _SweepOps, _AgentOps, _RunOps):
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
            can read that from the run's offline files. Online children need
            none: the fake hears it from their file stream (``preempting``,
            ``complete``/``exitcode``; a preempting run that goes silent ends
            "preempted"). Else ``agent_run_state``. A sweep run that ends
            "preempted" is requeued (handed to the next asking agent as
            ``resume``), as W&B does.
        run_reported_from: optional ``f(run) -> bool``: has the run an agent was handed
            reported its config yet (``wandb.init``)? W&B's grid search skips only the points
            of runs that exist in the sweep with their config (``sweeps.next_runs`` ->
            ``grid_search_next_runs``), and a run exists once ``wandb.init`` has upserted it; until
            then another agent asking can be handed the same point (a duplicate). Children
            that run offline never upsert: the test answers from their offline folders. None:
            a handed-out point counts as taken at once (no duplicates), unless
            ``points_taken_on_upsert``.
        points_taken_on_upsert: a handed-out point counts as taken once its run's first
            ``UpsertBucket`` with its config arrives (what ``wandb.init`` of an online child sends),
            as on W&B; two agents asking before that get the same point.
        parquet_history: if True (the default), ``RunParquetHistory`` answers an ended run's history as
            one parquet file the fake itself serves (see ``ops_runs``), so that wandb-core's
            ``Run.scan_history`` and ``Run.download_history_exports`` read the export instead of
            paging through ``HistoryPage``, as for a run the service has exported. False: no run has
            an export (a service that has not exported yet).
        heartbeat_timeout_s: an agent silent for this long is gone; its runs end with the state
            ``run_state_from`` gives (else crashed), and a preempted one is requeued. The real
            server marks a run crashed after about 5 minutes without a sign of life
            (docs.wandb.ai/models/sweeps/signal-handling-sweep-runs, "stale runs").
        preempting_survives_resume: whether a resumed attempt (``UpsertBucket`` of a run whose earlier
            attempt ended) keeps that attempt's ``preempting`` mark, so that its non-zero exit is requeued
            again even if it never calls ``mark_preempting()``. W&B documents neither way; wandb 0.31 sends
            nothing that clears the mark (``RunPreemptingRecord`` has no fields; the file stream only ever
            sends ``"preempting": true``). Default False: the mark is the run's state, which a resumed run
            leaves for "running".

    Grid points and their order come from W&B's own engine (``sweeps.next_run``, see ``grid``).
    Arguments are sent the way the server sends them: a whole-number float becomes an int
    (``--alpha=-10``, not ``-10.0``: ``sweeps.grid_search.yaml_hash``, "becomes an int when it
    becomes part of the run config in AgentHeartbeat"). ``stop_run`` (or the ``StopRun`` mutation: what
    the UI's Stop button and wandb 0.31's ``Run.stop()`` send) plays a stop from the UI: the run's
    ``stopped`` flag is set (``RunStoppedStatus`` and the file stream's answers carry it) and the
    agent running it gets one ``{"type": "stop", "run_id": ...}`` per run (the shape wandb 0.31's
    ``Agent._command_stop`` reads; the agent answers it with ``proc.terminate()``, a SIGTERM). The run
    then ends "killed" unless it ends preempted, which is requeued like any preemption.
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
        points_taken_on_upsert: bool = False,
        preempting_survives_resume: bool = False,
        parquet_history: bool = True,
    ) -> None:
        self.entity = entity
        self.api_key = api_key
        self.require_api_key = require_api_key
        self.agent_run_state = agent_run_state
        self.run_state_from = run_state_from
        self.run_reported_from = run_reported_from
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.points_taken_on_upsert = points_taken_on_upsert
        self.parquet_history = parquet_history
        self._files: dict[str, bytes] = {}  # path -> body, served by GET (parquet exports)
        # Does a resumed attempt keep the earlier attempt's preempting mark (so that its non-zero exit is
        # requeued again)? W&B documents neither; the SDK sends nothing that clears it (wandb 0.31).
        self.preempting_survives_resume = preempting_survives_resume
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._runs: dict[tuple[str, str, str], FakeRun] = {}
        self._sweeps: dict[tuple[str, str, str], FakeSweep] = {}
        self._agents: dict[str, dict[str, Any]] = {}
        self._faults: list[_Fault] = []
        self._stalls: list[list] = []  # [seconds, times, op]: see ``stall_next``
        self._rate_limit: tuple[float, str | None] = (0.0, None)  # (until, only this op)
        self._log: list[FakeRequest] = []
        # Operations answered "unsupported" (an error the client may swallow): a test of a client's whole
        # traffic asserts this stays empty.
        self.unsupported: list[str] = []
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

    # -- GraphQL ------------------------------------------------------------

    def _execute(self, op: str, query: str, v: dict[str, Any]) -> dict[str, Any]:
        handler = getattr(self, f"_op_{op}", None)
        if handler is None:
            with self._lock:
                self.unsupported.append(op)
            raise _GraphQLError(f"FakeWandb: unsupported operation {op!r}")
        with self._lock:
            return handler(query, v)
