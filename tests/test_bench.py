"""mae_gap.bench: the analytic FLOP formula and the CLI (CPU, tiny). No timed assertions: speed is
measured by the benchmark itself, never by a test."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mae_gap.bench.flops import counted_flops_per_image, flop_breakdown
from mae_gap.config import preset

REPO = Path(__file__).resolve().parents[1]

# A configuration small enough to count by hand: 8 px images of 4 px patches -> L = 4 patches,
# mask 0.5 -> K = 2 visible, widths 4, one block each, MLP ratio 1 (hidden 4), 2 classes.
HAND = dict(img_size=8, patch_size=4, embed_dim=4, depth=1, num_heads=1, decoder_embed_dim=4, decoder_depth=1,
            decoder_num_heads=1, mlp_ratio=1.0, mask_ratio=0.5, num_classes=2)


def test_flop_formula_by_hand():
    cfg = preset("tiny", **HAND)
    # a block on T tokens of width d (h = d): 2 * (T * (3d^2 + d^2 + 2dh) + 2 T^2 d)
    block = lambda T, d: 2 * (T * (3 * d * d + d * d + 2 * d * d) + 2 * T * T * d)  # noqa: E731
    patch_embed = 2 * 4 * 48 * 4  # L patches x (3 * 4 * 4 pixels) x D = 1536
    encoder = block(3, 4)  # K + cls = 3 tokens: 720
    decoder = 2 * 3 * 4 * 4 + block(5, 4) + 2 * 5 * 4 * 48  # embed 96 + blocks 1360 + pred 1920
    head = 2 * 4 * 2  # 16
    probe_pass = patch_embed + block(5, 4) + head  # 1536 + 1360 + 16
    masked = patch_embed + encoder + decoder + head  # 5648
    expected = 3 * masked - patch_embed + probe_pass + head  # backward = 2x fwd, none w.r.t. pixels
    assert (patch_embed, encoder, block(5, 4), masked) == (1536, 720, 1360, 5648)
    assert expected == 18336
    b = flop_breakdown(cfg)
    assert b["train"] == expected
    assert (b["patch_embed"], b["encoder"], b["decoder"], b["masked_fwd"], b["probe_pass"]) == (
        patch_embed, encoder, decoder, masked, probe_pass)


def test_full_config_matches_spec_figures():
    b = flop_breakdown(preset("full"))
    assert b["masked_fwd_bwd"] == pytest.approx(34e9, rel=0.01)  # SPEC §9: "about 34 GFLOP"
    assert b["decoder_blocks_share_of_masked"] == pytest.approx(0.93, abs=0.005)  # "93% in the decoder"
    assert b["probe_pass"] / b["masked_fwd_bwd"] == pytest.approx(0.07, abs=0.01)  # "+~7%"
    assert b["train"] == pytest.approx(36.43e9, rel=1e-3)
    # --online_probe=False saves the probe pass: 6.9% of a training step
    without = flop_breakdown(preset("full", online_probe=False))["train"]
    assert without == pytest.approx(b["train"] - b["probe_pass"] - b["head"])
    assert 1 - without / b["train"] == pytest.approx(0.069, abs=0.002)


@pytest.mark.parametrize("overrides", [
    {},  # the tiny preset: grl mode
    dict(mask_ratio=0.5, mlp_ratio=2.0, alpha_mode="weighted", alpha=0.0),  # head frozen, other shapes
    HAND,
    dict(online_probe=False),  # no probe pass
], ids=["tiny", "tiny-variant", "hand", "no-online-probe"])
def test_flop_formula_matches_flop_counter(overrides):
    # FlopCounterMode counts every matmul/conv/attention FLOP of one real forward + backward; the
    # formula leaves out only the frozen head's backward in weighted mode at alpha 0 (a few FLOP).
    cfg = preset("tiny", **overrides)
    counted = counted_flops_per_image(cfg, "cpu", batch=3)
    assert flop_breakdown(cfg)["train"] == pytest.approx(counted, rel=2e-3)


ROWS = ("train img/s", "step time, Lightning", "step time, plain PyTorch loop", "Lightning / plain, step",
        "epoch wall / sum of its steps", "FLOP per image (formula)", "FLOP per image (FlopCounterMode)",
        "achieved TFLOP/s", "MFU", "augmentation img/s", "linear probe per evaluation / epoch", "whole readout per evaluation / epoch", "peak memory", "fixed cost",
        "host syncs inside the step")
NUMBERS = ("img_per_s", "plain_img_per_s", "lightning_step_ms", "plain_step_ms", "lightning_over_plain",
           "epoch_over_steps", "flop_per_img", "flop_per_img_counted", "tflops", "mfu", "aug_img_per_s",
           "fixed_cost_s", "readout_over_epoch", "linear_probe_over_epoch")


def test_cli_prints_and_writes_every_field(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "MAE_GAP_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "mae_gap.bench", "--device", "cpu", "--config", "tiny", "--steps", "3",
         "--repeats", "1", "--peak-tflops", "1.0", "--json", str(out)],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = proc.stdout[proc.stdout.index("mae_gap.bench: "):]
    for row in ROWS:
        assert row in table, row
    r = json.loads(out.read_text())
    for key in NUMBERS:
        assert isinstance(r[key], (int, float)) and math.isfinite(r[key]) and r[key] > 0, (key, r[key])
    assert r["peak_memory"]["kind"] == "host_peak_rss" and r["peak_memory"]["bytes"] > 0
    assert r["fixed_cost"]["total_s"] == r["fixed_cost_s"] and r["fixed_cost"]["first_step_s"] >= 0
    assert r["mfu"] == pytest.approx(r["tflops"] / 1.0)
    assert r["flop_formula_over_counted"] == pytest.approx(1.0, rel=2e-3)
    assert r["device"] == "cpu" and r["torch"] and r["device_name"]
    assert r["config"]["embed_dim"] == preset("tiny").embed_dim and r["config_name"] == "tiny"
    assert r["batch"] == 64 and r["precision"] == "32" and r["compile"] is False
    assert r["lightning"]["events"]["steps"] == 3 and r["plain"]["events"]["steps"] == 3
    readout = r["readout"]
    assert readout["linear_converged"] is True and readout["total_s"] == pytest.approx(
        readout["features_s"] + readout["knn_s"] + readout["linear_s"])
    assert f"{r['img_per_s']:,.0f}" in table  # the table prints the numbers the JSON holds
