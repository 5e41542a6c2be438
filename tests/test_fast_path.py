"""The fast training path computes the same thing, without host syncs (CPU, tiny model).

- same seed -> the same per-step losses with the data held on the device (a batch = indices) and
  with the classic host path (the loader gathers uint8 batches on the host);
- training_step + backward make no device->host read and build no tensor from host data
  (each of which is a blocking transfer on a GPU), proven by recording every aten op they run;
- bf16 autocast runs through the real module on a CPU; the GPU defaults are bf16 without a
  GradScaler, fused AdamW and timm's fused SDPA attention.
"""

from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from mae_gap import metrics as M
from mae_gap.config import preset
from mae_gap.data import load_data
from mae_gap.bench.benchmark import fit_host_data
from mae_gap.module import MAEGapModule, fit, resolve_precision


def tiny(**overrides):
    base = dict(dataset="synthetic", synthetic_size=256, epochs=2, batch_size=64, lr=1e-3, eval_batch_size=128,
                accelerator="cpu", knn_every=1)
    return preset("tiny", **{**base, **overrides})


class LossRecorder(pl.Callback):
    """Every step's loss terms, read on the host by the test (not by the training path)."""

    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


@pytest.fixture(scope="module")
def data():
    return load_data(tiny())


def test_same_seed_same_losses_with_and_without_device_data(data):
    runs = {}
    for on_device in (True, False):
        rec = LossRecorder()
        result = (fit if on_device else fit_host_data)(tiny(), callbacks=[rec], data=data)
        assert result.module.data.train_images.device.type == "cpu"  # (a CPU run: "device" = host here)
        runs[on_device] = (rec.losses, result.history)
    (dev_losses, dev_hist), (host_losses, host_hist) = runs[True], runs[False]
    assert len(dev_losses) == 8  # 2 epochs x 256 / 64
    assert dev_losses == pytest.approx(host_losses, rel=1e-6, abs=1e-7)
    for a, b in zip(dev_hist, host_hist):
        for key in (M.TRAIN_LOSS, M.TRAIN_REC_LOSS, M.VAL_MSE, M.VAL_PROBE_ACC, M.VAL_KNN_ACC):
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-7), key
    # a different seed really changes the trajectory (the comparison above is not vacuous)
    rec = LossRecorder()
    fit(tiny(seed=1), callbacks=[rec], data=data)
    assert rec.losses != pytest.approx(dev_losses, rel=1e-6)


# Ops that read a device value on the host, or turn host data into a tensor (a blocking
# host->device copy on a GPU); data-dependent shapes (nonzero, masked_select, unique) sync too.
SYNC_OPS = {"aten._local_scalar_dense", "aten.item", "aten.lift_fresh", "aten.lift_fresh_copy", "aten.nonzero",
            "aten.masked_select", "aten._unique2", "aten.unique_dim", "aten.unique_consecutive", "aten.is_nonzero",
            "aten.equal"}
HOST_METHODS = ("item", "tolist", "numpy", "cpu")


_IN_SCALAR_SETITEM = [0]


class OpRecorder(TorchDispatchMode):
    """Records every aten op. `t[i] = 0` lifts the Python scalar on a CPU, but on a GPU it becomes
    at::scalar_tensor on the device (a fill, no copy), so that lift is recorded under its own name."""

    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket)
        if name == "aten.lift_fresh" and _IN_SCALAR_SETITEM[0]:
            name = "lift of a Python scalar in Tensor.__setitem__"
        self.ops.append(name)
        return func(*args, **(kwargs or {}))


@pytest.fixture
def scalar_setitem(monkeypatch):
    original = torch.Tensor.__setitem__

    def setitem(self, key, value):
        scalar = isinstance(value, (bool, int, float))
        _IN_SCALAR_SETITEM[0] += scalar
        try:
            return original(self, key, value)
        finally:
            _IN_SCALAR_SETITEM[0] -= scalar

    monkeypatch.setattr(torch.Tensor, "__setitem__", setitem)


@pytest.fixture
def host_calls(monkeypatch):
    """Patches Tensor.item/tolist/numpy/cpu to RECORD each call (and still work)."""
    calls: list[str] = []
    for name in HOST_METHODS:
        original = getattr(torch.Tensor, name)

        def recording(self, *args, __name=name, __original=original, **kwargs):
            calls.append(__name)
            return __original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, recording)
    return calls


