"""The effective alpha: how hard the head pushes the encoder, relative to the decoder (SPEC §4).

The two branches meet at the encoder's output tokens (N, 1+K, D): the decoder reads them
directly, the head reads their mean (through R_alpha in grl mode). Each branch gets its own
identity view of the tokens with a gradient hook, so one backward pass yields both parts of
dL/dtokens separately, with no extra pass and no host sync:

    train/grad_ratio = ||gradient from the head|| / ||gradient from the decoder||.
"""

from __future__ import annotations

import torch
from torch import Tensor


class GradTaps:
    """Squared gradient norms of the two branches of one backward pass (0 until the hooks fire)."""

    def __init__(self, device: torch.device | str):
        self.sq = {"head": torch.zeros((), device=device), "decoder": torch.zeros((), device=device)}

    def branch(self, tokens: Tensor, name: str) -> Tensor:
        """An identity view of `tokens` for branch `name`; its gradient's squared norm lands in sq[name]."""
        view = tokens.view_as(tokens)  # a new autograd node: its gradient is this branch's alone
        if view.requires_grad:
            view.register_hook(lambda g: self._record(name, g))
        return view

    def _record(self, name: str, grad: Tensor) -> None:
        self.sq[name] = self.sq[name] + grad.float().pow(2).sum()

    def ratio(self) -> Tensor:
        """() ||g_head|| / ||g_decoder||; 0 when the head sends nothing (weighted, alpha = 0)."""
        return self.sq["head"].sqrt() / self.sq["decoder"].sqrt().clamp_min(1e-30)
