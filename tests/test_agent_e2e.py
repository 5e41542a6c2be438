"""The real `wandb agent` CLI against the fake W&B backend runs `agent.train` sweeps end to end.

CPU only, no network: the fake (tests/fake_wandb.py) listens on 127.0.0.1 and plays W&B's sweep
controller; the agent is the real `wandb agent ENTITY/PROJECT/SWEEP_ID`; its children are the
real `python -m agent.train` (W&B offline, tiny MAE on scikit-learn's digits). Each test has its
own WANDB_DIR / WANDB_CACHE_DIR / WANDB_CONFIG_DIR / WANDB_DATA_DIR / MAE_GAP_CACHE.

How the pieces meet (read from wandb 0.31's wandb_agent.py and W&B's docs):

* The agent heartbeats every 5 s (POLL_INTERVAL); it starts the next command only after a
  heartbeat, so every run costs a multiple of 5 s. `${interpreter}` is the literal `python` of
  PATH: the venv's bin goes first.
* The agent never reports exit codes. The W&B server learns a run's state from the run itself
  (exit code; `mark_preempting()` makes it "preempting", its non-zero exit then "preempted",
  and a preempted sweep run is requeued: the next agent to ask gets a `resume` command for the
  same run id). The children here run offline, so the fake asks `offline_state` (which reads the
  run's offline `.wandb` file, as the server would have received it) when the agent reports a
  run gone; a "preempted" run is requeued by the fake.
* The agent counts every non-zero exit (143 included) as a failure and stops itself after 3
  failures in its first 60 s (its "flapping" guard, wandb_agent.py:321-330): the agents here run
  with WANDB_AGENT_DISABLE_FLAPPING=true, as `agent.launch --disable-flapping` starts them.
* agent.train marks a sweep run preempting once training starts; a run that exits non-zero (or
  dies) while preempting is requeued. A deterministic failure (non-finite loss) is therefore
  re-issued once: that attempt finds the failure beside its checkpoint and ends at once, unmarked,
  as failed, and is not re-issued again.
* A grid point counts as taken once its run has reported its config (wandb.init); the children
  run offline, so the fake asks whether the run's offline folder exists.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from conftest import isolated_wandb_env  # noqa: E402
from fake_wandb import FakeRun, FakeWandb  # noqa: E402

from analysis.offline import load_offline_runs  # noqa: E402
from analysis.offline_runs import offline_wandb_state, read_offline_run, run_folders  # noqa: E402
from mae_gap import metrics as M  # noqa: E402
from mae_gap.config import PRESETS  # noqa: E402

pytest.importorskip("wandb")
pytestmark = pytest.mark.slow  # real training runs behind a 5-s polling agent

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENTITY, PROJECT = "fake-team", "mae-gap-e2e"
SMOKE = yaml.safe_load((REPO / "sweeps" / "smoke.yaml").read_text())
TINY = {**PRESETS["tiny"], "dataset": "digits", "accelerator": "cpu", "lr": 0.001, "batch_size": 64,
        "eval_batch_size": 256}
VAL_TRAIN_KEYS = (*M.VAL_KEYS, *M.TRAIN_KEYS)  # the metrics (perf/* are wall-clock measurements)


# ----------------------------------------------------------------------------- helpers


def sweep_yaml(name: str, swept: dict[str, list], **constants) -> str:
    """sweeps/smoke.yaml (same program, block-style command, metric) with the tiny sizes and the
    given grid; written back as YAML (block style), the text `wandb sweep` would upload."""
    config = dict(SMOKE, name=name)
    params = {k: {"value": v} for k, v in {**TINY, **constants}.items()}
    params.update({k: {"values": list(v)} for k, v in swept.items()})
    config["parameters"] = params
    text = yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
    assert "command:\n- ${env}\n- ${interpreter}\n- -m\n- agent.train\n- ${args}\n" in text
    return text


def marked_preempting(run_dir: Path) -> bool:
    return read_offline_run(run_dir)["preempting"]


def offline_state(wandb_dir: Path, run_id: str) -> str | None:
    """The state W&B would give a run from what its (offline) process recorded last
    (`analysis.offline_runs`: the folders of one run, oldest first, and the state of the last)."""
    folders = run_folders(wandb_dir, run_id)
    if not folders:
        return None  # never got as far as wandb.init
    return offline_wandb_state(read_offline_run(folders[-1]))


def wandb_procs(wandb_dir: Path, run_id: str | None = None) -> list[int]:
    """Live processes started for this test (their environment has our WANDB_DIR): the
    `python -m agent.train` children (of run `run_id`), or with run_id=None everything."""
    want = [f"WANDB_DIR={wandb_dir}".encode()]
    if run_id is not None:
        want.append(f"WANDB_RUN_ID={run_id}".encode())
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes().split(b"\0")
            zombie = ") Z " in (proc / "stat").read_text()
        except OSError:
            continue
        if zombie or not all(w in environ for w in want):
            continue
        if run_id is None or argv[1:3] == [b"-m", b"agent.train"]:
            pids.append(int(proc.name))
    return pids


class Sweep:
    """One test's fake W&B server, environment and `wandb agent` process."""

    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        # W&B isolated in tmp_path (conftest); WANDB_MODE=offline is inherited by the children,
        # the agent itself talks to the fake.
        self.env = isolated_wandb_env(
            tmp_path,
            CUDA_VISIBLE_DEVICES="",
            # One intra-op thread: on a shared 2-core box, torch's spinning OpenMP threads made
            # these tiny runs 2-10x slower whenever another process wanted a core.
            OMP_NUM_THREADS="1",
            PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
            PATH=os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),  # ${interpreter} = "python"
            WANDB_AGENT_DISABLE_FLAPPING="true",
        )
        self.wandb_dir = Path(self.env["WANDB_DIR"])  # tmp_path / "wandb_dir"
        self.fake = FakeWandb(entity=ENTITY, agent_run_state="crashed",
                              run_state_from=lambda run: offline_state(self.wandb_dir, run.run_id),
                              run_reported_from=lambda run: bool(run_folders(self.wandb_dir, run.run_id)),
                              heartbeat_timeout_s=20.0)
        self.agent: subprocess.Popen | None = None
        self.others: list[subprocess.Popen] = []  # other processes the test started (killed at the end)
        self.log = tmp_path / "agent.log"
        self.sid = ""

    def start(self, sweep_text: str) -> None:
        self.fake.start()
        self.env.update(WANDB_BASE_URL=self.fake.url, WANDB_API_KEY=self.fake.api_key)
        self.sid = self.fake.add_sweep(ENTITY, PROJECT, sweep_text)
        cli = BIN / "wandb"
        cmd = [str(cli)] if cli.exists() else [sys.executable, "-m", "wandb"]
        with open(self.log, "wb") as log:  # the children write here too (inherited stdout)
            self.agent = subprocess.Popen([*cmd, "agent", f"{ENTITY}/{PROJECT}/{self.sid}"], env=self.env,
                                          cwd=self.tmp, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self, timeout: float) -> int:
        try:
            return self.agent.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"wandb agent still running after {timeout:.0f} s:\n{self.log_text()[-4000:]}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def issued(self) -> list[dict]:
        return self.fake.issued(self.sid)

    def run(self, run_id: str) -> FakeRun:
        return self.fake.get_run(ENTITY, PROJECT, run_id)

    def close(self) -> None:
        for proc in [self.agent, *self.others]:
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # started with start_new_session=True
                proc.wait()
        for pid in wandb_procs(self.wandb_dir):  # children left behind by a failed test
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.fake.stop()


