"""val/linear_acc (mae_gap.linear_probe, mae_gap.readout): a converged linear readout that depends
only on the features: Bayes-near on Gaussian classes, invariant to rotations and scalings,
deterministic, and reproduced from a saved checkpoint in a fresh process."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from mae_gap import metrics as M
from mae_gap.config import preset
from mae_gap.linear_probe import L2_GRID, holdout_split, linear_probe
from mae_gap.module import EpochCheckpoint, fit


def gaussian_classes(n: int, d: int = 16, c: int = 10, sep: float = 0.6, seed: int = 0):
    """Equal-prior classes N(mu_c, I): the Bayes classifier is nearest mean, which is linear."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(c, d, generator=g) * sep

    def draw(m):
        y = torch.randint(0, c, (m,), generator=g)
        return means[y] + torch.randn(m, d, generator=g), y

    return draw(n), draw(20000), means


def test_within_2pp_of_the_bayes_accuracy():
    (x, y), (xv, yv), means = gaussian_classes(10000)
    bayes = (torch.cdist(xv, means).argmin(1) == yv).double().mean().item()
    result = linear_probe(x, y, xv, yv, 10)
    assert abs(result.accuracy - bayes) <= 0.02, (result, bayes)
    assert result.converged and result.l2 in L2_GRID


def test_rotation_and_rescaling_change_it_by_at_most_half_a_point():
    (x, y), (xv, yv), _ = gaussian_classes(6000, seed=1)
    g = torch.Generator().manual_seed(2)
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=g))
    scale = torch.rand(16, generator=g) * 20 + 0.05
    base = linear_probe(x, y, xv, yv, 10).accuracy
    moved = linear_probe(x @ q * scale, y, xv @ q * scale, yv, 10).accuracy
    assert abs(moved - base) <= 0.005


def test_deterministic_and_the_holdout_slice_is_fixed():
    (x, y), (xv, yv), _ = gaussian_classes(3000, seed=3)
    assert linear_probe(x, y, xv, yv, 10) == linear_probe(x.clone(), y, xv, yv, 10)
    fit_a, out_a = holdout_split(3000)
    fit_b, out_b = holdout_split(3000)
    assert torch.equal(out_a, out_b) and len(out_a) == 300 and len(set(fit_a.tolist()) & set(out_a.tolist())) == 0


def test_refit_from_checkpoint_in_a_fresh_process_reproduces_the_logged_value(tmp_path):
    cfg = preset("tiny", dataset="digits", epochs=1, batch_size=64, lr=1e-3, train_limit=512, val_limit=256,
                 accelerator="cpu", cache_dir=str(tmp_path / "cache"))
    ckpt = tmp_path / "last.ckpt"
    logged = fit(cfg, callbacks=[EpochCheckpoint(ckpt)]).history[-1]
    assert math.isfinite(logged[M.VAL_LINEAR_ACC])
    code = f"""
from mae_gap.config import TrainConfig
from mae_gap.readout import readout_from_checkpoint
cfg = TrainConfig(**{cfg.to_dict()!r})
out = readout_from_checkpoint(cfg, {str(ckpt)!r})
print(out.linear.accuracy, out.knn)
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    linear, knn = map(float, run.stdout.split()[-2:])
    assert linear == pytest.approx(logged[M.VAL_LINEAR_ACC], abs=0.001)
    assert knn == pytest.approx(logged[M.VAL_KNN_ACC], abs=0.001)
