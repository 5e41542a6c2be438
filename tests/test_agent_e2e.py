"""The real `wandb agent` CLI against the fake W&B service runs *online* `agent.train` sweeps end to end.

CPU only, no network: the fake (tests/fake_wandb/) listens on 127.0.0.1 and plays the W&B service:
the sweep controller, and the online run protocol the children speak (wandb.init's UpsertBucket
and RunResumeStatus, run files, the file stream with history rows, summary, `preempting` and the
exit code). The agent is the real `wandb agent ENTITY/PROJECT/SWEEP_ID`; its children are the real
`python -m agent.train` (W&B online against the fake, tiny MAE on scikit-learn's digits). Every
assertion reads what the service received (the fake's stored runs: history rows, summary, tags,
state; the commands it handed the agents). Each test has its own WANDB_DIR / WANDB_CACHE_DIR /
WANDB_CONFIG_DIR / WANDB_DATA_DIR / MAE_GAP_CACHE; a test that asks the service something through
the real client (a stop from the UI, the analysis' pull) does it from this process in an
environment of its own (`Sweep.client`).

How the pieces meet (wandb 0.31's `wandb_agent.py`, its wandb-core, and W&B's docs):

* The agent heartbeats every 5 s (here every `AGENT_POLL_S`: its `Agent.POLL_INTERVAL`, nothing
  else of it changed); it starts the next command only after a heartbeat. `${interpreter}` is the literal `python` of PATH: the venv's bin
  goes first.
* The agent never reports exit codes. The service learns a run's state from the run itself: its
  file stream (`mark_preempting()` sends `preempting`, `run.finish(exit_code=N)` sends `exitcode`).
  A preempting sweep run that exits non-zero or goes silent is preempted and requeued (the next
  agent to ask gets a `resume` command for the same run id); exit code 0 is finished, never
  requeued (docs.wandb.ai/models/sweeps/signal-handling-sweep-runs).
* The agent counts every non-zero exit (143 included) as a failure and stops itself after 3 in its
  first 60 s (its "flapping" guard, `Agent.is_flapping`) or 5 before a first success
  (`Agent.is_failing`): the agents here run with WANDB_AGENT_DISABLE_FLAPPING=true, as
  `agent.launch --disable-flapping` starts them, and WANDB_AGENT_MAX_INITIAL_FAILURES=10.
* A grid point counts as taken once its run has upserted its config (wandb.init): two agents asking
  before that are handed the same point (`FakeWandb(points_taken_on_upsert=True)`).
* A stop from the UI (`Run.stop()`: the `StopRun` mutation) reaches the agent as a `stop` command,
  which it answers with a SIGTERM, and the run itself through its file stream's answers.
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

from conftest import isolated_wandb_env, wandb_agent_polling_every, wandb_pointed_at  # noqa: E402
from fake_wandb import FakeRun, FakeWandb  # noqa: E402

from mae_gap import metrics as M  # noqa: E402
from mae_gap.config import PRESETS  # noqa: E402

wandb = pytest.importorskip("wandb")
pytestmark = pytest.mark.slow  # real training runs behind a polling agent
AGENT_POLL_S = 0.5  # the agent's heartbeat interval here (5 s in wandb 0.31): every command waits for one

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENTITY, PROJECT = "fake-team", "mae-gap-e2e"
SMOKE = yaml.safe_load((REPO / "sweeps" / "smoke.yaml").read_text())
TINY = {**PRESETS["tiny"], "dataset": "digits", "accelerator": "cpu", "lr": 0.001, "batch_size": 64,
        "eval_batch_size": 256}


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


def children_of(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


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


class Sweep:
    """One test's fake W&B service, environment and `wandb agent` processes."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **fake_kw):
        self.tmp, self.monkeypatch = tmp_path, monkeypatch
        # W&B isolated in tmp_path (conftest), WANDB_MODE unset: the agent and its children are online.
        self.env = isolated_wandb_env(
            tmp_path,
            mode=None,
            CUDA_VISIBLE_DEVICES="",
            # One intra-op thread: on a shared 2-core box, torch's spinning OpenMP threads made
            # these tiny runs 2-10x slower whenever another process wanted a core.
            OMP_NUM_THREADS="1",
            PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
            PATH=os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),  # ${interpreter} = "python"
            WANDB_AGENT_DISABLE_FLAPPING="true",
            WANDB_AGENT_MAX_INITIAL_FAILURES="10",  # the faults sweep fails four runs by design
        )
        self.wandb_dir = Path(self.env["WANDB_DIR"])  # tmp_path / "wandb_dir"
        self.fake = FakeWandb(entity=ENTITY, agent_run_state="crashed", points_taken_on_upsert=True,
                              heartbeat_timeout_s=20.0, **fake_kw)
        self.agents: list[subprocess.Popen] = []
        self.sid = ""
        self.deadline = 0.0

    def start(self, sweep_text: str, agents: int = 1, timeout: float = 240) -> None:
        self.fake.start()
        self.env.update(self.fake.env())
        self.sid = self.fake.add_sweep(ENTITY, PROJECT, sweep_text)
        self.deadline = time.monotonic() + timeout
        cmd = wandb_agent_polling_every(AGENT_POLL_S)
        for i in range(agents):  # started together: they ask for their first point at the same instant
            with open(self.tmp / f"agent{i}.log", "wb") as log:  # the children write here too
                self.agents.append(subprocess.Popen(
                    [*cmd, f"{ENTITY}/{PROJECT}/{self.sid}"], env=self.env, cwd=self.tmp,
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))

    def wait_for(self, cond, what: str) -> None:
        while not cond():
            assert self.agents[0].poll() is None and time.monotonic() < self.deadline, f"{what}\n{self.log()[-4000:]}"
            time.sleep(0.05)

    def wait(self) -> None:
        for agent in self.agents:
            try:
                code = agent.wait(timeout=max(self.deadline - time.monotonic(), 1))
            except subprocess.TimeoutExpired:
                pytest.fail(f"wandb agent still running at the deadline:\n{self.log()[-4000:]}")
            assert code == 0, self.log()[-4000:]

    def log(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.tmp.glob("agent*.log")))

    def issued(self) -> list[dict]:
        return self.fake.issued(self.sid)

    def run(self, run_id: str) -> FakeRun:
        return self.fake.get_run(ENTITY, PROJECT, run_id)

    def epochs(self, run_id: str) -> list:
        """The epochs of the history rows the service stores for the run, in order."""
        return [row.get(M.EPOCH) for row in self.run(run_id).history]

    def client(self):
        """This process's wandb pointed at the fake, in W&B folders of its own (not the children's)."""
        return wandb_pointed_at(self.monkeypatch, self.tmp, self.fake, sub="client")

    def stop_from_ui(self, run_id: str) -> None:
        """What the UI's Stop button sends, sent by the public API: `Run.stop()` (`StopRun`)."""
        with self.client():
            wandb.Api().run(f"{ENTITY}/{PROJECT}/{run_id}").stop()

    def kill_with_its_wandb_core(self, run_id: str) -> None:
        """SIGTERM to the run's `agent.train` and its wandb-core at once, as SLURM signals a job."""
        (child,) = wandb_procs(self.wandb_dir, run_id)
        core = [c for c in children_of(child) if b"wandb-core" in Path(f"/proc/{c}/cmdline").read_bytes()]
        assert core, "no wandb-core under the run"
        for pid in (child, *core):
            os.kill(pid, signal.SIGTERM)

    def close(self) -> None:
        for proc in self.agents:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # started with start_new_session=True
                proc.wait()
        for pid in wandb_procs(self.wandb_dir):  # children left behind by a failed test
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.fake.stop()


