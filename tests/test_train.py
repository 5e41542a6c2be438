"""`python -m agent.train` as a real process with W&B offline: rows, config, failures, preemption; the
end of a run stopped from the UI in-process (its two signals in either order)."""

from __future__ import annotations

import io
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from analysis.wandb_io.offline_runs import read_offline_run, run_folders
from mae_gap import metrics as M
from mae_gap.config import PRESETS

from conftest import isolated_wandb_env

REPO = Path(__file__).resolve().parents[1]
TINY = [f"--{k}={v}" for k, v in PRESETS["tiny"].items()] + [
    "--dataset=digits", "--accelerator=cpu", "--lr=0.001", "--eval_batch_size=256",
]


@pytest.fixture
def wandb_env(tmp_path):
    """agent.train's environment: W&B offline and isolated, WANDB_DIR = tmp_path (also the cwd)."""
    return isolated_wandb_env(tmp_path, wandb_dir=tmp_path, PYTHONPATH=str(REPO))


def train(env, *args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent.train", *args], env=env, cwd=env["WANDB_DIR"],
                          capture_output=True, text=True, timeout=300, **kw)


def offline_runs(wandb_dir: str, run_id: str = "*") -> list[dict]:
    dirs = run_folders(wandb_dir, None if run_id == "*" else run_id)
    return [read_offline_run(d) for d in dirs]


def test_bad_command_line_fails_fast_without_a_run(wandb_env):
    t0 = time.perf_counter()
    out = train(wandb_env, "--alpah=1")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == ["agent.train: unknown option --alpah; did you mean --alpha?"]
    assert not Path(wandb_env["WANDB_DIR"], "wandb").exists(), "no W&B run may start on a bad command line"
    assert time.perf_counter() - t0 < 30


