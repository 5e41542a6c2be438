"""The program every sweep run executes: argv -> TrainConfig -> W&B run -> Lightning -> exit code.

    python -m agent.train --alpha=-0.5 --lr=0.0001          # by hand
    wandb agent ENTITY/PROJECT/SWEEP_ID                      # the sweep's `command:` runs this
    python -m agent.local sweeps/smoke.yaml                  # the embedded controller runs this

Exit codes: 0 finished, or stopped from the W&B UI (the summary says so; W&B does not requeue an
exit 0); 1 the run failed (non-finite loss, bad data, exception) with the reason in the run summary;
2 bad command line (nothing started); 143 / 130 preempted by SIGTERM / SIGINT: the next start with
the same run id resumes from the last epoch checkpoint (`wandb agent` re-issues it; by hand:
`python -m agent.train --resume RUN_ID ...`).

Under a sweep the run is marked preempting as soon as training starts (W&B's contract: a
preempting run that exits non-zero or goes silent is requeued, "repeatedly, including for bugs";
exit code 0 is finished, never requeued; docs.wandb.ai/models/sweeps/signal-handling-sweep-runs),
so a run killed together with its wandb-core (SLURM signals every process of a job) or lost with
its node still comes back. Bad data fails before that mark: `run.finish(exit_code=1)`, failed,
never requeued. A failure after it (non-finite loss, an exception) cannot be unmarked (the SDK has
no call that clears the mark), so the run tells W&B exit code 0 (`run.finish(exit_code=0)`: not
requeued, whatever the service does with the mark), records the failure in its summary
(`failure/reason`, `failure/deterministic`: the analysis reads such a run as failed), tags itself
`failed` and writes the failure beside its checkpoint; the process itself still exits 1 (`wandb
agent` counts it as failed). If that finish never reached W&B (wandb-core gone), the run is
requeued like a silent one, and the re-issued attempt finds the failure and ends the same way
without training. Only DDP rank 0 starts a W&B run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from mae_gap import __version__
from mae_gap import metrics as M
from mae_gap.config import ConfigError, TrainConfig, parse_args

EXIT_FAILED, EXIT_USAGE, EXIT_SIGINT, EXIT_SIGTERM = 1, 2, 130, 143
STOP_STATUS_TIMEOUT_S = 10.0  # how long a SIGTERM waits for the service to say "stopped from the UI"
HISTORY_TIMEOUT_S = 60.0  # how long a resumed run waits for the service's copy of its history
FAILED_TAG = "failed"  # the tag of a run that failed deterministically (W&B shows it finished: exit 0)
FLUSH_INTERVAL_S = 1.0  # wandb-core's run-file flush interval (its default: 15 s)
RUN_ID_ENV = "MAE_GAP_RUN_ID"  # rank 0's W&B run id, for the DDP ranks it launches


@dataclass
class RunOptions:
    """W&B options of this process (not part of the experiment's config)."""

    project: str = field(default="", metadata={"help": "W&B project (default: $WANDB_PROJECT, the sweep's, or mae-gap)"})
    entity: str = field(default="", metadata={"help": "W&B entity (default: $WANDB_ENTITY or your default entity)"})
    resume: str = field(default="", metadata={"help": "run id to resume from its last epoch checkpoint (under an agent: $WANDB_RUN_ID)"})
    group: str = field(default="", metadata={"help": "W&B run group"})
    log_model: bool = field(default=False, metadata={"help": "log the final weights as a W&B model artifact model-<run id>"})


def git_commit() -> str:
    """The commit of the code that runs, or "" outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def run_config(cfg: TrainConfig, fingerprint: str = "") -> dict[str, Any]:
    """What W&B records as the run config: every TrainConfig field plus provenance (SPEC §4)."""
    extra = {"git_commit": git_commit(), "package_version": __version__}
    if fingerprint:
        extra["data_fingerprint"] = fingerprint
    return {**cfg.to_dict(), **extra}


class StopRequest:
    """`wandb.Settings.stop_fn`: W&B calls it (in a thread) when the run is stopped from the UI. It
    notes the request, then interrupts the main thread as W&B's default would (SIGINT), so that the
    interrupt can be told apart from a preemption. Online only: wandb 0.31's `RunStopChecker` asks
    wandb-core every 15 s, and wandb-core knows of a stop from the answers of its file stream (sent at
    most every 15 s), so under `wandb agent` (heartbeat every 5 s) the agent's SIGTERM usually comes
    first; either order ends the run as stopped (`interrupted`)."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self) -> None:
        self.requested = True
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)