@pytest.fixture
def sweep_factory(tmp_path, monkeypatch):
    made: list[Sweep] = []

    def make(**fake_kw) -> Sweep:
        made.append(Sweep(tmp_path, monkeypatch, **fake_kw))
        return made[-1]

    try:
        yield make
    finally:
        for s in made:
            s.close()


def point(cmd: dict) -> dict:
    """The grid point of an issued run/resume command."""
    return {k: v["value"] for k, v in cmd["args"].items()}


def finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def resume_asks(sweep: Sweep, run_id: str) -> list:
    """The RunResumeStatus requests of the run (one per wandb.init with resume="allow")."""
    return [r for r in sweep.fake.request_log if r.op == "RunResumeStatus" and r.variables.get("name") == run_id]


def local_logs(sweep: Sweep, run_id: str) -> str:
    """The tail of the run's own W&B logs (debug.log, debug-internal.log of each attempt): what an
    assertion on what the service received prints, to tell a client's loss from the fake's."""
    logs = sorted(sweep.wandb_dir.glob(f"wandb/run-*-{run_id}/logs/debug*.log"))
    return "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-3000:]}" for p in logs)


def ended(run: FakeRun) -> dict:
    """What the run's last file stream said at its end: {"complete": True, "exitcode": N}, or {}."""
    return next((fs for fs in reversed(run.file_stream) if fs.get("complete")), {})