@pytest.fixture
def sweep(tmp_path):
    s = Sweep(tmp_path)
    try:
        yield s
    finally:
        s.close()


def point(cmd: dict) -> dict:
    """The grid point of an issued run/resume command."""
    return {k: v["value"] for k, v in cmd["args"].items()}


def finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


# ----------------------------------------------------------------------------- 1. a grid


def test_wandb_agent_runs_a_tiny_grid_of_agent_train_offline(sweep):
    alphas = [-1.0, 0.0, 1.0]
    sweep.start(sweep_yaml("e2e-grid", {"alpha": alphas}, epochs=2, train_limit=128, val_limit=64,
                           knn_every=1))
    assert sweep.wait(timeout=240) == 0, sweep.log_text()[-4000:]
    log = sweep.log_text()

    issued = sweep.issued()
    assert [c["type"] for c in issued] == ["run"] * 3
    assert [point(c)["alpha"] for c in issued] == alphas  # W&B's grid order
    assert log.count("About to run command: /usr/bin/env python -m agent.train --accelerator=cpu") == 3
    for cmd in issued:
        rid = cmd["run_id"]
        (folder,) = run_folders(sweep.wandb_dir, rid)
        run = read_offline_run(folder)
        assert (run["run_id"], run["sweep_id"], run["project"]) == (rid, sweep.sid, PROJECT)
        assert run["exit_code"] == 0, log[-4000:]
        assert [row[M.EPOCH] for row in run["history"]] == [1, 2], "one history row per epoch"
        for row in run["history"]:
            missing = set(M.EPOCH_KEYS) - set(row)
            assert not missing, f"{rid} epoch {row[M.EPOCH]} lacks {sorted(missing)}"
            assert all(finite(row[k]) for k in M.EPOCH_KEYS), row  # knn_every=1: k-NN every epoch
        grid = point(cmd)
        assert {k: run["config"][k] for k in grid} == grid, "the run's config is its grid point"
        assert {"git_commit", "package_version", "data_fingerprint"} <= set(run["config"])
        assert run["summary"][M.VAL_MSE] == run["history"][-1][M.VAL_MSE]
        assert sweep.run(rid).state == "finished"
    assert sweep.fake.get_sweep(sweep.sid).state == "FINISHED"
    assert not list(Path(sweep.wandb_dir, "checkpoints").glob("*/last.ckpt"))


