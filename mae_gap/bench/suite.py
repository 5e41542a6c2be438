"""The whole GPU check in one call, within a wall-clock budget: each numbered step is a method of
`Suite`, each benchmark or run a fresh child process (so its fixed cost is paid and measured as a
sweep run pays it), and whatever step fails or runs out of time, the summary files are still written.
`--device cpu` with tiny sizes rehearses it (tests/test_bench_suite.py). Each quick-sweep run is
`python -m mae_gap.bench --_child run` (child_run)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import torch

from ..fileio import atomic_write, write_json
from ..fmt import num
from ..module import fit
from .benchmark import (IMAGENETTE_TRAIN, IMAGENETTE_VAL, REPO_ROOT, bench_data, build_config, child_env, device_name,
                        parse_child_line, peak_memory, resolve_device)
from .timing import FirstStep, finite_median, sync

SWEEP_ALPHAS = (-0.5, 0.0, 0.5)

SUMMARY_KEYS = ("device_name", "img_per_s", "plain_img_per_s", "mfu", "tflops", "peak_tflops", "flop_per_img",
                "flop_per_img_counted", "aug_img_per_s", "peak_memory", "fixed_cost_s", "fixed_cost",
                "lightning_step_ms", "plain_step_ms", "lightning_over_plain", "epoch_over_steps", "sync_check")


def table_of(text: str) -> str:
    """The printed table of a bench child (from its header line on), else the end of its output."""
    lines = text.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("mae_gap.bench: ") and " | torch " in lines[i]:
            return "\n".join(lines[i : i + 20])
    return "\n".join(lines[-15:])


def sweep_run_record(alpha: float, rc: int | None, secs: float, t0: float, info: dict[str, Any] | None) -> dict[str, Any]:
    """One quick-sweep run's record from its child's RUN_RESULT (None: the run failed)."""
    run: dict[str, Any] = {"alpha": alpha, "rc": rc, "wall_s": secs}
    if info:
        info = dict(info)
        hist = info.pop("history")
        run.update(info)
        run["fixed_cost_s"] = info["t_first_step"] - t0 if info.get("t_first_step") else None
        run["epoch_s"] = [h.get("perf/epoch_s") for h in hist]
        run["train_img_per_s"] = [h.get("perf/train_img_per_s") for h in hist]
        run["last_epoch"] = hist[-1] if hist else None
    return run


def sweep_run_text(run: dict[str, Any]) -> str:
    """`..., fixed cost X s, median epoch Y s, median train img/s Z` (n/a where a figure is missing)."""
    return (f"fixed cost {num(run.get('fixed_cost_s'), '.1f')} s, median epoch {num(finite_median(run['epoch_s']), '.2f')} s, "
            f"median train img/s {num(finite_median(run['train_img_per_s']), ',.0f')}")


def bench_row(label: str, r: dict[str, Any]) -> str:
    """One run's row of summary.md's table (eager or compile)."""
    if not r:
        return f"| {label} | failed or skipped: see log.txt |  |  |  |  |  |  |  |  |  |"
    mem = (r.get("peak_memory") or {}).get("bytes")
    syncs = ((r.get("sync_check") or {}).get("lightning") or {}).get("syncs")
    mfu = r.get("mfu")
    return (f"| {label} | {num(r.get('img_per_s'), ',.0f')} | {num(100 * mfu if mfu is not None else None, '.1f', ' %')} | "
            f"{num(r.get('tflops'), '.3g')} | {num(r.get('aug_img_per_s'), ',.0f')} | "
            f"{num(mem / 2**30 if mem is not None else None, '.2f', ' GiB')} | "
            f"{num(r.get('fixed_cost_s'), '.1f', ' s')} | {num(r.get('lightning_step_ms'), '.1f')} | "
            f"{num(r.get('lightning_over_plain'), '.3f')} | {num(r.get('epoch_over_steps'), '.3f')} | {num(syncs, 'd')} |")


def sweep_lines(sweep: dict[str, Any], n_train: int, n_val: int) -> list[str]:
    """summary.md's lines on the quick sweep (sequential runs, then the parallel one if it ran)."""
    lines = [f"quick sweep (3 runs x {sweep['epochs']} epochs, batch {sweep['batch']}, {n_train}+{n_val} images), "
             f"one after the other, end to end: {sweep['total_s']:.1f} s" + (" (incomplete)" if sweep.get("incomplete") else "")]
    for run in sweep["runs"]:
        if run.get("epoch_s"):
            lines.append(f"  alpha {run['alpha']:+.1f}: {run['wall_s']:.1f} s, {sweep_run_text(run)}")
        else:
            lines.append(f"  alpha {run['alpha']:+.1f}: failed (rc {run['rc']}), see log.txt")
    if "total_s" in sweep.get("parallel", {}):
        lines.append(f"  the same 3 runs at once on the device: {sweep['parallel']['total_s']:.1f} s")
    return lines