def test_run_logs_one_row_per_epoch_with_config_and_summary(wandb_env):
    out = train(wandb_env, *TINY, "--epochs=2", "--train_limit=128", "--val_limit=64", "--alpha=-0.5",
                "--log_model=True")
    assert out.returncode == 0, out.stderr[-2000:]
    # a person's log: one line per epoch on stdout (not a TTY: no progress bar), no library noise
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("epoch ")]
    assert [ln.split()[1] for ln in lines] == ["1/2", "2/2"] and all("ETA" in ln and "img/s" in ln for ln in lines)
    for noise in ("weights_only", "litlogger", "_pytree", "LeafSpec", "Traceback"):
        assert noise not in out.stdout + out.stderr, noise
    (run,) = offline_runs(wandb_env["WANDB_DIR"])
    assert [row[M.EPOCH] for row in run["history"]] == [1, 2]
    # the reconstruction panel of the last epoch, in that epoch's row, its PNG in the run's files
    panel = run["history"][-1]
    assert panel[f"{M.VAL_RECONSTRUCTION}._type"] == "image-file"
    png = Path(run["path"]).parent / "files" / panel[f"{M.VAL_RECONSTRUCTION}.path"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"{M.VAL_RECONSTRUCTION}._type" not in run["history"][0]  # recon_every=5: the last epoch only
    # --log_model: the final weights as a model artifact with the config and final metrics
    (artifact,) = [a for a in run["artifacts"] if a["type"] == "model"]
    assert artifact["name"] == f"model-{run['run_id']}" and artifact["files"] == ["model.pt"]
    for row in run["history"]:
        assert set(M.EPOCH_KEYS) <= set(row)
    config = run["config"]
    assert config["alpha"] == -0.5 and config["epochs"] == 2
    assert {"git_commit", "package_version", "data_fingerprint"} <= set(config)
    assert run["summary"][M.VAL_MSE] == pytest.approx(run["history"][-1][M.VAL_MSE])
    assert run["exit_code"] == 0
    assert not list(Path(wandb_env["WANDB_DIR"], "checkpoints").glob("*/last.ckpt")), "finished runs keep no checkpoint"


def test_bad_data_path_fails_the_run_with_the_reason(wandb_env, tmp_path):
    missing = tmp_path / "no-such-folder"
    out = train(wandb_env, *TINY, f"--data_dir={missing}")
    assert out.returncode == 1
    (run,) = offline_runs(wandb_env["WANDB_DIR"])
    assert str(missing) in run["summary"][M.FAILURE_REASON]
    assert run["exit_code"] == 1


def run_tags(run: dict) -> list[str]:
    """The tags the run's last run record carries (the offline run file keeps them there)."""
    from analysis.wandb_io.offline_runs import iter_wandb_records

    tags: list[str] = []
    for rec in iter_wandb_records(run["path"]):
        if rec.WhichOneof("record_type") == "run":
            tags = list(rec.run.tags)
    return tags


def test_non_finite_loss_fails_a_sweep_run_once_for_good(wandb_env):
    """As a sweep runs it (WANDB_SWEEP_ID and WANDB_RUN_ID set, W&B offline as under agent.local): the
    run is marked preempting once training starts; at the first non-finite loss it stops with the
    reason, epoch, step and term in its summary (`failure/deterministic`: True), tells W&B exit code 0
    with the tag `failed` (W&B requeues a preempting run that exits non-zero; nothing clears the
    mark) and exits 1. An attempt re-issued all the same (its first attempt's end lost) finds the
    failure beside the checkpoint and ends at once, the same way, without training."""
    env = dict(wandb_env, WANDB_SWEEP_ID="localsweep", WANDB_RUN_ID="nf1")
    args = [*TINY, "--alpha_mode=weighted", "--alpha=-10", "--lr=1e30", "--train_limit=256"]
    out = train(env, *args)
    assert out.returncode == 1, out.stderr[-2000:]
    again = train(env, *args)
    assert again.returncode == 1 and "an earlier attempt of run nf1 failed (non-finite" in again.stderr
    assert "epoch 1/" not in again.stdout, "the re-issued attempt does not train"
    first, second = offline_runs(wandb_env["WANDB_DIR"], "nf1")
    summary = first["summary"]
    assert "non-finite" in summary[M.FAILURE_REASON] and summary[M.FAILURE_DETERMINISTIC] is True
    assert summary[M.FAILURE_EPOCH] == 1 and summary[M.FAILURE_STEP] >= 0
    assert summary[M.FAILURE_TERM] in ("rec", "head_ce", "probe_ce", "loss")
    assert first["history"] == [], "the failing epoch must not be logged"
    assert first["preempting"] and (first["exit_code"], run_tags(first)) == (0, ["failed"])
    assert (second["exit_code"], run_tags(second), second["history"]) == (0, ["failed"], [])
    assert second["summary"][M.FAILURE_REASON] == summary[M.FAILURE_REASON]
    assert second["summary"][M.FAILURE_DETERMINISTIC] is True


@pytest.fixture
def restore_signals():
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


class _StoppingRun:
    """What `interrupted` uses of a W&B run; `late()` (the other signal of the stop) lands in its finish."""

    id = "stop1"

    def __init__(self, late):
        self.summary, self.late, self.finished = {}, late, []

    def finish(self, exit_code: int = 0) -> None:
        self.late()
        time.sleep(0.1)  # the late signal's handler runs here
        self.finished.append(exit_code)

    def mark_preempting(self) -> None:
        raise AssertionError("a stop from the UI is not a preemption")


@pytest.mark.parametrize("first", ["stop_fn", "sigterm"])
def test_a_ui_stop_ends_the_run_stopped_whichever_signal_comes_first(first, monkeypatch, restore_signals, tmp_path):
    """Online under `wandb agent` a stop from the UI sends two signals: the agent's SIGTERM (its stop
    command, within its 5-s heartbeat) and, later, the run's own `stop_fn` (SIGINT; wandb-core hears
    of the stop from its file stream, the SDK polls it every 15 s). Either may come first and the
    other may land while the run finishes: it ends stopped (exit 0, never a preemption), and the late
    signal breaks nothing."""
    import analysis.wandb_io.compat as compat
    from agent.train import SignalRecord, StopRequest, interrupted

    monkeypatch.setenv("WANDB_SWEEP_ID", "sw1")
    monkeypatch.setattr(compat, "run_stop_requested", lambda *a, **k: True)  # the service: stopped
    stop, signals = StopRequest(), SignalRecord()

    def stop_fn():  # as W&B calls it: in a thread of its own
        thread = threading.Thread(target=stop)
        thread.start()
        thread.join()

    def sigterm():
        os.kill(os.getpid(), signal.SIGTERM)

    signals.install()
    run = _StoppingRun(late=sigterm if first == "stop_fn" else stop_fn)
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        try:
            (stop_fn if first == "stop_fn" else sigterm)()
            time.sleep(5)  # training, interrupted
        finally:
            signals.settle()
    assert interrupted(run, stop, tmp_path / "last.ckpt", signals.signum == signal.SIGTERM) == 0
    assert run.finished == [0] and run.summary[M.FAILURE_REASON] == "stopped from the W&B UI"
    assert signals.later == [signal.SIGTERM if first == "stop_fn" else signal.SIGINT]


def _checkpoint_epoch(path: Path) -> int | None:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)["epoch"]
    except Exception:  # noqa: BLE001 - not written yet
        return None


