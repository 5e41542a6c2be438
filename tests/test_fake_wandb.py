"""The fake W&B backend (the package tests/fake_wandb/) against the real wandb client.

CPU only, no network: the fake listens on 127.0.0.1. Each test gets its own
fake, its own WANDB_* folders and a fresh wandb-core service.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from conftest import FAKE_ENTITY, FAST_WANDB_AGENT, serve_fake_wandb  # noqa: E402
from fake_wandb import FakeWandb  # noqa: E402
from fake_wandb.grid import grid_points, next_grid_point  # noqa: E402

from analysis.wandb_io.offline_runs import iter_wandb_records, read_offline_history, read_offline_run  # noqa: E402

wandb = pytest.importorskip("wandb")

HERE = Path(__file__).parent
PROGRAMS = HERE / "fake_programs"
ENTITY, PROJECT = FAKE_ENTITY, "mae-gap-fake"


@pytest.fixture
def fake(fake_wandb):
    """conftest's fake_wandb: a started FakeWandb for ENTITY, this process's wandb pointed at it."""
    return fake_wandb


def _config_params(runs):
    return [(r.config["alpha"], r.config.get("lr")) for r in runs]


# ---------------------------------------------------------------------------
# Grid order
# ---------------------------------------------------------------------------


def test_grid_points_follow_wandb_order():
    cfg = {
        "method": "grid",
        "parameters": {
            "lr": {"values": [1e-3, 1e-4]},
            "alpha": {"values": [-0.5, 0.0, 0.5]},
            "epochs": {"value": 10},
        },
    }
    points = grid_points(cfg)
    assert points == [
        {"alpha": a, "epochs": 10, "lr": lr}
        for a in (-0.5, 0.0, 0.5)
        for lr in (1e-3, 1e-4)
    ]
    sweeps = pytest.importorskip("sweeps")  # W&B's own engine, when installed
    done = []
    while True:
        (nxt,) = sweeps.next_runs(cfg, done)
        if nxt is None:
            break
        nxt.state = sweeps.RunState.finished
        done.append(nxt)
    assert [{k: v["value"] for k, v in r.config.items()} for r in done] == points
    # int min/max (int_uniform) expands to its range, as W&B's engine does.
    assert grid_points({"method": "grid", "parameters": {"n": {"min": 1, "max": 3}}}) == [
        {"n": 1}, {"n": 2}, {"n": 3}
    ]


def test_next_grid_point_skips_the_points_runs_hold_as_the_sweeps_engine_does():
    cfg = {"method": "grid", "parameters": {"alpha": {"values": [-10.0, 0.5, 2.0]},
                                            "lr": {"value": 1e-4}}}
    assert next_grid_point(cfg, []) == {"alpha": -10.0, "lr": 1e-4}
    # Compared by yaml_hash: a whole-number float equals its int; keys that are not
    # parameters, and the server's {"value": v} form, do not matter.
    taken = [{"alpha": -10, "lr": 1e-4, "seed": 3}, {"alpha": {"value": 2.0, "desc": None}}]
    assert next_grid_point(cfg, taken) == {"alpha": 0.5, "lr": 1e-4}
    assert next_grid_point(cfg, [*taken, {"alpha": 0.5}]) is None


def test_grid_hand_out_counts_only_runs_that_reported_their_config(monkeypatch, tmp_path):
    """Two agents asking before the first one's run reported its config get the same point (a
    duplicate, as on W&B); a reported run's point is not handed out again."""
    from wandb.apis.public.sweeps import _agent_heartbeat, _register_agent

    reported: set[str] = set()
    server = FakeWandb(entity=ENTITY, run_reported_from=lambda run: run.run_id in reported)
    with serve_fake_wandb(monkeypatch, tmp_path, server) as fake:
        sid = fake.add_sweep(ENTITY, PROJECT, {
            "method": "grid", "program": "train.py",
            "parameters": {"alpha": {"values": [-10.0, 0.5, 2.0]}, "lr": {"value": 1e-4}},
        })
        # A run the sweep already has, with its config: alpha=2 (an int) takes the 2.0 point.
        fake.add_run(ENTITY, PROJECT, "old", config={"alpha": 2, "lr": 1e-4}, sweep_id=sid)
        api = wandb.Api(overrides={"entity": ENTITY, "project": PROJECT})
        a, b = (_register_agent(api, h, sweep_id=sid)["id"] for h in ("host-a", "host-b"))
        (ca,) = _agent_heartbeat(api, a, {}, {})
        (cb,) = _agent_heartbeat(api, b, {}, {})
        assert ca["args"] == cb["args"] == {"alpha": {"value": -10}, "lr": {"value": 1e-4}}
        assert ca["run_id"] != cb["run_id"]
        reported.update({ca["run_id"], cb["run_id"]})
        (ca2,) = _agent_heartbeat(api, a, {}, {})  # a's first run is over
        assert ca2["args"]["alpha"] == {"value": 0.5}
        reported.add(ca2["run_id"])
        # Grid used up; a's second run is still pending: exit, but the sweep is not over yet.
        assert _agent_heartbeat(api, b, {}, {}) == [{"type": "exit"}]
        assert fake.get_sweep(sid).state == "RUNNING"
        assert _agent_heartbeat(api, a, {}, {}) == [{"type": "exit"}]
        assert fake.get_sweep(sid).state == "FINISHED"
        assert [c["args"]["alpha"]["value"] for c in fake.issued(sid)] == [-10, -10, 0.5]


