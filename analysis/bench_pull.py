"""How the pull scales: `python -m analysis.bench_pull [--runs 200 2000] [--epochs 50]`.

Each size runs in a fresh process (clean peak memory) against the project's fake W&B service
(`tests/fake_wandb`, in a process of its own, so that its work is not counted as the pull's):
N finished runs (5 alphas x N/5 seeds) x E epochs with every SPEC section 4 metric. The real
`wandb.Api()` pulls them (`analysis.pull.pull_sweep`: one `runs` query, the parquet exports of
ended runs, 8 threads, the per-run cache), then pulls again from the cache, then
`analysis.pull_and_plot` analyses the sweep from that cache. Printed per size: the pull's wall time,
its requests (GraphQL and file downloads, counted by the service), the peak RSS of this process and
of its wandb-core, the cached re-run's time and requests, and the analysis's time and any statistic
it could not define. The last line compares the pull time of the largest size with the smallest
(linear: the ratio of the times is at most the ratio of the run counts times 1.2).

Needs a clone of the repository (the fake lives under tests/) and the test extras.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parents[1]
ENTITY, PROJECT = "bench-team", "mae-gap-bench-pull"
ALPHAS = (-1.0, -0.1, 0.0, 0.1, 1.0)

# The fake service's process: populate, print its address, serve until stdin closes; "count" on
# stdin answers the number of requests it has seen (GraphQL operations and file downloads).
SERVE = r"""
import json, math, random, sys
sys.path.insert(0, sys.argv[1])
from fake_wandb import FakeWandb
n_runs, epochs = int(sys.argv[2]), int(sys.argv[3])
alphas = json.loads(sys.argv[4])
fake = FakeWandb(entity=sys.argv[5]).start()
project = sys.argv[6]
sid = fake.add_sweep(fake.entity, project, {"method": "grid", "parameters": {
    "alpha": {"values": alphas}, "seed": {"values": list(range(n_runs // len(alphas)))}}})
rng = random.Random(0)
keys = json.loads(sys.argv[7])
for i in range(n_runs):
    alpha, seed = alphas[i % len(alphas)], i // len(alphas)
    rows = []
    for e in range(1, epochs + 1):
        mse = 0.75 + 0.4 / e + 0.02 * abs(alpha) + rng.gauss(0, 0.003)
        row = {k: rng.random() for k in keys}
        row.update({"epoch": e, "val/mse": mse, "val/linear_acc": 0.2 + 0.35 * (1 - 1 / e) + 0.03 * alpha + rng.gauss(0, 0.005)})
        if e % 5:
            row["val/knn_acc"] = float("nan")
        rows.append(row)
    config = {"alpha": alpha, "seed": seed, "lr": 0.001, "alpha_mode": "grl", "epochs": epochs,
              "total_steps": 73 * epochs}
    fake.add_run(fake.entity, project, f"r{i:05d}", config=config, summary=dict(rows[-1]), history_rows=rows,
                 sweep_id=sid, display_name=f"run-{i}")
print(json.dumps({"url": fake.url, "key": fake.api_key, "sweep": sid}), flush=True)
for line in sys.stdin:
    print(fake.count(), flush=True)
"""


class FakeService:
    """The fake W&B service in a child process."""

    def __init__(self, n_runs: int, epochs: int):
        from mae_gap import metrics as M

        tests = REPO / "tests"
        if not (tests / "fake_wandb").is_dir():
            raise SystemExit(f"analysis.bench_pull: no {tests / 'fake_wandb'}; run it from a clone of the repository")
        keys = [k for k in M.EPOCH_KEYS if k != M.EPOCH]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVE, str(tests), str(n_runs), str(epochs), json.dumps(ALPHAS), ENTITY, PROJECT,
             json.dumps(keys)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("analysis.bench_pull: the fake W&B service did not start")
        info = json.loads(line)
        self.url, self.key, self.sweep = info["url"], info["key"], info["sweep"]

    def requests(self) -> int:
        self.proc.stdin.write("count\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def peak_rss_mb(who: int) -> float:
    """Peak resident memory in MB (Linux reports KiB) of this process or its ended children."""
    return resource.getrusage(who).ru_maxrss / 1024


def measure(n_runs: int, epochs: int, workers: int) -> dict[str, Any]:
    """One size, in this (fresh) process: pull, cached re-pull, analysis."""
    service = FakeService(n_runs, epochs)
    work = Path(tempfile.mkdtemp(prefix=f"bench_pull_{n_runs}_"))
    for var in ("DIR", "CACHE_DIR", "CONFIG_DIR", "DATA_DIR", "ARTIFACT_DIR"):
        (work / var.lower()).mkdir()
        os.environ[f"WANDB_{var}"] = str(work / var.lower())
    os.environ.update(WANDB_BASE_URL=service.url, WANDB_API_KEY=service.key, WANDB_SILENT="true")
    os.environ.pop("WANDB_MODE", None)
    import wandb

    from analysis import pull_and_plot
    from analysis.pull.api import pull_sweep

    path, out = f"{ENTITY}/{PROJECT}/{service.sweep}", work / "out"
    try:
        before = service.requests()
        t0 = time.monotonic()
        first = pull_sweep(path, out, workers=workers)
        pull_s = time.monotonic() - t0
        requests = service.requests() - before
        wandb.teardown()  # ends wandb-core: its peak memory is then in RUSAGE_CHILDREN
        core_mb = peak_rss_mb(resource.RUSAGE_CHILDREN)
        before = service.requests()
        t0 = time.monotonic()
        again = pull_sweep(path, out)
        cached_s = time.monotonic() - t0
        cached_requests = service.requests() - before
        t0 = time.monotonic()
        with open(work / "analysis.log", "w") as log:
            stdout, sys.stdout = sys.stdout, log
            try:
                code = pull_and_plot.main([path, "--out", str(out), "--no-upload"])
            finally:
                sys.stdout = stdout
        analysis_s = time.monotonic() - t0
        stats = json.loads((out / "gap_statistics.json").read_text()) if code == 0 else {}
    finally:
        service.close()
    return {
        "runs": n_runs, "epochs": epochs, "rows": int(len(first.table)), "pull_s": round(pull_s, 2),
        "requests": requests, "peak_rss_mb": round(peak_rss_mb(resource.RUSAGE_SELF), 1),
        "wandb_core_peak_rss_mb": round(core_mb, 1), "cached_s": round(cached_s, 2),
        "cached_requests": cached_requests, "cached_source": again.source, "analysis_exit": code,
        "analysis_s": round(analysis_s, 1), "undefined": undefined(stats), "work_dir": str(work),
    }


def undefined(stats: dict[str, Any]) -> list[str]:
    """The top-level statistics of gap_statistics.json that are not finite numbers."""
    keys = ("gamma", "rho", "p", "noise_floor", "noise_floor_q95", "gamma_excess", "gamma_p")
    return [k for k in keys if not (isinstance(stats.get(k), (int, float)) and math.isfinite(stats[k]))]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.bench_pull", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, nargs="+", default=[200, 2000], help="sweep sizes (multiples of 5)")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--workers", type=int, default=8, help="the pull's threads")
    p.add_argument("--json", default="", help="also write the figures to this file")
    p.add_argument("--one", type=int, default=0, help=argparse.SUPPRESS)  # a child: measure this size only
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one, args.epochs, args.workers)))
        return 0
    results = []
    for n in args.runs:
        child = subprocess.run([sys.executable, "-m", "analysis.bench_pull", "--one", str(n), "--epochs",
                                str(args.epochs), "--workers", str(args.workers)], cwd=REPO, capture_output=True,
                               text=True)
        if child.returncode != 0:
            print(child.stdout[-2000:], child.stderr[-4000:], sep="\n", file=sys.stderr)
            return 1
        r = json.loads(child.stdout.strip().splitlines()[-1])
        results.append(r)
        print(f"{r['runs']:>6} runs x {r['epochs']} epochs: pull {r['pull_s']:.1f} s, {r['requests']} requests, "
              f"peak RSS {r['peak_rss_mb']:.0f} MB (wandb-core {r['wandb_core_peak_rss_mb']:.0f} MB); "
              f"cached re-run {r['cached_s']:.2f} s, {r['cached_requests']} requests; "
              f"analysis {r['analysis_s']:.1f} s (exit {r['analysis_exit']}"
              + (f", undefined: {', '.join(r['undefined'])}" if r["undefined"] else ", every statistic finite") + ")",
              flush=True)
    if len(results) > 1:
        small, large = results[0], results[-1]
        ratio, size = large["pull_s"] / small["pull_s"], large["runs"] / small["runs"]
        print(f"{large['runs']} runs took {ratio:.1f} x the time of {small['runs']} ({size:.0f} x the runs): "
              + ("linear" if ratio <= 1.2 * size else "worse than linear"))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
