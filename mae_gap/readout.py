"""Frozen-feature readouts of a model: the pass that feeds val/knn_acc and val/linear_acc, and the
same readout recomputed from a saved epoch checkpoint (to check a logged value, or to read out a
run again with another protocol).

    from mae_gap.readout import readout_from_checkpoint
    knn, linear = readout_from_checkpoint(cfg, "checkpoints/RUN/last.ckpt")
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import torch

from .config import TrainConfig
from .data import DataSplits, load_data, normalize
from .knn import knn_accuracy
from .linear_probe import LinearProbeResult, linear_probe
from .model import MaskedAutoencoder


class Readout(NamedTuple):
    knn: float  # val/knn_acc
    linear: LinearProbeResult  # .accuracy is val/linear_acc


@torch.no_grad()
def pooled_features(model: MaskedAutoencoder, images_uint8: torch.Tensor, batch_size: int,
                    device: torch.device | str) -> torch.Tensor:
    """(N, D) float32 pooled unmasked features of uint8 images, in chunks of `batch_size`; the caller
    sets eval mode and any autocast."""
    chunks = (images_uint8[i : i + batch_size].to(device, non_blocking=True) for i in range(0, len(images_uint8), batch_size))
    return torch.cat([model.features(normalize(chunk)).float() for chunk in chunks])


def readout(model: MaskedAutoencoder, data: DataSplits, cfg: TrainConfig, device: torch.device | str,
            autocast=contextlib.nullcontext) -> Readout:
    """k-NN and linear-probe accuracy of the model's frozen features: one feature pass feeds both."""
    was_training = model.training
    model.eval()
    with autocast():
        train = pooled_features(model, data.train_images, cfg.eval_batch_size, device)
        val = pooled_features(model, data.val_images, cfg.eval_batch_size, device)
    model.train(was_training)
    train_labels, val_labels = data.train_labels.to(device), data.val_labels.to(device)
    knn = knn_accuracy(train, train_labels, val, val_labels, cfg.knn_k, cfg.knn_temperature, cfg.num_classes)
    return Readout(knn, linear_probe(train, train_labels, val, val_labels, cfg.num_classes))


def readout_from_checkpoint(cfg: TrainConfig, ckpt_path: str, data: DataSplits | None = None,
                            device: str = "cpu") -> Readout:
    """The readout of the weights in a Lightning epoch checkpoint of `agent.train` / `fit` (the
    checkpoint is written after the epoch's evaluation, so these are the evaluated weights). On the
    CPU in fp32: equal to the logged values of an fp32 run."""
    state = torch.load(ckpt_path, map_location=device, weights_only=False)["state_dict"]
    model = MaskedAutoencoder(cfg).to(device)
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    return readout(model, data if data is not None else load_data(cfg), cfg, device)