def test_fake_wandb_modules_stay_small():
    """Each module of the fake is at most 450 lines, each function at most 80."""
    modules = sorted((HERE / "fake_wandb").glob("*.py"))
    assert modules
    for path in modules:
        text = path.read_text()
        assert len(text.splitlines()) <= 450, path.name
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                assert node.end_lineno - start + 1 <= 80, f"{path.name}: {node.name}"


def test_wandb_sweep_creates_the_sweep_on_the_fake(fake):
    config = {
        "method": "grid",
        "program": "agent/train.py",
        "command": ["${env}", "${interpreter}", "-m", "agent.train", "${args}"],
        "parameters": {"alpha": {"values": [-1.0, 0.0, 1.0]}, "lr": {"value": 1e-4}},
    }
    sid = wandb.sweep(config, entity=ENTITY, project=PROJECT)
    assert fake.requests[-1] == "UpsertSweep"
    stored = fake.get_sweep(sid)
    assert (stored.entity, stored.project) == (ENTITY, PROJECT)
    assert stored.config == config  # floats survive the YAML round trip
    api = wandb.Api()
    assert api.sweep(f"{ENTITY}/{PROJECT}/{sid}").config == config


# ---------------------------------------------------------------------------
# The agent protocol, through the same client functions `wandb agent` uses
# ---------------------------------------------------------------------------


def test_agent_protocol_grid_one_at_a_time_requeue_and_exit(fake):
    from wandb.apis.public.sweeps import _agent_heartbeat, _register_agent, _sweep_with_runs

    sid = fake.add_sweep(
        ENTITY,
        PROJECT,
        {
            "method": "grid",
            "program": "train.py",
            "parameters": {"alpha": {"values": [-1, 0, 1]}, "lr": {"value": 1e-4}},
        },
    )
    api = wandb.Api(overrides={"entity": ENTITY, "project": PROJECT})
    sweep = _sweep_with_runs(api, sid, "{}")
    assert sweep["name"] == sid and sweep["state"] == "RUNNING"
    agent_id = _register_agent(api, "host-a", sweep_id=sid)["id"]

    (cmd,) = _agent_heartbeat(api, agent_id, {}, {})
    assert cmd["type"] == "run" and cmd["program"] == "train.py"
    assert cmd["args"] == {"alpha": {"value": -1}, "lr": {"value": 1e-4}}
    first = cmd["run_id"]
    # While its run is alive the agent gets nothing new.
    assert _agent_heartbeat(api, agent_id, {}, {first: True}) == []
    assert fake.get_run(ENTITY, PROJECT, first).state == "running"

    # Preempted: the run goes back to the queue and comes back as "resume".
    fake.requeue(first)
    (cmd,) = _agent_heartbeat(api, agent_id, {}, {})
    assert (cmd["type"], cmd["run_id"]) == ("resume", first)
    assert cmd["args"]["alpha"] == {"value": -1}

    seen = []
    for _ in range(2):
        (cmd,) = _agent_heartbeat(api, agent_id, {}, {})
        assert cmd["type"] == "run"
        seen.append(cmd["args"]["alpha"]["value"])
    assert seen == [0, 1]
    assert _agent_heartbeat(api, agent_id, {}, {}) == [{"type": "exit"}]
    assert fake.get_sweep(sid).state == "FINISHED"
    assert [c["args"]["alpha"]["value"] for c in fake.issued(sid)] == [-1, -1, 0, 1]
    # Issued runs are real runs of the sweep for the public API.
    runs = list(api.runs(f"{ENTITY}/{PROJECT}", filters={"sweep": sid}, lazy=False))
    assert [r.config["alpha"] for r in runs] == [-1, 0, 1]
    assert {r.state for r in runs} == {"finished"}
    assert {r.sweep_name for r in runs} == {sid}


