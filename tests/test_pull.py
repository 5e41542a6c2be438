"""analysis.pull.api and analysis.pull.offline against the real wandb client.

The W&B API path runs the real `wandb.Api()` (through wandb-core) against the fake backend
of tests/fake_wandb.py on 127.0.0.1; the offline path reads runs written by real
`wandb.init(mode="offline")` programs. CPU only, no network, isolated W&B folders per test.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from conftest import FAKE_ENTITY, isolated_wandb_env  # noqa: E402
from fake_wandb.common import _GraphQLError  # noqa: E402

from analysis import (  # noqa: E402
    ALPHA,
    ALPHA_MODE,
    EPOCH,
    LR,
    METRIC_COLUMNS,
    RUN_ID,
    RUN_NAME,
    SEED,
    STATE,
    STEPS,
    TIDY_COLUMNS,
    TIDY_DTYPES,
)
from analysis.pull.offline import load_offline_runs  # noqa: E402
from analysis.pull.api import pull_sweep  # noqa: E402
from analysis.pull.retries import RetryPolicy, RetryStats, call_with_retries, classify_error  # noqa: E402
from analysis.pull.runs import PullError, PullIncomplete, RunInfo  # noqa: E402
from analysis.pull.selection import select_runs  # noqa: E402
from analysis.pull.tidy import tidy_table  # noqa: E402
from mae_gap import metrics as M  # noqa: E402

wandb = pytest.importorskip("wandb")
from wandb.sdk import wandb_setup  # noqa: E402

ENTITY, PROJECT = FAKE_ENTITY, "mae-gap-fake"
# wandb >= 0.31 sends the login check through wandb-core too, which hands its errors to Python; older
# wandb retries that check in Python (wandb/sdk/lib/retry.py), so fewer failures reach the pull.
WANDB_CORE_LOGIN = tuple(int(x) for x in wandb.__version__.split(".")[:2]) >= (0, 31)
ALPHAS = [-10, -5, -2, -1, -0.5, -0.1, -0.05, -0.01, -0.005, -0.001, -0.0001, -0.00001, 0.0,
          0.00001, 0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 20]
# Fast retries for tests: our backoff in ms (wandb-core's own single retry waits ~2 s).
FAST = RetryPolicy(attempts=3, base_s=0.02, cap_s=0.1)
NO_RETRY = RetryPolicy(attempts=1)  # only wandb-core's one retry


# --------------------------------------------------------------------------- fixtures, data


@pytest.fixture
def fake(fake_wandb):
    """conftest's fake_wandb: a started FakeWandb for ENTITY, this process's wandb pointed at it."""
    return fake_wandb


def epoch_rows(i: int, epochs: int, knn_every: int = 5, nan_knn: bool = False, **drop) -> list[dict]:
    """History rows as agent.train logs them: every SPEC section 4 key, val/knn_acc only every
    `knn_every` epochs (absent on the others, or NaN with nan_knn, as the training logs it)."""
    rows = []
    for e in range(1, epochs + 1):
        mse = 0.9 / e + 0.01 * i
        row = {
            M.EPOCH: e,
            M.VAL_MSE: mse,
            M.VAL_MSE_PIXEL: 1.1 * mse,
            M.VAL_LINEAR_ACC: 0.15 + 0.8 * (1 - 1 / e) * (1 - 0.01 * i),
            M.VAL_PROBE_ACC: 0.1 + 0.8 * (1 - 1 / e) * (1 - 0.01 * i),
            M.VAL_HEAD_ACC: 0.1 + 0.5 * (1 - 1 / e),
            M.TRAIN_LOSS: 2.0 / e,
            M.TRAIN_REC_LOSS: 1.0 / e,
            M.TRAIN_HEAD_CE: 0.5 / e,
            M.TRAIN_PROBE_CE: 0.4 / e,
            M.TRAIN_HEAD_ACC: 0.3 + 0.01 * e,
            M.TRAIN_LR: 1e-4 * (1 - e / (epochs + 1)),
            M.TRAIN_GRAD_RATIO: 0.5,
            M.PERF_IMG_PER_S: 1000.0 + e,
            M.PERF_EPOCH_S: 2.5,
        }
        if e % knn_every == 0:
            row[M.VAL_KNN_ACC] = 0.2 + 0.01 * e
        elif nan_knn:
            row[M.VAL_KNN_ACC] = float("nan")
        for key in drop.get("without", ()):
            row.pop(key, None)
        rows.append(row)
    return rows


def populate(fake, n_runs=26, epochs=50, states=None, lrs=(1.5e-4,)):
    """A sweep of n_runs runs x epochs epochs on the fake; returns (sweep id, {run id: (config,
    state, rows)}) in creation order."""
    sid = fake.add_sweep(ENTITY, PROJECT, {"method": "grid", "parameters": {
        "alpha": {"values": ALPHAS[:n_runs]}, "lr": {"values": list(lrs)}}})
    served = {}
    for i in range(n_runs):
        cfg = {"alpha": ALPHAS[i], "lr": lrs[i % len(lrs)], "seed": 0, "epochs": epochs,
               "git_commit": f"c{i}"}
        state = (states or {}).get(i, "finished")
        rows = epoch_rows(i, epochs)
        rid = f"r{i:03d}"
        fake.add_run(ENTITY, PROJECT, rid, config=cfg, summary=dict(rows[-1]), state=state,
                     history_rows=rows, sweep_id=sid, display_name=f"run-{i}")
        served[rid] = (cfg, state, rows)
    fake.add_run(ENTITY, PROJECT, "other", config={"alpha": 99.0}, history_rows=epoch_rows(0, 2))
    return sid, served


def expected_table(served: dict, names: dict | None = None, state_map=None) -> pd.DataFrame:
    """The tidy table built straight from what the backend served (independent of analysis)."""
    recs = []
    for rid, (cfg, state, rows) in served.items():
        by_epoch = {}
        for row in rows:  # last write wins per key
            by_epoch.setdefault(int(row[M.EPOCH]), {}).update(
                {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))})
        for e in sorted(by_epoch):
            row = by_epoch[e]
            rec = {RUN_ID: rid, RUN_NAME: (names or {}).get(rid, f"run-{rid[1:].lstrip('0') or '0'}"),
                   ALPHA: float(cfg["alpha"]), ALPHA_MODE: "grl", LR: float(cfg["lr"]), SEED: int(cfg["seed"]),
                   STEPS: -1,
                   STATE: (state_map or {}).get(state, state), EPOCH: e}
            for k in METRIC_COLUMNS:
                rec[k] = float(row.get(k, np.nan))
            recs.append(rec)
    return pd.DataFrame(recs, columns=list(TIDY_COLUMNS)).astype(TIDY_DTYPES)


# --------------------------------------------------------------------------- 1. the API pull


def test_api_pull_26x50_equals_served_then_cache_makes_no_request(fake, tmp_path, capsys):
    sid, served = populate(fake)
    out = tmp_path / "out"
    fake.clear_requests()
    t0 = time.monotonic()
    res = pull_sweep(f"{ENTITY}/{PROJECT}/{sid}", out)
    first = time.monotonic() - t0
    with capsys.disabled():
        print(f"\n[pull] 26 runs x 50 epochs through wandb.Api(): {first:.2f} s, "
              f"{fake.count()} GraphQL requests")
    assert first <= 10, first
    assert res.source == "api" and res.requests_made
    assert fake.count("Runs") == 1  # one runs query with the sweep filter, config+summary in it
    assert [json.loads(q.variables["filters"]) for q in fake.request_log if q.op == "Runs"] == [{"sweep": sid}]
    assert fake.count("Run") == 0  # lazy=False: no per-run reload
    assert len(res.runs) == 26 and sorted(res.pulled) == sorted(served)

    expected = expected_table(served)
    pd.testing.assert_frame_equal(res.table, expected)
    assert res.table[M.VAL_KNN_ACC].notna().sum() == 26 * 10  # the optional key is not lost
    assert res.table.groupby(RUN_ID).size().eq(50).all()  # ...nor the epochs without it
    assert res.duplicate_epochs == {} and res.retries == 0

    # A re-run reads the cache: no request at all (not even a login check); W&B is not even
    # started. (Stop the first pull's wandb-core first: it posts telemetry on its own.)
    wandb.teardown()
    fake.clear_requests()
    t0 = time.monotonic()
    again = pull_sweep(f"{ENTITY}/{PROJECT}/{sid}", out)
    assert fake.request_log == [] and again.source == "cache" and not again.requests_made
    assert wandb_setup._singleton is None
    assert time.monotonic() - t0 < 2
    pd.testing.assert_frame_equal(again.table, expected)
    # The bare sweep id finds the same cache (entity/project unknown, still no request).
    assert pull_sweep(sid, out).source == "cache" and fake.request_log == []

    refreshed = pull_sweep(f"{ENTITY}/{PROJECT}/{sid}", out, refresh=True)
    # every run has ended: its history comes from the service's parquet export, no history page
    assert fake.count("Runs") == 1 and fake.count("RunParquetHistory") == 26 and fake.count("HistoryPage") == 0
    pd.testing.assert_frame_equal(refreshed.table, expected)


def test_sweep_ids_and_missing_sweep(fake, tmp_path):
    """The sweep path's rules are tested with its parser (tests/test_launch.py); here what the pull
    makes of them."""
    with pytest.raises(PullError, match="expected ENTITY/PROJECT/ID"):
        pull_sweep("a/b/c/d", tmp_path / "o0")
    sid, _ = populate(fake, n_runs=2, epochs=3)
    with pytest.raises(PullError, match=r"no W&B project"):
        pull_sweep("nosuch", tmp_path / "o1")
    with pytest.raises(PullError, match=r"sweep fake-team/mae-gap-fake/nosuch not found"):
        pull_sweep(f"{ENTITY}/{PROJECT}/nosuch", tmp_path / "o2", policy=FAST)
    # A bare id + --project: the entity is the viewer's default one.
    res = pull_sweep(sid, tmp_path / "o3", project=PROJECT, policy=FAST)
    assert res.sweep == f"{ENTITY}/{PROJECT}/{sid}" and len(res.runs) == 2


# --------------------------------------------------------------------------- 2. offline == API

OFFLINE_PROGRAM = textwrap.dedent(
    """
    import json, os, sys
    import wandb
    from analysis.wandb_io.compat import run_settings

    spec = json.load(open(sys.argv[1]))
    for r in spec["runs"]:
        run = wandb.init(mode="offline", project=spec["project"], group=spec["group"], id=r["id"],
                         name=r["name"], config=r["config"], resume="allow", job_type="train",
                         settings=run_settings(flush_interval_s=0.05))
        run.define_metric("epoch")
        for key in spec["keys"]:
            run.define_metric(key, step_metric="epoch")
        for row in r["rows"]:
            run.log({k: (float("nan") if v is None else v) for k, v in row.items()})
        if r.get("crash"):
            import time
            time.sleep(0.5)  # let wandb-core write the records, then die without an exit record
            os._exit(9)
        run.finish(exit_code=r.get("exit_code", 0))
    """
)


def write_offline_runs(tmp_path: Path, runs: list[dict], group: str, wandb_dir: Path) -> None:
    """Runs the offline program (a real wandb.init per entry) with WANDB_DIR=wandb_dir."""
    prog = tmp_path / "log_epochs.py"
    prog.write_text(OFFLINE_PROGRAM)
    spec = tmp_path / "runs.json"
    spec.write_text(json.dumps({"project": PROJECT, "group": group, "runs": runs,
                                "keys": list(M.EPOCH_KEYS[1:])}))
    env = isolated_wandb_env(tmp_path, wandb_dir=wandb_dir)  # offline; no WANDB_BASE_URL
    proc = subprocess.run([sys.executable, str(prog), str(spec)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode in (0, 9), proc.stderr[-3000:]


def _json_rows(rows):
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows]


def test_offline_reader_equals_api_pull_of_the_same_runs(fake, tmp_path):
    group = "sw-local1"
    runs = []
    for i in range(4):
        runs.append({"id": f"off{i}", "name": f"run-{i}", "rows": _json_rows(epoch_rows(i, 6, knn_every=3, nan_knn=True)),
                     "config": {"alpha": ALPHAS[i * 6], "lr": 1e-4, "seed": i, "epochs": 6}})
    runs[2]["exit_code"] = 1  # failed
    # off1 is preempted after epoch 4 and resumed: a second folder re-logs epoch 4 (new value).
    resumed = dict(runs[1])
    runs[1] = {**runs[1], "rows": runs[1]["rows"][:4], "exit_code": 143}
    relogged = [dict(r) for r in resumed["rows"][3:]]
    relogged[0][M.VAL_MSE] = 0.123
    runs.append({**resumed, "rows": relogged})
    wdir = tmp_path / "wdir"
    write_offline_runs(tmp_path, runs, group, wdir)

    folders = sorted(p.name for p in (wdir / "wandb").iterdir() if p.name.startswith("offline-run-"))
    assert len(folders) == 5 and sum(f.split("-")[3] == "off1" for f in folders) == 2
    result = load_offline_runs(wdir)  # the WANDB_DIR; wdir/"wandb" works as well
    table = result.table
    assert result.sweep == group and result.source == "offline"
    assert [r.run_id for r in result.runs] == ["off0", "off1", "off2", "off3"]
    assert {r.run_id: r.state for r in result.runs} == {
        "off0": "finished", "off1": "finished", "off2": "failed", "off3": "finished"}
    assert result.duplicate_epochs == {"off1": 1}
    off1 = table[table[RUN_ID] == "off1"]
    assert off1[EPOCH].tolist() == [1, 2, 3, 4, 5, 6]
    assert off1.loc[off1[EPOCH] == 4, M.VAL_MSE].item() == 0.123  # the resumed run's value wins
    pd.testing.assert_frame_equal(load_offline_runs(wdir / "wandb").table, table)

    # The same runs served by the backend: pulled through wandb.Api(), the same tidy table.
    sid = fake.add_sweep(ENTITY, PROJECT, {"method": "grid", "parameters": {"alpha": {"values": [0]}}},
                         sweep_id=group)
    merged_rows: dict[str, list] = {}
    for r in runs:
        merged_rows.setdefault(r["id"], []).extend(
            {k: v for k, v in row.items() if v is not None} for row in r["rows"])  # no NaN on the wire
    states = {"off0": "finished", "off1": "finished", "off2": "failed", "off3": "finished"}
    for r in runs[:4]:
        fake.add_run(ENTITY, PROJECT, r["id"], config=r["config"], state=states[r["id"]],
                     history_rows=merged_rows[r["id"]], sweep_id=sid, display_name=r["name"])
    pulled = pull_sweep(f"{ENTITY}/{PROJECT}/{sid}", tmp_path / "out", policy=FAST)
    pd.testing.assert_frame_equal(pulled.table, table)
    assert pulled.duplicate_epochs == result.duplicate_epochs


def test_offline_layouts_crashed_runs_and_sweep_choice(tmp_path):
    wdir = tmp_path / "w"
    runs = [{"id": "aa1", "name": "a", "rows": _json_rows(epoch_rows(0, 3)), "config": {"alpha": 1.0, "lr": 1e-3, "seed": 0}},
            {"id": "cc1", "name": "c", "rows": _json_rows(epoch_rows(1, 3)), "config": {"alpha": -1.0, "lr": 1e-3, "seed": 0},
             "crash": True}]
    write_offline_runs(tmp_path, runs, "grp-A", wdir)
    res = load_offline_runs(wdir / "wandb")
    assert {r.run_id: r.state for r in res.runs} == {"aa1": "finished", "cc1": "crashed"}
    # A crashed run keeps what wandb-core flushed to its run file while it ran (here every 50 ms:
    # Settings.x_transaction_log_flush_interval, the reason for the wandb >= 0.31 floor).
    assert res.table.groupby(RUN_ID).size().to_dict() == {"aa1": 3, "cc1": 3}
    # agent.local's layout: WANDB_DIR/wandb/offline-run-<time>-<id>/run-<id>.wandb (+ latest-run link)
    assert (wdir / "wandb" / "latest-run").is_symlink()
    # One run folder on its own works too.
    one = next(p for p in (wdir / "wandb").iterdir() if p.name.endswith("-aa1"))
    assert [r.run_id for r in load_offline_runs(one).runs] == ["aa1"]

    # A second sweep in the same folder: the SWEEP argument picks one, none -> clear error.
    write_offline_runs(tmp_path, [{"id": "bb1", "name": "b", "rows": _json_rows(epoch_rows(2, 2)),
                                   "config": {"alpha": 0.0, "lr": 1e-3, "seed": 0}}], "grp-B", wdir)
    with pytest.raises(PullError, match="2 sweeps/groups"):
        load_offline_runs(wdir)
    assert [r.run_id for r in load_offline_runs(wdir, ["grp-B"]).runs] == ["bb1"]
    both = load_offline_runs(wdir, ["grp-B", "grp-A"])  # one study in two sweeps, the folder read once
    assert [r.run_id for r in both.runs] == ["bb1", "aa1", "cc1"] and both.sweep_id == "grp-B+grp-A"
    with pytest.raises(PullError, match="run bb1 is in two of the sweeps given"):
        load_offline_runs(wdir, ["grp-B", "grp-B"])
    with pytest.raises(PullError, match="no offline runs of sweep nope"):
        load_offline_runs(wdir, ["nope"])
    with pytest.raises(PullError, match="does not exist"):
        load_offline_runs(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PullError, match="no offline W&B runs"):
        load_offline_runs(tmp_path / "empty")


# --------------------------------------------------------------------------- 3. run selection


def _run(rid, state="finished", alpha=0.5, lr=1e-4, seed=0, **extra):
    return RunInfo(rid, f"name-{rid}", state, wandb_state=state,
                   config={"alpha": alpha, "lr": lr, "seed": seed, **extra.pop("config", {})}, **extra)


def test_select_runs_names_every_exclusion():
    runs = [
        _run("ok1", alpha=-1.0),
        _run("crash", "crashed", alpha=-0.5),
        _run("fail", "failed", alpha=0.0, summary={M.FAILURE_REASON: "non-finite loss at epoch 3"}),
        _run("live", "running", alpha=0.1),
        _run("noacc", alpha=0.2),
        _run("dupA", "crashed", alpha=1.0),
        _run("dupB", alpha=1.0, config={"git_commit": "other"}),  # same grid point, finished
        _run("dupC", alpha=1.0),
        _run("empty", alpha=2.0),
        _run("otherseed", alpha=1.0, seed=1),
    ]
    hist = {r.run_id: epoch_rows(i, 4) for i, r in enumerate(runs) if r.run_id != "empty"}
    hist["noacc"] = epoch_rows(4, 4, without=(M.VAL_PROBE_ACC,))
    table, _, _ = tidy_table(runs, hist)

    used, excl = select_runs(table, M.VAL_PROBE_ACC, M.VAL_MSE, runs=runs)
    reasons = {e.run_name: e.reason for e in excl}
    assert set(used[RUN_ID].unique()) == {"ok1", "dupB", "otherseed"}
    assert reasons["name-crash"] == "crashed"
    assert reasons["name-fail"] == "failed: non-finite loss at epoch 3"
    assert reasons["name-live"].startswith("running")
    assert reasons["name-noacc"] == f"no {M.VAL_PROBE_ACC} values"
    assert reasons["name-dupA"] == "crashed"
    assert reasons["name-dupC"].startswith("duplicate grid point of name-dupB (dupB)")
    assert reasons["name-empty"].startswith("no history")
    assert [e.run_id for e in excl] == ["crash", "fail", "live", "noacc", "dupA", "dupC", "empty"]
    assert str(excl[0]) == "name-crash (crash): crashed"

    used, excl = select_runs(table, M.VAL_PROBE_ACC, M.VAL_MSE, include_unfinished=True, runs=runs)
    reasons = {e.run_id: e.reason for e in excl}
    assert set(used[RUN_ID].unique()) == {"ok1", "crash", "fail", "live", "dupB", "otherseed"}
    assert reasons["dupA"].startswith("duplicate grid point of name-dupB")  # first *finished* kept
    assert reasons["dupC"].startswith("duplicate grid point of name-dupB")
    assert set(reasons) == {"noacc", "dupA", "dupC", "empty"}

    # Without the run list: runs come from the table; duplicates by alpha, lr, seed.
    used, excl = select_runs(table, M.VAL_PROBE_ACC, M.VAL_MSE)
    assert "empty" not in {e.run_id for e in excl}  # no rows -> invisible without `runs`
    assert set(used[RUN_ID].unique()) == {"ok1", "dupB", "otherseed"}
    # A metric the table lacks entirely: every run is named, none silently dropped.
    used, excl = select_runs(table.drop(columns=[M.VAL_MSE]), M.VAL_PROBE_ACC, M.VAL_MSE, runs=runs[:1])
    assert used.empty and excl[0].reason == f"no {M.VAL_MSE} values"


def test_tidy_table_dedupes_resumed_epochs_and_ignores_rows_without_epoch():
    run = _run("r1")
    rows = epoch_rows(0, 3) + [{"trainer/global_step": 7}] + [{M.EPOCH: 3.0, M.VAL_MSE: 0.5, M.VAL_KNN_ACC: "NaN"}]
    table, dups, ignored = tidy_table([run], {"r1": rows})
    assert table[EPOCH].tolist() == [1, 2, 3] and dups == {"r1": 1} and ignored == 1
    last = table.iloc[-1]
    assert last[M.VAL_MSE] == 0.5  # the re-logged value
    assert last[M.VAL_PROBE_ACC] == rows[2][M.VAL_PROBE_ACC]  # kept from the first logging
    assert list(table.columns) == list(TIDY_COLUMNS)
    pd.testing.assert_frame_equal(table, table.astype(TIDY_DTYPES))


# --------------------------------------------------------------------------- 6. resilience


def test_retry_classification_and_backoff():
    def err(msg):
        return RuntimeError(msg)

    assert classify_error(err("POST x giving up after 2 attempt(s)\nwhile retrying: HTTP 429: slow")) == (True, "HTTP 429", 2)
    assert classify_error(err("HTTP 503: busy"))[:2] == (True, "HTTP 503")
    assert classify_error(err("HTTP 404: not found"))[:2] == (False, "HTTP 404")
    assert classify_error(TimeoutError("x"))[0] and classify_error(err("context deadline exceeded"))[0]
    assert not classify_error(ValueError("sweep not found"))[0]
    stats, calls, sleeps = RetryStats(), [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise err("giving up after 2 attempt(s): HTTP 429: x")
        return "ok"

    policy = RetryPolicy(attempts=4, base_s=1.0, cap_s=1.5, rate_cap_s=1.5)
    assert call_with_retries(flaky, "op", policy, stats, sleep=sleeps.append) == "ok"
    assert stats.retries == 2 and stats.failures == {"HTTP 429": 4}
    assert 0.49 <= sleeps[0] <= 1.0 and 0.74 <= sleeps[1] <= 1.5  # doubling, capped, jittered
    with pytest.raises(RuntimeError):
        call_with_retries(lambda: (_ for _ in ()).throw(err("HTTP 401: no")), "op", policy, stats, sleep=sleeps.append)
    assert stats.retries == 2  # not retried


def test_rate_limits_are_waited_out_for_their_patience_not_a_fixed_count():
    stats, calls, sleeps = RetryStats(), [], []

    def limited(n):
        def fn():
            calls.append(1)
            if len(calls) <= n:
                raise RuntimeError("giving up after 2 attempt(s): HTTP 429: rate limit exceeded")
            return "ok"
        return fn

    # 10 rate-limited answers, more than `attempts`, within the patience: it finishes
    policy = RetryPolicy(attempts=3, base_s=0.01, rate_cap_s=0.01, rate_limit_patience_s=5.0)
    assert call_with_retries(limited(10), "op", policy, stats, sleep=sleeps.append) == "ok"
    assert stats.retries == 10 and len(calls) == 11
    # beyond the patience it gives up, with the 429
    calls.clear()
    with pytest.raises(RuntimeError, match="429"):
        call_with_retries(limited(1000), "op", RetryPolicy(base_s=0.01, rate_cap_s=0.01, rate_limit_patience_s=0.05),
                          RetryStats(), sleep=lambda s: None)
    assert len(calls) < 1000


def test_a_rate_limit_window_with_ratelimit_reset_still_finishes(fake, tmp_path):
    # The service answers 429 (RateLimit-Remaining: 0, RateLimit-Reset: s) to every request for 3 s:
    # more than wandb-core's one retry and more than the retry count of other errors.
    sid, served = populate(fake, n_runs=6, epochs=3)
    fake.clear_requests()
    fake.rate_limit(3.0)
    out = tmp_path / "out"
    t0 = time.monotonic()
    res = pull_sweep(f"{ENTITY}/{PROJECT}/{sid}", out,
                     policy=RetryPolicy(attempts=2, base_s=0.5, rate_cap_s=1.0, rate_limit_patience_s=30.0))
    assert time.monotonic() - t0 >= 2.5
    pd.testing.assert_frame_equal(res.table, expected_table(served))
    limited = [q for q in fake.request_log if q.status == 429]
    assert limited and (res.failures.get("HTTP 429", 0) >= 1 or not WANDB_CORE_LOGIN)
    fake.clear_requests()
    assert pull_sweep(f"{ENTITY}/{PROJECT}/{sid}", out).source == "cache" and fake.count() == 0


def test_429_and_500_are_retried_and_the_table_is_complete(fake, tmp_path):
    sid, served = populate(fake, n_runs=5, epochs=4)
    fake.clear_requests()
    fake.fail_next(429, times=2, headers={"Retry-After": "1"})
    fake.fail_next(500, times=1)
    res = pull_sweep(f"{ENTITY}/{PROJECT}/{sid}", tmp_path / "out", policy=FAST)
    pd.testing.assert_frame_equal(res.table, expected_table(served))
    statuses = [q.status for q in fake.request_log if q.path.endswith("graphql")]
    assert statuses[:3] == [429, 429, 500] and fake.pending_faults() == 0
    if WANDB_CORE_LOGIN:
        # wandb-core retried the first 429 (after Retry-After) and the 500 itself; the second 429
        # reached analysis.pull, which retried the operation and counted it.
        assert res.retries == 1 and res.failures == {"HTTP 429": 2}


def test_failed_last_step_requests_never_drop_a_run_or_cache_an_empty_history(fake, tmp_path):
    # The listing (lazy=False) carries each run's historyKeys, so no RunHistoryKeys request is made
    # per run; the one scan_history makes is retried. Failing it (twice, wandb-core retrying once)
    # must neither drop the run nor cache an empty history for it.
    sid, served = populate(fake, n_runs=4, epochs=3)
    fake.clear_requests()
    fake.fail_next(500, times=4, op="RunHistoryKeys")
    out = tmp_path / "out"
    res = pull_sweep(f"{ENTITY}/{PROJECT}/{sid}", out, policy=FAST)
    pd.testing.assert_frame_equal(res.table, expected_table(served))
    assert fake.pending_faults() == 0
    fake.clear_requests()
    again = pull_sweep(f"{ENTITY}/{PROJECT}/{sid}", out, policy=FAST)
    assert again.source == "cache" and fake.count() == 0
    pd.testing.assert_frame_equal(again.table, expected_table(served))


def test_an_empty_history_of_a_run_with_rows_is_retried_not_cached(fake, tmp_path, monkeypatch):
    fake.parquet_history = False  # not exported yet: wandb-core pages through HistoryPage
    sid, served = populate(fake, n_runs=2, epochs=3)
    real = fake._op_HistoryPage
    calls = {"n": 0}

    def flaky(q, v):  # the first page request of r001 answers "no rows"
        calls["n"] += 1
        if v.get("run") == "r001" and calls.setdefault("r001", 0) == 0:
            calls["r001"] = 1
            return {"project": {"run": {"history": []}}}
        return real(q, v)

    monkeypatch.setattr(fake, "_op_HistoryPage", flaky)
    res = pull_sweep(f"{ENTITY}/{PROJECT}/{sid}", tmp_path / "out", policy=FAST)
    pd.testing.assert_frame_equal(res.table, expected_table(served))
    assert res.retries >= 1


def test_interrupted_pull_resumes_only_the_missing_run(fake, tmp_path, monkeypatch):
    sid, served = populate(fake, n_runs=6, epochs=5)
    blocked = {"on": True}
    real = fake._op_RunParquetHistory

    def export(q, v):  # every run has ended: the history comes through its parquet export
        if blocked["on"] and v.get("runName") == "r003":
            raise _GraphQLError("backend down for this run", status=500)
        return real(q, v)

    monkeypatch.setattr(fake, "_op_RunParquetHistory", export)
    out = tmp_path / "out"
    with pytest.raises(PullIncomplete, match=r"could not pull 1 of 6 run histories \(run-3 \(r003\)") as err:
        pull_sweep(f"{ENTITY}/{PROJECT}/{sid}", out, policy=NO_RETRY)
    assert list(err.value.failed) == ["r003"]
    cached = sorted(p.stem for p in (out / "cache" / sid / "history").glob("*.parquet"))
    assert cached == ["r000", "r001", "r002", "r004", "r005"]

    blocked["on"] = False
    fake.clear_requests()
    res = pull_sweep(f"{ENTITY}/{PROJECT}/{sid}", out, policy=FAST)
    assert res.pulled == ["r003"] and sorted(res.cached) == ["r000", "r001", "r002", "r004", "r005"]
    assert fake.count("Runs") == 1
    assert [q.variables.get("runName") for q in fake.request_log if q.op == "RunParquetHistory"] == ["r003"]
    pd.testing.assert_frame_equal(res.table, expected_table(served))
    fake.clear_requests()
    assert pull_sweep(f"{ENTITY}/{PROJECT}/{sid}", out).source == "cache" and fake.count() == 0


def test_running_runs_are_reported_and_re_pulled(fake, tmp_path):
    sid, served = populate(fake, n_runs=3, epochs=4, states={1: "running"})
    out = tmp_path / "out"
    res = pull_sweep(f"{ENTITY}/{PROJECT}/{sid}", out, policy=FAST)
    used, excl = select_runs(res.table, M.VAL_PROBE_ACC, M.VAL_MSE, runs=res.runs)
    assert [(e.run_name, e.reason) for e in excl] == [("run-1", "running (still in progress)")]
    # The run goes on and finishes: a re-run (no --refresh) re-pulls that run only.
    cfg, _, rows = served["r001"]
    more = rows + epoch_rows(1, 6)[4:]
    fake.add_run(ENTITY, PROJECT, "r001", config=cfg, state="finished", history_rows=more,
                 sweep_id=sid, display_name="run-1")
    fake.clear_requests()
    res = pull_sweep(f"{ENTITY}/{PROJECT}/{sid}", out, policy=FAST)
    assert res.pulled == ["r001"] and fake.count("Runs") == 1
    assert res.table[res.table[RUN_ID] == "r001"][EPOCH].tolist() == [1, 2, 3, 4, 5, 6]
    assert select_runs(res.table, M.VAL_PROBE_ACC, M.VAL_MSE, runs=res.runs)[1] == []


def test_run_columns_record_what_ran_and_duplicates_follow_it():
    # confusion at alpha >= 0 ran grl; blr runs log their effective_lr; total_steps is carried
    runs = [
        RunInfo("g0", "grl-0", "finished", config={"alpha": 0.0, "alpha_mode": "grl", "lr": 1e-3, "seed": 0,
                                                   "total_steps": 60}),
        RunInfo("c0", "conf-0", "finished", config={"alpha": 0.0, "alpha_mode": "confusion", "lr": 1e-3, "seed": 0,
                                                    "total_steps": 60}),
        RunInfo("cn", "conf-neg", "finished", config={"alpha": -1.0, "alpha_mode": "confusion", "lr": 1e-3,
                                                      "seed": 0}),
        RunInfo("b", "blr", "finished", config={"alpha": 1.0, "lr": 1.5e-4, "blr": 1e-3, "effective_lr": 5e-4,
                                                "seed": 0}),
    ]
    table, _, _ = tidy_table(runs, {r.run_id: epoch_rows(i, 2) for i, r in enumerate(runs)})
    first = table.drop_duplicates(RUN_ID).set_index(RUN_ID)
    assert first[ALPHA_MODE].to_dict() == {"g0": "grl", "c0": "grl", "cn": "confusion", "b": "grl"}
    assert first.loc["b", LR] == 5e-4 and first.loc["g0", LR] == 1e-3
    assert first.loc["g0", STEPS] == 60 and first.loc["cn", STEPS] == -1
    used, excl = select_runs(table, M.VAL_LINEAR_ACC, M.VAL_MSE, runs=runs)
    assert [(e.run_id, e.reason.split(" of ")[0]) for e in excl] == [("c0", "duplicate grid point")]



def test_errors_are_classified_by_the_status_wandb_attaches_then_by_message():
    from wandb.proto import wandb_api_pb2
    from wandb.sdk.lib.service.service_connection import WandbApiFailedError

    def api_error(status, message="boom"):
        return WandbApiFailedError(message, wandb_api_pb2.ApiErrorResponse(message=message, http_status=status))

    assert classify_error(api_error(503))[:2] == (True, "HTTP 503")
    assert classify_error(api_error(404, "HTTP 500 in the text is not the status"))[:2] == (False, "HTTP 404")
    wrapped = RuntimeError("comm error")
    wrapped.exc = api_error(429)  # wandb's CommError keeps the original in .exc
    assert classify_error(wrapped)[:2] == (True, "HTTP 429")
    # Python's own wait for wandb-core ran out (wandb 0.31, ServiceConnection.api_request): no status
    busy = WandbApiFailedError("Failed to execute API request: the service process is busy and did not respond in time.")
    assert classify_error(busy)[:2] == (True, "timeout/connection")


def test_a_stalled_runs_page_and_a_stalled_history_scan_recover_within_their_bounds(fake, tmp_path):
    """The service holds the `runs` page longer than Python waits for it, and later one history
    scan longer than its bound: both are retried and the table is complete."""
    sid, served = populate(fake, n_runs=3, epochs=3)
    fake.clear_requests()
    fake.stall_next(12.0, op="Runs")
    fake.stall_next(12.0, op="RunParquetHistory")  # the scan's first request (ended runs are exported)
    policy = RetryPolicy(attempts=3, base_s=0.1, cap_s=0.2, timeout_s=2.0, scan_timeout_s=3.0)
    t0 = time.monotonic()
    res = pull_sweep(f"{ENTITY}/{PROJECT}/{sid}", tmp_path / "out", policy=policy, workers=3)
    took = time.monotonic() - t0
    pd.testing.assert_frame_equal(res.table, expected_table(served))
    assert res.retries >= 2 and res.failures.get("timeout/connection", 0) >= 2, res.failures
    assert took < 12, took  # neither stall was waited out (the stalled answers are still pending)


def test_a_refresh_reads_the_export_as_it_is_now_not_wandb_cores_stale_copy(fake, tmp_path):
    """The service exports a finished run in part (the rest live), later in full. wandb-core caches
    an export file under its index, not its URL, so a scan with its cache on would read the stale
    part and, the live steps gone from the answer, never page for the rest: the pull scans with
    use_cache=False and gets every epoch on --refresh."""
    sid, served = populate(fake, n_runs=2, epochs=12)
    for rid in served:
        fake.get_run(ENTITY, PROJECT, rid).exported_rows = 5
    out = tmp_path / "out"
    pd.testing.assert_frame_equal(pull_sweep(f"{ENTITY}/{PROJECT}/{sid}", out, policy=FAST).table, expected_table(served))
    for rid in served:
        fake.get_run(ENTITY, PROJECT, rid).exported_rows = None  # now exported whole
    fake.clear_requests()
    res = pull_sweep(f"{ENTITY}/{PROJECT}/{sid}", out, policy=FAST, refresh=True)
    assert fake.count("HistoryPage") == 0 and fake.count("RunParquetHistory") == 2
    pd.testing.assert_frame_equal(res.table, expected_table(served))


def test_a_deterministic_failure_reads_failed_whatever_wandb_says(fake, tmp_path):
    """agent.train ends a sweep run that failed deterministically (non-finite loss) with exit code 0
    on W&B, so that the service does not requeue it (it is marked preempting): W&B says
    "finished", its summary says `failure/deterministic`, and the analysis counts it failed."""
    sid, served = populate(fake, n_runs=3, epochs=3)
    fake.get_run(ENTITY, PROJECT, "r001").summary.update({M.FAILURE_REASON: "non-finite loss at epoch 2, step 9",
                                                          M.FAILURE_DETERMINISTIC: True})
    res = pull_sweep(f"{ENTITY}/{PROJECT}/{sid}", tmp_path / "out", policy=FAST)
    assert {r.run_id: (r.state, r.wandb_state) for r in res.runs} == {
        "r000": ("finished", "finished"), "r001": ("failed", "finished"), "r002": ("finished", "finished")}
    used, excl = select_runs(res.table, M.VAL_LINEAR_ACC, M.VAL_MSE, runs=res.runs)
    assert sorted(set(used[RUN_ID])) == ["r000", "r002"] and [e.run_id for e in excl] == ["r001"]
