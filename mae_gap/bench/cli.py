"""The command line of `python -m mae_gap.bench`: its flags, their device-dependent defaults, and
the dispatch to a benchmark, the GPU suite or a child entry (fixed cost, one sweep run)."""

from __future__ import annotations

import argparse
from typing import Sequence

import torch

from ..config import preset
from ..fileio import write_json
from .configure import resolve_device


def _parser() -> argparse.ArgumentParser:
    from . import __doc__ as doc

    p = argparse.ArgumentParser(prog="python -m mae_gap.bench", description=doc.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    p.add_argument("--config", default="full", choices=("full", "tiny"), help="model size preset (mae_gap.config.PRESETS)")
    p.add_argument("--batch", type=int, default=0, help="training batch (default: 512 on a GPU, the preset's batch_size on a CPU)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (Lightning run and plain loop)")
    p.add_argument("--steps", type=int, default=0, help="steps per epoch = timed steps per repeat (default: 30); "
                   "synthetic data gets batch x steps training images")
    p.add_argument("--repeats", type=int, default=0, help="timed epochs after one warm-up epoch (default: 3 on a GPU, 2 on a CPU)")
    p.add_argument("--threads", type=int, default=-1,
                   help="torch.set_num_threads (default on a CPU: 1, since on a shared machine intra-op threads that "
                        "wait on each other turn other jobs' load into 3-10x step-time noise; 0 keeps torch's own)")
    p.add_argument("--train-size", type=int, default=0, help="synthetic training images (overrides batch x steps)")
    p.add_argument("--val-size", type=int, default=0, help="synthetic validation images (default: max(batch, 256))")
    p.add_argument("--data_dir", "--data-dir", default="", help="benchmark on a real fast.ai-layout folder (decoded once, cached)")
    p.add_argument("--precision", default="", choices=("", "32", "bf16-mixed", "16-mixed"),
                   help="default: the training default (bf16-mixed on a GPU, 32 on a CPU)")
    p.add_argument("--peak-tflops", type=float, default=None, help="peak TFLOP/s for the MFU (default: bf16 dense peak by device name)")
    p.add_argument("--aug-batch", type=int, default=0, help="batch of the augmentation timing (default: --batch)")
    p.add_argument("--flop-batch", type=int, default=4, help="batch of the FlopCounterMode step")
    p.add_argument("--host-data", action="store_true", help="keep the training images on the host (reference data path)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any TrainConfig field")
    p.add_argument("--no-plain", action="store_true", help="skip the plain PyTorch loop")
    p.add_argument("--no-fixed-cost", action="store_true", help="skip the fresh-process fixed-cost measurement")
    p.add_argument("--no-flop-count", action="store_true", help="skip the FlopCounterMode cross-check")
    p.add_argument("--json", default="", metavar="PATH", help="write every number (and the raw timings) as JSON")
    p.add_argument("--suite", default="", choices=("", "gpu"), help="gpu: the whole GPU check (see run_gpu_suite)")
    p.add_argument("--out", default="", help="--suite: folder for its files")
    p.add_argument("--budget-s", type=float, default=450.0, help="--suite: wall-clock budget in seconds")
    p.add_argument("--sweep-epochs", type=int, default=10, help="--suite: epochs of each quick-sweep run")
    p.add_argument("--sweep-batch", type=int, default=64, help="--suite: batch of the quick-sweep runs")
    p.add_argument("--_child", default="", help=argparse.SUPPRESS)
    p.add_argument("--_t0", type=float, default=0.0, help=argparse.SUPPRESS)
    return p


def parse_cli(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The parsed flags with their device-dependent defaults filled in (and torch's thread count set)."""
    p = _parser()
    args = p.parse_args(argv)
    gpu = resolve_device(args.device).type == "cuda" if not args.suite else args.device != "cpu"
    if args.batch <= 0:
        args.batch = 512 if gpu else preset(args.config).batch_size
    if args.steps <= 0:
        args.steps = 30
    if args.repeats <= 0:
        args.repeats = 3 if gpu else 2
    if args.threads < 0:
        args.threads = 1 if not gpu and not args.suite else 0
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.suite and not args.out:
        p.error("--suite needs --out DIR")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_cli(argv)
    if args._child == "fixed_cost":
        from .fixed_cost import child_fixed_cost

        child_fixed_cost(args)
        return 1
    if args._child == "run":
        from .fixed_cost import child_run

        child_run(args)
        return 0
    if args.suite == "gpu":
        if args.device != "cpu" and not torch.cuda.is_available():
            raise SystemExit("mae_gap.bench: --suite gpu needs a CUDA device (--device cpu only rehearses it)")
        from .suite import run_gpu_suite

        return run_gpu_suite(args)
    from .benchmark import run_benchmark
    from .table import format_table

    result = run_benchmark(args)
    print(format_table(result), flush=True)
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0
