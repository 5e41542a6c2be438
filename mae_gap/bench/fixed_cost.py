"""The fixed cost of a fresh process (what every sweep run pays before it trains), and the child
entries the parent and the GPU suite spawn. Only the standard library is imported above the stamp:
`T_IMPORT` is the child's "interpreter ready" moment, taken before torch or Lightning load
(`python -m mae_gap.bench` imports this module first; the package itself imports nothing heavy)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

T_IMPORT = time.time()

REPO_ROOT = Path(__file__).resolve().parents[2]


def child_argv(args: argparse.Namespace, extra: Sequence[str]) -> list[str]:
    """A `python -m mae_gap.bench` command line with the parent's run options and `extra`."""
    argv = [sys.executable, "-m", "mae_gap.bench", "--device", args.device, "--config", args.config,
            "--batch", str(args.batch), "--train-size", str(args.train_size), "--val-size", str(args.val_size)]
    if args.compile:
        argv.append("--compile")
    if args.precision:
        argv += ["--precision", args.precision]
    argv += ["--threads", str(args.threads)]
    if args.data_dir:
        argv += ["--data_dir", args.data_dir]
    for kv in args.set:
        argv += ["--set", kv]
    return argv + list(extra)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def parse_child_line(stdout: str, tag: str) -> dict[str, Any] | None:
    """The JSON a child printed after `tag ` (its last such line), else None."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(tag + " "):
            return json.loads(line[len(tag) + 1 :])
    return None


def measure_fixed_cost(args: argparse.Namespace, timeout: float = 300.0) -> dict[str, Any]:
    """A fresh `python -m mae_gap.bench` process (the data cache is warm: the parent built it) runs
    the real fit() and stops right after its first optimizer step. Seconds from just before the
    process is spawned, with the breakdown the child reports."""
    t0 = time.time()
    try:
        proc = subprocess.run(child_argv(args, ["--_child", "fixed_cost", "--_t0", repr(t0)]),
                              capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT, env=child_env())
    except subprocess.TimeoutExpired:
        return {"total_s": None, "error": f"timed out after {timeout:.0f} s"}
    info = parse_child_line(proc.stdout, "FIXED_COST")
    if info is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"total_s": None, "error": f"child exited {proc.returncode}: {' | '.join(tail)}"}
    return info


def child_fixed_cost(args: argparse.Namespace) -> None:
    """The fixed-cost child: stamps each start-up phase, then fit() up to its first optimizer step."""
    stamps = {"interpreter": T_IMPORT}  # process start -> this module runs (python itself, mae_gap/__init__)
    import pytorch_lightning  # noqa: F401  (timed: part of "imports")

    from ..module import fit
    from .configure import build_config
    from .first_step import FirstStep
    from .synthetic import bench_data

    stamps["imports"] = time.time()  # torch, Lightning, timm, mae_gap
    cfg, device = build_config(args, epochs=1)
    data = bench_data(cfg, args.train_size, args.val_size)
    stamps["data"] = time.time()  # warm cache: memory-mapped, not decoded
    fit(cfg, data=data, callbacks=[FirstStep(device, stamps, args._t0, cfg.compile)])
    raise SystemExit("mae_gap.bench: the fixed-cost child never reached an optimizer step")


def child_run(args: argparse.Namespace) -> None:
    """One whole training run (the GPU suite's quick sweep): fit() on the bench data, JSON out."""
    from ..module import fit
    from .configure import build_config
    from .first_step import FirstStep
    from .measures import peak_memory
    from .synthetic import bench_data
    from .timing import sync

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