# ----------------------------------------------------------------------------- 1. a grid, two agents


def test_two_online_agents_run_a_grid_and_the_analysis_counts_duplicates_once(sweep_factory, tmp_path):
    """The grid in W&B's order through two agents started together (so a point can be handed out
    twice, as on W&B); every run's rows, config, summary and reconstruction panel reach the service;
    the analysis pulls the sweep through the public API and counts each point once."""
    from analysis.pull.api import pull_sweep
    from analysis.pull.retries import RetryPolicy
    from analysis.pull.selection import select_runs

    alphas = [-1.0, -0.5, 0.5, 1.0]
    sweep = sweep_factory()
    sweep.start(sweep_yaml("e2e-grid", {"alpha": alphas}, epochs=2, train_limit=128, val_limit=64, knn_every=1),
                agents=2, timeout=300)
    sweep.wait()
    log, issued = sweep.log(), sweep.issued()

    assert [c["type"] for c in issued] == ["run"] * len(issued)
    firsts = list(dict.fromkeys(point(c)["alpha"] for c in issued))
    assert firsts == alphas, "new points are handed out in W&B's grid order"
    assert log.count("About to run command: /usr/bin/env python -m agent.train --accelerator=cpu") == len(issued)
    uploaded = {r.path for r in sweep.fake.request_log if r.op.startswith("PUT /storage/")}
    for cmd in issued:
        rid, run = cmd["run_id"], sweep.run(cmd["run_id"])
        assert (run.sweep_id, run.state, ended(run)) == (sweep.sid, "finished", {"complete": True, "exitcode": 0})
        assert sweep.epochs(rid) == [1, 2], "one history row per epoch"
        for row in run.history:
            missing = set(M.EPOCH_KEYS) - set(row)
            assert not missing, f"{rid} epoch {row[M.EPOCH]} lacks {sorted(missing)}"
            assert all(finite(row[k]) for k in M.EPOCH_KEYS), row  # knn_every=1: k-NN every epoch
        grid = point(cmd)
        assert {k: run.config[k] for k in grid} == grid, "the run's config is its grid point"
        assert {"git_commit", "package_version", "data_fingerprint", "steps_per_epoch"} <= set(run.config)
        assert run.telemetry, "wandb.init's telemetry (config _wandb.t) reached the service"
        assert run.summary[M.VAL_MSE] == run.history[-1][M.VAL_MSE]
        # the reconstruction panel of the last epoch (recon_every=5): in that epoch's row, its PNG uploaded
        panel = run.history[-1][M.VAL_RECONSTRUCTION]
        assert panel["_type"] == "image-file" and M.VAL_RECONSTRUCTION not in run.history[0]
        assert f"/storage/{rid}/{panel['path']}" in uploaded
    assert sweep.fake.get_sweep(sweep.sid).state == "FINISHED"
    assert not list(Path(sweep.wandb_dir, "checkpoints").glob("*/last.ckpt"))
    assert sweep.fake.unsupported == [], "every operation the runs sent was answered"

    with sweep.client():
        result = pull_sweep(f"{ENTITY}/{PROJECT}/{sweep.sid}", tmp_path / "pull",
                            policy=RetryPolicy(attempts=3, base_s=0.02, cap_s=0.1))
    used, exclusions = select_runs(result.table, M.VAL_LINEAR_ACC, M.VAL_MSE, runs=result.runs)
    assert sorted(used.drop_duplicates("run_id")["alpha"]) == sorted(alphas), "each point counted once"
    duplicates = [e for e in exclusions if e.reason.startswith("duplicate grid point")]
    assert len(duplicates) == len(issued) - len(alphas)


# ----------------------------------------------------------------------------- 2. faults


