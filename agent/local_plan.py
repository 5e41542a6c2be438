"""The plan of an `agent.local` sweep: its grid of runs (`Run`), their environment as `wandb agent`
sets it, the manifest (`sweep.json`) that `--resume` reads back. See `agent.local`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import string
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.sweep_config import SweepConfigError, build_command, grid, load, parse_override, validate
from analysis.wandb_io.sweep_path import SweepPathError, parse_sweep_path
from mae_gap.alpha import AlphaPolicy
from mae_gap.config import TrainConfig
from mae_gap.fileio import write_json

MANIFEST = "sweep.json"


def new_id(length: int = 8) -> str:
    """An id in W&B's run/sweep id alphabet (lower-case letters and digits)."""
    rng = random.SystemRandom()
    return "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(length))


@dataclass
class Run:
    index: int
    run_id: str
    params: dict[str, Any]
    command: list[str] = field(default_factory=list)
    state: str = "pending"  # pending | running | finished | failed | preempted | crashed | killed | skipped
    exit_code: int | None = None
    seconds: float | None = None
    log: str = ""
    run_dir: str = ""
    summary: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class Plan:
    yaml_path: str
    config: dict[str, Any]
    values: dict[str, list[Any]]
    overrides: dict[str, Any]
    sweep_id: str  # the local id, or the W&B sweep id given with --sweep-id
    remote_sweep: str  # ENTITY/PROJECT/ID of a real W&B sweep ("" = local only)
    project: str
    entity: str
    group: str
    out_dir: Path
    wandb_dir: Path
    online: bool
    runs: list[Run]

    @property
    def todo(self) -> list[Run]:
        """The runs still to run: neither finished nor skipped (`--skip-equivalent`)."""
        return [r for r in self.runs if r.state not in ("finished", "skipped")]

    @property
    def skipped(self) -> list[Run]:
        return [r for r in self.runs if r.state == "skipped"]

    @property
    def name(self) -> str:
        return str(self.config.get("name") or Path(self.yaml_path).stem)

    def param_path(self, run: Run) -> Path:
        # wandb_agent.py: os.path.join(WANDB_DIR, "wandb", f"sweep-{sweep_id}", f"config-{run_id}.yaml")
        return self.wandb_dir / "wandb" / f"sweep-{self.sweep_id}" / f"config-{run.run_id}.yaml"

    def args_json_path(self, run: Run) -> Path:
        return self.wandb_dir / "wandb" / f"sweep-{self.sweep_id}" / f"config-{run.run_id}.json"

    def env(self, run: Run, gpu: str | None = None, base: dict[str, str] | None = None) -> dict[str, str]:
        """The run's environment, as `wandb agent` sets it (see the module docstring)."""
        env = dict(os.environ if base is None else base)
        env.pop("WANDB_SERVICE", None)  # AgentProcess drops the parent's service connection
        env["WANDB_DIR"] = str(self.wandb_dir)
        env["WANDB_RUN_ID"] = run.run_id
        env["WANDB_SWEEP_PARAM_PATH"] = str(self.param_path(run))
        env["WANDB_PROJECT"] = self.project
        if self.entity:
            env["WANDB_ENTITY"] = self.entity
        if self.remote_sweep:
            env["WANDB_SWEEP_ID"] = self.sweep_id
        else:
            env.pop("WANDB_SWEEP_ID", None)
            env["WANDB_RUN_GROUP"] = self.group
        if not self.online:
            env["WANDB_MODE"] = "offline"
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        # `${interpreter}` is "python" (as in wandb agent): resolve it to this interpreter first
        bindir = os.path.dirname(sys.executable)
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "") if bindir else env.get("PATH", "")
        return env

    def save(self) -> None:
        data = {
            "yaml": self.yaml_path,
            "config": self.config,
            "overrides": self.overrides,
            "sweep_id": self.sweep_id,
            "remote_sweep": self.remote_sweep,
            "project": self.project,
            "entity": self.entity,
            "group": self.group,
            "wandb_dir": str(self.wandb_dir),
            "online": self.online,
            "runs": [r.to_json() for r in self.runs],
        }
        write_json(self.out_dir / MANIFEST, data, indent=1)


