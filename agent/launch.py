"""Start one `wandb agent` per GPU slot for a sweep that exists on W&B.

    python -m agent.launch ENTITY/PROJECT/SWEEP_ID --gpus all|0,1,2 [--per-gpu N] [--count N]
                           [--stagger SECONDS] [--log-dir DIR] [--no-forward-signals]
                           [--disable-flapping] [--max-initial-failures N]
                           [--max-consecutive-failed-runs N] [--dry-run]

Each slot (GPU x per-gpu) runs `wandb agent --forward-signals [--count N] ENTITY/PROJECT/SWEEP_ID`
with CUDA_VISIBLE_DEVICES set to its GPU and this interpreter's folder first on PATH (the sweep's
`${interpreter}` is `python` from PATH: without it an un-activated venv would run another Python).
W&B's sweep controller hands every agent the next grid point, so multi-node is the same command
on each node. Starts are staggered (parallel agents asking at the same instant can be handed the
same grid point), each agent writes its own log file, Ctrl-C / SIGTERM is forwarded once to every
agent, and the launcher waits for all of them and exits non-zero if any agent failed.

Signals (wandb 0.31, `wandb_agent.AgentProcess` and `Agent._run_loop`). Without
`--forward-signals` a `wandb agent` has no SIGTERM handler: SIGTERM kills it and its run (in its own
process group) runs on, orphaned. With it (the default here) the agent passes every signal to its
run and starts its shutdown sequence: the run gets SIGTERM, checkpoints, marks itself preempting and
exits 143, and W&B requeues it. Preempted runs exit non-zero, which `wandb agent` counts as failures:
3 of them in its first 60 s stop it (the flapping guard,
`--disable-flapping` = WANDB_AGENT_DISABLE_FLAPPING=true), and so do 5 failures before any success
(`--max-initial-failures N` = WANDB_AGENT_MAX_INITIAL_FAILURES); `--max-consecutive-failed-runs N`
is passed to `wandb agent` (wandb >= 0.31).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.spawn import spawn
from agent.sweep_config import SweepConfigError, parse_gpus, relpath
from analysis.wandb_io.sweep_path import SweepPathError, parse_sweep_path

POLL_S = 0.2


def wandb_executable() -> list[str]:
    """`wandb` from PATH, else the one next to this interpreter, else `python -m wandb`."""
    found = shutil.which("wandb")
    if found:
        return [found]
    beside = Path(sys.executable).with_name("wandb")
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    return [sys.executable, "-m", "wandb"]


def agent_command(sweep: str, count: int | None, forward_signals: bool, exe: list[str] | None = None,
                  max_consecutive_failed: int | None = None) -> list[str]:
    cmd = [*(exe or wandb_executable()), "agent"]
    if count is not None:
        cmd += ["--count", str(count)]
    if forward_signals:
        cmd += ["--forward-signals"]
    if max_consecutive_failed is not None:
        cmd += ["--max-consecutive-failed-runs", str(max_consecutive_failed)]
    return cmd + [sweep]


def agent_env(base: dict[str, str], gpu: str, args: argparse.Namespace) -> dict[str, str]:
    """One agent's environment: its GPU, this interpreter first on PATH, the failure guards."""
    env = dict(base, CUDA_VISIBLE_DEVICES=gpu)
    bindir = os.path.dirname(sys.executable)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "") if bindir else env.get("PATH", "")
    if args.disable_flapping:
        env["WANDB_AGENT_DISABLE_FLAPPING"] = "true"
    if args.max_initial_failures is not None:
        env["WANDB_AGENT_MAX_INITIAL_FAILURES"] = str(args.max_initial_failures)
    return env


@dataclass
class AgentProc:
    name: str
    proc: subprocess.Popen
    log: str
    fh: Any
    sent: int  # how many of the launcher's received signals this agent has been sent


