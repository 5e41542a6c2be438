"""The program every sweep run executes: argv -> TrainConfig -> W&B run -> Lightning -> exit code.

    python -m agent.train --alpha=-0.5 --lr=0.0001          # by hand
    wandb agent ENTITY/PROJECT/SWEEP_ID                      # the sweep's `command:` runs this
    python -m agent.local sweeps/smoke.yaml                  # the embedded controller runs this

Exit codes: 0 finished; 1 the run failed (non-finite loss, bad data, exception) with the reason
in the run summary; 2 bad command line (nothing started); 143 / 130 preempted by SIGTERM / SIGINT:
the run is marked preempting and the next start with the same run id resumes from the last epoch
checkpoint (`wandb agent` re-issues it; by hand: `python -m agent.train --resume RUN_ID ...`).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from mae_gap import __version__
from mae_gap import metrics as M
from mae_gap.config import ConfigError, TrainConfig, parse_args

EXIT_FAILED, EXIT_USAGE, EXIT_SIGINT, EXIT_SIGTERM = 1, 2, 130, 143


@dataclass
class RunOptions:
    """W&B options of this process (not part of the experiment's config)."""

    project: str = field(default="", metadata={"help": "W&B project (default: $WANDB_PROJECT, the sweep's, or mae-gap)"})
    entity: str = field(default="", metadata={"help": "W&B entity (default: $WANDB_ENTITY or your default entity)"})
    resume: str = field(default="", metadata={"help": "run id to resume from its last epoch checkpoint (under an agent: $WANDB_RUN_ID)"})
    group: str = field(default="", metadata={"help": "W&B run group"})


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


def start_run(cfg: TrainConfig, opts: RunOptions):
    import wandb

    run = wandb.init(
        # Under a sweep W&B takes the sweep's project and ignores (with a warning) any other.
        project=opts.project or (None if os.environ.get("WANDB_SWEEP_ID") or os.environ.get("WANDB_PROJECT") else "mae-gap"),
        entity=opts.entity or None,
        id=opts.resume or None,
        group=opts.group or None,
        config=run_config(cfg),
        resume="allow",  # the same run id continues after preemption (SPEC §7)
        job_type="train",
    )
    return run


def define_epoch_axis(run) -> None:
    """`epoch` is the x axis of every metric (WandbLogger defaults to trainer/global_step)."""
    run.define_metric(M.EPOCH)
    for key in M.EPOCH_KEYS[1:]:
        run.define_metric(key, step_metric=M.EPOCH)


def checkpoint_path(cfg: TrainConfig, run_id: str) -> Path:
    """Where run `run_id` keeps its latest epoch checkpoint: ckpt_dir, else WANDB_DIR/checkpoints."""
    root = Path(cfg.ckpt_dir) if cfg.ckpt_dir else Path(os.environ.get("WANDB_DIR") or ".") / "checkpoints"
    return root / run_id / "last.ckpt"


def fail(run, reason: str, epoch: int | None = None, step: int | None = None, term: str | None = None) -> int:
    """Mark the run failed with the reason (and, for divergence, where) in its summary."""
    summary = {M.FAILURE_REASON: reason}
    if epoch is not None:
        summary.update({M.FAILURE_EPOCH: epoch, M.FAILURE_STEP: step, M.FAILURE_TERM: term})
    run.summary.update(summary)
    run.finish(exit_code=EXIT_FAILED)
    return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    try:
        cfg, opts = parse_args(argv, TrainConfig, RunOptions)
    except ConfigError as err:
        print(f"agent.train: {err}", file=sys.stderr)
        return EXIT_USAGE

    # Heavy imports only after the command line is known to be good.
    from pytorch_lightning.loggers import WandbLogger
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    from mae_gap.data import DataError, check_source, load_data
    from mae_gap.module import EpochCheckpoint, NonFiniteLoss, fit, steps_per_epoch

    run = start_run(cfg, opts)
    ckpt = checkpoint_path(cfg, run.id)
    resume_from = str(ckpt) if ckpt.exists() else None
    try:
        check_source(cfg)
        data = load_data(cfg)
        n_steps = steps_per_epoch(cfg, int(data.train_labels.shape[0]))
        # Training length and the lr actually used, so runs of different batch sizes compare like with like.
        run.config.update({"data_fingerprint": data.fingerprint, "effective_lr": cfg.effective_lr,
                           "steps_per_epoch": n_steps, "total_steps": n_steps * cfg.epochs}, allow_val_change=True)
        logger = WandbLogger(experiment=run)
        logger.experiment  # WandbLogger defines its own step metric on first access; ours overrides it
        define_epoch_axis(run)
        if resume_from:
            print(f"agent.train: resuming run {run.id} from {resume_from}", file=sys.stderr)
        result = fit(cfg, logger=logger, data=data, callbacks=[EpochCheckpoint(ckpt)], ckpt_path=resume_from)
    except (KeyboardInterrupt, SystemExit) as stop:  # Lightning turns SIGTERM/SIGINT into SystemExit
        code = EXIT_SIGTERM if isinstance(stop, SIGTERMException) else EXIT_SIGINT
        print(f"agent.train: preempted; resume with the same run id ({run.id}) from {ckpt}", file=sys.stderr)
        run.summary.update({M.FAILURE_REASON: f"preempted (signal, exit {code}); resumable from the last epoch"})
        run.mark_preempting()
        run.finish(exit_code=code)
        return code
    except DataError as err:
        print(f"agent.train: {err}", file=sys.stderr)
        return fail(run, str(err))
    except NonFiniteLoss as err:
        print(f"agent.train: run failed: {err}", file=sys.stderr)
        return fail(run, str(err), err.epoch, err.step, err.term)
    except Exception as err:  # noqa: BLE001 - any other error fails the run, with its reason
        traceback.print_exc()
        return fail(run, f"{type(err).__name__}: {err}")
    if result.history:
        run.summary.update(result.history[-1])
    if resume_from:
        run.summary[M.FAILURE_REASON] = None  # the preemption note of the earlier attempt no longer holds
    run.finish()
    ckpt.unlink(missing_ok=True)  # the run is complete: nothing left to resume
    with contextlib.suppress(OSError):
        ckpt.parent.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