@pytest.mark.parametrize("survives", [False, True])
def test_requeue_follows_what_the_run_streamed(monkeypatch, tmp_path, survives):
    """The service's rule (docs.wandb.ai/models/sweeps/signal-handling-sweep-runs) as the fake plays it
    from an online run's own traffic: a run marked preempting (file stream `preempting`) that ends
    non-zero or goes silent is requeued; exit code 0 is finished, marked or not, never requeued.
    Whether a resumed attempt keeps the earlier mark is not documented: `preempting_survives_resume`
    plays both (an unmarked attempt that exits 1 is requeued again only if the mark survives)."""
    from wandb.apis.public.sweeps import _agent_heartbeat, _register_agent

    server = FakeWandb(entity=ENTITY, points_taken_on_upsert=True, preempting_survives_resume=survives)
    with serve_fake_wandb(monkeypatch, tmp_path, server) as fake:
        sid = fake.add_sweep(ENTITY, PROJECT, {"method": "grid", "program": "train.py",
                                               "parameters": {"alpha": {"values": [1, 2, 3]}}})
        api = wandb.Api(overrides={"entity": ENTITY, "project": PROJECT})
        agent = _register_agent(api, "host-a", sweep_id=sid)["id"]

        def next_command() -> tuple[str, str]:  # the agent's heartbeat once its last run is gone
            (cmd,) = _agent_heartbeat(api, agent, {}, {})
            return cmd["type"], cmd.get("run_id", "")

        def attempt(rid: str, *bodies: dict) -> None:  # wandb.init(resume="allow"), then the file stream
            point = {k: {"value": v} for k, v in fake.get_run(ENTITY, PROJECT, rid).config.items()}
            config = {**point, "_wandb": {"value": {"t": {"1": [1]}}}}
            fake._op_RunResumeStatus("", {"entity": ENTITY, "project": PROJECT, "name": rid})
            fake._op_UpsertBucket("", {"entity": ENTITY, "project": PROJECT, "name": rid, "config": json.dumps(config)})
            for body in bodies:
                fake.file_stream(ENTITY, PROJECT, rid, body)

        marked, ends = {"preempting": True}, (lambda code: {"complete": True, "exitcode": code})
        kind, a = next_command()
        attempt(a, marked, ends(143))  # preempted by a signal
        assert next_command() == ("resume", a)
        attempt(a, ends(1))  # the resumed attempt fails without marking itself
        if survives:
            assert next_command() == ("resume", a)
            attempt(a, ends(0))
        kind, b = next_command()
        attempt(b, marked, ends(0))  # marked, exit 0: finished
        fake._op_UpsertBucket("", {"entity": ENTITY, "project": PROJECT, "name": b, "tags": ["late"]})  # no new attempt
        kind, c = next_command()
        assert kind == "run" and c != b
        attempt(c, marked)  # marked, then silence (killed with its wandb-core)
        assert fake.get_run(ENTITY, PROJECT, c).state == "preempting"
        assert next_command() == ("resume", c)
        attempt(c, ends(0))
        assert next_command() == ("exit", "")
        states = {r: fake.get_run(ENTITY, PROJECT, r).state for r in (a, b, c)}
        assert states == {a: "finished" if survives else "failed", b: "finished", c: "finished"}
        assert [cmd["type"] for cmd in fake.issued(sid)] == ["run", "resume", *["resume"] * survives, "run", "run",
                                                             "resume"]


# ---------------------------------------------------------------------------
# The real `wandb agent` CLI, children offline
# ---------------------------------------------------------------------------


