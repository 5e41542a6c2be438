"""The GPU suite (`python -m mae_gap.bench --suite gpu`) rehearsed on a CPU with tiny sizes: every
step runs, its files are written with the keys the GPU check reads, and a missing figure reads
"n/a" instead of crashing the summary. The children run in this process (a fresh interpreter costs
10-15 s of imports on a shared machine); their command lines are the suite's own."""

import contextlib
import io
import json
import math
import os
import sys
import time
from pathlib import Path

import pytest

from mae_gap.bench import __main__ as cli
from mae_gap.bench.suite import SUMMARY_KEYS, Suite, sweep_lines, sweep_run_record, sweep_run_text


def in_process_child(self, argv, cap):
    """Suite.run_child, but `python -m mae_gap.bench ARGS` runs as cli.main(ARGS) here (the eager
    benchmark without its own fresh-process fixed cost: tests/test_bench.py covers that)."""
    assert argv[:3] == [sys.executable, "-m", "mae_gap.bench"]
    args = argv[3:] + (["--no-fixed-cost"] if "--json" in argv else [])
    self.say(f"$ {' '.join(argv[1:])}   (in process)")
    t = time.time()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cli.main(args)
    self.log.write(buf.getvalue() + "\n")
    return rc, buf.getvalue(), time.time() - t


def open_paths() -> set[str]:
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        return set()
    paths = set()
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):
            paths.add(os.readlink(fd))
    return paths


@pytest.fixture
def rehearsal(tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("MAE_GAP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(Suite, "run_child", in_process_child)
    threads = torch.get_num_threads()
    out = tmp_path / "suite"
    t = time.time()
    try:  # a budget under 90 s: the compile step (> 90 s left) and the parallel sweep (> 150 s) are skipped
        rc = cli.main(["--suite", "gpu", "--device", "cpu", "--config", "tiny", "--batch", "32", "--train-size", "96",
                       "--val-size", "32", "--sweep-epochs", "1", "--sweep-batch", "32", "--budget-s", "89",
                       "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    return out, rc, time.time() - t


def test_cpu_rehearsal_writes_every_file_and_key(rehearsal):
    out, rc, secs = rehearsal
    assert rc == 0
    assert secs < 60
    assert {p.name for p in out.iterdir()} == {"summary.md", "summary.json", "eager.json", "sweep.json", "log.txt"}
    assert str(out / "log.txt") not in open_paths(), "the suite must close its log"

    eager = json.loads((out / "eager.json").read_text())
    assert eager["device"] == "cpu" and eager["config_name"] == "tiny" and eager["batch"] == 32
    assert eager["train_images"] == 96 and eager["val_images"] == 32 and eager["steps_per_epoch"] == 3
    assert eager["lightning"]["events"]["steps"] == 9  # --repeats 3 timed epochs x 3 steps
    assert eager["img_per_s"] > 0 and eager["plain_img_per_s"] > 0 and "fixed_cost" not in eager

    sweep = json.loads((out / "sweep.json").read_text())
    assert [r["alpha"] for r in sweep["runs"]] == [-0.5, 0.0, 0.5] and "incomplete" not in sweep
    for run in sweep["runs"]:
        assert run["rc"] == 0 and run["epochs"] == 1 and run["batch"] == 32 and run["lr"] == pytest.approx(1.5e-4)
        assert len(run["epoch_s"]) == 1 and run["epoch_s"][0] > 0 and run["train_img_per_s"][0] > 0
        assert run["last_epoch"]["epoch"] == 1 and math.isfinite(run["last_epoch"]["val/knn_acc"])  # knn_every=1
    assert "skipped" in sweep["parallel"]

    summary = json.loads((out / "summary.json").read_text())
    assert summary["device"] == "cpu" and summary["budget_s"] == 89
    assert summary["steps"]["eager"]["rc"] == 0 and summary["steps"]["sweep"]["runs"] == 3
    assert "skipped" in summary["steps"]["compile"]
    assert set(summary["eager"]) == set(SUMMARY_KEYS) and set(summary["compile"]) == set(SUMMARY_KEYS)
    assert summary["eager"]["img_per_s"] == eager["img_per_s"] and summary["compile"]["img_per_s"] is None
    assert summary["sweep"]["epochs"] == 1 and summary["suite_s"] > 0

    md = (out / "summary.md").read_text()
    eager_row = next(line for line in md.splitlines() if line.startswith("| eager |"))
    assert f"{eager['img_per_s']:,.0f}" in eager_row and "| n/a |" in eager_row  # no fixed cost: n/a, no crash
    assert "| compile | failed or skipped" in md
    assert md.count("median epoch") == 3 and "alpha -0.5" in md
    log = (out / "log.txt").read_text()
    assert log.count("$ -m mae_gap.bench") == 4 and log.count("RUN_RESULT ") == 3


def test_missing_sweep_figures_read_na_not_a_crash():
    # a run whose history lacks perf/epoch_s (or holds NaN) used to crash statistics.median
    info = {"t_first_step": 12.5, "epochs": 2, "history": [{"perf/epoch_s": None, "perf/train_img_per_s": float("nan")},
                                                           {"epoch": 2}]}
    run = sweep_run_record(0.5, 0, 3.0, 10.0, info)
    assert run["fixed_cost_s"] == pytest.approx(2.5) and run["epoch_s"] == [None, None]
    assert "history" in info  # the child's record is not consumed
    text = sweep_run_text(run)
    assert text == "fixed cost 2.5 s, median epoch n/a s, median train img/s n/a"
    run_ok = sweep_run_record(-0.5, 0, 3.0, 10.0, {"t_first_step": None, "history": [
        {"perf/epoch_s": 1.0, "perf/train_img_per_s": 100.0}, {"perf/epoch_s": None, "perf/train_img_per_s": 300.0}]})
    assert sweep_run_text(run_ok) == "fixed cost n/a s, median epoch 1.00 s, median train img/s 200"
    lines = sweep_lines({"runs": [run, run_ok, {"alpha": 0.0, "rc": 1, "wall_s": 1.0}], "epochs": 2, "batch": 8,
                         "total_s": 9.0, "parallel": {"skipped": "0 s left"}}, 16, 8)
    assert lines[1].startswith("  alpha +0.5: 3.0 s, fixed cost 2.5 s, median epoch n/a s")
    assert lines[3] == "  alpha +0.0: failed (rc 1), see log.txt" and len(lines) == 4


def test_suite_needs_out_and_refuses_cuda_without_a_gpu(capsys):
    with pytest.raises(SystemExit):
        cli.parse_cli(["--suite", "gpu", "--device", "cpu"])
    assert "--suite needs --out DIR" in capsys.readouterr().err
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="needs a CUDA device"):
            cli.main(["--suite", "gpu", "--device", "cuda", "--out", "unused", "--threads", "0"])
