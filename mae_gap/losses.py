"""The signed-alpha objective (SPEC section 3): the supervised head's loss terms under an AlphaPolicy."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .alpha import AlphaPolicy

LOSS_TERMS = ("rec", "head_ce", "probe_ce", "loss")  # a step's loss terms, in the order of its finite-check flags


class NonFiniteLoss(RuntimeError):
    """A loss term went NaN/inf: the run must stop and be marked failed (SPEC §7)."""

    def __init__(self, epoch: int, step: int, term: str):
        super().__init__(f"non-finite {term} at epoch {epoch}, step {step}")
        self.epoch, self.step, self.term = epoch, step, term


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


def uniform_ce(logits: Tensor) -> Tensor:
    """CE(softmax(logits), uniform) = -mean_c log softmax(logits)_c, averaged over the batch.

    Minimal (= log C) exactly when the output is uniform: the confusion target of Tzeng et al. 2015.
    """
    return -F.log_softmax(logits.float(), dim=-1).mean(dim=-1).mean()


class HeadTerms(NamedTuple):
    logits: Tensor  # (N, C) the head on z
    ce: Tensor  # () CE of the head on the labels: what the head minimizes (logged in every mode)
    objective: Tensor  # () what the head branch adds to the back-propagated loss


def head_terms(head: nn.Linear, z: Tensor, labels: Tensor, policy: AlphaPolicy) -> HeadTerms:
    """The supervised head's part of the loss; z (N, D) is the pooled visible-token feature.

    By the mode that runs (policy.runs):
    grl:       objective = CE(head(R_alpha(z))): the head minimizes CE, the encoder gets alpha * dCE/dz.
    weighted:  objective = alpha * CE(head(z)) (the original formula).
    confusion: (alpha < 0) objective = CE(head(sg(z))) + |alpha| * CE(head_sg(z), uniform), head_sg = the
               head with its weights detached: the head still minimizes CE on the labels, the encoder
               receives exactly |alpha| * dCE(head(z), uniform)/dz and nothing else.
    A head that does not train (policy.head_trains) is out of the loss (no graph at all); its CE is
    only logged.
    """
    alpha = policy.alpha
    if not policy.head_trains:
        with torch.no_grad():
            logits = head(z.detach())
            ce = F.cross_entropy(logits.float(), labels)
        return HeadTerms(logits, ce, torch.zeros((), device=z.device))
    if policy.runs == "grl":
        logits = head(grad_scale(z, alpha))
        ce = F.cross_entropy(logits.float(), labels)
        return HeadTerms(logits, ce, ce)
    if policy.runs == "weighted":
        logits = head(z)
        ce = F.cross_entropy(logits.float(), labels)
        return HeadTerms(logits, ce, alpha * ce)
    logits = head(z.detach())  # confusion
    ce = F.cross_entropy(logits.float(), labels)
    confused = F.linear(z, head.weight.detach(), head.bias.detach() if head.bias is not None else None)
    return HeadTerms(logits, ce, ce + abs(alpha) * uniform_ce(confused))