def test_wandb_agent_cli_runs_a_grid_end_to_end(fake, tmp_path):
    sid = fake.add_sweep(
        ENTITY,
        PROJECT,
        {
            "method": "grid",
            "program": "log_rows.py",
            # The SPEC's command form, with a module on PYTHONPATH.
            "command": ["${env}", "${interpreter}", "-m", "log_rows", "${args}"],
            "parameters": {
                "alpha": {"values": [-1, 0, 1]},
                "lr": {"value": 0.0001},
                "flag": {"value": False},
            },
        },
    )
    out = tmp_path / "children"
    env = dict(os.environ)
    env.update(
        WANDB_MODE="offline",  # inherited by the children; the agent ignores it
        FAKE_PROGRAM_OUT=str(out),
        PYTHONPATH=os.pathsep.join([str(PROGRAMS), env.get("PYTHONPATH", "")]),
        # ${interpreter} expands to the literal "python": put ours first.
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
    )
    t0 = time.monotonic()
    proc = subprocess.run(
        [*FAST_WANDB_AGENT, f"{ENTITY}/{PROJECT}/{sid}"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=150,
    )
    elapsed = time.monotonic() - t0
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert elapsed < 100, elapsed

    issued = fake.issued(sid)
    assert [c["type"] for c in issued] == ["run"] * 3
    assert [c["args"]["alpha"]["value"] for c in issued] == [-1, 0, 1]
    expanded = "/usr/bin/env python -m log_rows --alpha=-1 --flag=False --lr=0.0001"
    assert f"About to run command: {expanded}" in log

    ops = fake.requests
    assert ops[:3] == ["Viewer", "SweepWithRuns", "CreateAgent"]
    assert ops.count("Heartbeat") >= 4  # three runs, then "exit"
    assert fake.get_sweep(sid).state == "FINISHED"

    for cmd_, alpha in zip(issued, (-1, 0, 1), strict=True):
        rid = cmd_["run_id"]
        seen = json.loads((out / f"{rid}.json").read_text())
        assert seen["argv"] == [f"--alpha={alpha}", "--flag=False", "--lr=0.0001"]
        assert seen["config"] == {"alpha": alpha, "flag": False, "lr": 0.0001}
        assert seen["offline"] is True
        assert Path(seen["executable"]).parent == Path(sys.executable).parent
        e = seen["env"]
        assert e["WANDB_SWEEP_ID"] == sid and e["WANDB_RUN_ID"] == rid
        assert (e["WANDB_ENTITY"], e["WANDB_PROJECT"]) == (ENTITY, PROJECT)
        assert e["WANDB_SWEEP_PARAM_PATH"] == os.path.join(
            os.environ["WANDB_DIR"], "wandb", f"sweep-{sid}", f"config-{rid}.yaml"
        )

        run_dir = Path(seen["run_dir"])
        rows = read_offline_history(run_dir)
        assert [(r["_step"], r["epoch"], r["alpha"]) for r in rows] == [
            (0, 1, alpha), (1, 2, alpha)
        ]
        assert [r["val/mse"] for r in rows] == [1.0 + alpha, 0.5 + alpha]
        info = read_offline_run(run_dir)
        assert info["run_id"] == rid and info["sweep_id"] == sid
        assert info["config"]["alpha"] == alpha and info["complete"]
        assert info["exit_code"] == 0
        assert info["summary"]["epoch"] == 2

    # The agent's runs are registered: the public API lists them.
    api = wandb.Api()
    runs = list(api.runs(f"{ENTITY}/{PROJECT}", filters={"sweep": sid}, lazy=False))
    assert [r.id for r in runs] == [c["run_id"] for c in issued]
    assert [r.config["alpha"] for r in runs] == [-1, 0, 1]
    assert {r.state for r in runs} == {"finished"}

    # A run killed mid-write: the reader keeps the complete records before it.
    wfile = next(Path(json.loads((out / f"{issued[0]['run_id']}.json").read_text())
                      ["run_dir"]).glob("run-*.wandb"))
    cut = tmp_path / "cut" / wfile.name
    cut.parent.mkdir()
    data = wfile.read_bytes()
    cut.write_bytes(data[: len(data) - 40])
    whole = sum(1 for _ in iter_wandb_records(wfile))
    partial = sum(1 for _ in iter_wandb_records(cut))
    assert 0 < partial < whole
    assert not read_offline_run(cut.parent)["complete"]


# ---------------------------------------------------------------------------
# The public API: runs, sweep, history
# ---------------------------------------------------------------------------

KEYS = ["epoch", "val/mse", "val/probe_acc"]


def _populate(fake, n_runs=26, epochs=50):
    alphas = [-10, -5, -2, -1, -0.5, -0.1, -0.05, -0.01, -0.005, -0.001, -0.0001,
              -0.00001, 0.0, 0.00001, 0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5,
              1, 2, 5, 10, 20][:n_runs]
    sid = fake.add_sweep(
        ENTITY, PROJECT,
        {"method": "grid", "parameters": {"alpha": {"values": alphas}}},
    )
    expected = {}
    for i, a in enumerate(alphas):
        rows = [
            {"epoch": e, "val/mse": 1.0 / e + i, "val/probe_acc": 0.01 * e,
             "train/loss": 2.0 / e}
            for e in range(1, epochs + 1)
        ]
        rid = f"run{i:03d}"
        fake.add_run(
            ENTITY, PROJECT, rid,
            config={"alpha": a, "lr": 1.5e-4, "epochs": epochs},
            summary=dict(rows[-1]),
            state="finished" if i else "crashed",
            history_rows=rows,
            sweep_id=sid,
        )
        expected[rid] = (a, rows)
    fake.add_run(ENTITY, PROJECT, "not-in-sweep", config={"alpha": 99})
    return sid, expected


def test_public_api_pulls_26_runs_x_50_epochs_fast(fake):
    sid, expected = _populate(fake)
    api = wandb.Api()
    fake.clear_requests()
    t0 = time.monotonic()
    runs = api.runs(f"{ENTITY}/{PROJECT}", filters={"sweep": sid}, lazy=False)
    assert len(runs) == 26
    pulled = {}
    for run in runs:
        rows = list(run.scan_history(keys=KEYS, page_size=1000))
        pulled[run.id] = (run.config, dict(run.summary), run.state, run.sweep_name, rows)
    elapsed = time.monotonic() - t0
    assert elapsed < 10, elapsed

    assert list(pulled) == list(expected)
    for rid, (config, summary, state, sweep_name, rows) in pulled.items():
        alpha, stored = expected[rid]
        assert config == {"alpha": alpha, "lr": 1.5e-4, "epochs": 50}
        assert summary["epoch"] == 50 and summary["val/mse"] == stored[-1]["val/mse"]
        assert state == ("crashed" if rid == "run000" else "finished")
        assert sweep_name == sid
        assert len(rows) == 50
        # Only the requested keys (plus _step) come back, in step order.
        assert [r["_step"] for r in rows] == list(range(50))
        assert [{k: r[k] for k in KEYS} for r in rows] == [
            {k: s[k] for k in KEYS} for s in stored
        ]
        assert all("train/loss" not in r for r in rows)
    # One runs page (50 per page), then per run: historyKeys, the parquet export (every run has
    # ended, so the service has exported it) read by ranges, and no history page.
    assert fake.count("Runs") == 1 and fake.count("RunParquetHistory") == 26
    assert fake.count("SampledHistoryPage") == fake.count("HistoryPage") == 0
    read = {q.op.split("/")[-2] for q in fake.request_log if q.op.startswith("GET ")}
    assert read == set(expected)
    print(f"\n26 runs x 50 epochs pulled in {elapsed:.2f} s, {fake.count()} requests")


def test_runs_pagination_lazy_and_sweep_object(fake):
    sid, expected = _populate(fake, n_runs=7, epochs=3)
    api = wandb.Api()
    fake.clear_requests()
    runs = api.runs(f"{ENTITY}/{PROJECT}", filters={"sweep": sid}, per_page=3)
    ids = [r.id for r in runs]
    assert ids == list(expected)
    assert fake.count("Runs") == 3  # 3 + 3 + 1
    assert len(runs) == 7
    # lazy=True lists without config; touching it loads the run.
    before = fake.count("Run")
    assert runs[2].config["alpha"] == expected["run002"][0]
    assert fake.count("Run") == before + 1

    newest_first = api.runs(f"{ENTITY}/{PROJECT}", filters={"sweep": sid},
                            order="-created_at")
    assert [r.id for r in newest_first] == ids[::-1]
    finished = api.runs(
        f"{ENTITY}/{PROJECT}",
        filters={"$and": [{"sweep": sid}, {"state": {"$in": ["finished"]}}]},
    )
    assert [r.id for r in finished] == ids[1:]
    negative = api.runs(
        f"{ENTITY}/{PROJECT}",
        filters={"sweep": sid, "config.alpha.value": {"$lt": 0}},
    )
    assert [r.id for r in negative] == ids  # the 7 most negative alphas
    assert len(api.runs(f"{ENTITY}/{PROJECT}", filters={"config.alpha": 99})) == 1
    everything = api.runs(f"{ENTITY}/{PROJECT}")
    assert len(everything) == 8

    sweep = api.sweep(f"{ENTITY}/{PROJECT}/{sid}")
    assert sweep.id == sid
    assert sweep.config["method"] == "grid"
    assert sweep.config["parameters"]["alpha"]["values"][:3] == [-10, -5, -2]
    assert [r.id for r in sweep.runs] == ids
    assert sweep.expected_run_count == 7


def test_scan_history_keeps_only_rows_with_all_keys_and_pages(fake):
    """Through history pages (a run not exported yet); the export path: tests/test_parquet_export.py."""
    fake.parquet_history = False
    rows = [{"epoch": e, "val/mse": 1.0 / e} for e in range(1, 26)]
    for r in rows[::5]:
        r["val/knn_acc"] = 0.5  # only every 5th epoch has k-NN
    fake.add_run(ENTITY, PROJECT, "knn", config={"alpha": 0.0}, history_rows=rows)
    api = wandb.Api()
    run = api.run(f"{ENTITY}/{PROJECT}/knn")

    knn = list(run.scan_history(keys=["epoch", "val/knn_acc"], page_size=7))
    assert [r["epoch"] for r in knn] == [1, 6, 11, 16, 21]
    assert all(set(r) == {"_step", "epoch", "val/knn_acc"} for r in knn)

    fake.clear_requests()
    full = list(run.scan_history(page_size=10))
    assert [r["epoch"] for r in full] == list(range(1, 26))
    assert fake.count("HistoryPage") == 3
    assert full[0] == {"_step": 0, "epoch": 1, "val/mse": 1.0, "val/knn_acc": 0.5}

    sampled = run.history(keys=["val/mse"], pandas=False)
    assert len(sampled) == 25 and set(sampled[0]) == {"_step", "val/mse"}
    assert len(run.history(pandas=False)) == 25


# ---------------------------------------------------------------------------
# Faults and auth
# ---------------------------------------------------------------------------


def test_429_twice_then_200_is_retried_by_wandb_core(fake):
    sid, expected = _populate(fake, n_runs=3, epochs=2)
    api = wandb.Api()
    fake.clear_requests()
    # Retry-After: 0 keeps the test fast; wandb-core honours the header.
    fake.fail_next(429, times=2, headers={"Retry-After": "0"}, op="Runs")
    t0 = time.monotonic()
    runs = list(api.runs(f"{ENTITY}/{PROJECT}", filters={"sweep": sid}, lazy=False))
    assert [r.id for r in runs] == list(expected)
    assert fake.count("Runs") == 3
    assert [q.status for q in fake.request_log if q.op == "Runs"] == [429, 429, 200]
    assert fake.pending_faults() == 0

    fake.fail_next(500, times=1, headers={"Retry-After": "0"})  # any next request
    rows = list(runs[1].scan_history(keys=["epoch"]))
    assert [r["epoch"] for r in rows] == [1, 2]
    assert 500 in [q.status for q in fake.request_log]
    assert time.monotonic() - t0 < 10


def test_retry_after_is_honoured(fake):
    fake.add_run(ENTITY, PROJECT, "r", config={"alpha": 1})
    api = wandb.Api()
    fake.fail_next(429, times=1, headers={"Retry-After": "1"}, op="Run")
    t0 = time.monotonic()
    assert api.run(f"{ENTITY}/{PROJECT}/r").config == {"alpha": 1}
    assert 0.9 < time.monotonic() - t0 < 5
    assert [q.status for q in fake.request_log if q.op == "Run"] == [429, 200]


def _post(url, body, key=None):
    req = urllib.request.Request(
        url + "/graphql", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    if key is not None:
        req.add_header("Authorization",
                       "Basic " + base64.b64encode(f"api:{key}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw or b"{}")
        except ValueError:
            return e.code, raw.decode()


def test_auth_request_log_and_unknown_operations():
    with FakeWandb(require_api_key=True) as strict, FakeWandb() as lenient:
        q = {"query": "query Viewer { viewer { entity } }"}
        assert _post(strict.url, q)[0] == 401
        assert _post(strict.url, q, key="x" * 40)[0] == 401
        status, body = _post(strict.url, q, key=strict.api_key)
        assert status == 200 and body["data"]["viewer"]["entity"] == "fake-entity"
        assert _post(lenient.url, q, key="0123456789" * 4)[0] == 200
        status, body = _post(lenient.url, {"query": "query Nope { x }"}, key="k" * 40)
        assert status == 200 and "unsupported operation 'Nope'" in body["errors"][0]["message"]
        assert lenient.requests == ["Viewer", "Nope"]
        lenient.clear_requests()
        assert lenient.count() == 0
        lenient.fail_next(503, times=1, body="busy")
        assert _post(lenient.url, q, key="k" * 40)[0] == 503
        assert _post(lenient.url, q, key="k" * 40)[0] == 200
