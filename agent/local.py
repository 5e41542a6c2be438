"""The embedded sweep controller: run a grid sweep YAML on this machine, W&B offline.

    python -m agent.local sweeps/smoke.yaml [--gpus all|0,1] [--per-gpu N] [--set key=value ...]
                          [--count N] [--project P] [--entity E] [--sweep-id ENTITY/PROJECT/ID]
                          [--out DIR] [--online] [--dry-run] [--skip-equivalent]
    python -m agent.local --resume outputs/local/smoke-XXXXXXXX     # re-run what did not finish

It does what `wandb sweep` + `wandb agent` do with the same file, without a W&B server:
the grid in W&B's order, each run's command built by the SDK's own functions, the agent's
environment (WANDB_RUN_ID, WANDB_SWEEP_PARAM_PATH with the run's parameters, WANDB_PROJECT,
WANDB_DIR), W&B offline by default. Runs go one at a time per slot (`--gpus` gives one slot
per GPU, CUDA_VISIBLE_DEVICES set), a failed run does not stop the sweep, each run logs to
its own file, and the end prints a table and the `wandb sync` / analysis commands.

One deliberate difference from `wandb agent`: WANDB_SWEEP_ID is set only with `--sweep-id`
(a sweep that exists on W&B, created with `wandb sweep`). A made-up sweep id is recorded in
the run and makes `wandb sync` (and `--online` runs) fail with "sweep ... not found", so by
default the runs carry the local sweep id as their W&B group (WANDB_RUN_GROUP) instead.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from agent.local_plan import MANIFEST, Plan, Run, make_plan
from agent.spawn import spawn
from agent.sweep_config import SweepConfigError, parse_gpus, relpath, run_args
from analysis.wandb_io.offline_runs import SIGNAL_EXIT_CODES, read_offline_run, run_folders
from mae_gap import metrics as M


TABLE_METRICS = (M.VAL_MSE, M.VAL_LINEAR_ACC, M.VAL_KNN_ACC)
KILL_DELAY_S = 30.0  # as wandb agent: SIGTERM, then SIGKILL after this long
POLL_S = 0.2


class Interrupted(Exception):
    """Ctrl-C or SIGTERM reached the controller."""


def find_run_dir(wandb_dir: str | os.PathLike, run_id: str) -> Path | None:
    """The newest folder of run `run_id` under WANDB_DIR/wandb (`analysis.wandb_io.offline_runs.run_folders`)."""
    folders = run_folders(Path(wandb_dir) / "wandb", run_id)
    return folders[-1] if folders else None


# ----------------------------------------------------------------------------- running


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _swept(plan: Plan) -> list[str]:
    """Columns that tell the runs apart: alpha and lr always, then other swept names."""
    names = [n for n in ("alpha", "lr") if n in plan.values]
    return names + [n for n in sorted(plan.values) if len(plan.values[n]) > 1 and n not in names]


def _label(plan: Plan, run: Run) -> str:
    return " ".join(f"{n}={run.params[n]}" for n in _swept(plan) if n in run.params)


def _last_line(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 4096))
            tail = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [ln.strip() for ln in tail.replace("\r", "\n").splitlines() if ln.strip() and not ln.startswith("# ")]
    return lines[-1] if lines else ""


class Controller:
    def __init__(self, plan: Plan, slots: list[str | None], count: int | None, out=sys.stdout):
        self.plan, self.slots, self.out = plan, slots, out
        todo = plan.todo
        self.todo = deque(todo[:count] if count else todo)
        self.total = len(self.todo)
        self.done = self.started = 0
        self.running: dict[int, tuple[Run, subprocess.Popen, float, Any]] = {}
        self.tty = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
        self._status_len = 0

    def say(self, text: str) -> None:
        self._clear_status()
        print(text, file=self.out, flush=True)

    def _clear_status(self) -> None:
        if self.tty and self._status_len:
            sys.stderr.write("\r" + " " * self._status_len + "\r")
            sys.stderr.flush()
            self._status_len = 0

    def _status(self) -> None:
        if not self.tty or not self.running:
            return
        now = time.monotonic()
        parts = []
        for run, _proc, start, _fh in self.running.values():
            tail = _last_line(run.log)[-60:]
            parts.append(f"{run.run_id} {int(now - start)}s {tail}")
        line = f"[{self.done}/{self.total} done] " + " | ".join(parts)
        import shutil

        line = line[: max(20, shutil.get_terminal_size((120, 24)).columns - 1)]
        sys.stderr.write("\r" + line.ljust(self._status_len))
        sys.stderr.flush()
        self._status_len = len(line)

    def start(self, slot: int, run: Run) -> None:
        plan, gpu = self.plan, self.slots[slot]
        from analysis.wandb_io.compat import save_sweep_param_file

        param_path = plan.param_path(run)
        save_sweep_param_file(str(param_path), run_args(run.params))
        if any(str(c) == "${args_json_file}" for c in plan.config.get("command") or []):
            from agent.sweep_config import sweep_args

            plan.args_json_path(run).write_text(sweep_args(run.params)["args_json"][0])
        header = [f"agent.local run {run.run_id} of sweep {plan.sweep_id} ({plan.yaml_path})",
                  f"command: {shlex.join(run.command)}", *([f"CUDA_VISIBLE_DEVICES={gpu}"] if gpu is not None else [])]
        try:
            proc, fh = spawn(run.command, plan.env(run, gpu), run.log, header)
            self.running[slot] = (run, proc, time.monotonic(), fh)  # at once: Ctrl-C must find it
        except OSError as exc:
            run.state, run.exit_code, run.seconds = "failed", 127, 0.0
            self.done += 1
            self.started += 1
            self.say(f"[{self.started}/{self.total}] failed {run.run_id}  {_label(plan, run)}: cannot start ({exc})")
            plan.save()
            return
        run.state = "running"
        self.started += 1
        where = f"  gpu {gpu}" if gpu is not None else ""
        self.say(f"[{self.started}/{self.total}] start  {run.run_id}  {_label(plan, run)}{where}")
        plan.save()

    def finish(self, slot: int, code: int, killed: bool = False) -> None:
        run, _proc, start, fh = self.running.pop(slot)
        fh.close()
        run.seconds = round(time.monotonic() - start, 1)
        run.exit_code = code
        run_dir = find_run_dir(self.plan.wandb_dir, run.run_id)
        try:
            info = read_offline_run(run_dir) if run_dir else {"summary": {}}
        except Exception:  # noqa: BLE001 - a run killed before W&B wrote its file: nothing to show
            info = {"summary": {}}
        run.run_dir = str(run_dir or "")
        run.summary = {k: v for k, v in info["summary"].items() if not k.startswith("_") and not isinstance(v, dict)}
        if killed:
            run.state = "killed"
        elif code == 0:
            run.state = "finished"
        elif code in SIGNAL_EXIT_CODES:  # agent.train's exit when preempted (analysis.wandb_io.offline_runs)
            run.state = "preempted"
        else:
            run.state = "failed" if code > 0 else "crashed"
        self.done += 1
        metrics = "  ".join(f"{m}={_fmt(run.summary.get(m))}" for m in TABLE_METRICS)
        reason = run.summary.get(M.FAILURE_REASON) or _last_line(run.log)
        why = "" if code == 0 else f" (exit {code}: {str(reason)[:120]}) log: {relpath(run.log)}"
        self.say(f"[{self.done}/{self.total}] {run.state:<6} {run.run_id}  {_label(self.plan, run)}  "
                 f"{run.seconds:.0f}s  {metrics}{why}{self.eta()}")
        self.plan.save()

    def eta(self) -> str:
        """"  sweep ETA 0:42:10": the mean time of the runs finished here times the runs left, per slot."""
        times = [r.seconds for r in self.plan.runs if r.state == "finished" and r.seconds]
        left = self.total - self.done
        if not times or left <= 0:
            return ""
        seconds = int(sum(times) / len(times) * left / max(1, len(self.slots)))
        return f"  sweep ETA {seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"

    def loop(self) -> None:
        while self.todo or self.running:
            for slot in range(len(self.slots)):
                if slot not in self.running and self.todo:
                    self.start(slot, self.todo.popleft())
            for slot in list(self.running):
                code = self.running[slot][1].poll()
                if code is not None:
                    self.finish(slot, code)
            self._status()
            time.sleep(POLL_S)
        self._clear_status()

    def stop_all(self) -> None:
        """SIGTERM every running run (as wandb agent does), SIGKILL its process group after
        KILL_DELAY_S or at a second Ctrl-C. The run's own W&B process sees its parent go."""
        if not self.running:
            return
        self.say(f"agent.local: stopping {len(self.running)} running run(s) (Ctrl-C again to kill them)")
        for _run, proc, _s, _fh in self.running.values():
            try:
                proc.terminate()
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + KILL_DELAY_S
        try:
            while any(p.poll() is None for _r, p, _s, _f in self.running.values()) and time.monotonic() < deadline:
                time.sleep(POLL_S)
        except (KeyboardInterrupt, Interrupted):
            pass
        for _run, proc, _s, _fh in self.running.values():
            if proc.poll() is None:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        for slot in list(self.running):
            self.finish(slot, self.running[slot][1].returncode, killed=True)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # the run's own process group (started with process_group=0)
    except (ProcessLookupError, PermissionError):
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signal.Signals(signum).name)