def make_plan(args: argparse.Namespace) -> Plan:
    """Parse, validate and expand everything; raises SweepConfigError. Writes nothing."""
    overrides = dict(parse_override(text) for text in args.set or [])
    if args.resume:
        return _resume_plan(args, overrides)
    if not args.sweep:
        raise SweepConfigError("give a sweep YAML (python -m agent.local sweeps/smoke.yaml) or --resume DIR")
    if args.skip_equivalent and args.sweep_id:
        raise SweepConfigError("--skip-equivalent leaves grid points of the W&B sweep open for its next agent, "
                               "which would train them: drop --skip-equivalent with --sweep-id")
    config = load(args.sweep)
    values = validate(config, args.sweep, overrides)
    remote, sweep_id, project, entity = "", new_id(), args.project, args.entity
    if args.sweep_id:  # W&B's rules (analysis.wandb_io.sweep_path): the path's entity / project win, as in wandb agent
        try:
            e, p, sweep_id = parse_sweep_path(args.sweep_id, entity, project, use_env=False, url=False)
        except SweepPathError as exc:
            raise SweepConfigError(f"--sweep-id: {exc}") from None
        project, entity, remote = p or "", e or "", args.sweep_id
    project = project or str(config.get("project") or "") or os.environ.get("WANDB_PROJECT") or "mae-gap-local"
    entity = entity or str(config.get("entity") or "") or os.environ.get("WANDB_ENTITY", "")
    name = str(config.get("name") or Path(args.sweep).stem)
    out_dir = Path(args.out or os.path.join("outputs", "local", f"{name}-{sweep_id}")).resolve()
    wandb_dir = Path(args.wandb_dir).resolve() if args.wandb_dir else out_dir
    runs = [Run(i, new_id(), params) for i, params in enumerate(grid(values))]
    plan = Plan(args.sweep, config, values, overrides, sweep_id, remote, project, entity,
                f"{name}-{sweep_id}", out_dir, wandb_dir, args.online, runs)
    for run in runs:
        run.command = build_command(config, run.params, str(plan.args_json_path(run)))
        run.log = str(out_dir / "logs" / f"{run.index:03d}-{run.run_id}.log")
    if args.skip_equivalent:
        skip_equivalent(runs)
    return plan


def equivalence_key(params: dict[str, Any]) -> str:
    """Grid points with equal keys train the same thing: the parameters with `alpha_mode` replaced
    by the mode that really runs (`AlphaPolicy.runs`: confusion at alpha >= 0 is grl)."""
    policy = AlphaPolicy(float(params.get("alpha", TrainConfig.alpha)), params.get("alpha_mode", TrainConfig.alpha_mode))
    return json.dumps({**params, "alpha_mode": policy.runs}, sort_keys=True, default=str)


def skip_equivalent(runs: list[Run]) -> None:
    """Marks each grid point that trains what an earlier point trains as skipped, naming that run
    (`--skip-equivalent`; `wandb agent` runs every point)."""
    first: dict[str, Run] = {}
    for run in runs:
        covered_by = first.setdefault(equivalence_key(run.params), run)
        if covered_by is not run:
            run.state = "skipped"
            run.summary = {"skipped": f"trains what run {covered_by.run_id} trains"}


def _resume_plan(args: argparse.Namespace, overrides: dict[str, Any]) -> Plan:
    path = Path(args.resume) / MANIFEST
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SweepConfigError(f"--resume {args.resume}: no readable {MANIFEST} there ({exc})") from None
    if overrides or args.sweep:
        raise SweepConfigError("--resume re-runs the saved grid: give neither a YAML nor --set")
    values = validate(data["config"], data["yaml"], data.get("overrides") or {})
    runs = [Run(**r) for r in data["runs"]]
    if [r.params for r in runs] != grid(values):
        raise SweepConfigError(f"--resume {args.resume}: {MANIFEST} does not match its own grid; start a new sweep")
    plan = Plan(data["yaml"], data["config"], values, data.get("overrides") or {}, data["sweep_id"],
                data.get("remote_sweep", ""), data["project"], data.get("entity", ""), data["group"],
                Path(args.resume).resolve(), Path(data["wandb_dir"]), data.get("online", False) or args.online, runs)
    for run in plan.todo:
        run.state, run.exit_code, run.seconds = "pending", None, None
    return plan

