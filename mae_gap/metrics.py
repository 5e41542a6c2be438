"""The metrics contract (SPEC section 4): the one place that names what every run logs.

Training writes exactly these keys, once per epoch; analysis reads exactly these keys.
Pure Python: importing it costs nothing (no torch, no wandb).
"""

EPOCH = "epoch"  # completed epochs, 1..E; the W&B step metric

VAL_MSE = "val/mse"  # masked-patch reconstruction loss, fixed val masks, training target
VAL_MSE_PIXEL = "val/mse_pixel"  # same patches in pixel space, prediction mapped back with the TARGET's moments (an oracle upper bound)
VAL_LINEAR_ACC = "val/linear_acc"  # converged linear classifier on frozen unmasked features (the analysis' accuracy)
VAL_LINEAR_CONVERGED = "val/linear_converged"  # 1 if every L-BFGS fit of that probe reached its gradient tolerance, else 0
VAL_LINEAR_ITERS = "val/linear_iters"  # L-BFGS iterations that probe took, over its whole L2 grid
VAL_PROBE_ACC = "val/probe_acc"  # online linear probe on unmasked val images (lags drifting features; NaN when off)
VAL_HEAD_ACC = "val/head_acc"  # supervised head on the fixed-mask val pass
VAL_KNN_ACC = "val/knn_acc"  # weighted k-NN on unmasked features (NaN on epochs without k-NN)

TRAIN_LOSS = "train/loss"
TRAIN_REC_LOSS = "train/rec_loss"
TRAIN_HEAD_CE = "train/head_ce"
TRAIN_PROBE_CE = "train/probe_ce"
TRAIN_HEAD_ACC = "train/head_acc"
TRAIN_LR = "train/lr"
# A ratio of gradient NORMS at the encoder's output tokens, |grad from head| / |grad from decoder|:
# not a share of the parameter update (AdamW rescales each coordinate). Mean over the epoch's steps,
# and its median, which a few large ratios (a run's first steps) do not dominate.
TRAIN_GRAD_RATIO = "train/grad_ratio"
TRAIN_GRAD_RATIO_MEDIAN = "train/grad_ratio_median"

PERF_IMG_PER_S = "perf/train_img_per_s"
PERF_EPOCH_S = "perf/epoch_s"

VAL_KEYS = (VAL_MSE, VAL_MSE_PIXEL, VAL_LINEAR_ACC, VAL_LINEAR_CONVERGED, VAL_LINEAR_ITERS, VAL_PROBE_ACC, VAL_HEAD_ACC,
            VAL_KNN_ACC)
TRAIN_KEYS = (TRAIN_LOSS, TRAIN_REC_LOSS, TRAIN_HEAD_CE, TRAIN_PROBE_CE, TRAIN_HEAD_ACC, TRAIN_LR, TRAIN_GRAD_RATIO,
              TRAIN_GRAD_RATIO_MEDIAN)
PERF_KEYS = (PERF_IMG_PER_S, PERF_EPOCH_S)

# Every key of one history row, in a stable order.
EPOCH_KEYS = (EPOCH, *VAL_KEYS, *TRAIN_KEYS, *PERF_KEYS)

# Media logged with an epoch's row (not a number: the analysis does not read it).
VAL_RECONSTRUCTION = "val/reconstruction"  # the reconstruction panel, every recon_every epochs and the last

# Summary keys written when a run stops early (SPEC section 7).
FAILURE_REASON = "failure/reason"
FAILURE_EPOCH = "failure/epoch"
FAILURE_STEP = "failure/step"
FAILURE_TERM = "failure/term"
FAILURE_DETERMINISTIC = "failure/deterministic"  # True: not a signal; a re-issued attempt must not train again
