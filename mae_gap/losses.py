"""The signed-alpha objective (SPEC section 3): how alpha enters the loss in each alpha_mode."""

from __future__ import annotations

import torch
from torch import Tensor

from .config import ALPHA_MODES


class _GradScale(torch.autograd.Function):
    """Identity forward, gradient times alpha backward (DANN's gradient reversal is alpha = -1)."""

    @staticmethod
    def forward(ctx, x: Tensor, alpha: float) -> Tensor:
        ctx.alpha = float(alpha)
        return x.view_as(x)  # a new tensor, so autograd records this node

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad * ctx.alpha, None  # no gradient for alpha itself


def grad_scale(x: Tensor, alpha: float) -> Tensor:
    """R_alpha: what sits between the encoder and the head in grl mode.

    The head above it always minimizes CE; the encoder below it receives alpha * dCE/dz, i.e.
    the encoder gradient of `rec + alpha * CE`, but bounded for alpha < 0 (the head cannot
    run away by maximizing CE).
    """
    return _GradScale.apply(x, alpha)


def signed_alpha_objective(rec: Tensor, head_ce: Tensor, probe_ce: Tensor, alpha: float, alpha_mode: str) -> Tensor:
    """The scalar that is back-propagated.

    grl:      rec + head_ce + probe_ce   (alpha already sits inside grad_scale on the head's input)
    weighted: rec + alpha * head_ce + probe_ce, with the head term dropped at alpha == 0 (the head
              is then out of the optimizer and its CE is only logged)
    The probe's input is detached by the caller, so probe_ce trains the probe and nothing else.
    """
    if alpha_mode == "grl":
        return rec + head_ce + probe_ce
    if alpha_mode == "weighted":
        if alpha == 0:
            return rec + probe_ce
        return rec + alpha * head_ce + probe_ce
    raise ValueError(f"alpha_mode={alpha_mode!r} is not one of {', '.join(ALPHA_MODES)}")
