"""The Lightning train path on real (digits) data with a tiny model: SPEC §3-§4 end to end."""

import math

import pytest
import pytorch_lightning as pl
import torch

from mae_gap import metrics as M
from mae_gap.config import preset
from mae_gap.knn import knn_accuracy
from mae_gap.losses import NonFiniteLoss
from mae_gap.module import fit, warmup_cosine


def tiny(tmp_path, **overrides):
    base = dict(dataset="digits", epochs=2, batch_size=64, lr=1e-3, eval_batch_size=256,
                train_limit=256, val_limit=128, accelerator="cpu", cache_dir=str(tmp_path / "cache"))
    return preset("tiny", **{**base, **overrides})


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    cfg = tiny(tmp_path_factory.mktemp("fit"))
    return cfg, fit(cfg)


def test_every_metric_logged_once_per_epoch_and_finite(two_epochs):
    cfg, result = two_epochs
    assert [row[M.EPOCH] for row in result.history] == [1.0, 2.0]
    for row in result.history:
        assert set(row) == set(M.EPOCH_KEYS)
        assert all(math.isfinite(v) for v in row.values()), row
        for key in (M.VAL_LINEAR_ACC, M.VAL_PROBE_ACC, M.VAL_HEAD_ACC, M.VAL_KNN_ACC, M.TRAIN_HEAD_ACC):
            assert 0.0 <= row[key] <= 1.0
    # The schedule really moved: warmup ends after epoch 1, cosine reaches min_lr at the end.
    assert result.history[0][M.TRAIN_LR] == pytest.approx(cfg.lr, rel=1e-6)
    assert result.history[-1][M.TRAIN_LR] == pytest.approx(cfg.min_lr, abs=1e-9)


def test_same_seed_same_val_mse(two_epochs, tmp_path):
    cfg, result = two_epochs
    again = fit(tiny(tmp_path, epochs=1, cache_dir=cfg.cache_dir))
    assert again.history[0][M.VAL_MSE] == pytest.approx(result.history[0][M.VAL_MSE], rel=1e-6)
    other = fit(tiny(tmp_path, epochs=1, seed=1, cache_dir=cfg.cache_dir))
    assert other.history[0][M.VAL_MSE] != pytest.approx(result.history[0][M.VAL_MSE], rel=1e-6)


def test_knn_every_controls_the_knn_and_linear_columns(tmp_path):
    result = fit(tiny(tmp_path, epochs=2, knn_every=2, train_limit=128, val_limit=64))
    for key in (M.VAL_KNN_ACC, M.VAL_LINEAR_ACC):
        values = [row[key] for row in result.history]
        assert math.isnan(values[0]) and 0.0 <= values[1] <= 1.0


def test_without_the_online_probe_its_metrics_are_nan_and_it_does_not_train(tmp_path):
    result = fit(tiny(tmp_path, epochs=1, online_probe=False, train_limit=128, val_limit=64))
    row = result.history[0]
    assert math.isnan(row[M.VAL_PROBE_ACC]) and math.isnan(row[M.TRAIN_PROBE_CE])
    assert math.isfinite(row[M.VAL_LINEAR_ACC]) and math.isfinite(row[M.TRAIN_LOSS])
    probe = result.module.model.probe[1]
    assert not probe.weight.requires_grad
    torch.testing.assert_close(probe.weight, fit_probe_init(tmp_path))


def fit_probe_init(tmp_path):
    """The probe's initial weights (same seed): an untrained probe keeps them."""
    from mae_gap.model import MaskedAutoencoder

    pl.seed_everything(0, verbose=False)
    return MaskedAutoencoder(tiny(tmp_path, online_probe=False)).probe[1].weight


def test_bf16_autocast_runs_on_cpu(tmp_path):
    result = fit(tiny(tmp_path, epochs=1, precision="bf16-mixed", train_limit=128, val_limit=64))
    assert math.isfinite(result.history[0][M.TRAIN_LOSS])


class StepRecorder(pl.Callback):
    """Records (global step, loss finite?) of every training step that ran."""

    def __init__(self):
        self.steps = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps.append((trainer.global_step - 1, bool(torch.isfinite(outputs["loss"]))))  # after its optimizer step


def test_divergence_stops_within_one_step(tmp_path):
    # weighted mode, negative alpha: the head maximises its CE; a huge lr makes it blow up at once.
    cfg = tiny(tmp_path, alpha_mode="weighted", alpha=-10.0, lr=1e30, epochs=3)
    recorder = StepRecorder()
    with pytest.raises(NonFiniteLoss) as info:
        fit(cfg, callbacks=[recorder])
    first_bad = next(step for step, finite in recorder.steps if not finite)
    assert info.value.step == first_bad
    assert recorder.steps[-1][0] == first_bad, "no step may run after the non-finite one"
    assert info.value.term in ("rec", "head_ce", "probe_ce", "loss") and info.value.epoch == 1


def test_warmup_cosine_by_hand():
    assert warmup_cosine(0, 4, 12, 0.0) == pytest.approx(0.25)
    assert warmup_cosine(3, 4, 12, 0.0) == pytest.approx(1.0)
    assert warmup_cosine(8, 4, 12, 0.0) == pytest.approx(0.5)  # halfway through the cosine
    assert warmup_cosine(12, 4, 12, 0.1) == pytest.approx(0.1)


def test_knn_accuracy_by_hand():
    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    labels = torch.tensor([0, 0, 1, 1])
    val = torch.tensor([[1.0, 0.05], [0.05, 1.0], [1.0, 0.0]])
    assert knn_accuracy(train, labels, val, torch.tensor([0, 1, 1]), k=2, temperature=0.07, num_classes=2) == pytest.approx(2 / 3)
    # k larger than the train set is clipped, not an error
    assert knn_accuracy(train, labels, val, torch.tensor([0, 1, 0]), k=50, temperature=0.07, num_classes=2) > 0


def test_mae_gap_trains_without_wandb_datasets_or_sklearn(tmp_path):
    # The GPU boxes have torch, timm and Lightning but not wandb, datasets or scikit-learn (SPEC §1).
    code = f"""
import sys
for name in ('wandb', 'datasets', 'sklearn'):
    sys.modules[name] = None  # `import name` now raises ImportError, as where it is not installed
from mae_gap.config import preset
from mae_gap.module import fit
cfg = preset('tiny', dataset='synthetic', synthetic_size=128, epochs=1, batch_size=32, accelerator='cpu',
             cache_dir={str(tmp_path)!r})
print('rows', len(fit(cfg).history))
assert not [m for m in sys.modules if m.split('.')[0] in ('wandb', 'datasets', 'sklearn') and sys.modules[m] is not None]
"""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "rows 1" in out.stdout, out.stderr[-3000:]