class Suite:
    """The suite's state (budget, log, child command lines, the summary so far) and its steps."""

    def __init__(self, args: argparse.Namespace, log: IO[str]):
        self.args, self.log = args, log
        self.out = Path(args.out)
        self.t0, self.budget = time.time(), float(args.budget_s)
        os.environ.setdefault("MAE_GAP_CACHE", str(Path(os.environ.get("TMPDIR", "/tmp")) / "mae_gap_bench_cache"))
        self.env = child_env()
        self.device = "cpu" if args.device == "cpu" else "cuda"
        self.n_train = args.train_size if args.train_size > 0 else IMAGENETTE_TRAIN
        self.n_val = args.val_size if args.val_size > 0 else IMAGENETTE_VAL
        self.summary: dict[str, Any] = {"budget_s": self.budget, "device": self.device, "config": args.config,
                                        "batch": args.batch, "train_images": self.n_train, "val_images": self.n_val,
                                        "steps": {}}
        self.py = [sys.executable, "-m", "mae_gap.bench", "--device", self.device, "--config", args.config]
        if args.threads > 0:
            self.py += ["--threads", str(args.threads)]
        self.data_args = (["--data_dir", args.data_dir] if args.data_dir else
                          ["--train-size", str(self.n_train), "--val-size", str(self.n_val)])
        self.sweep_args = ["--batch", str(args.sweep_batch), *self.data_args, "--set", "lr=0.00015",
                           "--set", f"epochs={args.sweep_epochs}", "--set", "knn_every=1", "--_child", "run"]
        self.sweep: dict[str, Any] = {"runs": [], "mode": "sequential", "epochs": args.sweep_epochs,
                                      "batch": args.sweep_batch}

    def say(self, text: str) -> None:
        print(text, flush=True)
        self.log.write(text + "\n")

    def left(self) -> float:
        return self.budget - (time.time() - self.t0)

    def run_child(self, argv: list[str], cap: float) -> tuple[int | None, str, float]:
        """Runs a child to its end or its timeout (the cap, or what is left of the budget)."""
        timeout = max(1.0, min(cap, self.left()))
        self.say(f"$ {' '.join(argv[1:])}   (timeout {timeout:.0f} s)")
        t = time.time()
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT, env=self.env)
            rc, text = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as e:
            partial = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            rc, text = None, f"{partial}\nTIMED OUT after {timeout:.0f} s"
        self.log.write(text + "\n")
        return rc, text, time.time() - t

    def step0_data_cache(self) -> None:
        """The data cache, decoded / generated once: every later process finds it warm."""
        self.say(f"mae_gap.bench suite: {device_name(resolve_device(self.device))}, torch {torch.__version__}, "
                 f"budget {self.budget:.0f} s, out {self.out}")
        t = time.time()
        ns = argparse.Namespace(device=self.device, config=self.args.config, batch=self.args.batch, compile=False,
                                precision="", data_dir=self.args.data_dir, set=[], train_size=self.n_train,
                                val_size=self.n_val)
        cfg0, _ = build_config(ns, epochs=1)
        bench_data(cfg0, self.n_train, self.n_val)
        self.summary["data_cache_s"] = time.time() - t
        self.say(f"data cache ready in {self.summary['data_cache_s']:.1f} s ({os.environ['MAE_GAP_CACHE']})")

    def step1_eager(self) -> None:
        """The eager benchmark: img/s, MFU, step times, Lightning vs plain, memory, fixed cost, syncs."""
        rc, text, secs = self.run_child(self.py + ["--batch", str(self.args.batch), *self.data_args, "--repeats", "3",
                                                   "--json", str(self.out / "eager.json")], cap=200)
        self.say(table_of(text))
        self.summary["steps"]["eager"] = {"rc": rc, "s": secs}

    def step2_sequential_sweep(self) -> None:
        """The quick sweep's runs one after the other, each a fresh process, timed end to end."""
        t_sweep = time.time()
        for alpha in SWEEP_ALPHAS:
            if self.left() < 30:
                self.sweep["incomplete"] = "budget"
                break
            t0 = time.time()
            rc, text, secs = self.run_child(self.py + self.sweep_args + ["--set", f"alpha={alpha}"], cap=180)
            info = parse_child_line(text, "RUN_RESULT")
            run = sweep_run_record(alpha, rc, secs, t0, info)
            self.sweep["runs"].append(run)
            self.say(f"quick sweep run alpha={alpha}: rc {rc}, {secs:.1f} s end to end"
                     + (f", {sweep_run_text(run)}" if info and run["epoch_s"] else ""))
        self.sweep["total_s"] = time.time() - t_sweep
        write_json(self.out / "sweep.json", self.sweep)
        self.summary["steps"]["sweep"] = {"s": self.sweep["total_s"], "runs": len(self.sweep["runs"])}

    def step3_compile(self) -> None:
        """--compile, Lightning run only (one compilation per process), if more than 90 s are left."""
        if self.left() <= 90:
            self.summary["steps"]["compile"] = {"skipped": f"{self.left():.0f} s left"}
            return
        rc, text, secs = self.run_child(self.py + ["--batch", str(self.args.batch), *self.data_args, "--repeats", "2",
                                                   "--compile", "--no-plain", "--json", str(self.out / "compile.json")],
                                        cap=self.left() - 5)
        self.say(table_of(text))
        self.summary["steps"]["compile"] = {"rc": rc, "s": secs}

    def step4_parallel_sweep(self) -> None:
        """The quick sweep's runs side by side on the one device, if more than 150 s are left."""
        if self.left() <= 150:
            self.sweep["parallel"] = {"skipped": f"{self.left():.0f} s left"}
            write_json(self.out / "sweep.json", self.sweep)
            return
        t0 = time.time()
        procs = [subprocess.Popen(self.py + self.sweep_args + ["--set", f"alpha={alpha}"], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT, env=self.env)
                 for alpha in SWEEP_ALPHAS]
        for proc in procs:
            try:
                text = proc.communicate(timeout=max(1.0, self.left() - 5))[0]
            except subprocess.TimeoutExpired:
                proc.kill()
                text = proc.communicate()[0] + "\nTIMED OUT"
            self.log.write(text + "\n")
        self.sweep["parallel"] = {"mode": "3 processes at once, one device", "total_s": time.time() - t0,
                                  "rcs": [proc.returncode for proc in procs]}
        self.say(f"quick sweep, 3 runs at once: {self.sweep['parallel']['total_s']:.1f} s end to end, "
                 f"exit codes {self.sweep['parallel']['rcs']}")
        write_json(self.out / "sweep.json", self.sweep)

    def _load(self, name: str) -> dict[str, Any]:
        with contextlib.suppress(OSError, ValueError):
            return json.loads((self.out / name).read_text())
        return {}

    def write_summary(self) -> int:
        """summary.md and summary.json; 0 if the eager benchmark and every sequential run succeeded."""
        eager, comp = self._load("eager.json"), self._load("compile.json")
        lines = [f"suite: {eager.get('device_name', self.device)} | torch {torch.__version__} | config {self.args.config} | "
                 f"batch {self.args.batch} | data {self.n_train}+{self.n_val}",
                 "",
                 "| run | img/s (>= 9,000) | MFU | TFLOP/s | aug img/s (>= 50,000) | peak mem | fixed cost (<= 15 s) "
                 "| step ms | Lightning/plain | epoch/steps | syncs in step |",
                 "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
                 bench_row("eager", eager), bench_row("compile", comp), ""]
        lines += sweep_lines(self.sweep, self.n_train, self.n_val)
        self.summary["suite_s"] = time.time() - self.t0
        lines.append(f"\nsuite wall time {self.summary['suite_s']:.0f} s (budget {self.budget:.0f} s)")
        text = "\n".join(lines)
        atomic_write(self.out / "summary.md", text + "\n")
        self.summary.update({"eager": {k: eager.get(k) for k in SUMMARY_KEYS},
                             "compile": {k: comp.get(k) for k in SUMMARY_KEYS},
                             "sweep": {k: self.sweep.get(k) for k in ("total_s", "incomplete", "parallel", "epochs", "batch")}})
        write_json(self.out / "summary.json", self.summary)
        self.say("\n" + text)
        runs = self.sweep["runs"]
        return 0 if eager and runs and all(r.get("rc") == 0 for r in runs) else 1


