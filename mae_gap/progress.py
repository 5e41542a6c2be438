"""The line a person reads per epoch (what `wandb agent` and `agent.local` logs show)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from . import metrics as M


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def epoch_line(row: Mapping[str, float], epochs: int, history: Sequence[Mapping[str, float]],
               acc_key: str = M.VAL_LINEAR_ACC) -> str:
    """"epoch 3/6  loss 1.2345  val/mse 0.8123  val/linear_acc 0.468  402 img/s  52 s/epoch  ETA 2:36".

    The ETA is the mean epoch time so far times the epochs left."""
    epoch = int(row[M.EPOCH])
    times = [r[M.PERF_EPOCH_S] for r in history if r.get(M.PERF_EPOCH_S) is not None]
    per_epoch = sum(times) / len(times) if times else row.get(M.PERF_EPOCH_S, 0.0)
    acc = row.get(acc_key)
    acc_text = f"{acc:.3f}" if isinstance(acc, float) and acc == acc else "-"
    return (f"epoch {epoch}/{epochs}  loss {row[M.TRAIN_LOSS]:.4f}  {M.VAL_MSE} {row[M.VAL_MSE]:.4f}  "
            f"{acc_key} {acc_text}  {row[M.PERF_IMG_PER_S]:.0f} img/s  {row[M.PERF_EPOCH_S]:.0f} s/epoch  "
            f"ETA {_clock(per_epoch * (epochs - epoch))}")