def _train_until_checkpoint(env, args, run_id: str, epoch: int):
    """Starts `agent.train` as run `run_id` and waits until its checkpoint holds Lightning's
    0-based `epoch` (epoch + 1 epochs done); returns (the process, the checkpoint path)."""
    ckpt = Path(env["WANDB_DIR"], "checkpoints", run_id, "last.ckpt")
    proc = subprocess.Popen([sys.executable, "-m", "agent.train", *args, f"--resume={run_id}"], env=env,
                            cwd=env["WANDB_DIR"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while _checkpoint_epoch(ckpt) != epoch:
        assert proc.poll() is None and time.monotonic() < deadline, f"run ended before checkpoint epoch {epoch}"
        time.sleep(0.05)
    return proc, ckpt


def _wandb_core_of(pid: int) -> list[int]:
    return [c for c in _children(pid) if "wandb-core" in Path(f"/proc/{c}/cmdline").read_text()]


def test_sigterm_then_resume_gives_each_epoch_once_and_the_uninterrupted_result(wandb_env):
    """Preempted in epoch 3 with its checkpoint put back to epoch 1, as if the signal had come after
    epoch 2's row was logged but before its checkpoint was written: the resumed run trains epoch 2
    again and does not log it again; every epoch once, each equal to an uninterrupted run's."""
    args = [*TINY, "--epochs=5", "--train_limit=1024", "--val_limit=128", "--batch_size=32", "--knn_every=0"]
    proc, ckpt = _train_until_checkpoint(wandb_env, args, "pre123", 0)  # one epoch done
    first_epoch = ckpt.read_bytes()
    assert torch.load(io.BytesIO(first_epoch), map_location="cpu", weights_only=False)["epoch"] == 0, "too late"
    deadline = time.monotonic() + 240
    while _checkpoint_epoch(ckpt) != 1:  # two epochs done
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # during epoch 3
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    ckpt.write_bytes(first_epoch)

    resumed = train(wandb_env, *args, "--resume=pre123")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming run pre123 from {ckpt}" in resumed.stderr
    assert "trained epoch(s) [2] again but did not log them" in resumed.stderr

    reference = train(wandb_env, *args, "--resume=ref456")
    assert reference.returncode == 0

    first, second = offline_runs(wandb_env["WANDB_DIR"], "pre123")
    assert first["exit_code"] == 143
    epochs = [row[M.EPOCH] for row in first["history"] + second["history"]]
    assert epochs == [1, 2, 3, 4, 5], epochs
    (ref,) = offline_runs(wandb_env["WANDB_DIR"], "ref456")
    assert [row[M.EPOCH] for row in ref["history"]] == [1, 2, 3, 4, 5]
    off = (M.VAL_KNN_ACC, M.VAL_LINEAR_ACC, M.VAL_LINEAR_CONVERGED, M.VAL_LINEAR_ITERS)  # knn_every=0: NaN
    for ours, theirs in zip(first["history"] + second["history"], ref["history"]):
        for key in (*M.VAL_KEYS, *M.TRAIN_KEYS):  # every metric of every epoch (perf/* are wall-clock)
            if key in off:
                assert math.isnan(ours[key]) and math.isnan(theirs[key])
            else:
                assert ours[key] == pytest.approx(theirs[key], abs=1e-4), (ours[M.EPOCH], key)


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc to find wandb-core")
def test_sigterm_to_the_run_and_its_wandb_core_loses_no_logged_epoch(wandb_env):
    # SLURM signals every process of the job, wandb-core included, which stops at once. The run
    # must exit 143 without a traceback, keep the epochs wandb-core had flushed (it flushes every
    # FLUSH_INTERVAL_S), and resume from its checkpoint to one complete history.
    from agent.train import FLUSH_INTERVAL_S

    args = [*TINY, "--epochs=4", "--train_limit=1024", "--val_limit=128", "--batch_size=32", "--knn_every=0"]
    proc, ckpt = _train_until_checkpoint(wandb_env, args, "both123", 1)  # two epochs done
    time.sleep(FLUSH_INTERVAL_S + 1.0)  # wandb-core's next flush of the run file
    core = _wandb_core_of(proc.pid)
    assert core, "wandb-core not found among the run's children"
    for pid in [proc.pid, *core]:
        os.kill(pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "Traceback" not in err, err[-3000:]
    (killed,) = offline_runs(wandb_env["WANDB_DIR"], "both123")
    logged = [row[M.EPOCH] for row in killed["history"]]
    assert logged[:2] == [1, 2], logged

    resumed = train(wandb_env, *args, "--resume=both123")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    from analysis.pull.offline import load_offline_runs

    table = load_offline_runs(wandb_env["WANDB_DIR"]).table
    assert table[table["run_id"] == "both123"][M.EPOCH].tolist() == [1, 2, 3, 4]


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc to find wandb-core")
def test_wandb_core_dying_alone_is_not_a_deterministic_failure(wandb_env):
    # wandb-core killed on its own (OOM killer, a node agent): the next W&B call of the run fails.
    # That is no property of the grid point: no failure marker, no traceback, and the next start
    # resumes from the checkpoint and logs again the epochs W&B lost.
    args = [*TINY, "--epochs=3", "--train_limit=512", "--val_limit=128", "--batch_size=32", "--knn_every=0"]
    proc, ckpt = _train_until_checkpoint(wandb_env, args, "core123", 0)  # one epoch done
    (core,) = _wandb_core_of(proc.pid)
    os.kill(core, signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "lost wandb-core" in err, err[-2000:]
    assert "Traceback" not in err, err[-3000:]
    assert not ckpt.with_name("failed.txt").exists(), "a lost wandb-core must not block the re-issued attempt"

    resumed = train(wandb_env, *args, "--resume=core123")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    from analysis.pull.offline import load_offline_runs

    table = load_offline_runs(wandb_env["WANDB_DIR"]).table
    assert table[table["run_id"] == "core123"][M.EPOCH].tolist() == [1, 2, 3]


def test_ddp_rank_zero_alone_owns_the_w_and_b_run(wandb_env):
    # devices=2 on the CPU: Lightning's DDP launcher starts this program again for rank 1; only
    # rank 0 may start a W&B run (the same run id from two processes would corrupt it).
    out = train(wandb_env, *TINY, "--devices=2", "--epochs=1", "--train_limit=128", "--val_limit=64",
                "--knn_every=0", "--resume=ddp1")
    assert out.returncode == 0, out.stderr[-3000:]
    runs = offline_runs(wandb_env["WANDB_DIR"])
    assert [r["run_id"] for r in runs] == ["ddp1"] and [row[M.EPOCH] for row in runs[0]["history"]] == [1]
