"""agent.launch: one `wandb agent` per GPU slot, real processes (a stand-in `wandb` on PATH)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SWEEP = "my-team/mae-gap-smoke/ab12cd34"

# A stand-in for the `wandb` CLI: records its argv, env and pid, then waits for a signal.
FAKE_WANDB = textwrap.dedent('''\
    #!{python}
    import json, os, signal, sys, time
    out = os.environ["FAKE_WANDB_OUT"]
    me = {{"argv": sys.argv[1:], "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "pid": os.getpid(),
          "pgid": os.getpgid(0), "t": time.time(), "path0": os.environ["PATH"].split(os.pathsep)[0],
          "flapping": os.environ.get("WANDB_AGENT_DISABLE_FLAPPING"),
          "initial": os.environ.get("WANDB_AGENT_MAX_INITIAL_FAILURES")}}
    got = []
    def handler(signum, frame):
        got.append(signal.Signals(signum).name)
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    def record(kind, data):  # atomically: the test polls for these files
        path = os.path.join(out, "%s-%d.json" % (kind, os.getpid()))
        with open(path + ".tmp", "w") as fh:
            json.dump(data, fh)
        os.replace(path + ".tmp", path)
    record("start", me)
    print("fake wandb agent started", sys.argv[1:], flush=True)
    if os.environ.get("FAKE_WANDB_FAIL_ON") == me["cuda"]:
        sys.exit(3)
    deadline = time.time() + float(os.environ.get("FAKE_WANDB_SECONDS", "60"))
    while not got and time.time() < deadline:
        time.sleep(0.05)
    record("end", {{"signals": got}})
    print("fake wandb agent got", got, flush=True)
''')


@pytest.fixture
def fake_wandb(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "wandb"
    exe.write_text(FAKE_WANDB.format(python=sys.executable))
    exe.chmod(0o755)
    out = tmp_path / "records"
    out.mkdir()
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}", FAKE_WANDB_OUT=str(out))
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env, out


def launch(*argv: str, env: dict | None = None, cwd: Path = ROOT, timeout: float = 60):
    return subprocess.run([sys.executable, "-m", "agent.launch", *argv], env=env or os.environ.copy(), cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def records(out: Path, kind: str) -> list[dict]:
    return [json.loads(p.read_text()) | {"file": p.name} for p in sorted(out.glob(f"{kind}-*.json"))]


def test_dry_run_one_agent_per_slot(fake_wandb, tmp_path):
    env, out = fake_wandb
    res = launch(SWEEP, "--gpus", "0,1", "--per-gpu", "2", "--count", "5", "--dry-run", "--log-dir", str(tmp_path / "logs"),
                 env=env)
    assert res.returncode == 0, res.stderr
    cmds = [ln for ln in res.stdout.splitlines() if ln.startswith("CUDA_VISIBLE_DEVICES=")]
    assert len(cmds) == 4
    assert [c.split()[0] for c in cmds] == ["CUDA_VISIBLE_DEVICES=0"] * 2 + ["CUDA_VISIBLE_DEVICES=1"] * 2
    for c in cmds:
        cuda, path, *cmd = shlex.split(c.split("    # log ")[0])
        # the launching interpreter's folder first: `${interpreter}` (python) is this Python, venv or not
        assert path.startswith(f"PATH={os.path.dirname(sys.executable)}{os.pathsep}")
        assert cmd == [str(Path(env["PATH"].split(os.pathsep)[0]) / "wandb"), "agent", "--count", "5",
                       "--forward-signals", SWEEP]
    assert len({c.split("# log ")[1] for c in cmds}) == 4  # one log file per agent
    assert not list(out.iterdir()) and not (tmp_path / "logs").exists()  # nothing started


def test_gpus_all_without_a_gpu_is_a_clear_error(fake_wandb):
    env, _out = fake_wandb
    env["CUDA_VISIBLE_DEVICES"] = ""  # no device visible, whatever the machine has
    res = launch(SWEEP, "--gpus", "all", env=env)
    assert res.returncode == 2
    assert res.stderr.strip() == ("agent.launch: error: --gpus all: no GPU visible (nvidia-smi -L and torch.cuda find "
                                  "none); pass --gpus 0,1 or run `python -m agent.local`")


def test_gpus_all_counts_nvidia_smi(fake_wandb, tmp_path):
    env, _out = fake_wandb
    smi = Path(env["PATH"].split(os.pathsep)[0]) / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 (UUID: GPU-a)'\necho 'GPU 1: NVIDIA H100 (UUID: GPU-b)'\n"
                   "echo 'GPU 2: NVIDIA H100 (UUID: GPU-c)'\n")
    smi.chmod(0o755)
    res = launch(SWEEP, "--gpus", "all", "--dry-run", env=env)
    assert res.returncode == 0, res.stderr
    assert [ln.split()[0] for ln in res.stdout.splitlines() if ln.startswith("CUDA")] == [
        "CUDA_VISIBLE_DEVICES=0", "CUDA_VISIBLE_DEVICES=1", "CUDA_VISIBLE_DEVICES=2"]


@pytest.mark.parametrize("bad", ["ab12cd34", "team/ab12cd34", "team//ab12cd34", "https://wandb.ai/t/p/sweeps/x",
                                 "a/b/c/d", "team/proj/ab 12"])
def test_sweep_path_is_validated_first(bad, fake_wandb):
    env, out = fake_wandb
    res = launch(bad, "--gpus", "0", env=env)
    assert res.returncode == 2 and "is not ENTITY/PROJECT/SWEEP_ID" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not list(out.iterdir())


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_real_launch_one_process_per_slot_logs_and_signal_forwarding(fake_wandb, tmp_path, sig):
    env, out = fake_wandb
    logs = tmp_path / "logs"
    proc = subprocess.Popen([sys.executable, "-m", "agent.launch", SWEEP, "--gpus", "0,1", "--per-gpu", "2",
                             "--count", "3", "--stagger", "0.4", "--log-dir", str(logs)],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while len(records(out, "start")) < 4 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    starts = records(out, "start")
    assert len(starts) == 4, proc.communicate(timeout=5)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stdout + stderr  # the launcher exited after its agents

    # one process per slot, its own GPU, the wandb agent command line
    assert sorted(s["cuda"] for s in starts) == ["0", "0", "1", "1"]
    assert len({s["pid"] for s in starts}) == 4
    assert all(s["argv"] == ["agent", "--count", "3", "--forward-signals", SWEEP] for s in starts)
    assert all(s["path0"] == os.path.dirname(sys.executable) for s in starts)
    assert all(s["pgid"] == s["pid"] for s in starts)  # own process group: a Ctrl-C reaches it once, forwarded
    times = sorted(s["t"] for s in starts)
    assert times[-1] - times[0] >= 0.8  # staggered starts (3 gaps of 0.4 s, minus start-up jitter)
    # every child got the signal exactly once and ended
    ends = records(out, "end")
    assert len(ends) == 4 and all(e["signals"] == [sig.name] for e in ends)
    for s in starts:
        with pytest.raises(ProcessLookupError):
            os.kill(s["pid"], 0)
    # one log per agent, with the agent's output
    files = sorted(p.name for p in logs.iterdir())
    assert files == ["agent-gpu0-0.log", "agent-gpu0-1.log", "agent-gpu1-0.log", "agent-gpu1-1.log"]
    for f in files:
        text = (logs / f).read_text()
        assert "fake wandb agent started" in text and f"fake wandb agent got ['{sig.name}']" in text
    assert f"{sig.name} forwarded to 4 agent(s)" in stdout


def test_failure_guards_and_signal_forwarding_options(fake_wandb, tmp_path):
    env, out = fake_wandb
    res = launch(SWEEP, "--gpus", "0", "--dry-run", "--disable-flapping", "--max-initial-failures", "20",
                 "--max-consecutive-failed-runs", "4", "--no-forward-signals", env=env)
    assert res.returncode == 0, res.stderr
    (line,) = [ln for ln in res.stdout.splitlines() if ln.startswith("CUDA_VISIBLE_DEVICES=")]
    tokens = shlex.split(line.split("    # log ")[0])
    assert "WANDB_AGENT_DISABLE_FLAPPING=true" in tokens and "WANDB_AGENT_MAX_INITIAL_FAILURES=20" in tokens
    assert tokens[-4:] == ["agent", "--max-consecutive-failed-runs", "4", SWEEP] and "--forward-signals" not in tokens
    res = launch(SWEEP, "--gpus", "0", "--stagger", "0", "--disable-flapping", "--max-initial-failures", "20",
                 "--log-dir", str(tmp_path / "logs"), env=dict(env, FAKE_WANDB_SECONDS="0.3"))
    assert res.returncode == 0, res.stderr
    (start,) = records(out, "start")
    assert (start["flapping"], start["initial"]) == ("true", "20")
    assert launch(SWEEP, "--gpus", "0", "--max-initial-failures", "0", env=env).returncode == 2


def test_a_failed_agent_makes_the_launcher_fail(fake_wandb, tmp_path):
    env, out = fake_wandb
    env.update(FAKE_WANDB_FAIL_ON="1", FAKE_WANDB_SECONDS="0.3")
    res = launch(SWEEP, "--gpus", "0,1", "--stagger", "0", "--log-dir", str(tmp_path / "logs"), env=env)
    assert res.returncode == 1
    assert "1 of 2 agent(s) failed: gpu1-0 (exit 3)" in res.stderr
    assert len(records(out, "start")) == 2
    res = launch(SWEEP, "--gpus", "0", "--stagger", "0", "--log-dir", str(tmp_path / "logs2"),
                 env=dict(env, FAKE_WANDB_FAIL_ON="x"))
    assert res.returncode == 0 and "all 1 agent(s) done" in res.stdout


def test_spawn_writes_the_header_and_runs_in_its_own_group(tmp_path):
    from agent.spawn import spawn

    log = tmp_path / "logs" / "child.log"
    proc, fh = spawn([sys.executable, "-c", "import os; print(os.getpgid(0) == os.getpid())"], dict(os.environ), log,
                     ["first line", "second line"])
    assert proc.wait(timeout=60) == 0
    fh.close()
    assert log.read_text().splitlines() == ["# first line", "# second line", "True"]
    with pytest.raises(OSError):
        spawn([str(tmp_path / "no-such-program")], dict(os.environ), log)
    assert log.read_text().splitlines()[-1].startswith("# could not start: ")


def test_one_sweep_path_parser_with_wandbs_rules(monkeypatch):
    """W&B's rule (wandb/sdk/launch/sweeps/utils.py parse_sweep_id): 1-3 parts split on "/", the
    path's entity/project win, empty parts fall back; the pull, agent.launch and agent.local all
    parse with analysis.wandb_io.sweep_path."""
    from analysis.wandb_io.sweep_path import SweepPathError, parse_sweep_path

    monkeypatch.delenv("WANDB_ENTITY", raising=False)
    monkeypatch.setenv("WANDB_PROJECT", "env-p")
    assert parse_sweep_path("e/p/ab.c-d_1") == ("e", "p", "ab.c-d_1")
    assert parse_sweep_path("p/x", "e2", "p2") == ("e2", "p", "x")  # the path wins over the arguments
    assert parse_sweep_path("/p/x", "e2") == ("e2", "p", "x")  # an empty part falls back, as in wandb
    assert parse_sweep_path("x") == (None, "env-p", "x") and parse_sweep_path("x", use_env=False) == (None, None, "x")
    assert parse_sweep_path("wandb.ai/e/p/sweeps/x") == ("e", "p", "x")
    for bad, kw in [("", {}), ("a/b/c/d", {}), ("e/p/a b", {}), ("e/p/..", {}), ("e/p/", {}), ("e/p/x/", {}),
                    ("p/x", {"full": True}), ("e//x", {"full": True}), ("https://wandb.ai/e/p/sweeps/x", {"url": False})]:
        with pytest.raises(SweepPathError):
            parse_sweep_path(bad, **kw)
