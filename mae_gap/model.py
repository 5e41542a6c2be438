"""A ViT MAE with a supervised head and an online linear probe (SPEC sections 2 and 3).

In the style of facebookresearch/mae `models_mae.py`: the whole model is composed from timm
parts (PatchEmbed, Block with fused SDPA attention) and sized entirely by TrainConfig, so the
tests and the CPU smoke sweep run a tiny model through this same code.
Shapes: N images, L = (S/p)^2 patches, K = int(L * (1 - mask_ratio)) visible patches,
D encoder width, Dd decoder width, C classes.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed, build_sincos2d_pos_embed
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from .config import TrainConfig
from .grad_taps import GradTaps
from .losses import head_terms


class StepOutput(NamedTuple):
    loss: Tensor  # () what is back-propagated
    rec_loss: Tensor  # () masked-patch reconstruction loss
    head_ce: Tensor  # () CE of the supervised head (logged even when it is out of the loss)
    probe_ce: Tensor  # () CE of the probe (0 without the online probe)
    head_logits: Tensor  # (N, C) head on the visible tokens of the masked pass
    probe_logits: Tensor | None  # (N, C) probe on the unmasked image (None without the online probe)


class EvalOutput(NamedTuple):
    rec: Tensor  # (N,) masked-patch MSE against the training target (norm_pix per cfg)
    pixel: Tensor  # (N,) the same patches in pixel space, prediction mapped back with the target's moments
    head_logits: Tensor  # (N, C) from the masked pass
    probe_logits: Tensor | None  # (N, C) from the unmasked pass (None without the online probe)


def sincos_pos_embed(grid: int, dim: int) -> Tensor:
    """(1, 1 + grid^2, dim) fixed 2-D sin-cos embedding, row-major like PatchEmbed; cls row = 0 as in MAE."""
    if dim % 4:
        raise ValueError(f"a 2-D sin-cos position embedding needs a width divisible by 4, got {dim}")
    pe = build_sincos2d_pos_embed([grid, grid], dim)  # (grid^2, dim)
    return torch.cat([torch.zeros(1, dim), pe], 0).unsqueeze(0)


class MaskedAutoencoder(nn.Module):
    def __init__(self, cfg: TrainConfig):
        super().__init__()
        self.patch_size, self.mask_ratio, self.norm_pix_loss = cfg.patch_size, cfg.mask_ratio, cfg.norm_pix_loss
        self.online_probe = cfg.online_probe
        D, Dd, p = cfg.embed_dim, cfg.decoder_embed_dim, cfg.patch_size
        norm_layer = partial(nn.LayerNorm, eps=1e-6)  # MAE's (and timm ViT's) LayerNorm
        block = partial(Block, mlp_ratio=cfg.mlp_ratio, qkv_bias=True, norm_layer=norm_layer)
        grid = cfg.img_size // p

        # --- encoder: timm's ViT (ViT-Tiny at the defaults)
        self.patch_embed = PatchEmbed(cfg.img_size, p, 3, D)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        # fixed, not trained: buffers, so they follow .to() and sit in the state_dict, but no optimizer sees them
        self.register_buffer("pos_embed", sincos_pos_embed(grid, D))  # (1, 1+L, D)
        self.blocks = nn.ModuleList([block(D, cfg.num_heads) for _ in range(cfg.depth)])
        self.norm = norm_layer(D)

        # --- decoder: only sees the visible tokens plus one shared mask token per hidden patch
        self.decoder_embed = nn.Linear(D, Dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, Dd))
        self.register_buffer("decoder_pos_embed", sincos_pos_embed(grid, Dd))  # (1, 1+L, Dd)
        self.decoder_blocks = nn.ModuleList([block(Dd, cfg.decoder_num_heads) for _ in range(cfg.decoder_depth)])
        self.decoder_norm = norm_layer(Dd)
        self.decoder_pred = nn.Linear(Dd, p * p * 3)

        # --- the two linear heads of SPEC section 3
        self.head = nn.Linear(D, cfg.num_classes)  # on visible tokens of the masked pass; alpha acts here
        # BN without affine = MAE's linear-probe protocol: standardizes features whose scale drifts in training
        self.probe = nn.Sequential(nn.BatchNorm1d(D, affine=False), nn.Linear(D, cfg.num_classes))
        self.probe.requires_grad_(cfg.online_probe)  # off: no pass, no gradient, out of the optimizer
        self.policy = cfg.alpha_policy  # how alpha enters forward()
        # A head out of the objective is frozen: out of the optimizer, and DDP waits for no gradient of it.
        self.head.requires_grad_(self.policy.head_trains)

        self.initialize_weights()

    def initialize_weights(self) -> None:
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.data.view(w.shape[0], -1))  # the conv is a Linear on flattened patches
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------ patches and masks

    def patchify(self, imgs: Tensor) -> Tensor:
        """(N, 3, H, W) -> (N, L, p*p*3), patch-major then (row, col, channel) inside a patch, as MAE."""
        p = self.patch_size
        N, C, H, W = imgs.shape
        x = imgs.reshape(N, C, H // p, p, W // p, p)
        x = torch.einsum("nchpwq->nhwpqc", x)
        return x.reshape(N, (H // p) * (W // p), p * p * C)

    def unpatchify(self, x: Tensor) -> Tensor:
        """(N, L, p*p*3) -> (N, 3, H, W); square images."""
        p = self.patch_size
        N, L, _ = x.shape
        h = w = int(round(L**0.5))
        x = x.reshape(N, h, w, p, p, 3)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(N, 3, h * p, w * p)

    def random_masking(self, x: Tensor, mask_ratio: float, noise: Tensor | None = None):
        """Per-image random masking by argsort of noise: the K tokens with the smallest noise stay.

        x: (N, L, D) -> x_masked (N, K, D), mask (N, L) with 1 = masked, ids_restore (N, L).
        """
        N, L, D = x.shape
        keep = int(L * (1 - mask_ratio))
        noise = torch.rand(N, L, device=x.device) if noise is None else noise.to(x.device)
        ids_shuffle = torch.argsort(noise, dim=1)  # ascending: small noise is kept
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :keep]
        x_masked = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, D))
        mask = torch.ones(N, L, device=x.device)
        mask[:, :keep] = 0
        mask = torch.gather(mask, 1, ids_restore)  # back to patch order
        return x_masked, mask, ids_restore

    # ------------------------------------------------------------------ encoder / decoder

    def forward_encoder(self, imgs: Tensor, mask_ratio: float, noise: Tensor | None = None):
        """imgs (N, 3, S, S) -> latent (N, 1+K, D), mask (N, L), ids_restore (N, L). mask_ratio 0 = full image."""
        x = self.patch_embed(imgs)  # (N, L, D)
        x = x + self.pos_embed[:, 1:]  # before masking, so every kept token knows where it came from
        if mask_ratio > 0:
            x, mask, ids_restore = self.random_masking(x, mask_ratio, noise)  # (N, K, D)
        else:
            N, L, _ = x.shape
            mask = x.new_zeros(N, L)
            ids_restore = torch.arange(L, device=x.device).expand(N, L)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)  # never masked
        x = torch.cat([cls, x], dim=1)  # (N, 1+K, D)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x), mask, ids_restore

    def forward_decoder(self, latent: Tensor, ids_restore: Tensor) -> Tensor:
        """latent (N, 1+K, D) -> pred (N, L, p*p*3) for every patch (the loss picks the masked ones)."""
        x = self.decoder_embed(latent)  # (N, 1+K, Dd)
        N, K1, Dd = x.shape
        L = ids_restore.shape[1]
        mask_tokens = self.mask_token.to(x.dtype).expand(N, L + 1 - K1, -1)  # (N, L-K, Dd)
        x_ = torch.cat([x[:, 1:], mask_tokens], dim=1)  # (N, L, Dd) in shuffled order
        x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).expand(-1, -1, Dd))  # unshuffle
        x = torch.cat([x[:, :1], x_], dim=1) + self.decoder_pos_embed  # (N, 1+L, Dd)
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]  # drop cls: (N, L, p*p*3)

    # ------------------------------------------------------------------ losses and features

    def patch_losses(self, imgs: Tensor, pred: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Per-image mean over masked patches -> rec (N,), pixel (N,).

        rec: MSE to the training target (per-patch normalized pixels if norm_pix_loss, eps 1e-6 as MAE).
        pixel: MSE in (ImageNet-normalized) pixel space. With norm_pix the prediction lives in
        per-patch normalized units and is mapped back with the *target* patch's own mean and std
        (MAE's visualization): an oracle that hands the prediction the true patch moments, so it is
        an upper bound on pixel-space quality, not a fair comparison across norm_pix settings.
        Without norm_pix, pixel == rec.
        """
        target = self.patchify(imgs).float()  # (N, L, p*p*3); losses in fp32 even under autocast
        pred = pred.float()
        pred_pix = pred
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            std = (target.var(dim=-1, keepdim=True) + 1e-6) ** 0.5
            rec_err = (pred - (target - mean) / std) ** 2
            pred_pix = pred * std + mean
        else:
            rec_err = (pred - target) ** 2
        pix_err = (pred_pix - target) ** 2
        mask = mask.float()
        per_image = lambda err: (err.mean(dim=-1) * mask).sum(1) / mask.sum(1)  # noqa: E731
        return per_image(rec_err), per_image(pix_err)

    def pooled(self, latent: Tensor) -> Tensor:
        """(N, 1+K, D) -> (N, D): mean of the patch tokens (cls excluded), SupMAE's global pool."""
        return latent[:, 1:].mean(dim=1)

    def features(self, imgs: Tensor) -> Tensor:
        """(N, 3, S, S) -> (N, D) pooled encoder features of the whole (unmasked) image."""
        latent, _, _ = self.forward_encoder(imgs, 0.0)
        return self.pooled(latent)

    # ------------------------------------------------------------------ training / evaluation

    def forward(self, imgs: Tensor, labels: Tensor, noise: Tensor | None = None, taps: GradTaps | None = None):
        """One training step's objective (SPEC section 3) under self.policy -> StepOutput.

        `taps` (optional) receives the gradient norms the head and the decoder send into the encoder's
        output tokens during the backward pass of `loss` (train/grad_ratio).
        """
        latent, mask, ids_restore = self.forward_encoder(imgs, self.mask_ratio, noise)  # (N, 1+K, D)
        dec_in, head_in = (latent, latent) if taps is None else (taps.branch(latent, "decoder"), taps.branch(latent, "head"))
        pred = self.forward_decoder(dec_in, ids_restore)
        rec_loss = self.patch_losses(imgs, pred, mask)[0].mean()  # = MAE's loss: every image has L-K masked

        z = self.pooled(head_in)  # (N, D) visible tokens only: free, no extra pass
        head = head_terms(self.head, z, labels, self.policy)

        probe_logits, probe_ce = None, torch.zeros((), device=imgs.device)
        if self.online_probe:
            with torch.no_grad():  # the probe must never move the encoder: no graph at all (+~7% FLOPs)
                feats = self.features(imgs)  # (N, D)
            probe_logits = self.probe(feats)
            probe_ce = F.cross_entropy(probe_logits.float(), labels)

        loss = rec_loss + head.objective + probe_ce
        return StepOutput(loss, rec_loss, head.ce, probe_ce, head.logits, probe_logits)

    @torch.no_grad()
    def evaluate(self, imgs: Tensor, noise: Tensor) -> EvalOutput:
        """Validation: one masked pass with the given (fixed) noise and one unmasked pass.

        The caller sets eval mode (the probe's BatchNorm must use its running statistics).
        """
        latent, mask, ids_restore = self.forward_encoder(imgs, self.mask_ratio, noise)
        pred = self.forward_decoder(latent, ids_restore)
        rec, pixel = self.patch_losses(imgs, pred, mask)
        head_logits = self.head(self.pooled(latent))
        probe_logits = self.probe(self.features(imgs)) if self.online_probe else None
        return EvalOutput(rec, pixel, head_logits, probe_logits)


