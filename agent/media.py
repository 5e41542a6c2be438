"""What agent.train logs besides the metric rows: the reconstruction panel (with its epoch's row)
and, with --log_model, the final weights as a W&B model artifact."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from mae_gap import metrics as M
from mae_gap.config import TrainConfig


class ReconstructionPanel(pl.Callback):
    """Every `recon_every` epochs and at the last, `mae_gap.recon.reconstruction_panel` of the fixed
    val images as a W&B image, logged uncommitted just before the module logs the epoch's row
    (Lightning calls callbacks' on_train_epoch_end first), so it lands in that same row."""

    def __init__(self, run: Any, cfg: TrainConfig, logger: Any = None):
        self.run, self.cfg, self.logger = run, cfg, logger

    def due(self, epoch: int) -> bool:
        """A panel epoch whose row will be logged (not one an earlier attempt of the run logged)."""
        every = self.cfg.recon_every
        if self.logger is not None and self.logger.already_logged(epoch):
            return False
        return every > 0 and (epoch % every == 0 or epoch == self.cfg.epochs)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if trainer.sanity_checking or not trainer.is_global_zero or not self.due(epoch):
            return
        import wandb

        from mae_gap.recon import reconstruction_panel

        model = pl_module.model
        was_training = model.training
        model.eval()
        try:
            panel = reconstruction_panel(model, pl_module.data.val_images, pl_module.val_noise)
        finally:
            model.train(was_training)
        image = wandb.Image(panel.permute(1, 2, 0).numpy(),
                            caption=f"epoch {epoch}: original | masked | reconstruction (fixed val masks)")
        self.run.log({M.VAL_RECONSTRUCTION: image}, commit=False)


def log_model_artifact(run: Any, model: torch.nn.Module, cfg: TrainConfig, final: dict[str, float]) -> str:
    """The final weights as a W&B model artifact `model-<run id>` (config and final metrics in its
    metadata); returns the artifact's name."""
    import wandb

    path = Path(run.dir) / "model.pt"
    torch.save(model.state_dict(), path)
    name = f"model-{run.id}"
    artifact = wandb.Artifact(name, type="model", description="final MAE weights (mae_gap.model.MaskedAutoencoder)",
                              metadata={"config": cfg.to_dict(), "final": json.loads(json.dumps(final, default=float))})
    artifact.add_file(str(path), name="model.pt")
    run.log_artifact(artifact)
    return name