class SignalRecord:
    """Remembers the first SIGTERM/SIGINT during training. Lightning acts on SIGTERM only at the next
    batch; wandb-core, signalled with the job, may already be gone, so a W&B call in between raises
    first, and that error must still end the run as preempted (143/130), not as failed. Once the
    attempt is over (`settle`), later signals are only noted: the run is ending, and a second signal
    (`wandb agent`'s SIGTERM after the run's own stop_fn, or the reverse) must not break its finish."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.later: list[int] = []  # signals after `settle`

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handler(signal.getsignal(sig)))

    def settle(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: self.later.append(signum))

    def _handler(self, previous):
        def record(signum, frame):
            self.signum = self.signum or signum
            if signal.getsignal(signum) is not record:
                return  # Lightning's composite called us: it stops at the next batch
            if callable(previous):
                previous(signum, frame)
            raise SystemExit(EXIT_SIGTERM if signum == signal.SIGTERM else EXIT_SIGINT)

        return record


def start_run(cfg: TrainConfig, opts: RunOptions, stop: StopRequest | None = None):
    import wandb

    from analysis.wandb_io.compat import run_settings

    run = wandb.init(
        # Under a sweep W&B takes the sweep's project and ignores (with a warning) any other.
        project=opts.project or (None if os.environ.get("WANDB_SWEEP_ID") or os.environ.get("WANDB_PROJECT") else "mae-gap"),
        entity=opts.entity or None,
        id=opts.resume or None,
        group=opts.group or None,
        config=run_config(cfg),
        resume="allow",  # the same run id continues after preemption (SPEC §7)
        job_type="train",
        # A wandb-core killed with the job (SLURM signals every process) loses what it has not
        # flushed to the run file: flush every second, not every 15 s.
        settings=run_settings(stop_fn=stop, flush_interval_s=FLUSH_INTERVAL_S),
    )
    return run


def define_epoch_axis(run) -> None:
    """`epoch` is the x axis of every metric (WandbLogger defaults to trainer/global_step)."""
    run.define_metric(M.EPOCH)
    for key in M.EPOCH_KEYS[1:]:
        run.define_metric(key, step_metric=M.EPOCH)


def attach_logger(run, cfg: TrainConfig, data):
    """Lightning's WandbLogger on `run` (`OncePerEpochLogger`: told the epochs an earlier attempt got
    into W&B, it logs none of them again), with the epoch axis; the run config gains the data's
    fingerprint, the lr actually used and the training length (runs of different batch sizes
    then compare like with like)."""
    from agent.epoch_logger import OncePerEpochLogger
    from mae_gap.module import steps_per_epoch

    n_steps = steps_per_epoch(cfg, int(data.train_labels.shape[0]))
    run.config.update({"data_fingerprint": data.fingerprint, "effective_lr": cfg.effective_lr,
                       "steps_per_epoch": n_steps, "total_steps": n_steps * cfg.epochs}, allow_val_change=True)
    logger = OncePerEpochLogger(experiment=run, logged=epochs_in_wandb(run))
    logger.experiment  # WandbLogger defines its own step metric on first access; ours overrides it
    define_epoch_axis(run)
    return logger


def checkpoint_path(cfg: TrainConfig, run_id: str) -> Path:
    """Where run `run_id` keeps its latest epoch checkpoint: ckpt_dir, else WANDB_DIR/checkpoints."""
    root = Path(cfg.ckpt_dir) if cfg.ckpt_dir else Path(os.environ.get("WANDB_DIR") or ".") / "checkpoints"
    return root / run_id / "last.ckpt"


def fail(run, reason: str, epoch: int | None = None, step: int | None = None, term: str | None = None,
         marker: Path | None = None, marked: bool = False) -> int:
    """Record the failure (its reason and, for divergence, where) in the run summary; returns the
    process's exit code, 1.

    Every failure that is not a signal is deterministic (bad data, non-finite loss, a bug): the
    summary says so (`failure/deterministic`) and so does a marker file beside the checkpoint, which
    an attempt W&B re-issues finds. A run `marked` preempting (or that may still be, on W&B) ends with
    exit code 0 on W&B and the tag `failed`: W&B requeues a preempting run that exits non-zero, and no
    SDK call clears the mark. Otherwise W&B gets exit code 1 and shows the run failed.
    """
    summary = {M.FAILURE_REASON: reason, M.FAILURE_DETERMINISTIC: True}
    if epoch is not None:
        summary.update({M.FAILURE_EPOCH: epoch, M.FAILURE_STEP: step, M.FAILURE_TERM: term})
    if marker is not None:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(reason + "\n")
    try:
        run.summary.update(summary)
        if marked:
            run.tags = (*[t for t in run.tags or () if t != FAILED_TAG], FAILED_TAG)
        run.finish(exit_code=0 if marked else EXIT_FAILED)
    except Exception:  # noqa: BLE001 - wandb-core gone; the marker (if any) still records the failure
        return exit_without_wandb(EXIT_FAILED, f"wandb-core is gone; the run failed: {reason}")
    return EXIT_FAILED


def exit_without_wandb(code: int, why: str) -> int:
    """wandb-core is gone (killed together with this process): say so in one line and leave at once;
    W&B's own exit hooks would only print tracebacks about the lost connection."""
    print(f"agent.train: {why}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def failure_marker(cfg: TrainConfig, run_id: str) -> Path:
    """Where a deterministic failure of run `run_id` is recorded (beside its checkpoint, so that the
    attempt W&B re-issues finds it on any node that shares the checkpoint folder, offline too)."""
    return checkpoint_path(cfg, run_id).with_name("failed.txt")


def previous_attempt_failed(run, marker: Path) -> str | None:
    """The reason, if an earlier attempt of this run failed deterministically."""
    if marker.exists():
        return marker.read_text().strip() or "failed"
    summary = dict(run.summary or {}) if getattr(run, "resumed", False) else {}
    return str(summary.get(M.FAILURE_REASON)) if summary.get(M.FAILURE_DETERMINISTIC) else None


def checkpoint_rows(ckpt: Path) -> list[dict[str, float]]:
    """The epoch rows logged up to the checkpoint (mae_gap.module saves them in it)."""
    import torch

    from mae_gap.module import HISTORY_KEY

    return list(torch.load(ckpt, map_location="cpu", weights_only=False).get(HISTORY_KEY, []))


def stored_epochs(run, timeout_s: float = HISTORY_TIMEOUT_S) -> set[int] | None:
    """The epochs of the history the service stores for `run` (the public API's `Run.scan_history`),
    or None when it cannot tell within `timeout_s`."""
    import wandb

    answer: dict[str, set[int]] = {}

    def ask() -> None:
        with contextlib.suppress(Exception):  # any failure: None, and the caller falls back
            rows = wandb.Api(timeout=int(timeout_s)).run(f"{run.entity}/{run.project}/{run.id}").scan_history(
                keys=[M.EPOCH], use_cache=False)
            answer["epochs"] = {int(r[M.EPOCH]) for r in rows if isinstance(r.get(M.EPOCH), (int, float))}

    thread = threading.Thread(target=ask, name="stored-epochs", daemon=True)
    thread.start()
    thread.join(timeout_s)
    return answer.get("epochs")


def epochs_in_wandb(run) -> set[int]:
    """The epochs an earlier attempt of `run` got into W&B. Online: the rows the service stores (a
    resumed run's summary can name an epoch whose row never arrived: wandb 0.31's wandb-core sends a
    step's summary update before its history row, and a killed attempt can lose the row alone), or,
    if the service cannot say, the resumed summary's epoch. Offline: the earlier attempts' run files
    under WANDB_DIR."""
    if getattr(run.settings, "mode", "") not in ("offline", "dryrun"):
        if not run.resumed:
            return set()
        stored = stored_epochs(run)
        if stored is not None:
            return stored
        last = dict(run.summary or {}).get(M.EPOCH)
        return set(range(1, int(last) + 1)) if isinstance(last, (int, float)) else set()
    from analysis.wandb_io.offline_runs import read_offline_history, run_folders

    root = Path(run.settings.wandb_dir)
    epochs: set[int] = set()
    for folder in run_folders(root, run.id):
        if Path(folder).resolve() == Path(run.dir).parent.resolve():
            continue  # this attempt's own folder
        with contextlib.suppress(OSError, ValueError):
            epochs.update(int(r[M.EPOCH]) for r in read_offline_history(folder) if M.EPOCH in r)
    return epochs


def relog_lost_epochs(logger, ckpt: Path) -> list[int]:
    """Logs again the epoch rows the checkpoint has but W&B lost (a run killed together with its
    wandb-core loses what was logged after wandb-core's last flush; its checkpoint may be newer).
    `logger` knows the epochs W&B holds (`OncePerEpochLogger`)."""
    lost = [row for row in checkpoint_rows(ckpt) if not logger.already_logged(row[M.EPOCH])]
    for row in lost:
        logger.log_metrics(row)
    return [int(r[M.EPOCH]) for r in lost]


def rank() -> int:
    """This process's rank: Lightning's DDP launcher re-runs this program for ranks > 0 (LOCAL_RANK)."""
    return int(os.environ.get("NODE_RANK", "0") or 0) + int(os.environ.get("LOCAL_RANK", "0") or 0)


def train_other_rank(cfg: TrainConfig) -> int:
    """A DDP rank > 0: the same training, no W&B run (rank 0 owns it; SPEC §6), the same checkpoint."""
    from mae_gap.module import EpochCheckpoint, fit

    ckpt = checkpoint_path(cfg, os.environ[RUN_ID_ENV])
    fit(cfg, callbacks=[EpochCheckpoint(ckpt)], ckpt_path=str(ckpt) if ckpt.exists() else None)
    return 0


def under_sweep() -> bool:
    """Is this run a sweep's (`wandb agent` or agent.local set WANDB_SWEEP_ID)?"""
    return bool(os.environ.get("WANDB_SWEEP_ID"))


def train_attempt(run, cfg: TrainConfig, ckpt: Path, signals: SignalRecord, progress: dict[str, bool]):
    """One attempt's training: data, logger, the preempting mark (`progress["marked"]`), the epochs W&B
    lost, fit; returns fit's result. However it ends, later signals are only noted (`settle`)."""
    from mae_gap.data import check_source, load_data

    resume_from = str(ckpt) if ckpt.exists() else None
    try:
        signals.install()
        check_source(cfg)  # bad input fails here, before Lightning and timm are imported (seconds)
        data = load_data(cfg)
        from agent.media import ReconstructionPanel
        from mae_gap.module import EpochCheckpoint, fit

        logger = attach_logger(run, cfg, data)
        if under_sweep():
            # From here on a run that dies silently (node lost, wandb-core killed with the job) is
            # requeued by W&B. Not earlier: bad data fails the run for good, never requeued.
            run.mark_preempting()
            progress["marked"] = True
        if resume_from:
            print(f"agent.train: resuming run {run.id} from {resume_from}", file=sys.stderr)
            relogged = relog_lost_epochs(logger, ckpt)
            if relogged:
                print(f"agent.train: logged again epoch(s) {relogged}: the killed attempt's W&B record lacked them",
                      file=sys.stderr)
        callbacks = [EpochCheckpoint(ckpt), ReconstructionPanel(run, cfg, logger)]
        result = fit(cfg, logger=logger, data=data, callbacks=callbacks, ckpt_path=resume_from)
        if logger.dropped:
            print(f"agent.train: trained epoch(s) {logger.dropped} again but did not log them: an earlier attempt "
                  "had (it was stopped between logging an epoch and checkpointing it)", file=sys.stderr)
        return result
    finally:
        signals.settle()


def complete(run, cfg: TrainConfig, opts: RunOptions, ckpt: Path, result, resumed: bool) -> int:
    """The run trained every epoch: final summary, the model artifact if asked, finish, no checkpoint."""
    from agent.media import log_model_artifact

    if result.history:
        run.summary.update(result.history[-1])
    if opts.log_model:
        print(f"agent.train: logged model artifact {log_model_artifact(run, result.module.model, cfg, result.history[-1])}",
              file=sys.stderr)
    if resumed:
        run.summary[M.FAILURE_REASON] = None  # the preemption note of an earlier attempt no longer holds
    run.finish()
    ckpt.unlink(missing_ok=True)  # the run is complete: nothing left to resume
    with contextlib.suppress(OSError):
        ckpt.parent.rmdir()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        cfg, opts = parse_args(argv, TrainConfig, RunOptions)
    except ConfigError as err:
        print(f"agent.train: {err}", file=sys.stderr)
        return EXIT_USAGE
    if rank() > 0:
        return train_other_rank(cfg)

    # The W&B run starts before the heavy imports: the sweep sees this grid point taken as early as
    # possible (two agents asking at once can otherwise be handed the same point).
    stop, signals = StopRequest(), SignalRecord()
    run = start_run(cfg, opts, stop)
    marker = failure_marker(cfg, run.id)
    # A resumed sweep run may still be marked preempting on W&B (an earlier attempt's mark): W&B
    # documents no reset, so a failure must then end it as a marked one (`fail`).
    progress = {"marked": under_sweep() and bool(run.resumed)}
    earlier = previous_attempt_failed(run, marker)
    if earlier:  # re-issued after a deterministic failure whose end never reached W&B: end it now
        print(f"agent.train: an earlier attempt of run {run.id} failed ({earlier}); not training again",
              file=sys.stderr)
        return fail(run, earlier, marked=under_sweep())
    os.environ[RUN_ID_ENV] = run.id  # DDP ranks > 0 find the checkpoint through it

    from mae_gap.data import DataError
    from mae_gap.losses import NonFiniteLoss  # torch only: bad data fails before Lightning is imported

    ckpt = checkpoint_path(cfg, run.id)
    resumed = bool(run.resumed) or ckpt.exists()
    try:
        result = train_attempt(run, cfg, ckpt, signals, progress)
    except (KeyboardInterrupt, SystemExit) as stop_exc:  # Lightning turns SIGTERM/SIGINT into SystemExit
        return interrupted(run, stop, ckpt, lightning_sigterm(stop_exc) or signals.signum == signal.SIGTERM)
    except DataError as err:  # before the preempting mark: failed, never requeued; no marker needed
        print(f"agent.train: {err}", file=sys.stderr)
        return fail(run, str(err), marked=progress["marked"])
    except NonFiniteLoss as err:
        print(f"agent.train: run failed: {err}", file=sys.stderr)
        return fail(run, str(err), err.epoch, err.step, err.term, marker=marker, marked=progress["marked"])
    except Exception as err:  # noqa: BLE001 - any other error fails the run, with its reason
        if signals.signum is not None:  # a W&B call failed after the signal (wandb-core got it too)
            print(f"agent.train: {type(err).__name__} after signal {signals.signum}: {err}", file=sys.stderr)
            return interrupted(run, stop, ckpt, signals.signum == signal.SIGTERM)
        if isinstance(err, ConnectionError):  # wandb-core died alone: not deterministic, no marker
            return exit_without_wandb(EXIT_FAILED, f"lost wandb-core ({err}); the run resumes from {ckpt} (W&B "
                                                   f"requeues a preempting run that dies; by hand: --resume={run.id})")
        traceback.print_exc()
        return fail(run, f"{type(err).__name__}: {err}", marker=marker, marked=progress["marked"])
    return complete(run, cfg, opts, ckpt, result, resumed)


def lightning_sigterm(exc: BaseException) -> bool:
    """Is `exc` Lightning's SIGTERMException (its answer to a SIGTERM)? Lightning can raise it only
    once imported, so it is not imported here to ask."""
    exceptions = sys.modules.get("pytorch_lightning.utilities.exceptions")
    return exceptions is not None and isinstance(exc, exceptions.SIGTERMException)


def stopped_from_ui(run) -> bool:
    """Under `wandb agent` a stop from the UI usually arrives first as a SIGTERM: the agent, which
    heartbeats every 5 s, answers the service's stop command with `proc.terminate()` (wandb 0.31,
    `Agent._command_stop`), while the run's own check (`StopRequest`) needs a file-stream answer and a
    15-s poll, and never comes offline. SLURM's preemption is a SIGTERM too, so ask the service which
    one this is (the `stopped` flag the UI's stop sets); when it cannot answer (no network, its
    process killed with the job) the SIGTERM is a preemption."""
    if not under_sweep():
        return False
    from analysis.wandb_io.compat import run_stop_requested

    entity = getattr(run, "entity", None) or os.environ.get("WANDB_ENTITY") or None
    project = getattr(run, "project", None) or os.environ.get("WANDB_PROJECT") or None
    return bool(run_stop_requested(entity, project, run.id, STOP_STATUS_TIMEOUT_S))


def interrupted(run, stop: StopRequest, ckpt: Path, sigterm: bool) -> int:
    """A stop from the W&B UI ends the run as stopped (exit 0: not requeued, not an agent failure),
    whichever came first, the agent's SIGTERM or the run's own `stop_fn`; any other SIGTERM/SIGINT is
    a preemption: resumable from the last epoch checkpoint."""
    if sigterm and not stop.requested and stopped_from_ui(run):
        stop.requested = True
    if stop.requested:
        print(f"agent.train: stopped from the W&B UI; run {run.id} ends here", file=sys.stderr)
        try:
            run.summary.update({M.FAILURE_REASON: "stopped from the W&B UI"})
            run.finish(exit_code=0)
        except Exception:  # noqa: BLE001 - wandb-core gone
            return exit_without_wandb(0, "wandb-core is gone; the stop stands")
        return 0
    code = EXIT_SIGTERM if sigterm else EXIT_SIGINT
    print(f"agent.train: preempted; resume with the same run id ({run.id}) from {ckpt}", file=sys.stderr)
    try:
        run.summary.update({M.FAILURE_REASON: f"preempted (signal, exit {code}); resumable from the last epoch"})
        run.mark_preempting()
        run.finish(exit_code=code)
    except Exception:  # noqa: BLE001 - wandb-core was killed with us (SLURM signals every process)
        return exit_without_wandb(code, f"wandb-core is gone (signalled with this job); the epochs it flushed are in "
                                        f"the run file, and the run resumes from {ckpt}")
    return code


if __name__ == "__main__":
    sys.exit(main())
