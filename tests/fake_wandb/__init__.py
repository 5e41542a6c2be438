"""A small fake W&B backend for tests.

Test infrastructure: standard library only, except that grid sweeps are expanded by W&B's own
sweep engine, the ``sweeps`` package (``grid``), YAML sweep configs are read with PyYAML
(a wandb dependency), and parquet history exports (``FakeWandb(parquet_history=True)``) are
written with pyarrow.

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

The package, one module per concern:

* ``common``: ids, timestamps, the wire form of values, ``_GraphQLError``, ``FakeRequest``.
* ``records``: the stored objects, ``FakeRun`` and ``FakeSweep``.
* ``store``: runs, sweeps and agents, and the calls tests make on them (``add_sweep``, ...).
* ``grid``: grid points and the next one to hand out, from W&B's ``sweeps`` engine.
* ``filters``: W&B's MongoDB-style run filters and run order.
* ``ops_sweeps``, ``agents``, ``ops_runs``: the GraphQL operations (viewer and sweeps; the
  agent protocol; runs and history).
* ``handler``: the HTTP handler, request log, injected faults and rate-limit windows.
* ``server``: ``FakeWandb`` itself (settings, start/stop, operation dispatch).

The offline readers (parsers of an offline run's ``run-*.wandb`` file) are product code:
``analysis.wandb_io.offline_runs``.
"""

from __future__ import annotations

from .records import FakeRun, FakeSweep
from .server import FakeWandb