def run_gpu_suite(args: argparse.Namespace) -> int:
    """Everything the GPU check needs, in one call, within --budget-s seconds (default 450):

    1. eager: full config, batch 512, Imagenette-sized synthetic data (9,469 train / 3,925 val at
       224 px): img/s, MFU, step times, Lightning vs plain, augmentation img/s (batch 512), peak
       memory, fixed cost, host syncs in the step;
    2. the quick sweep, eager, timed end to end: 3 runs (alpha -0.5, 0, 0.5; lr 1.5e-4) x 10 epochs
       at batch 64 (k-NN every epoch, as sweeps/quick.yaml), each a fresh process (its fixed cost
       included), one after the other;
    3. --compile: the same as 1 for the Lightning run (no plain loop: one compilation per process),
       and the fixed cost of a fresh compiling process (inductor's cache then warm);
    4. if time is left: the quick sweep's 3 runs at once on the one GPU.
    Files under --out: summary.md, summary.json, eager.json, compile.json, sweep.json, log.txt.
    `--device cpu --config tiny --batch 64 --train-size 256 --val-size 64 --sweep-epochs 1` rehearses
    the whole suite on a CPU (tests/test_bench_suite.py runs a smaller rehearsal).
    """
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "log.txt", "a", buffering=1) as log:
        suite = Suite(args, log)
        suite.step0_data_cache()
        suite.step1_eager()
        suite.step2_sequential_sweep()
        suite.step3_compile()
        suite.step4_parallel_sweep()
        return suite.write_summary()


def child_run(args: argparse.Namespace) -> None:
    """One whole training run of the quick sweep: fit() on the bench data, its record printed as
    `RUN_RESULT {json}`."""
    t_start = time.time()
    cfg, device = build_config(args, epochs=None)
    data = bench_data(cfg, args.train_size, args.val_size)
    first = FirstStep(device)
    result = fit(cfg, data=data, callbacks=[first])
    sync(device)
    t_end = time.time()
    info = {
        "alpha": cfg.alpha, "lr": cfg.lr, "epochs": cfg.epochs, "batch": cfg.batch_size,
        "train_images": int(data.train_labels.shape[0]), "val_images": int(data.val_labels.shape[0]),
        "t_first_step": first.t_first_step, "t_end": t_end, "in_process_s": t_end - t_start,
        "history": result.history,
        "peak_memory": peak_memory(device),
    }
    print("RUN_RESULT " + json.dumps(info), flush=True)