# ----------------------------------------------------------------------------- 2. faults


def checkpoint_epoch(path: Path, seen: dict) -> int | None:
    """Lightning's 0-based epoch of the checkpoint at `path` (re-read only when it changes)."""
    import torch

    try:
        stamp = path.stat().st_mtime_ns
    except FileNotFoundError:
        return None
    if seen.get("stamp") != stamp:
        try:
            seen["epoch"] = torch.load(path, map_location="cpu", weights_only=False)["epoch"]
            seen["stamp"] = stamp
        except Exception:  # noqa: BLE001 - being replaced right now: read it next time
            return None
    return seen.get("epoch")


def test_faults_through_the_agent_diverged_run_fails_preempted_run_resumes(sweep, tmp_path):
    """SPEC section 7 through `wandb agent`, in one sweep (the agent's 5-s polling makes every
    sweep cost; two failures stay under its flapping guard of three):

    1. lr=1e30 (W&B's grid order puts it first): AdamW's first update blows the weights up, so
       the loss of step 0 is finite and that of step 1 is not. The run must stop at once, fail
       with the reason and step in its summary, exit non-zero, and the agent must go on. It was
       marked preempting, so W&B re-issues it once; that attempt ends at once as failed.
    2. lr=0.001: SIGTERM (preemption) during epoch 3. The run marks itself preempting and exits
       143; W&B (the fake) sees it end preempted and requeues it; the agent runs it again with
       the same run id, it resumes from its last epoch checkpoint and finishes. Its merged
       history has each epoch once and equals an uninterrupted run of the same grid point.
    """
    constants = dict(alpha_mode="weighted", alpha=-10.0, epochs=5, train_limit=256, val_limit=64,
                     batch_size=32, knn_every=0)
    sweep.start(sweep_yaml("e2e-faults", {"lr": [1e30, 0.001]}, **constants))

    # The uninterrupted reference of the second point: by hand, another run id and WANDB_DIR,
    # side by side with the sweep (W&B offline, no sweep).
    ref_dir = tmp_path / "reference"
    ref_dir.mkdir()
    args = [f"--{k}={v}" for k, v in {**TINY, **constants, "lr": 0.001}.items()]
    ref_log = tmp_path / "reference.log"
    with open(ref_log, "wb") as fh:
        reference = subprocess.Popen([sys.executable, "-m", "agent.train", *args, "--resume=reference1"],
                                     env=dict(sweep.env, WANDB_DIR=str(ref_dir)), cwd=ref_dir,
                                     stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                     start_new_session=True)
    sweep.others.append(reference)

    # Preempt the second point's run once two of its epochs are done.
    deadline = time.monotonic() + 240
    while len(sweep.issued()) < 3:
        assert sweep.agent.poll() is None and time.monotonic() < deadline, sweep.log_text()[-4000:]
        time.sleep(0.1)
    rid = sweep.issued()[2]["run_id"]
    ckpt = sweep.wandb_dir / "checkpoints" / rid / "last.ckpt"
    seen: dict = {}
    while (done := checkpoint_epoch(ckpt, seen)) != 1:  # Lightning's epoch 1 = two epochs done
        assert sweep.agent.poll() is None and time.monotonic() < deadline, sweep.log_text()[-4000:]
        assert (done or 0) < 2, "the run went past epoch 3 before the signal"
        time.sleep(0.05)
    (child,) = wandb_procs(sweep.wandb_dir, rid)  # the `python -m agent.train` the agent started
    os.kill(child, signal.SIGTERM)

    assert sweep.wait(timeout=240) == 0, sweep.log_text()[-4000:]
    assert reference.wait(timeout=240) == 0, ref_log.read_text(errors="replace")[-3000:]
    log = sweep.log_text()
    diverged, diverged_again, preempted, resumed_cmd = sweep.issued()
    assert [c["type"] for c in sweep.issued()] == ["run", "resume", "run", "resume"]
    assert diverged_again["run_id"] == diverged["run_id"]
    assert (point(diverged)["lr"], point(preempted)["lr"]) == (1e30, 0.001)
    assert sweep.fake.get_sweep(sweep.sid).state == "FINISHED"

    # 1. The diverged run: failed at once (256 images / batch 32 = 8 steps per epoch); its
    #    re-issued attempt found the failure and ended without training.
    folder, again_folder = run_folders(sweep.wandb_dir, diverged["run_id"])
    again = read_offline_run(again_folder)
    assert again["exit_code"] == 1 and again["history"] == [] and not marked_preempting(again_folder)
    assert f"an earlier attempt of run {diverged['run_id']} failed" in sweep.log_text()
    run = read_offline_run(folder)
    assert run["exit_code"] == 1, "a diverged run exits non-zero"
    summary = run["summary"]
    assert summary[M.FAILURE_REASON] == f"non-finite {summary[M.FAILURE_TERM]} at epoch 1, step 1"
    assert (summary[M.FAILURE_EPOCH], summary[M.FAILURE_STEP]) == (1, 1)
    assert summary[M.FAILURE_TERM] in ("rec", "head_ce", "probe_ce", "loss")
    assert run["history"] == [], "no row for the epoch that diverged"
    assert f"agent.train: run failed: {summary[M.FAILURE_REASON]}" in log
    assert sweep.run(diverged["run_id"]).state == "failed"
    assert not (sweep.wandb_dir / "checkpoints" / diverged["run_id"] / "last.ckpt").exists()

    # 2. The preempted run: requeued with the same id and args, resumed, finished.
    assert resumed_cmd["run_id"] == rid and resumed_cmd["args"] == preempted["args"]
    assert f"agent.train: preempted; resume with the same run id ({rid})" in log
    assert f"agent.train: resuming run {rid} from {ckpt}" in log
    assert sweep.run(rid).state == "finished"
    assert not ckpt.exists(), "a finished run keeps no checkpoint"

    killed, resumed = (read_offline_run(f) for f in run_folders(sweep.wandb_dir, rid))
    assert killed["exit_code"] == 143 and marked_preempting(Path(killed["path"]).parent)
    assert "preempted" in killed["summary"][M.FAILURE_REASON]
    assert resumed["exit_code"] == 0 and resumed["summary"].get(M.FAILURE_REASON) is None
    before = [r[M.EPOCH] for r in killed["history"]]
    after = [r[M.EPOCH] for r in resumed["history"]]
    assert before[:2] == [1, 2] and before + after == [1, 2, 3, 4, 5], (before, after)

    # analysis.offline merges the folders by run id: each epoch once; states as W&B's.
    result = load_offline_runs(sweep.wandb_dir)
    assert result.sweep == sweep.sid
    assert {r.run_id: r.state for r in result.runs} == {diverged["run_id"]: "failed", rid: "finished"}
    assert result.duplicate_epochs == {}
    assert result.table[result.table["run_id"] == rid][M.EPOCH].tolist() == [1, 2, 3, 4, 5]

    (ref_folder,) = run_folders(ref_dir, "reference1")
    ref = read_offline_run(ref_folder)
    assert [r[M.EPOCH] for r in ref["history"]] == [1, 2, 3, 4, 5]
    for ours, theirs in zip(killed["history"] + resumed["history"], ref["history"]):
        for key in VAL_TRAIN_KEYS:
            if key in (M.VAL_KNN_ACC, M.VAL_LINEAR_ACC, M.VAL_LINEAR_CONVERGED, M.VAL_LINEAR_ITERS):  # knn_every=0: NaN every epoch
                assert math.isnan(ours[key]) and math.isnan(theirs[key])
            else:
                assert ours[key] == pytest.approx(theirs[key], abs=1e-4), (ours[M.EPOCH], key)


