"""The Lightning module: one readable train path for the signed-alpha MAE, and `fit()`.

Data lives on the training device as uint8 (SPEC §5); a batch is a tensor of dataset indices,
gathered and augmented on the device. Metrics are named sums on the device (DeviceSums), added to
at every step and read once per epoch, so a step never waits on the host. The epoch's row is built
in one place, at the end of the training epoch (after validation, which Lightning runs first), and
goes to the loggers in one call, so a W&B logger sees exactly one history row per epoch (SPEC §4).

All randomness of epoch e (shuffle, crops, flips, masks) is drawn from generators seeded by
(seed, e): a run resumed from the epoch-(e-1) checkpoint replays epoch e exactly.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Checkpoint
import torch
from torch.utils.data import DataLoader, Sampler

from . import metrics as M
from .config import TrainConfig
from .losses import LOSS_TERMS, NonFiniteLoss
from .data import DataSplits, augment, check_source, load_data, normalize
from .fileio import atomic_path
from .grad_taps import GradTaps
from .progress import epoch_line
from .model import MaskedAutoencoder, param_groups, val_mask_noise
from .readout import readout

# The named per-epoch sums; every "images" sum is the count the others are divided by.
TRAIN_SUMS = (*LOSS_TERMS, "head_correct", "images", "grad_ratio", "steps")
VAL_SUMS = ("rec", "pixel", "head_correct", "probe_correct", "images")
HISTORY_KEY = "mae_gap_history"  # the epoch rows logged so far, in every epoch checkpoint


def epoch_seed(seed: int, epoch: int, stream: int) -> int:
    """The seed of one random stream of epoch `epoch`: 0 = shuffle, 1 = augmentation + masks. Fixed
    per (seed, epoch), so a run resumed at an epoch replays it exactly."""
    return (seed * 1_000_003 + epoch) * 8 + stream


class DeviceSums:
    """Named running sums on the device (MAE's MetricLogger keeps named meters): `add` only queues
    device work, `reduce` sums over the ranks and reads every sum on the host at once."""

    def __init__(self, device: torch.device, names: Sequence[str]):
        self.sums = {name: torch.zeros((), device=device) for name in names}

    def add(self, **values: torch.Tensor | float) -> None:
        for name, value in values.items():
            self.sums[name] += value

    def reduce(self, strategy: Any) -> dict[str, float]:
        """{name: total over every rank}: one all-reduce and one device->host copy."""
        totals = strategy.reduce(torch.stack(list(self.sums.values())), reduce_op="sum").tolist()
        return dict(zip(self.sums, totals))


class EpochShuffle(Sampler[int]):
    """A permutation of range(n) drawn from (seed, epoch); Lightning calls set_epoch."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch, 0))
        return iter(torch.randperm(self.n, generator=g).tolist())


def _index_loader(n: int, batch_size: int, sampler: Sampler | None = None, drop_last: bool = False,
                  pin: bool = False) -> DataLoader:
    # Collating a list of ints into one index tensor is all this loader does; the images stay on the
    # device. Pinned on CUDA, so the tiny index copy is asynchronous (a pageable copy can stall the host).
    return DataLoader(range(n), batch_size=batch_size, sampler=sampler, drop_last=drop_last, num_workers=0,
                      pin_memory=pin)


def steps_per_epoch(cfg: TrainConfig, n_train: int) -> int:
    """Optimizer steps per epoch: full batches per device (the last partial one is dropped), at least 1."""
    per_step = cfg.batch_size * cfg.devices
    return max(1, n_train // per_step) if n_train >= cfg.batch_size else 1


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """LR multiplier: linear warmup from ~0 to 1, then cosine down to min_ratio (MAE's schedule)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def lr_schedule(opt: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The run's per-step LR schedule: warmup over cfg.warmup_epochs, then cosine to cfg.min_lr
    (the bench's plain PyTorch loop uses this very schedule, so the two compare like for like)."""
    per_epoch = max(1, total_steps // cfg.epochs)
    warmup = max(1, round(cfg.warmup_epochs * per_epoch))
    min_ratio = cfg.min_lr / cfg.effective_lr
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, warmup, total_steps, min_ratio))


class MAEGapModule(pl.LightningModule):
    """The whole data set lives on the training device; a training batch is a tensor of indices
    (`gather` turns it into images and labels). The non-finite-loss check is FiniteLossWatch's."""

    def __init__(self, cfg: TrainConfig, data: DataSplits):
        super().__init__()
        self.cfg = cfg
        self.model = MaskedAutoencoder(cfg)
        # torch.compile'd forward for training steps (opt-in). Kept in a tuple so that it is not
        # registered as a second copy of the model in the state dict.
        self._compiled = (torch.compile(self.model),) if cfg.compile else ()
        self.data = data  # moved to the training device in on_fit_start
        self.history: list[dict[str, float]] = []  # one row per epoch, exactly what is logged
        self._train_s: float | None = None
        self._taps: GradTaps | None = None  # the current step's gradient taps

    @property
    def train_forward(self):
        return self._compiled[0] if self._compiled else self.model

    # ------------------------------------------------------------------ set-up

    def on_fit_start(self) -> None:
        self.data = self.data.to(self.device)
        self.make_val_noise()

    def make_val_noise(self) -> None:
        n_val = self.data.val_labels.shape[0]
        # Fixed validation masks: row i depends only on (mask_seed, i) (SPEC §4).
        self.val_noise = val_mask_noise(self.cfg.mask_seed, torch.arange(n_val), self.cfg.num_patches).to(self.device)

    def train_dataloader(self) -> DataLoader:
        n = self.data.train_labels.shape[0]
        sampler, drop_last = EpochShuffle(n, self.cfg.seed), n >= self.cfg.batch_size
        return _index_loader(n, self.cfg.batch_size, sampler, drop_last, pin=self.device.type == "cuda")

    def val_dataloader(self) -> DataLoader:
        return _index_loader(self.data.val_labels.shape[0], self.cfg.eval_batch_size, pin=self.device.type == "cuda")

    def configure_optimizers(self):
        cfg = self.cfg
        fused = self.device.type == "cuda"
        opt = torch.optim.AdamW(param_groups(self.model, cfg), lr=cfg.effective_lr, betas=(cfg.beta1, cfg.beta2), fused=fused)
        sched = lr_schedule(opt, cfg, self.trainer.estimated_stepping_batches)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ------------------------------------------------------------------ training

    def on_train_epoch_start(self) -> None:
        self._epoch_t0 = time.perf_counter()
        self._train_s = None
        self._train_images = 0
        self.train_sums = DeviceSums(self.device, TRAIN_SUMS)
        self._step_ratios: list[torch.Tensor] = []  # per-step grad ratios, on the device (their median)
        self.gen = torch.Generator(self.device).manual_seed(epoch_seed(self.cfg.seed, self.current_epoch, 1))

    def gather(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of indices -> (uint8 images, labels), gathered from the device-resident data set."""
        idx = batch.to(self.device, non_blocking=True)
        return self.data.train_images[idx], self.data.train_labels[idx]

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        # No host sync anywhere in here (no .item(), no tensors built from Python data, no blocking
        # copies): the host only queues work, and metrics stay on the device until the epoch ends.
        images, labels = self.gather(batch)
        b = labels.shape[0]
        imgs = augment(images, generator=self.gen)  # (B, 3, S, S) float
        noise = torch.rand(b, self.cfg.num_patches, device=self.device, generator=self.gen)
        self._taps = GradTaps(self.device)  # filled by this step's backward, read in on_after_backward
        out = self.train_forward(imgs, labels, noise=noise, taps=self._taps)

        terms = torch.stack([out.rec_loss, out.head_ce, out.probe_ce, out.loss]).detach().float()  # (4,) LOSS_TERMS
        correct = (out.head_logits.argmax(1) == labels).sum().float()
        self.train_sums.add(**{name: term * b for name, term in zip(LOSS_TERMS, terms)}, head_correct=correct, images=b)
        self._train_images += b
        return {"loss": out.loss, "terms": terms}  # FiniteLossWatch reads the terms

    def on_after_backward(self) -> None:
        # The hooks of this step's GradTaps have fired: the effective alpha of the step, on the device.
        ratio = self._taps.ratio()
        self.train_sums.add(grad_ratio=ratio, steps=1)
        self._step_ratios.append(ratio)

    # ------------------------------------------------------------------ validation

    def on_validation_epoch_start(self) -> None:
        self.val_sums = DeviceSums(self.device, VAL_SUMS)

    def validation_step(self, idx: torch.Tensor, batch_idx: int) -> None:
        idx = idx.to(self.device, non_blocking=True)
        imgs = normalize(self.data.val_images[idx])
        labels = self.data.val_labels[idx]
        out = self.model.evaluate(imgs, self.val_noise[idx])
        self.val_sums.add(rec=out.rec.float().sum(), pixel=out.pixel.float().sum(),
                          head_correct=(out.head_logits.argmax(1) == labels).sum().float(), images=idx.shape[0])
        if out.probe_logits is not None:
            self.val_sums.add(probe_correct=(out.probe_logits.argmax(1) == labels).sum().float())

    def feature_eval(self):
        """(k-NN accuracy, LinearProbeResult) from ONE pass over the frozen features.

        Every rank holds the whole data set on its device, so every rank computes the same numbers.
        Hooks run outside Lightning's autocast: the precision plugin's context makes the feature pass
        use bf16 like validation.
        """
        out = readout(self.model, self.data, self.cfg, self.device, self.trainer.precision_plugin.forward_context)
        return out.knn, out.linear

    # ------------------------------------------------------------------ one row per epoch

    def on_train_epoch_end(self) -> None:
        row = self.epoch_row()
        self.history.append(row)
        # Straight to the loggers (rank 0 only), not through self.log: the row must be out before
        # the epoch checkpoint is written (EpochCheckpoint runs after this hook), so that a run
        # killed in between repeats an epoch (analysis keeps the last copy) but never loses one.
        if self.global_rank == 0:
            for logger in self.loggers:
                logger.log_metrics(row, step=self.global_step)
            print(epoch_line(row, self.cfg.epochs, self.history), flush=True)

    def epoch_row(self) -> dict[str, float]:
        """The epoch's history row (SPEC §4): the validation and training sums, the frozen-feature
        readout when due (NaN otherwise), the lr, the grad ratios and the epoch's timings."""
        nan = float("nan")
        val = self.val_sums.reduce(self.trainer.strategy)
        train = self.train_sums.reduce(self.trainer.strategy)
        row = {M.EPOCH: self.current_epoch + 1,
               M.VAL_MSE: val["rec"] / val["images"], M.VAL_MSE_PIXEL: val["pixel"] / val["images"],
               M.VAL_HEAD_ACC: val["head_correct"] / val["images"],
               M.VAL_PROBE_ACC: val["probe_correct"] / val["images"] if self.cfg.online_probe else nan}
        epoch = self.current_epoch + 1
        if self.cfg.knn_every > 0 and epoch % self.cfg.knn_every == 0:
            knn, linear = self.feature_eval()
            row.update({M.VAL_KNN_ACC: knn, M.VAL_LINEAR_ACC: linear.accuracy,
                        M.VAL_LINEAR_CONVERGED: float(linear.converged), M.VAL_LINEAR_ITERS: float(linear.iterations)})
        else:
            row.update({M.VAL_KNN_ACC: nan, M.VAL_LINEAR_ACC: nan, M.VAL_LINEAR_CONVERGED: nan, M.VAL_LINEAR_ITERS: nan})
        n = train["images"]
        row.update({
            M.TRAIN_LOSS: train["loss"] / n, M.TRAIN_REC_LOSS: train["rec"] / n, M.TRAIN_HEAD_CE: train["head_ce"] / n,
            M.TRAIN_PROBE_CE: train["probe_ce"] / n if self.cfg.online_probe else nan,
            M.TRAIN_HEAD_ACC: train["head_correct"] / n,
            M.TRAIN_LR: self.optimizers().param_groups[0]["lr"],
            M.TRAIN_GRAD_RATIO: train["grad_ratio"] / train["steps"] if train["steps"] else nan,
            M.TRAIN_GRAD_RATIO_MEDIAN: self.grad_ratio_median(),
        })
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        epoch_s = time.perf_counter() - self._epoch_t0
        row.update({M.PERF_IMG_PER_S: self._train_images * self.trainer.world_size / (self._train_s or epoch_s),
                    M.PERF_EPOCH_S: epoch_s})
        return row

    def grad_ratio_median(self) -> float:
        """Median over the epoch's steps (of every rank) of the per-step gradient-norm ratio."""
        if not self._step_ratios:
            return float("nan")
        ratios = self.all_gather(torch.stack(self._step_ratios)).flatten()
        return float(torch.quantile(ratios.float(), 0.5))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Every row logged so far travels with the checkpoint: a run resumed after a kill can log
        # again the rows its logger lost (agent.train's relog_lost_epochs).
        checkpoint[HISTORY_KEY] = list(self.history)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.history = list(checkpoint.get(HISTORY_KEY, []))

    def on_validation_start(self) -> None:
        # The training part of the epoch ends here; its time gives the throughput.
        if self.trainer.training and not self.trainer.sanity_checking:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self._train_s = time.perf_counter() - self._epoch_t0


class FiniteLossWatch(pl.Callback):
    """Stops the run at a NaN/inf loss term (SPEC §7) within one step, at no host sync in the step.

    Each step's finite flags are copied to the host without waiting and read at the start of the
    next step (and at the epoch's end, before its row is logged: a plain Callback's
    on_train_epoch_end runs before the module's).
    """

    def __init__(self):
        self.pending: torch.Tensor | None = None  # the last step's flags, read one step later
        self.pending_step = self._step = 0
        self._event: torch.cuda.Event | None = None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        flags = torch.isfinite(outputs["terms"])
        self._event = None
        if flags.device.type == "cuda":
            host = torch.empty(flags.shape, dtype=torch.bool, pin_memory=True)
            host.copy_(flags, non_blocking=True)
            self._event = torch.cuda.Event()
            self._event.record()
            flags = host
        self.pending, self.pending_step = flags, self._step

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self.check(trainer.current_epoch)
        self._step = trainer.global_step  # this step's number (the optimizer step counts it before batch end)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.check(trainer.current_epoch)

    def check(self, epoch: int) -> None:
        """Raises NonFiniteLoss (1-based epoch) if the last step's flags say so."""
        if self.pending is None:
            return
        if self._event is not None:
            self._event.synchronize()  # waits for the previous step's forward only
        flags, self.pending = self.pending, None
        if not bool(flags.all()):
            term = LOSS_TERMS[int((~flags).nonzero()[0])]
            raise NonFiniteLoss(epoch + 1, self.pending_step, term)


class EpochCheckpoint(Checkpoint):
    """Keeps only the latest epoch-end checkpoint at `path`, written atomically.

    A `Checkpoint` subclass so that Lightning calls it after the module's on_train_epoch_end (the
    epoch's row is logged first). Written to a temporary file, then renamed (mae_gap.fileio.atomic_path):
    a preempted run never finds a half-written checkpoint.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        with atomic_path(self.path) as tmp:  # rank > 0 writes nothing: the target is left alone there
            trainer.save_checkpoint(tmp, weights_only=False)  # the whole training state (said, so Lightning need not)


# ---------------------------------------------------------------------- entry point


def resolve_precision(cfg: TrainConfig, accelerator: str) -> str:
    if cfg.precision != "auto":
        return cfg.precision
    return "bf16-mixed" if accelerator == "gpu" else "32"


def resolve_accelerator(cfg: TrainConfig) -> str:
    if cfg.accelerator != "auto":
        return cfg.accelerator
    return "gpu" if torch.cuda.is_available() else "cpu"


@dataclass
class FitResult:
    history: list[dict[str, float]]
    module: MAEGapModule
    trainer: pl.Trainer
    data_fingerprint: str = ""


def build_trainer(cfg: TrainConfig, logger: Any = None, callbacks: Sequence[pl.Callback] = ()) -> pl.Trainer:
    accelerator = resolve_accelerator(cfg)
    return pl.Trainer(
        accelerator=accelerator,
        devices=cfg.devices,
        precision=resolve_precision(cfg, accelerator),
        max_epochs=cfg.epochs,
        logger=logger if logger is not None else False,
        callbacks=list(callbacks),
        # Checkpoints are the caller's choice (EpochCheckpoint); no default ModelCheckpoint.
        enable_checkpointing=any(isinstance(cb, Checkpoint) for cb in callbacks),
        enable_progress_bar=cfg.progress and sys.stdout.isatty(),  # a log file gets epoch_line instead
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        deterministic=False,
        benchmark=accelerator == "gpu",
    )


def fit(cfg: TrainConfig, logger: Any = None, callbacks: Sequence[pl.Callback] = (),
        ckpt_path: str | None = None, data: DataSplits | None = None) -> FitResult:
    """Train one run: config -> data -> model -> Lightning. Raises NonFiniteLoss on divergence."""
    if data is None:
        check_source(cfg)  # cheap, before any decoding or device work
        data = load_data(cfg)
    pl.seed_everything(cfg.seed, workers=False, verbose=False)
    module = MAEGapModule(cfg, data)
    with quiet_lightning():
        trainer = build_trainer(cfg, logger, [FiniteLossWatch(), *callbacks])
        trainer.fit(module, ckpt_path=ckpt_path)
    return FitResult(module.history, module, trainer, data.fingerprint)


@contextlib.contextmanager
def quiet_lightning():
    """Silences, for one fit, the two Lightning messages this project cannot fix at their cause:
    the litlogger advertisement (logged whenever the logger is not Lightning's own) and a torch
    deprecation warning raised from Lightning's _pytree helper. Nothing else is filtered."""
    # Lightning's rank_zero_info goes through these loggers (lightning_utilities' rank_zero.log)
    loggers = [logging.getLogger(f"{pkg}.utilities.rank_zero") for pkg in ("pytorch_lightning", "lightning_fabric")]

    def not_the_ad(record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()

    for log in loggers:
        log.addFilter(not_the_ad)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", module=r"pytorch_lightning")
            yield
    finally:
        for log in loggers:
            log.removeFilter(not_the_ad)