def param_groups(model: MaskedAutoencoder, cfg: TrainConfig) -> list[dict]:
    """Parameter groups for the single AdamW (one optimizer, so AMP's GradScaler sees every loss).

    decay: weight matrices (and the patch-embedding conv); no_decay: norms, biases, tokens;
    heads: head + probe without decay, at head_lr_scale x lr. Position embeddings are buffers, and
    frozen parameters (a head the policy leaves out, the probe without online_probe) are skipped, so
    none of them appears.
    """
    groups = {"decay": [], "no_decay": [], "heads": []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith(("head.", "probe.")):
            groups["heads"].append(p)
        elif p.ndim < 2 or name in ("cls_token", "mask_token"):
            groups["no_decay"].append(p)
        else:
            groups["decay"].append(p)
    wd = {"decay": cfg.weight_decay, "no_decay": 0.0, "heads": 0.0}
    lr = {"decay": cfg.effective_lr, "no_decay": cfg.effective_lr, "heads": cfg.effective_lr * cfg.head_lr_scale}
    return [{"name": k, "params": v, "weight_decay": wd[k], "lr": lr[k]} for k, v in groups.items() if v]


_MASK64 = (1 << 64) - 1


def _mix_seed(mask_seed: int, index: int) -> int:
    """A fixed 64-bit mix of (mask_seed, index) (splitmix64's finalizer), so nearby seeds differ wildly."""
    x = (mask_seed * 0x9E3779B97F4A7C15 + index * 0xD1B54A32D192ED03 + 0x632BE59BD9B4E019) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def val_mask_noise(mask_seed: int, indices: Tensor, num_patches: int) -> Tensor:
    """(len(indices), L) float32 noise on the CPU; row for dataset index i depends only on (mask_seed, i).

    So the validation masks are the same every epoch, run and batch size (pass it to evaluate()).
    """
    rows = [
        torch.rand(num_patches, generator=torch.Generator().manual_seed(_mix_seed(mask_seed, int(i))))
        for i in torch.as_tensor(indices).flatten().tolist()
    ]
    return torch.stack(rows) if rows else torch.empty(0, num_patches)