# ----------------------------------------------------------------------------- reporting


def table(plan: Plan) -> str:
    cols = ["run", *_swept(plan), "state", "time", *TABLE_METRICS]
    rows = []
    for run in plan.runs:
        state = run.state if run.exit_code in (None, 0) else f"{run.state} ({run.exit_code})"
        rows.append([run.run_id, *(str(run.params.get(n, "-")) for n in _swept(plan)), state,
                     "-" if run.seconds is None else f"{run.seconds:.0f}s",
                     *(_fmt(run.summary.get(m)) for m in TABLE_METRICS)])
    widths = [max(len(str(x)) for x in col) for col in zip(cols, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip() for r in [cols, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def next_steps(plan: Plan) -> str:
    wandb_sub = relpath(plan.wandb_dir / "wandb")
    lines = ["next:"]
    ran = [r for r in plan.runs if r.run_dir]
    if not plan.online and ran:
        lines.append(f"  wandb sync {wandb_sub}/offline-run-*     # upload to W&B project {plan.project} (needs an account)")
    lines.append(f"  python -m analysis.pull_and_plot --offline {wandb_sub}     # tube plot and statistics")
    unfinished = plan.todo
    if unfinished:
        lines.append(f"  python -m agent.local --resume {relpath(plan.out_dir)}     # re-run the {len(unfinished)} unfinished run(s)")
    return "\n".join(lines)


def describe(plan: Plan, slots: list[str | None]) -> str:
    swept = [f"{n}[{len(plan.values[n])}]" for n in sorted(plan.values) if len(plan.values[n]) > 1]
    where = "one run at a time on the default device" if slots == [None] else (
        f"{len(slots)} slot(s) on GPU(s) {','.join(str(s) for s in slots)}")
    mode = "W&B online" if plan.online else "W&B offline"
    sweep = (f"W&B sweep {plan.remote_sweep}" if plan.remote_sweep else
             f"local sweep {plan.sweep_id} (runs grouped as {plan.group})")
    n_skip = len(plan.skipped)
    count = f"{len(plan.runs)} run(s)" + (f" ({n_skip} skipped: equivalent to an earlier point)" if n_skip else "")
    lines = [
        f"agent.local: {plan.yaml_path}: {count}, grid {' x '.join(swept) or 'of one point'}; "
        f"{where}; {mode}; project {plan.project}" + (f", entity {plan.entity}" if plan.entity else ""),
        f"  {sweep}",
        f"  output {relpath(plan.out_dir)}  (logs/, {MANIFEST}"
        + (", wandb/)" if plan.wandb_dir == plan.out_dir else f"; runs under {relpath(plan.wandb_dir / 'wandb')})"),
    ]
    if plan.overrides:
        lines.append("  --set " + " ".join(f"{k}={v}" for k, v in plan.overrides.items()))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m agent.local",
        description="Run a grid sweep YAML locally, exactly as `wandb agent` would run it, with W&B offline.",
        epilog="example: python -m agent.local sweeps/smoke.yaml --set epochs=2",
    )
    p.add_argument("sweep", nargs="?", help="sweep YAML, e.g. sweeps/smoke.yaml")
    p.add_argument("--gpus", help="all | 0,1,...: one run per GPU slot in parallel (CUDA_VISIBLE_DEVICES); "
                                  "default: one run at a time on the default device")
    p.add_argument("--per-gpu", type=int, default=1, metavar="N", help="runs per GPU at once (with --gpus)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a parameter for every run (TrainConfig types), repeatable")
    p.add_argument("--count", type=int, metavar="N", help="run at most N runs (as wandb agent --count)")
    p.add_argument("--project", help="W&B project (default: the YAML's project:)")
    p.add_argument("--entity", help="W&B entity (default: the YAML's entity: or $WANDB_ENTITY)")
    p.add_argument("--sweep-id", metavar="ENTITY/PROJECT/ID",
                   help="attach the runs to this existing W&B sweep (sets WANDB_SWEEP_ID)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: outputs/local/NAME-SWEEPID)")
    p.add_argument("--wandb-dir", metavar="DIR", help="WANDB_DIR of the runs (default: the output folder)")
    p.add_argument("--online", action="store_true", help="keep the user's W&B mode instead of WANDB_MODE=offline")
    p.add_argument("--dry-run", action="store_true", help="validate and print the runs' commands, run nothing")
    p.add_argument("--skip-equivalent", action="store_true",
                   help="skip grid points that train what an earlier point trains (confusion at alpha >= 0 is grl); "
                        "`wandb agent` runs them all, so not with --sweep-id")
    p.add_argument("--resume", metavar="DIR", help="re-run the unfinished runs of an earlier sweep folder with the same run ids (agent.train resumes them from their last epoch checkpoint)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_sweep(args)
    except BrokenPipeError:  # output piped into `head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def run_sweep(args: argparse.Namespace) -> int:
    try:
        if args.per_gpu < 1 or (args.count is not None and args.count < 1):
            raise SweepConfigError("--per-gpu and --count must be at least 1")
        slots: list[str | None] = [None]
        if args.gpus:
            gpus = parse_gpus(args.gpus, "agent.local")
            slots = [g for _ in range(args.per_gpu) for g in gpus]  # spread runs over GPUs first
        elif args.per_gpu != 1:
            raise SweepConfigError("--per-gpu needs --gpus")
        plan = make_plan(args)
    except SweepConfigError as exc:
        print(f"agent.local: error: {exc}", file=sys.stderr)
        return 2

    print(describe(plan, slots), flush=True)
    if args.dry_run:
        todo = plan.todo
        for n, run in enumerate(todo[: args.count] if args.count else todo):
            gpu = slots[n % len(slots)]
            pre = f"CUDA_VISIBLE_DEVICES={gpu} " if gpu is not None else ""
            print(f"[{n + 1}] {run.run_id}  {pre}{shlex.join(run.command)}")
        print("(dry run: nothing started; each run gets WANDB_RUN_ID, WANDB_SWEEP_PARAM_PATH, WANDB_PROJECT, "
              f"WANDB_DIR{'' if plan.online else ', WANDB_MODE=offline'})")
        return 0

    plan.out_dir.mkdir(parents=True, exist_ok=True)
    (plan.wandb_dir / "wandb").mkdir(parents=True, exist_ok=True)
    plan.save()
    ctl = Controller(plan, slots, args.count)
    old = signal.signal(signal.SIGTERM, _raise_interrupted)
    interrupted = False
    try:
        ctl.loop()
    except (KeyboardInterrupt, Interrupted):
        interrupted = True
        ctl.stop_all()
    finally:
        signal.signal(signal.SIGTERM, old)
    ctl._clear_status()
    print("", flush=True)
    print(table(plan))
    n_ok = sum(r.state == "finished" for r in plan.runs)
    n_skip = len(plan.skipped)
    print(f"\n{n_ok}/{len(plan.runs) - n_skip} run(s) finished" + (f" ({n_skip} skipped as equivalent)" if n_skip else "")
          + (" (interrupted)" if interrupted else "")
          + f"; logs in {relpath(plan.out_dir / 'logs')}")
    print(next_steps(plan), flush=True)
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