def test_training_step_makes_no_host_sync(monkeypatch, host_calls, scalar_setitem, data):
    steps: list[dict] = []
    original_step, original_backward = MAEGapModule.training_step, pl.LightningModule.backward

    def recorded(fn):
        def wrapper(self, *args, **kwargs):
            start = len(host_calls)
            with OpRecorder() as rec:
                result = fn(self, *args, **kwargs)
            steps.append({"what": fn.__name__, "ops": rec.ops, "host": host_calls[start:]})
            return result
        return wrapper

    monkeypatch.setattr(MAEGapModule, "training_step", recorded(original_step))
    monkeypatch.setattr(MAEGapModule, "backward", recorded(original_backward))
    fit(tiny(epochs=1), data=data)
    assert [s["what"] for s in steps] == ["training_step", "backward"] * 4
    assert all(len(s["ops"]) > 20 for s in steps)  # the recorder sees the real work ...
    assert any("aten.addmm" in s["ops"] or "aten.mm" in s["ops"] for s in steps)
    for i, s in enumerate(steps):
        assert s["host"] == [], (i, s["what"], s["host"])
        bad = [op for op in s["ops"] if op in SYNC_OPS]
        # the first step may build the normalization constants once (augment caches them per device)
        allowed = {"aten.lift_fresh"} if i < 2 else set()
        assert set(bad) <= allowed, (i, s["what"], bad)

    # ... and would see a sync if there were one (the recorders are live, not vacuous)
    with OpRecorder() as rec:
        torch.ones(2).sum().item()
        torch.tensor([1.0, 2.0])
        torch.ones(2)[[1, 0]]  # a Python-list index is host data too
    assert rec.ops.count("aten._local_scalar_dense") == 1 and rec.ops.count("aten.lift_fresh") == 2
    assert host_calls[-1] == "item"


def test_bf16_autocast_through_the_real_module_on_cpu(monkeypatch, data):
    seen = {"autocast": [], "dtypes": []}
    original_step = MAEGapModule.training_step

    def step(self, *args, **kwargs):
        seen["autocast"].append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return original_step(self, *args, **kwargs)

    class Hook(pl.Callback):
        def on_fit_start(self, trainer, pl_module):
            fc1 = pl_module.model.decoder_blocks[0].mlp.fc1
            fc1.register_forward_hook(lambda m, i, o: seen["dtypes"].append(o.dtype) if m.training else None)
            seen["scaler"] = getattr(trainer.precision_plugin, "scaler", None)

    monkeypatch.setattr(MAEGapModule, "training_step", step)
    rec = LossRecorder()
    result = fit(tiny(epochs=1, precision="bf16-mixed"), callbacks=[rec, Hook()], data=data)
    assert seen["autocast"] == [True] * 4
    assert seen["dtypes"] and set(seen["dtypes"]) == {torch.bfloat16}
    assert seen["scaler"] is None  # bf16: no GradScaler
    assert all(torch.isfinite(torch.tensor(rec.losses)))
    assert torch.isfinite(torch.tensor(result.history[0][M.VAL_MSE]))


def test_gpu_defaults_bf16_fused_adamw_fused_attention(monkeypatch, data):
    cfg = tiny()
    assert resolve_precision(cfg, "gpu") == "bf16-mixed" and resolve_precision(cfg, "cpu") == "32"

    # configure_optimizers asks for the fused AdamW kernel exactly when the module sits on CUDA
    made = []

    class RecordingAdamW(torch.optim.AdamW):
        def __init__(self, params, **kwargs):
            made.append(kwargs.get("fused"))
            super().__init__(params, **{**kwargs, "fused": None})

    monkeypatch.setattr(torch.optim, "AdamW", RecordingAdamW)
    for device, expected in (("cpu", False), ("cuda:0", True)):
        module = MAEGapModule(cfg, data)
        module._device = torch.device(device)
        module._trainer = SimpleNamespace(estimated_stepping_batches=8)
        module.configure_optimizers()
        assert made[-1] is expected

    # timm's Attention runs F.scaled_dot_product_attention (fused SDPA), in every encoder/decoder block
    module = MAEGapModule(cfg, data)
    attn = [m for m in module.model.modules() if type(m).__name__ == "Attention"]
    assert len(attn) == cfg.depth + cfg.decoder_depth and all(m.fused_attn for m in attn)
    calls = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or sdpa(*a, **k))
    imgs = torch.randn(2, 3, cfg.img_size, cfg.img_size)
    module.model(imgs, torch.tensor([0, 1]))
    assert len(calls) == 2 * cfg.depth + cfg.decoder_depth  # masked pass + probe pass + decoder
