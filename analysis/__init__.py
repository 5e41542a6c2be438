"""analysis: pull sweep runs (W&B API or offline files), statistics, figures, upload, report.

Floors: `wandb_io` (the W&B layer shared with `agent`), `pull`, `stats`, `figures`, `publish`, and
the command line `pull_and_plot`.

This module is also the schema of the **tidy table** every part of `analysis` exchanges
(SPEC section 8.2): a pandas DataFrame with one row per (run, epoch) and the columns

    run_id (str), run_name (str), alpha (float), alpha_mode (str: the mode that ran, i.e.
    confusion at alpha >= 0 reads grl), lr (float: the peak lr used, blr already applied),
    seed (int), total_steps (int: optimizer steps of the whole run, -1 if unknown),
    state (str: finished | failed | crashed | running), epoch (int, 1..E),
    and every metric key of `mae_gap.metrics.EPOCH_KEYS` (float; NaN where absent,
    e.g. val/knn_acc on epochs without k-NN).

Import the column names from here, never retype the strings; metric names (and `epoch`) come
from `mae_gap.metrics`. Importing this package is cheap:
no pandas, no matplotlib, no torch, no wandb.
"""

from mae_gap.metrics import EPOCH, EPOCH_KEYS, VAL_LINEAR_ACC, VAL_MSE

# --- per-run columns of the tidy table (constant within one run)
RUN_ID = "run_id"  # W&B run id (or the offline run's id); the bootstrap resampling unit
RUN_NAME = "run_name"  # W&B display name
ALPHA = "alpha"  # signed weight of the supervised head (the independent variable)
ALPHA_MODE = "alpha_mode"  # how alpha enters (grl | weighted | confusion), as it ran
LR = "lr"  # peak learning rate
SEED = "seed"  # training seed: runs that differ only in it are replicates
STEPS = "total_steps"  # optimizer steps of the run (training length, for comparing sweeps)
STATE = "state"  # W&B run state, one of RUN_STATES

RUN_COLUMNS = (RUN_ID, RUN_NAME, ALPHA, ALPHA_MODE, LR, SEED, STEPS, STATE)
# Every metric column (EPOCH_KEYS minus the epoch itself), in the contract's order.
METRIC_COLUMNS = tuple(k for k in EPOCH_KEYS if k != EPOCH)

# Every column of the tidy table, in a stable order: run columns, epoch, metrics.
TIDY_COLUMNS = (*RUN_COLUMNS, EPOCH, *METRIC_COLUMNS)

# Column dtypes (pandas names) of the tidy table.
TIDY_DTYPES = {
    RUN_ID: "str",
    RUN_NAME: "str",
    ALPHA: "float64",
    ALPHA_MODE: "str",
    LR: "float64",
    SEED: "int64",
    STEPS: "int64",
    STATE: "str",
    EPOCH: "int64",
    **{k: "float64" for k in METRIC_COLUMNS},
}

# --- run states (W&B's names, lower case)
STATE_FINISHED = "finished"
STATE_FAILED = "failed"
STATE_CRASHED = "crashed"
STATE_RUNNING = "running"
RUN_STATES = (STATE_FINISHED, STATE_FAILED, STATE_CRASHED, STATE_RUNNING)

# --- analysis defaults (SPEC section 8: --acc val/linear_acc --mse val/mse --bins 15)
DEFAULT_ACC_KEY = VAL_LINEAR_ACC
DEFAULT_MSE_KEY = VAL_MSE
DEFAULT_BINS = 15

# W&B names of the analysis itself: the job type of the analysis run (never a sweep run), and the
# variables a sweep agent sets for its runs (an analysis run started under them would join the sweep).
ANALYSIS_JOB_TYPE = "analysis"
SWEEP_ENV = ("WANDB_SWEEP_ID", "WANDB_RUN_ID", "WANDB_SWEEP_PARAM_PATH")