def test_faults_bad_data_fails_diverged_point_trains_once_sigterm_resumes(sweep_factory, tmp_path):
    """SPEC section 7 through `wandb agent`, online, in one sweep, the service pessimistic: a
    resumed attempt keeps the earlier attempt's preempting mark (`preempting_survives_resume`).
    Grid (W&B's order: data_dir, then lr, the last fastest):

    1-2. data_dir missing (both lr): the run fails before the preempting mark, exit 1, failed on
       the service with the reason in its summary; never requeued; the agent goes on.
    3. lr=1e30: AdamW's first update blows the weights up, so the loss of step 0 is finite and that
       of step 1 is not. The run stops at once with the reason and step in its summary; it was
       marked preempting, so it tells the service exit code 0 (finished, tagged `failed`,
       `failure/deterministic`) and the process exits 1: trained once, never re-issued.
    4. lr=0.001: SIGTERM (preemption, wandb-core alive) during epoch 3. The run marks itself
       preempting and exits 143; the service requeues it; the agent runs it again with the same run
       id, it resumes online (RunResumeStatus) from its last epoch checkpoint and finishes; the
       service stores each epoch once.
    """
    missing = str(tmp_path / "no-such-data")
    sweep = sweep_factory(preempting_survives_resume=True)
    sweep.start(sweep_yaml("e2e-faults", {"data_dir": [missing, ""], "lr": [1e30, 0.001]}, alpha_mode="weighted",
                           alpha=-10.0, epochs=5, train_limit=256, val_limit=64, batch_size=32, knn_every=0))

    # Preempt the fourth point's run once two of its epochs are done.
    sweep.wait_for(lambda: len(sweep.issued()) >= 4, "the fourth point was never handed out")
    rid = sweep.issued()[3]["run_id"]
    ckpt, seen = sweep.wandb_dir / "checkpoints" / rid / "last.ckpt", {}
    sweep.wait_for(lambda: checkpoint_epoch(ckpt, seen) == 1, "no checkpoint of epoch 2")  # Lightning's 0-based
    (child,) = wandb_procs(sweep.wandb_dir, rid)  # the `python -m agent.train` the agent started
    os.kill(child, signal.SIGTERM)
    sweep.wait()
    log, issued = sweep.log(), sweep.issued()
    assert [(c["type"], point(c)["data_dir"], point(c)["lr"]) for c in issued] == [
        ("run", missing, 1e30), ("run", missing, 0.001), ("run", "", 1e30), ("run", "", 0.001), ("resume", "", 0.001)]
    bad1, bad2, diverged, preempted, resumed = issued
    assert resumed["run_id"] == rid == preempted["run_id"] and resumed["args"] == preempted["args"]
    assert sweep.fake.get_sweep(sweep.sid).state == "FINISHED"
    assert sweep.fake.unsupported == []

    # 1-2. Bad data: failed before the preempting mark, exit 1 on the service; not requeued.
    for cmd in (bad1, bad2):
        run = sweep.run(cmd["run_id"])
        assert (run.state, ended(run), run.preempting, run.history) == ("failed", {"complete": True, "exitcode": 1},
                                                                       False, [])
        assert missing in run.summary.get(M.FAILURE_REASON, ""), f"{run.summary}\n{local_logs(sweep, cmd['run_id'])}"
        assert run.summary[M.FAILURE_DETERMINISTIC] is True

    # 3. The diverged run: failed at once (256 images / batch 32 = 8 steps per epoch), trained once.
    run = sweep.run(diverged["run_id"])
    summary = run.summary
    assert M.FAILURE_REASON in summary, f"{summary}\n{local_logs(sweep, diverged['run_id'])}"
    assert summary[M.FAILURE_REASON] == f"non-finite {summary[M.FAILURE_TERM]} at epoch 1, step 1"
    assert (summary[M.FAILURE_EPOCH], summary[M.FAILURE_STEP], summary[M.FAILURE_DETERMINISTIC]) == (1, 1, True)
    assert summary[M.FAILURE_TERM] in ("rec", "head_ce", "probe_ce", "loss")
    assert run.history == [], "no row for the epoch that diverged"
    assert f"agent.train: run failed: {summary[M.FAILURE_REASON]}" in log
    assert run.preempting and ended(run) == {"complete": True, "exitcode": 0}, "marked, so exit 0 to the service"
    assert (run.state, run.tags) == ("finished", ["failed"])
    assert not (sweep.wandb_dir / "checkpoints" / diverged["run_id"] / "last.ckpt").exists()
    assert (sweep.wandb_dir / "checkpoints" / diverged["run_id"] / "failed.txt").exists()
    assert log.count("agent.train: run failed:") == 1 and "an earlier attempt of run" not in log

    # 4. The preempted run: 143 while preempting, requeued, resumed online from its checkpoint, finished.
    assert f"agent.train: preempted; resume with the same run id ({rid})" in log
    assert f"agent.train: resuming run {rid} from {ckpt}" in log
    run = sweep.run(rid)
    assert [fs.get("exitcode") for fs in run.file_stream if fs.get("complete")] == [143, 0]
    assert (run.state, run.summary.get(M.FAILURE_REASON)) == ("finished", None)
    assert len(resume_asks(sweep, rid)) == 2, "each attempt asked the service how to resume"
    assert sweep.epochs(rid) == [1, 2, 3, 4, 5], "each epoch once in the service's history"
    assert [r["_step"] for r in run.history] == [0, 1, 2, 3, 4]
    assert not ckpt.exists(), "a finished run keeps no checkpoint"


