"""Lightning's WandbLogger, each epoch's row logged once per run, over all its attempts.

A preempted run resumes from its last epoch checkpoint and trains again the epochs after it. The
module logs an epoch's row before `EpochCheckpoint` writes that epoch's checkpoint (an epoch must
never be lost), so an attempt killed between the two has already got the row into W&B: the next
attempt trains that epoch again and, without this logger, would log it twice. It is told the
epochs W&B already holds (`agent.train.epochs_in_wandb`) and drops their rows; the reconstruction
panel asks it too (`already_logged`), so that no panel is left uncommitted for a dropped row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pytorch_lightning.loggers import WandbLogger

from mae_gap import metrics as M


class OncePerEpochLogger(WandbLogger):
    def __init__(self, *args: Any, logged: Iterable[int] = (), **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.logged = {int(e) for e in logged}  # epochs W&B holds for this run
        self.dropped: list[int] = []

    def already_logged(self, epoch: int) -> bool:
        return int(epoch) in self.logged

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        epoch = metrics.get(M.EPOCH)
        if epoch is not None:
            if self.already_logged(epoch):
                self.dropped.append(int(epoch))
                return
            self.logged.add(int(epoch))
        super().log_metrics(metrics, step)
