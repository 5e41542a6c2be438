"""The reconstruction panel (SPEC §4): fixed val images with their fixed masks, as one image.

Rows are images; columns are original | masked input | reconstruction (the predicted masked
patches pasted between the visible ones, MAE's visualization). With norm_pix the prediction is
mapped back to pixels with each target patch's own mean and std, as `val/mse_pixel` does. Built as
a uint8 tensor (3, H, W): the agent logs it as a W&B image; mae_gap never imports wandb.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .data import IMAGENET_MEAN, IMAGENET_STD, normalize
from .model import MaskedAutoencoder

PANEL_IMAGES = 8
GAP = 2  # pixels between the tiles


def _to_uint8(imgs: Tensor) -> Tensor:
    """ImageNet-normalized (N, 3, H, W) -> uint8 pixels."""
    mean = torch.tensor(IMAGENET_MEAN, device=imgs.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=imgs.device).view(1, 3, 1, 1)
    return ((imgs.float() * std + mean).clamp(0, 1) * 255).round().to(torch.uint8)


@torch.no_grad()
def reconstruction_panel(model: MaskedAutoencoder, images_uint8: Tensor, noise: Tensor) -> Tensor:
    """images (N, 3, S, S) uint8 and their mask noise (N, L) -> (3, N*S + gaps, 3*S + gaps) uint8.

    The caller sets eval mode; the first PANEL_IMAGES images are used.
    """
    imgs = normalize(images_uint8[:PANEL_IMAGES])  # (n, 3, S, S)
    noise = noise[: imgs.shape[0]].to(imgs.device)
    latent, mask, ids_restore = model.forward_encoder(imgs, model.mask_ratio, noise)
    pred = model.forward_decoder(latent, ids_restore).float()  # (n, L, p*p*3)
    target = model.patchify(imgs).float()
    if model.norm_pix_loss:  # back to pixels with the target patch's own moments
        mean = target.mean(dim=-1, keepdim=True)
        std = (target.var(dim=-1, keepdim=True) + 1e-6) ** 0.5
        pred = pred * std + mean
    m = mask.unsqueeze(-1)  # (n, L, 1), 1 = masked
    masked = model.unpatchify(target * (1 - m))  # hidden patches at 0: the data set's mean colour
    recon = model.unpatchify(target * (1 - m) + pred * m)
    columns = [_to_uint8(x) for x in (imgs, masked, recon)]  # each (n, 3, S, S)
    n, _, s, _ = imgs.shape
    panel = torch.full((3, n * s + (n - 1) * GAP, 3 * s + 2 * GAP), 255, dtype=torch.uint8, device=imgs.device)
    for i in range(n):
        for j, col in enumerate(columns):
            y, x = i * (s + GAP), j * (s + GAP)
            panel[:, y : y + s, x : x + s] = col[i]
    return panel.cpu()