# ----------------------------------------------------------------------------- 3. real clusters


def test_run_killed_with_its_wandb_core_resumes_online_and_a_ui_stop_ends_it(sweep_factory):
    """Issue 11/16 on real clusters, through the real `wandb agent`, online (grid over `epochs`: the
    stopped point gets more epochs than it can run before its stop lands):

    1. epochs=4: SIGTERM to agent.train *and* its wandb-core right after its second checkpoint (what
       SLURM does to every process of a job). Its file stream said `preempting` and then went silent,
       so the service requeues it; the re-issued attempt resumes online (RunResumeStatus), reads the
       epochs the service stores, logs again those the checkpoint has and the service lacks (wandb-core
       sends rows at most every 15 s: the killed attempt's last rows were lost), and trains the rest:
       the service stores each epoch once.
    2. epochs=40: stopped from the UI with the real client (`Run.stop()`) right after its first
       checkpoint. The agent gets the stop command and sends a SIGTERM (a preemption's signal);
       agent.train asks the service (RunStoppedStatus), ends as stopped with its epochs kept: exit 0,
       killed on the service, never requeued, never resumed.
    """
    sweep = sweep_factory()
    sweep.start(sweep_yaml("e2e-clusters", {"epochs": [4, 40]}, train_limit=512, val_limit=64, batch_size=32,
                           knn_every=0))
    sweep.wait_for(lambda: len(sweep.issued()) >= 1, "no first run")
    first = sweep.issued()[0]["run_id"]
    ckpt, seen = sweep.wandb_dir / "checkpoints" / first / "last.ckpt", {}
    sweep.wait_for(lambda: checkpoint_epoch(ckpt, seen) == 1, "first run never reached its second checkpoint")
    sweep.kill_with_its_wandb_core(first)
    sweep.wait_for(lambda: len(sweep.issued()) >= 2, "the killed run was not requeued")
    stored_when_killed = sweep.epochs(first)  # the killed attempt can send nothing more

    sweep.wait_for(lambda: len(sweep.issued()) >= 3, "no second point")
    second = sweep.issued()[2]["run_id"]
    ckpt2, seen2 = sweep.wandb_dir / "checkpoints" / second / "last.ckpt", {}
    sweep.wait_for(lambda: checkpoint_epoch(ckpt2, seen2) is not None, "second run never checkpointed")
    sweep.stop_from_ui(second)
    assert sweep.run(second).stop_requested
    sweep.wait()
    log, issued = sweep.log(), sweep.issued()
    assert [(c["type"], c["run_id"]) for c in issued] == [("run", first), ("resume", first), ("run", second)]
    assert sweep.fake.unsupported == []

    # 1. Requeued after going silent while preempting; resumed online; each epoch once on the service.
    run = sweep.run(first)
    assert run.state == "finished" and [fs.get("exitcode") for fs in run.file_stream if fs.get("complete")] == [0]
    assert stored_when_killed == [1, 2][: len(stored_when_killed)], stored_when_killed
    relogged = [e for e in (1, 2) if e not in stored_when_killed]
    if relogged:
        assert f"agent.train: logged again epoch(s) {relogged}" in log
    assert len(resume_asks(sweep, first)) == 2
    asked = [r for r in sweep.fake.request_log if r.op in ("HistoryPage", "SampledHistoryPage", "RunParquetHistory")
             and first in (r.variables.get("name"), r.variables.get("run"), r.variables.get("runName"))]
    assert asked, "the resumed attempt read the history the service stores"
    assert sweep.epochs(first) == [1, 2, 3, 4], "each epoch once in the service's history"

    # 2. Stopped from the UI: exit 0, its epochs kept, killed, not requeued.
    run = sweep.run(second)
    assert (run.state, ended(run)) == ("killed", {"complete": True, "exitcode": 0}), "a UI stop is not a preemption"
    assert run.summary.get(M.FAILURE_REASON) == "stopped from the W&B UI", f"{run.summary}\n{local_logs(sweep, second)}"
    assert 1 <= len(run.history) < 40 and sweep.epochs(second) == list(range(1, len(run.history) + 1))
    assert f"stopped from the W&B UI; run {second} ends here" in log
