"""`python -m mae_gap.bench`: the command line (flags and their device-dependent defaults), the
dispatch to a benchmark, the GPU suite or a child entry (fixed cost, one sweep run), and the
printed table. This module imports only the standard library and mae_gap's torch-free modules:
a fixed-cost child's first stamp, taken when main() starts, is then its interpreter's start-up alone."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Sequence

from ..config import preset
from ..fileio import write_json
from ..fmt import num


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
                        "wait on each other turn other jobs' load into step-time noise; 0 keeps torch's own)")
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
    import torch

    p = _parser()
    args = p.parse_args(argv)
    if args.suite:  # the suite's children check the device
        gpu = args.device != "cpu"
    elif args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("mae_gap.bench: --device cuda, but torch sees no CUDA device")
    else:
        gpu = args.device == "cuda" or args.device == "auto" and torch.cuda.is_available()
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
    t_main = time.time()  # the fixed-cost child's "interpreter ready"
    args = parse_cli(argv)
    # The heavy modules load here, after that stamp (and not at all for --help).
    if args._child == "fixed_cost":
        from .benchmark import child_fixed_cost

        child_fixed_cost(args, t_main)
        return 1
    if args._child == "run":
        from .suite import child_run

        child_run(args)
        return 0
    if args.suite == "gpu":
        import torch

        if args.device != "cpu" and not torch.cuda.is_available():
            raise SystemExit("mae_gap.bench: --suite gpu needs a CUDA device (--device cpu only rehearses it)")
        from .suite import run_gpu_suite

        return run_gpu_suite(args)
    from .benchmark import run_benchmark

    result = run_benchmark(args)
    print(format_table(result), flush=True)
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


# ---------------------------------------------------------------------- the printed table
# One row per figure, with its context and target beside it, so a reader of a CI log needs nothing
# else. Missing figures read "n/a" (mae_gap.fmt.num).


def _gib(nbytes: float | None) -> float | None:
    return nbytes / 2**30 if nbytes is not None else None


def _memory_text(mem: dict[str, Any]) -> str:
    text = num(_gib(mem["bytes"]), ".2f", " GiB")
    return text + (" (host peak RSS)" if mem["bytes"] is not None and mem["kind"] == "host_peak_rss" else "")


def _fixed_cost_row(r: dict[str, Any]) -> tuple[str, str, str]:
    fc = r.get("fixed_cost") or {}
    if not fc:
        return ("fixed cost: start -> 1st optimizer step", "skipped", "")
    parts = ", ".join(f"{k[:-2]} {v:.1f}" for k, v in fc.items() if k.endswith("_s") and k != "total_s" and v is not None)
    return ("fixed cost: start -> 1st optimizer step", num(fc.get("total_s"), ".1f", " s"),
            (parts or fc.get("error", "")) + f"; target <= {r['targets']['fixed_cost_s']:.0f} s")


def _timing_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    light = r["lightning"]["events"]
    step_mode = "sync" if r["device"].startswith("cuda") else "events"
    lt = r["lightning"][step_mode]
    pt = (r["plain"].get(step_mode) if r["plain"] else None) or {}
    targets = r["targets"]
    return [
        ("train img/s (Lightning, epoch wall)", num(r["img_per_s"], ",.0f"),
         f"{light['epochs']} epochs x {r['steps_per_epoch']} steps; plain loop {num(r['plain_img_per_s'], ',.0f')}"),
        ("step time, Lightning (median)", num(lt["step_ms_median"], ".2f", " ms"),
         f"p10 {num(lt['step_ms_p10'], '.2f')} / p90 {num(lt['step_ms_p90'], '.2f')} ms, n={lt['steps']}, device-synced"),
        ("step time, plain PyTorch loop (median)", num(pt.get("step_ms_median"), ".2f", " ms"),
         f"p10 {num(pt.get('step_ms_p10'), '.2f')} / p90 {num(pt.get('step_ms_p90'), '.2f')} ms, n={num(pt.get('steps'), 'd')}"),
        ("Lightning / plain, step", num(r["lightning_over_plain"], ".3f"),
         f"target <= {targets['lightning_over_plain']}; start-to-start iterations: {num(r['lightning_over_plain_iter'], '.3f')}"),
        ("epoch wall / sum of its steps", num(r["epoch_over_steps"], ".3f"),
         f"median of {light['epochs']} epochs (max {num(r['epoch_over_steps_max'], '.3f')}); target <= {targets['epoch_over_steps']}"),
    ]


def _flop_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    flop, counted, mfu = r["flop"], r.get("flop_per_img_counted"), r["mfu"]
    return [
        ("FLOP per image (formula)", num(r["flop_per_img"] / 1e9, ".4g", " GFLOP"),
         f"3x masked pass {flop['masked_fwd_bwd'] / 1e9:.4g} (decoder blocks {100 * flop['decoder_blocks_share_of_masked']:.1f}%)"
         f" - pixel grad + probe pass {flop['probe_pass'] / 1e9:.3g}"),
        ("FLOP per image (FlopCounterMode)", num(counted / 1e9 if counted is not None else None, ".4g", " GFLOP"),
         f"formula / counted = {num(r.get('flop_formula_over_counted'), '.4f')}"),
        ("achieved TFLOP/s", num(r["tflops"], ".3g"), "img/s x formula FLOP"),
        ("MFU", num(100 * mfu if mfu is not None else None, ".1f", " %"), f"peak {num(r['peak_tflops'], '.1f')} TFLOP/s ({r['peak_note']})"),
    ]


def _cost_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    ro, aug, mem = r["readout"], r["augmentation"], r["peak_memory"]
    lin, whole = r["linear_probe_over_epoch"], r["readout_over_epoch"]
    sync = r["sync_check"]["lightning"]
    reserved = f", reserved {mem['reserved_bytes'] / 2**30:.2f} GiB" if mem.get("reserved_bytes") else ""
    return [
        ("augmentation img/s (gather + augment)", num(r["aug_img_per_s"], ",.0f"),
         f"batch {aug['batch']}, {aug['ms_median']:.2f} ms/call; target >= {r['targets']['aug_img_per_s']:,.0f} on a GPU"),
        ("linear probe per evaluation / epoch", num(100 * lin if lin is not None else None, ".1f", " %"),
         f"{num(ro['linear_s'], '.2f')} s, {ro['linear_iterations']} L-BFGS iterations, vs epoch "
         f"{num(ro['epoch_s'], '.1f')} s; target < 5%"),
        ("whole readout per evaluation / epoch", num(100 * whole if whole is not None else None, ".1f", " %"),
         f"unmasked feature pass {num(ro['features_s'], '.2f')} s (k-NN's, shared) + k-NN vote "
         f"{num(ro['knn_s'], '.2f')} s + linear probe; every knn_every epochs"),
        ("peak memory", _memory_text(mem), "Lightning run" + reserved),
        _fixed_cost_row(r),
        ("host syncs inside the step", num(sync["syncs"], "d"),
         "CPU: see tests/test_fast_path.py" if sync["syncs"] is None else f"{sync['checked_steps']} warm-up steps watched"),
    ]


def format_table(r: dict[str, Any]) -> str:
    """The benchmark result `r` (run_benchmark's dict) as the printed table, header line first."""
    rows = _timing_rows(r) + _flop_rows(r) + _cost_rows(r)
    head = (f"mae_gap.bench: {r['device_name']} | torch {r['torch']} | lightning {r['lightning_version']} | "
            f"config {r['config_name']} | batch {r['batch']} | {r['precision']} | compile {r['compile']} | "
            f"data {r['data_source']} {r['train_images']}+{r['val_images']} on {'device' if r['data_on_device'] else 'host'} | "
            f"{r['params'] / 1e6:.2f} M params")
    w1 = max(len(a) for a, _, _ in rows)
    w2 = max(len(b) for _, b, _ in rows)
    lines = [head, "-" * min(len(head), 160)]
    lines += [f"{a:<{w1}}  {b:>{w2}}  {c}" for a, b, c in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