class Agents:
    """The agent processes; each signal to the launcher is forwarded once to each of them."""

    def __init__(self) -> None:
        self.procs: list[AgentProc] = []
        self.history: list[int] = []  # every signal received, in order
        self.received: list[tuple[int, int]] = []  # (signal, agents it reached) not yet reported
        self.signals = 0
        self.stopping = False

    def forward(self, signum: int, frame: Any = None) -> None:
        """Signal handler: send the same signal to every live agent (no printing in here)."""
        self.stopping = True
        self.history.append(signum)
        reached = sum(self._catch_up(a) for a in self.procs)
        self.received.append((signum, reached))

    def _catch_up(self, agent: AgentProc) -> int:
        """Send `agent` the signals it has not had yet (one that came while it was starting)."""
        n = 0
        while agent.sent < len(self.history):
            signum = self.history[agent.sent]
            agent.sent += 1
            if agent.proc.returncode is None:
                try:
                    os.kill(agent.proc.pid, signum)
                    n += 1
                except ProcessLookupError:
                    pass
        return n

    def report_signals(self) -> None:
        while self.received:
            signum, live = self.received.pop(0)
            self.signals += 1
            again = " (Ctrl-C again: wandb agent terminates its runs, a third time kills them)" if (
                signum == signal.SIGINT and self.signals == 1) else ""
            print(f"agent.launch: {signal.Signals(signum).name} forwarded to {live} agent(s); waiting for them{again}",
                  flush=True)

    def start(self, name: str, cmd: list[str], env: dict[str, str], log: Path) -> None:
        # its own process group: a terminal Ctrl-C reaches the agent once, through forward()
        seen = len(self.history)
        proc, fh = spawn(cmd, env, log, [f"agent.launch {name}: CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES')} "
                                         f"{shlex.join(cmd)}"])
        agent = AgentProc(name, proc, str(log), fh, seen)
        self.procs.append(agent)
        self._catch_up(agent)  # a Ctrl-C during Popen reaches this agent too

    def wait(self) -> list[tuple[str, int, str]]:
        reported: set[int] = set()
        while True:
            self.report_signals()
            for i, a in enumerate(self.procs):
                code = a.proc.poll()
                if code is not None and i not in reported:
                    reported.add(i)
                    a.fh.close()
                    state = "done" if code == 0 else f"exited with {code}"
                    print(f"agent.launch: {a.name} {state} (log {relpath(a.log)})", flush=True)
            if len(reported) == len(self.procs):
                self.report_signals()
                return [(a.name, a.proc.returncode, a.log) for a in self.procs]
            time.sleep(POLL_S)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m agent.launch",
        description="One `wandb agent` per GPU slot (CUDA_VISIBLE_DEVICES), staggered, logged, Ctrl-C forwarded.",
        epilog="example: python -m agent.launch my-team/mae-reconstruction-gap-full-sweep/ab12cd34 --gpus all --per-gpu 2",
    )
    p.add_argument("sweep", help="ENTITY/PROJECT/SWEEP_ID, as printed by `wandb sweep`")
    p.add_argument("--gpus", required=True, help="all | 0,1,2: the GPUs to use")
    p.add_argument("--per-gpu", type=int, default=1, metavar="N", help="agents per GPU (default 1)")
    p.add_argument("--count", type=int, metavar="N", help="runs per agent (wandb agent --count); default: until the sweep ends")
    p.add_argument("--stagger", type=float, default=5.0, metavar="SECONDS",
                   help="delay between agent starts (default 5)")
    p.add_argument("--log-dir", metavar="DIR", help="agent log folder (default: outputs/agents/SWEEP_ID-TIME)")
    p.add_argument("--no-forward-signals", dest="forward_signals", action="store_false",
                   help="do not pass --forward-signals to wandb agent (then SIGTERM orphans its runs)")
    p.add_argument("--disable-flapping", action="store_true",
                   help="WANDB_AGENT_DISABLE_FLAPPING=true: preemptions early on do not stop the agents")
    p.add_argument("--max-initial-failures", type=int, metavar="N",
                   help="WANDB_AGENT_MAX_INITIAL_FAILURES (wandb's default 5): failures before a first success")
    p.add_argument("--max-consecutive-failed-runs", type=int, metavar="N",
                   help="passed to wandb agent (wandb >= 0.31): stop after N failed runs in a row")
    p.add_argument("--dry-run", action="store_true", help="print the agent commands and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # all three parts, no URL: what `wandb agent` is given
        _entity, _project, sweep_id = parse_sweep_path(args.sweep, use_env=False, url=False, full=True)
        if args.per_gpu < 1 or (args.count is not None and args.count < 1) or args.stagger < 0:
            raise SweepConfigError("--per-gpu and --count must be at least 1, --stagger at least 0")
        for flag in ("max_initial_failures", "max_consecutive_failed_runs"):
            if getattr(args, flag) is not None and getattr(args, flag) < 1:
                raise SweepConfigError(f"--{flag.replace('_', '-')} must be at least 1")
        gpus = parse_gpus(args.gpus, "agent.launch")
    except (SweepConfigError, SweepPathError) as exc:
        print(f"agent.launch: error: {exc}", file=sys.stderr)
        return 2

    slots = [(gpu, k) for gpu in gpus for k in range(args.per_gpu)]
    cmd = agent_command(args.sweep.strip(), args.count, args.forward_signals,
                        max_consecutive_failed=args.max_consecutive_failed_runs)
    log_dir = Path(args.log_dir or os.path.join("outputs", "agents", f"{sweep_id}-{time.strftime('%Y%m%d-%H%M%S')}"))
    print(f"agent.launch: {len(slots)} agent(s) for sweep {args.sweep} on GPU(s) {','.join(gpus)}"
          f" ({args.per_gpu} per GPU), {args.stagger:g}s apart; logs in {relpath(log_dir)}", flush=True)
    plans = []
    for gpu, k in slots:
        name = f"gpu{gpu}-{k}"
        env = agent_env(dict(os.environ), gpu, args)
        plans.append((name, env, log_dir / f"agent-{name}.log"))
        if args.dry_run:
            shown = [f"CUDA_VISIBLE_DEVICES={gpu}", f"PATH={shlex.quote(env['PATH'])}",
                     *(f"{k}={env[k]}" for k in ("WANDB_AGENT_DISABLE_FLAPPING", "WANDB_AGENT_MAX_INITIAL_FAILURES")
                       if k in env)]
            print(f"{' '.join(shown)} {shlex.join(cmd)}    # log {relpath(log_dir / f'agent-{name}.log')}")
    if args.dry_run:
        return 0

    agents = Agents()
    old = {s: signal.signal(s, agents.forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for i, (name, env, log) in enumerate(plans):
            if agents.stopping:
                break
            if i:
                deadline = time.monotonic() + args.stagger
                while time.monotonic() < deadline and not agents.stopping:
                    time.sleep(min(POLL_S, args.stagger))
                if agents.stopping:
                    break
            agents.start(name, cmd, env, log)
            print(f"agent.launch: started {name} (pid {agents.procs[-1].proc.pid}, CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']})",
                  flush=True)
        results = agents.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    failed = [(n, c) for n, c, _l in results if c != 0]
    if agents.signals or agents.stopping:
        print(f"agent.launch: stopped by signal; {len(results)} agent(s) ended", flush=True)
        return 130
    if failed:
        print(f"agent.launch: {len(failed)} of {len(results)} agent(s) failed: "
              + ", ".join(f"{n} (exit {c})" for n, c in failed), file=sys.stderr)
        return 1
    print(f"agent.launch: all {len(results)} agent(s) done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