def test_bad_data_path_fails_its_run_and_the_agent_goes_on(sweep, tmp_path):
    """A grid point whose data folder is missing: that child exits 1 with the reason in its run
    summary, and the agent runs the next point, which finishes (SPEC section 7)."""
    missing = tmp_path / "no-such-data"
    sweep.start(sweep_yaml("e2e-bad-data", {"data_dir": [str(missing), ""]},
                           epochs=1, train_limit=128, val_limit=64, knn_every=0))
    assert sweep.wait(timeout=240) == 0, sweep.log_text()[-4000:]
    bad, good = sweep.issued()
    assert (point(bad)["data_dir"], point(good)["data_dir"]) == (str(missing), "")

    (folder,) = run_folders(sweep.wandb_dir, bad["run_id"])
    failed = read_offline_run(folder)
    assert failed["exit_code"] == 1 and str(missing) in failed["summary"][M.FAILURE_REASON]
    assert failed["history"] == []
    (folder,) = run_folders(sweep.wandb_dir, good["run_id"])
    finished = read_offline_run(folder)
    assert finished["exit_code"] == 0 and [row[M.EPOCH] for row in finished["history"]] == [1]


# ----------------------------------------------------------------------------- 3. real clusters


def children_of(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def test_run_killed_with_its_wandb_core_comes_back_and_a_ui_stop_does_not(sweep):
    """Issue 11, on real clusters, through the real `wandb agent`:

    1. seed 0: SIGTERM to agent.train *and* its wandb-core mid-run (what SLURM does to every
       process of a job). The run was marked preempting when training started, so W&B (the fake)
       sees it end preempted and requeues it; it resumes from its checkpoint; one complete history.
    2. seed 1: stopped from the UI. The agent gets the service's stop command and terminates it
       (a SIGTERM, like a preemption); agent.train asks the service (RunStoppedStatus), exits 0 as
       stopped with its epochs kept, and is not re-issued. The fake requeues any run that ends
       preempted, stopped or not, so a stop answered as a preemption fails this test.
    """
    from agent.train import FLUSH_INTERVAL_S

    sweep.start(sweep_yaml("e2e-clusters", {"seed": [0, 1]}, epochs=4, train_limit=512, val_limit=64,
                           batch_size=32, knn_every=0))
    deadline = time.monotonic() + 240

    def wait_for(cond, what):
        while not cond():
            assert sweep.agent.poll() is None and time.monotonic() < deadline, f"{what}\n{sweep.log_text()[-4000:]}"
            time.sleep(0.05)

    wait_for(lambda: len(sweep.issued()) >= 1, "no first run")
    first = sweep.issued()[0]["run_id"]
    ckpt, seen = sweep.wandb_dir / "checkpoints" / first / "last.ckpt", {}
    wait_for(lambda: checkpoint_epoch(ckpt, seen) == 1, "first run never reached its second checkpoint")
    time.sleep(FLUSH_INTERVAL_S + 1.0)
    (child,) = wandb_procs(sweep.wandb_dir, first)
    core = [c for c in children_of(child) if b"wandb-core" in Path(f"/proc/{c}/cmdline").read_bytes()]
    assert core, "no wandb-core under the run"
    for pid in (child, *core):
        os.kill(pid, signal.SIGTERM)

    wait_for(lambda: len(sweep.issued()) >= 3, "the killed run was not requeued, or no second point")
    second = sweep.issued()[2]["run_id"]
    ckpt2, seen2 = sweep.wandb_dir / "checkpoints" / second / "last.ckpt", {}
    wait_for(lambda: checkpoint_epoch(ckpt2, seen2) is not None, "second run never checkpointed")
    sweep.fake.stop_run(second)

    assert sweep.wait(timeout=240) == 0, sweep.log_text()[-4000:]
    issued = sweep.issued()
    assert [(c["type"], c["run_id"]) for c in issued] == [("run", first), ("resume", first), ("run", second)]
    assert sweep.run(first).state == "finished" and sweep.run(second).state == "killed"
    (stopped_folder,) = run_folders(sweep.wandb_dir, second)
    stopped = read_offline_run(stopped_folder)
    assert stopped["complete"] and stopped["exit_code"] == 0, "a stop from the UI is not a preemption"
    assert stopped["summary"][M.FAILURE_REASON] == "stopped from the W&B UI" and stopped["history"]
    assert f"stopped from the W&B UI; run {second} ends here" in sweep.log_text()
    killed_attempt = read_offline_run(run_folders(sweep.wandb_dir, first)[0])
    assert not killed_attempt["complete"] and [r[M.EPOCH] for r in killed_attempt["history"]][:2] == [1, 2]
    table = load_offline_runs(sweep.wandb_dir).table
    assert table[table["run_id"] == first][M.EPOCH].tolist() == [1, 2, 3, 4]


def test_two_agents_started_together_duplicate_points_and_the_analysis_counts_them_once(sweep, tmp_path):
    from analysis.pull import select_runs

    alphas = [-1.0, -0.5, 0.5, 1.0]
    sweep.start(sweep_yaml("e2e-two-agents", {"alpha": alphas}, epochs=1, train_limit=128, val_limit=64,
                           knn_every=1))
    cli = BIN / "wandb"
    cmd = [str(cli)] if cli.exists() else [sys.executable, "-m", "wandb"]
    with open(tmp_path / "agent2.log", "wb") as log:  # a second agent, at the same instant
        second = subprocess.Popen([*cmd, "agent", f"{ENTITY}/{PROJECT}/{sweep.sid}"], env=sweep.env, cwd=tmp_path,
                                  stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    sweep.others.append(second)
    assert sweep.wait(timeout=300) == 0, sweep.log_text()[-4000:]
    assert second.wait(timeout=120) == 0
    issued = sweep.issued()
    points = [point(c)["alpha"] for c in issued]
    assert sorted(set(points)) == sorted(alphas), "every grid point ran"
    result = load_offline_runs(sweep.wandb_dir)
    used, exclusions = select_runs(result.table, M.VAL_LINEAR_ACC, M.VAL_MSE, runs=result.runs)
    assert sorted(used.drop_duplicates("run_id")["alpha"]) == sorted(alphas), "each point counted once"
    duplicates = [e for e in exclusions if e.reason.startswith("duplicate grid point")]
    assert len(duplicates) == len(points) - len(alphas)
