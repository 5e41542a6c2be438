"""FLOP per image from the config alone, and a FlopCounterMode count of one real step to check it:
MFU is only as good as the FLOP figure behind it."""

from __future__ import annotations

import contextlib

import torch

from ..config import TrainConfig
from ..data import normalize
from ..model import MaskedAutoencoder
from .timing import autocast


def _blocks_flop(tokens: int, width: int, depth: int, mlp_ratio: float) -> float:
    """Forward matmul FLOP of `depth` timm Blocks on `tokens` tokens (2 FLOP per multiply-add).

    Per block: qkv (3 d^2) + attention projection (d^2) + MLP (2 d h, h = int(d * mlp_ratio)) per
    token, plus the attention products QK^T and AV (T^2 d each). Norms, softmax, GELU, residual adds
    are not matmuls and are left out (well under 1%).
    """
    hidden = int(width * mlp_ratio)
    per_token = 3 * width * width + width * width + 2 * width * hidden
    macs = tokens * per_token + 2 * tokens * tokens * width
    return 2.0 * depth * macs


def flop_breakdown(cfg: TrainConfig) -> dict[str, float]:
    """Analytic FLOP per training image, from the config alone.

    With L = (S/p)^2 patches, K = int(L (1 - mask_ratio)) visible patches, P = 3 p^2 pixels per patch:

      patch_embed  = 2 L P D                         (the conv, on all L patches, before masking)
      encoder      = blocks(T = K + 1, D, depth)     (visible tokens + cls)
      decoder      = 2 (K+1) D Dd  +  blocks(T = L + 1, Dd, decoder_depth)  +  2 (L+1) Dd P  (embed, blocks, pred)
      head         = 2 D C
      probe_pass   = patch_embed + blocks(T = L + 1, D, depth) + 2 D C   (no-grad unmasked encoder + probe)

      train = 3 (patch_embed + encoder + decoder + head)   forward + backward (backward = 2 x forward)
              - patch_embed                                 no gradient w.r.t. the pixels: weight grad only
              + probe_pass + 2 D C                          the probe pass is forward only; the probe's
                                                            Linear gets its weight gradient

    `train` is what one optimizer step costs per image; `masked_fwd_bwd` (3 x the masked pass) is the
    figure SPEC section 9 quotes ("about 34 GFLOP", 93% in the decoder). tests/test_bench.py checks
    both against SPEC's figures and `train` against FlopCounterMode's count of a real step.
    """
    L, D, Dd, C = cfg.num_patches, cfg.embed_dim, cfg.decoder_embed_dim, cfg.num_classes
    K = int(L * (1 - cfg.mask_ratio))
    P = 3 * cfg.patch_size**2
    patch_embed = 2.0 * L * P * D
    encoder = _blocks_flop(K + 1, D, cfg.depth, cfg.mlp_ratio)
    decoder_embed = 2.0 * (K + 1) * D * Dd
    decoder_blocks = _blocks_flop(L + 1, Dd, cfg.decoder_depth, cfg.mlp_ratio)
    decoder_pred = 2.0 * (L + 1) * Dd * P
    decoder = decoder_embed + decoder_blocks + decoder_pred
    head = 2.0 * D * C
    probe_encoder = _blocks_flop(L + 1, D, cfg.depth, cfg.mlp_ratio)
    probe_pass = patch_embed + probe_encoder + head
    masked_fwd = patch_embed + encoder + decoder + head
    # --online_probe=False drops the probe's pass and its Linear's weight gradient
    train = 3 * masked_fwd - patch_embed + ((probe_pass + head) if cfg.online_probe else 0.0)
    return {
        "patch_embed": patch_embed,
        "encoder": encoder,
        "decoder": decoder,
        "decoder_blocks": decoder_blocks,
        "head": head,
        "masked_fwd": masked_fwd,
        "masked_fwd_bwd": 3 * masked_fwd,
        "probe_pass": probe_pass,
        "decoder_share_of_masked": decoder / masked_fwd,
        "decoder_blocks_share_of_masked": decoder_blocks / masked_fwd,
        "train": train,
    }


def counted_flops_per_image(cfg: TrainConfig, device: torch.device | str = "cpu", batch: int = 2,
                            precision: str = "32") -> float:
    """FLOP per image of one real training step (forward + backward, no optimizer), counted by
    torch.utils.flop_counter.FlopCounterMode. On a CPU, SDPA is forced to its math kernel (the
    counter has no formula for the CPU flash kernel; math decomposes into counted matmuls)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        model = MaskedAutoencoder(cfg).to(device).train()
        imgs = normalize(torch.randint(0, 256, (batch, 3, cfg.img_size, cfg.img_size), dtype=torch.uint8, device=device))
        labels = torch.randint(0, cfg.num_classes, (batch,), device=device)
        kernel = sdpa_kernel([SDPBackend.MATH]) if device.type == "cpu" else contextlib.nullcontext()
        with FlopCounterMode(display=False) as counter, kernel:
            with autocast(device, precision):
                out = model(imgs, labels)
            out.loss.backward()
    return counter.get_total_flops() / batch
