"""A converged linear classifier on frozen features: the feature-only accuracy `val/linear_acc` (SPEC §4).

The online probe trains alongside the encoder at a fixed lr, so its accuracy lags drifting features
by an amount that depends on alpha. This readout depends only on the features of one epoch:

1. whiten: centre on the train mean and rotate/scale by the train covariance's eigen-decomposition,
   so the train features have identity covariance (eigen-directions below EIGEN_FLOOR of the largest
   are numerically null -- e.g. the LayerNorm sum constraint -- and dropped). Whitening is the
   full-covariance form of the per-dimension standardization MAE's BN probe uses; it makes the
   readout exactly invariant to any invertible linear map of the features (rotation, rescaling),
   and it conditions the problem, so that L-BFGS converges in a few dozen iterations;
2. multinomial logistic regression, mean CE + (l2 / 2) * ||W||^2 (bias not penalized), solved to
   convergence by full-batch L-BFGS (strong Wolfe line search) in float64 on the features' device;
3. l2 from the fixed grid L2_GRID, picked by the cross-entropy on a fixed held-out slice of the
   train features (HOLDOUT_FRACTION of them, by a permutation seeded with HOLDOUT_SEED, so the slice
   is the same every epoch and run; CE rather than accuracy: a smooth criterion, so the choice does
   not flip on a handful of held-out images); the path runs from strong to weak penalty, each fit
   warm-started from the previous one, and stops at the first penalty whose held-out CE is worse than
   the previous one's (past the minimum, weaker penalties only overfit more; the weakest fits are
   the slowest);
4. refit on all train features at that l2 (warm-started) and score top-1 on val.

Deterministic for given features on a given device: no random init, no minibatches.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

L2_GRID = (1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5)  # strong -> weak: the order of the warm-started path
HOLDOUT_FRACTION = 0.1
HOLDOUT_SEED = 0
MAX_ITER = 300
GRAD_TOL = 1e-5  # max |gradient| of the mean-CE objective at which L-BFGS stops
EIGEN_FLOOR = 1e-6  # covariance eigenvalues below this fraction of the largest are dropped


class LinearProbeResult(NamedTuple):
    accuracy: float  # top-1 on val of the refit classifier
    l2: float  # the penalty chosen on the held-out slice
    holdout_accuracy: float  # held-out accuracy at that penalty
    holdout_ce: float  # held-out cross-entropy at that penalty (the selection criterion)
    iterations: int  # L-BFGS iterations of all fits together
    converged: bool  # every fit reached GRAD_TOL within MAX_ITER


def whiten(train: Tensor, *others: Tensor) -> tuple[Tensor, ...]:
    """Every tensor minus the train mean, projected on the train covariance's eigenvectors and divided
    by their standard deviations (null directions dropped), in float64: train gets identity covariance."""
    train = train.double()
    mean = train.mean(0)
    centred = train - mean
    cov = centred.T @ centred / max(1, train.shape[0] - 1)
    eigval, eigvec = torch.linalg.eigh(cov)
    keep = eigval > EIGEN_FLOOR * eigval.max().clamp_min(1e-300)
    proj = eigvec[:, keep] / eigval[keep].sqrt()
    return tuple((x.double() - mean) @ proj for x in (train, *others))


def holdout_split(n: int, fraction: float = HOLDOUT_FRACTION, seed: int = HOLDOUT_SEED) -> tuple[Tensor, Tensor]:
    """(fit indices, held-out indices) of range(n): a fixed permutation, the first `fraction` held out."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_out = min(max(1, round(fraction * n)), n - 1)
    return perm[n_out:].sort().values, perm[:n_out].sort().values


def fit_logistic(x: Tensor, y: Tensor, num_classes: int, l2: float, init: Tensor | None = None
                 ) -> tuple[Tensor, int, bool]:
    """Minimizer of mean CE(x @ W + b, y) + (l2 / 2) ||W||^2 -> (params (D+1, C): W on top, b last row,
    iterations, converged). x: (N, D) float64."""
    n, d = x.shape
    params = (torch.zeros(d + 1, num_classes, dtype=x.dtype, device=x.device) if init is None
              else init.clone()).requires_grad_(True)
    opt = torch.optim.LBFGS([params], lr=1.0, max_iter=MAX_ITER, tolerance_grad=GRAD_TOL, tolerance_change=1e-12,
                            history_size=20, line_search_fn="strong_wolfe")

    def objective() -> Tensor:
        opt.zero_grad()
        w, b = params[:d], params[d]
        loss = F.cross_entropy(torch.addmm(b, x, w), y) + 0.5 * l2 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(objective)
    iterations = int(opt.state[params].get("n_iter", 0))
    objective()  # the gradient at the point L-BFGS returned (its last call may have been a trial point)
    return params.detach(), iterations, bool(params.grad.abs().max() <= GRAD_TOL)


def logits(params: Tensor, x: Tensor) -> Tensor:
    d = x.shape[1]
    return torch.addmm(params[d], x, params[:d])


def accuracy(params: Tensor, x: Tensor, y: Tensor) -> float:
    return (logits(params, x).argmax(1) == y).double().mean().item()


@torch.no_grad()
def linear_probe(train_feats: Tensor, train_labels: Tensor, val_feats: Tensor, val_labels: Tensor,
                 num_classes: int, l2_grid: tuple[float, ...] = L2_GRID) -> LinearProbeResult:
    """The protocol of the module docstring -> LinearProbeResult. Features (N, D), labels (N,) int."""
    x_train, x_val = whiten(train_feats, val_feats)
    y_train, y_val = train_labels.to(x_train.device).long(), val_labels.to(x_val.device).long()
    fit_idx, out_idx = (i.to(x_train.device) for i in holdout_split(x_train.shape[0]))
    best, params, iters, converged = None, None, 0, True
    with torch.enable_grad():
        for l2 in sorted(l2_grid, reverse=True):
            params, it, ok = fit_logistic(x_train[fit_idx], y_train[fit_idx], num_classes, l2, init=params)
            iters, converged = iters + it, converged and ok
            ce = F.cross_entropy(logits(params, x_train[out_idx]), y_train[out_idx]).item()
            if best is not None and ce >= best[1]:  # past the minimum (ties keep the stronger penalty)
                break
            best = (l2, ce, params)
        l2, holdout_ce, start = best
        holdout_acc = accuracy(start, x_train[out_idx], y_train[out_idx])
        final, it, ok = fit_logistic(x_train, y_train, num_classes, l2, init=start)
    return LinearProbeResult(accuracy(final, x_val, y_val), l2, holdout_acc, holdout_ce, iters + it, converged and ok)
