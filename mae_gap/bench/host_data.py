"""The classic host data path (`--host-data`), kept only as the bench's reference: training images
stay on the host, the loader gathers each uint8 batch there and Lightning copies it over. Same
random draws as the device path, so the same losses (tests/test_fast_path.py); mae_gap.module
itself keeps the one device-resident path."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..module import EpochShuffle, MAEGapModule


class HostGather:
    """collate_fn of the host data path: a list of indices -> (uint8 images, labels) gathered on the host."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __call__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(indices)
        return self.images[idx], self.labels[idx]


class HostDataModule(MAEGapModule):
    """MAEGapModule with the training images on the host; validation data still moves to the device.
    Pass it to `fit(..., module_cls=HostDataModule)`."""

    def on_fit_start(self) -> None:
        self.data = dataclasses.replace(self.data, val_images=self.data.val_images.to(self.device),
                                        val_labels=self.data.val_labels.to(self.device))
        self.make_val_noise()

    def train_dataloader(self) -> DataLoader:
        n = self.data.train_labels.shape[0]
        return DataLoader(range(n), batch_size=self.cfg.batch_size, sampler=EpochShuffle(n, self.cfg.seed),
                          drop_last=n >= self.cfg.batch_size, num_workers=0,
                          collate_fn=HostGather(self.data.train_images, self.data.train_labels),
                          pin_memory=self.device.type == "cuda")  # pinned batches: asynchronous copies

    def gather(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = batch  # already gathered on the host and copied over by Lightning
        return images, labels
