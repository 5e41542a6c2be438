"""Pieces of mae_gap.bench that the CLI test cannot pin down: the plain loop's LR schedule is the
module's (warmup_epochs included), --set goes through the config's own key=value parser, and the
command line imports nothing heavy (the fixed-cost child's "interpreter ready" stamp relies on it)."""

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mae_gap.bench.benchmark import PlainLoop, build_config
from mae_gap.config import preset
from mae_gap.module import warmup_cosine

REPO = Path(__file__).resolve().parents[1]


def bench_args(**overrides):
    base = dict(device="cpu", config="tiny", batch=16, compile=False, precision="", data_dir="", set=[])
    return argparse.Namespace(**{**base, **overrides})


@pytest.mark.parametrize("warmup_epochs", [0.5, 1.0, 2.0])
def test_plain_loop_warms_up_over_the_configs_warmup_epochs(warmup_epochs):
    cfg = preset("tiny", epochs=4, warmup_epochs=warmup_epochs, accelerator="cpu")
    steps_per_epoch, total = 6, 24
    images = torch.zeros(32, 3, cfg.img_size, cfg.img_size, dtype=torch.uint8)
    loop = PlainLoop(cfg, images, torch.zeros(32, dtype=torch.long), torch.device("cpu"), "32", total)
    warmup = round(warmup_epochs * steps_per_epoch)
    ratio = cfg.min_lr / cfg.effective_lr
    got = [loop.sched.lr_lambdas[0](s) for s in range(total)]
    assert got == pytest.approx([warmup_cosine(s, warmup, total, ratio) for s in range(total)])
    assert got[warmup - 1] == pytest.approx(1.0) and got[warmup - 2] < 1.0  # the peak is where warmup_epochs put it


def test_set_overrides_are_typed_by_the_config_parser():
    cfg, device = build_config(bench_args(set=["epochs=3", "lr=0.00015", "online_probe=false", "alpha=-0.5"]), epochs=7)
    assert device.type == "cpu"
    assert (cfg.epochs, cfg.lr, cfg.online_probe, cfg.alpha) == (3, 1.5e-4, False, -0.5)
    assert isinstance(cfg.epochs, int) and cfg.batch_size == 16 and cfg.dataset == "synthetic"
    cfg, _ = build_config(bench_args(), epochs=7)
    assert cfg.epochs == 7


@pytest.mark.parametrize("bad, message", [("epochs", "key=value"), ("epoch=3", "epoch is not a TrainConfig field"),
                                          ("mask_ratio=1.5", "mask_ratio")])
def test_bad_set_is_one_line_error(bad, message):
    with pytest.raises(SystemExit, match=message) as info:
        build_config(bench_args(set=[bad]), epochs=1)
    assert str(info.value).startswith("mae_gap.bench: ")


def test_the_command_line_imports_nothing_heavy():
    # main() stamps the fixed-cost child's "interpreter ready": torch must not be loaded by then
    code = "import sys, mae_gap.bench.__main__; assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]
