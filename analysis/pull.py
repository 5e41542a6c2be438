"""Pull every run of a W&B sweep into the tidy table (SPEC section 8.1-8.2), and pick the runs
the statistics use (SPEC section 7).

    result = pull_sweep("entity/project/sweep_id", out_dir)   # W&B API, cached under out_dir
    used, exclusions = select_runs(result.table, acc_key, mse_key, include_unfinished=False,
                                   runs=result.runs)

How the pull talks to W&B (wandb 0.31, all GraphQL through the wandb-core sidecar):

* **one** `runs` query with the sweep filter (`filters={"sweep": id}`, `lazy=False`, so config,
  summary and the history's last step come in that same query), then
* per run, `run.scan_history()` **without** `keys=`: W&B's scan returns only the rows that
  contain *every* requested key, so asking for the SPEC's keys would silently drop the epochs
  where an optional key is missing (`val/knn_acc` off epochs). A key-less scan returns every
  row with every key it has; rows are matched on `epoch`, a missing key becomes NaN, and rows
  without an `epoch` (e.g. a logger's own step rows) are ignored and counted;
* runs are pulled in parallel threads (`ThreadPoolExecutor`, 8 by default), each run's history
  written to the cache as soon as it is complete.

Retries. wandb-core retries failed HTTP requests itself (429, 5xx; it honours Retry-After), by
default for minutes and invisibly to Python. The pull gives the `wandb.Api()` it creates the
smallest wandb-core budget there is instead: `x_graphql_retry_max=1` (the setting behind
`WANDB__GRAPHQL_RETRY_MAX`; 0 and negative values mean "wandb-core's default"). wandb-core then
retries a failed request once (after Retry-After, else after about 2 s; its
`x_graphql_retry_wait_*` settings did not change that wait for API requests in 0.31) and hands
the error on ("giving up after 2 attempt(s) ... HTTP 429"). This module retries the whole
operation (the login check, the runs query, one run's history scan) with bounded exponential
backoff with jitter (`RetryPolicy`: 6 tries, 1 s doubling up to 30 s; an HTTP 429 for up to
10 minutes of waiting, all threads pausing together) on HTTP 429, 5xx, timeouts and connection errors, and counts each retry (`PullResult.retries`) and each failed
HTTP attempt reported to it (`PullResult.failures`); a request that wandb-core's one retry
rescued never reaches Python and is not counted. Other errors (401, 404, GraphQL errors) are
not retried. A `WANDB__GRAPHQL_RETRY_MAX` set by the user wins; `RetryPolicy.timeout_s` is
Python's wait for one answer.

Cache (`<out>/cache/<sweep_id>/`): `runs.json` (the listing: sweep path, every run's id, name,
state, config, summary, last step) and `history/<run_id>.parquet` (one per run, written when
that run's history is complete). A re-run whose listing is cached and whose runs all ended
(finished, failed, crashed) with their histories cached reads the cache and makes **no
request at all** (not even a login check). An interrupted pull resumes: one new `runs` query,
then only the runs whose history is missing, still running, or changed since (state or last
step). `refresh=True` ignores the cache.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from analysis import (
    ALPHA,
    ALPHA_MODE,
    EPOCH,
    LR,
    METRIC_COLUMNS,
    RUN_ID,
    RUN_NAME,
    SEED,
    STATE,
    STEPS,
    STATE_CRASHED,
    STATE_FAILED,
    STATE_FINISHED,
    STATE_RUNNING,
    TIDY_COLUMNS,
    TIDY_DTYPES,
)
from mae_gap import metrics as M
from analysis.wandb_compat import GRAPHQL_RETRY_MAX, check_graphql_retry_setting, clear_runs_cache, listed_last_step
from mae_gap.config import effective_alpha_mode

# W&B run states -> the tidy table's four states.
WANDB_STATES = {
    "finished": STATE_FINISHED,
    "failed": STATE_FAILED,
    "killed": STATE_FAILED,  # stopped by a user
    "crashed": STATE_CRASHED,  # heartbeat lost
    "preempted": STATE_CRASHED,  # preempted, not (yet) resumed
    "running": STATE_RUNNING,
    "pending": STATE_RUNNING,
    "preempting": STATE_RUNNING,
}
ENDED_STATES = (STATE_FINISHED, STATE_FAILED, STATE_CRASHED)  # histories that are cached for good

# Config keys that are not part of a grid point: provenance and machine-local paths/display.
NON_GRID_CONFIG_KEYS = frozenset(
    {"git_commit", "package_version", "data_fingerprint", "cache_dir", "ckpt_dir", "data_dir", "progress",
     "effective_lr", "steps_per_epoch", "total_steps"}  # derived from the grid point, not part of it
)

CACHE_VERSION = 1
RUNS_JSON = "runs.json"
HISTORY_DIR = "history"


class PullError(RuntimeError):
    """A pull (or offline read) that cannot go on; the message is one line for the user."""


class PullIncomplete(PullError):
    """Some runs' histories could not be pulled; the others are cached (a re-run resumes)."""

    def __init__(self, message: str, failed: Mapping[str, str]):
        super().__init__(message)
        self.failed = dict(failed)


# --------------------------------------------------------------------------- runs


@dataclass
class RunInfo:
    """What the analysis keeps of one run besides its history."""

    run_id: str
    run_name: str
    state: str  # tidy state: finished | failed | crashed | running
    wandb_state: str = ""  # the state W&B (or the offline files) reported
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    sweep_id: str | None = None
    entity: str | None = None
    project: str | None = None
    created: str = ""
    last_step: int = -1  # last history step W&B knows of (NO_HISTORY = -1: none, UNKNOWN_STEP = -2: not said)
    sources: list[str] = field(default_factory=list)  # offline folders it was read from

    @property
    def label(self) -> str:
        return self.run_name if self.run_name == self.run_id else f"{self.run_name} ({self.run_id})"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RunInfo:
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in names})


def tidy_state(wandb_state: str | None) -> str:
    """W&B's run state (any case) as one of the tidy table's states; unknown -> crashed."""
    return WANDB_STATES.get(str(wandb_state or "").lower(), STATE_CRASHED)


class Exclusion(NamedTuple):
    """A run left out of the statistics, and why (`str()` gives "name (id): reason")."""

    run_id: str
    run_name: str
    reason: str

    @property
    def label(self) -> str:
        return self.run_name if self.run_name == self.run_id else f"{self.run_name} ({self.run_id})"

    def __str__(self) -> str:
        return f"{self.label}: {self.reason}"


@dataclass
class PullResult:
    """The tidy table of a sweep plus what the pull (or offline read) learnt on the way."""

    table: pd.DataFrame  # the tidy table of every run (TIDY_COLUMNS)
    runs: list[RunInfo]  # every run found, in W&B's order (creation time), with or without rows
    sweep: str  # "entity/project/id" (API) or the sweep id / group found offline
    source: str  # "api", "cache" or "offline"
    pulled: list[str] = field(default_factory=list)  # run ids whose history was fetched now
    cached: list[str] = field(default_factory=list)  # run ids whose history came from the cache
    retries: int = 0  # operations re-tried by analysis.pull
    failures: dict[str, int] = field(default_factory=dict)  # failed HTTP attempts seen, by kind
    seconds: float = 0.0  # wall time of the pull (or read)
    duplicate_epochs: dict[str, int] = field(default_factory=dict)  # run id -> epochs logged > once
    ignored_rows: int = 0  # history rows without an epoch
    requests_made: bool = False  # False when everything came from the cache
    cache_dir: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def entity_project(self) -> tuple[str | None, str | None]:
        parts = self.sweep.split("/")
        return (parts[0], parts[1]) if len(parts) == 3 else (None, None)

    @property
    def sweep_id(self) -> str:
        return self.sweep.split("/")[-1]


# --------------------------------------------------------------------------- the tidy table


def _num(value: Any) -> float:
    """A history/summary value as a float: numbers, bools, W&B's "NaN"/"Infinity" strings;
    anything else (None, media, text) is NaN."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)  # "NaN", "Infinity", "-Infinity", "1e-3"
        except ValueError:
            return math.nan
    return math.nan


def _config_value(config: Mapping[str, Any], key: str) -> Any:
    value = config.get(key)
    if isinstance(value, Mapping) and "value" in value:  # the server's {"value": v, "desc": ...}
        value = value["value"]
    return value


def numeric_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, float]]:
    """History rows reduced to their numeric values (what the cache stores): numbers, bools and
    W&B's "NaN"/"Infinity" strings; media, text and None are left out."""
    out = []
    for row in rows:
        clean = {}
        for k, v in row.items():
            if isinstance(v, (bool, int, float, np.integer, np.floating)):
                clean[str(k)] = float(v)
            elif isinstance(v, str) and v.strip().lstrip("+-").lower() in ("nan", "inf", "infinity"):
                clean[str(k)] = float(v.replace("Infinity", "inf"))
        out.append(clean)
    return out


def tidy_table(
    runs: Sequence[RunInfo], histories: Mapping[str, Sequence[Mapping[str, Any]]]
) -> tuple[pd.DataFrame, dict[str, int], int]:
    """The tidy table (one row per run and epoch, `analysis.TIDY_COLUMNS`) of runs + histories.

    Rows are matched on their `epoch` value (W&B's `_step` is not used: a resumed offline run
    restarts it). When an epoch appears in several rows (a resumed run re-logged it, or a
    logger split it), they are merged keeping, per column, the **last** non-missing value.
    Metric keys a row lacks are NaN. Rows without a finite epoch are ignored.

    Returns (table, {run id: number of epochs logged more than once}, rows ignored).
    Runs keep the order of `runs`; epochs are ascending.
    """
    records: list[dict[str, Any]] = []
    ignored = 0
    for run in runs:
        for row in histories.get(run.run_id) or ():
            epoch = _num(row.get(EPOCH))
            if not math.isfinite(epoch):
                ignored += 1
                continue
            rec = {RUN_ID: run.run_id, EPOCH: int(round(epoch))}
            for key in METRIC_COLUMNS:
                rec[key] = _num(row.get(key))
            records.append(rec)
    frame = pd.DataFrame.from_records(records, columns=[RUN_ID, EPOCH, *METRIC_COLUMNS])
    counts = frame.groupby([RUN_ID, EPOCH], sort=False).size() if len(frame) else pd.Series(dtype=int)
    dup = counts[counts > 1]
    duplicates = {str(r): int(n) for r, n in dup.groupby(level=0).size().items()} if len(dup) else {}
    if len(frame):
        frame = frame.groupby([RUN_ID, EPOCH], sort=False, as_index=False).last()

    info = {r.run_id: {RUN_NAME: r.run_name, **run_columns(r.config), STATE: r.state} for r in runs}
    order = {r.run_id: i for i, r in enumerate(runs)}
    for col in (RUN_NAME, ALPHA, ALPHA_MODE, LR, SEED, STEPS, STATE):
        frame[col] = [info[r][col] for r in frame[RUN_ID]] if len(frame) else pd.Series(dtype=object)
    if len(frame):
        frame["_order"] = frame[RUN_ID].map(order)
        frame = frame.sort_values(["_order", EPOCH], kind="stable").drop(columns="_order")
    frame = frame[list(TIDY_COLUMNS)].reset_index(drop=True)
    return frame.astype(TIDY_DTYPES), duplicates, ignored


def run_columns(config: Mapping[str, Any]) -> dict[str, Any]:
    """The per-run columns a run's config gives: alpha, the mode that ran (confusion at alpha >= 0
    is grl), the lr used (`effective_lr` when the run logged it: blr applied), seed, total steps."""
    alpha = _num(_config_value(config, ALPHA))
    mode = _config_value(config, ALPHA_MODE)
    mode = str(mode) if mode not in (None, "") else "grl"  # runs from before alpha_mode existed ran grl
    lr = _num(_config_value(config, "effective_lr"))
    steps = _num(_config_value(config, STEPS))
    return {
        ALPHA: alpha,
        ALPHA_MODE: effective_alpha_mode(alpha, mode) if math.isfinite(alpha) else mode,
        LR: lr if math.isfinite(lr) else _num(_config_value(config, LR)),
        SEED: _seed(_config_value(config, SEED)),
        STEPS: int(steps) if math.isfinite(steps) else -1,
    }


def _seed(value: Any) -> int:
    """Config seed as an int; -1 when the run's config has none."""
    x = _num(value)
    return int(x) if math.isfinite(x) else -1


# --------------------------------------------------------------------------- run selection


def grid_point(config: Mapping[str, Any]) -> str:
    """Canonical form of a run's grid point: its config without provenance, local paths and
    W&B's private keys; integral floats equal ints (as W&B's grid de-duplication does)."""

    def canon(v: Any) -> Any:
        if isinstance(v, Mapping):
            if set(v) <= {"value", "desc"} and "value" in v:
                return canon(v["value"])
            return {str(k): canon(x) for k, x in sorted(v.items())}
        if isinstance(v, (list, tuple)):
            return [canon(x) for x in v]
        if isinstance(v, float) and v.is_integer():
            return int(v)
        return v

    keep = {k: canon(v) for k, v in config.items() if not str(k).startswith("_") and k not in NON_GRID_CONFIG_KEYS}
    return json.dumps(keep, sort_keys=True, default=str)


def select_runs(
    df: pd.DataFrame,
    acc_key: str,
    mse_key: str,
    include_unfinished: bool = False,
    *,
    runs: Sequence[RunInfo] | None = None,
) -> tuple[pd.DataFrame, list[Exclusion]]:
    """The runs the statistics use, and every other run with the reason it is left out.

    Pure function (no I/O). Checked in this order, one reason per run:

    1. state: crashed, failed and running runs are excluded unless `include_unfinished`
       (the reason names the state, W&B's own state when it differs, and the failure reason
       the run wrote to its summary, if any);
    2. no history: a run without a single epoch row (only visible when `runs` is given);
    3. no alpha in its config;
    4. a missing metric: no finite `acc_key` or `mse_key` value in any epoch;
    5. duplicate grid points: among the runs left, runs with the same alpha, lr, seed and
       other config (`grid_point`; with `runs` the whole config, else alpha, lr, seed) keep
       the first finished one (else the first) and exclude the rest as duplicates of it.

    Args:
      df: the tidy table.
      runs: the pull's RunInfo list (gives run order, configs, failure reasons, and runs with
        no rows at all); without it, runs come from the table in order of appearance.

    Returns (rows of the used runs, in table order; exclusions in run order).
    """
    by_id: dict[str, RunInfo] = {}
    for r in runs or ():
        by_id.setdefault(r.run_id, r)
    if len(df):
        first = df.drop_duplicates(RUN_ID)
        for rid, name, state, a, mode, lr, seed in zip(
            first[RUN_ID], first[RUN_NAME], first[STATE], first[ALPHA], first[ALPHA_MODE], first[LR], first[SEED]
        ):
            rid = str(rid)
            if rid not in by_id:
                cfg = {ALPHA: float(a), ALPHA_MODE: str(mode), LR: float(lr), SEED: int(seed)}
                by_id[rid] = RunInfo(rid, str(name), str(state), config=cfg)
    rows_per_run = df.groupby(RUN_ID, sort=False) if len(df) else None

    def finite_any(rid: str, key: str) -> bool:
        if rows_per_run is None or key not in df.columns or rid not in rows_per_run.groups:
            return False
        vals = pd.to_numeric(df.loc[rows_per_run.groups[rid], key], errors="coerce").to_numpy(float)
        return bool(np.isfinite(vals).any())

    exclusions: list[Exclusion] = []
    candidates: list[RunInfo] = []
    for rid, run in by_id.items():
        has_rows = rows_per_run is not None and rid in rows_per_run.groups
        reason = None
        if run.state != STATE_FINISHED and not include_unfinished:
            reason = _state_reason(run)
        elif not has_rows:
            reason = "no history (no epoch was logged)"
        elif not math.isfinite(_num(_config_value(run.config, ALPHA))):
            reason = "no alpha in its config"
        else:
            missing = [k for k in (acc_key, mse_key) if not finite_any(rid, k)]
            if missing:
                reason = f"no {' and no '.join(missing)} values"
        if reason:
            exclusions.append(Exclusion(rid, run.run_name, reason))
        else:
            candidates.append(run)

    # Duplicate grid points among the runs left.
    groups: dict[str, list[RunInfo]] = {}
    for run in candidates:
        groups.setdefault(_dedupe_key(run, df, runs is not None), []).append(run)
    dropped: dict[str, Exclusion] = {}
    for members in groups.values():
        if len(members) < 2:
            continue
        keep = next((m for m in members if m.state == STATE_FINISHED), members[0])
        for m in members:
            if m is not keep:
                dropped[m.run_id] = Exclusion(
                    m.run_id, m.run_name, f"duplicate grid point of {keep.label} (same alpha, lr, seed and config)"
                )
    used_ids = [r.run_id for r in candidates if r.run_id not in dropped]
    # Exclusions in run order.
    order = {rid: i for i, rid in enumerate(by_id)}
    exclusions = sorted([*exclusions, *dropped.values()], key=lambda e: order[e.run_id])
    used = df[df[RUN_ID].isin(used_ids)] if len(df) else df
    return used, exclusions


def _dedupe_key(run: RunInfo, df: pd.DataFrame, full_config: bool) -> str:
    cols = run_columns(run.config)
    # the mode as it ran: confusion at alpha >= 0 trains exactly what grl trains
    point = {ALPHA: cols[ALPHA], ALPHA_MODE: cols[ALPHA_MODE], LR: cols[LR], SEED: cols[SEED]}
    if full_config:
        return grid_point({**run.config, **point})
    return grid_point(point)


def _state_reason(run: RunInfo) -> str:
    reason = run.state
    raw = (run.wandb_state or "").lower()
    if raw and raw != run.state:
        reason += f" (W&B state {raw})"
    if run.state == STATE_RUNNING:
        reason += " (still in progress)"
    why = run.summary.get(M.FAILURE_REASON) if isinstance(run.summary, Mapping) else None
    if why:
        reason += f": {why}"
    return reason


# --------------------------------------------------------------------------- sweep ids


def parse_sweep(sweep: str, entity: str | None = None, project: str | None = None) -> tuple[str | None, str | None, str]:
    """`entity/project/id`, `project/id` or `id` (+ entity/project, or WANDB_ENTITY /
    WANDB_PROJECT) -> (entity or None, project or None, sweep id). A W&B sweep URL
    (`.../<entity>/<project>/sweeps/<id>`) works too."""
    s = str(sweep or "").strip().rstrip("/")
    if not s:
        raise PullError("no sweep id given")
    m = re.search(r"([^/\s]+)/([^/\s]+)/sweeps/([^/?#\s]+)", s)
    parts = [m.group(1), m.group(2), m.group(3)] if m else s.split("/")
    if len(parts) == 3:
        e, p, sid = parts
    elif len(parts) == 2:
        e, (p, sid) = None, parts
    elif len(parts) == 1:
        e, p, sid = None, None, parts[0]
    else:
        raise PullError(f"bad sweep id {sweep!r}: expected entity/project/id or id")
    e = e or entity or os.environ.get("WANDB_ENTITY") or None
    p = p or project or os.environ.get("WANDB_PROJECT") or None
    if not sid or not re.fullmatch(r"[A-Za-z0-9_.\-]+", sid):
        raise PullError(f"bad sweep id {sweep!r}")
    return e, p, sid


# --------------------------------------------------------------------------- retries


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff of analysis.pull, and the budget it gives wandb-core.

    A failed operation (runs query, one run's history scan, the login check) is tried
    `attempts` times in all; before retry k (1-based) it waits
    min(cap_s, base_s * 2**(k-1)) times a random factor in [0.5, 1] (jitter).

    HTTP 429 is different: the service says "later", so the operation is retried for as long as
    `rate_limit_patience_s` of waiting allows (a reset of a few minutes still finishes), with the
    same backoff capped at `rate_cap_s`, and every thread of the pull pauses with it (`RetryStats`
    holds the shared pause): a rate limit slows the whole pull, not one thread. wandb-core (0.31)
    passes neither `RateLimit-Reset` nor `Retry-After` on to Python, so the wait cannot be read
    from the answer; wandb-core's own one retry honours Retry-After but not RateLimit-Reset
    (measured against tests/fake_wandb.py).
    """

    attempts: int = 6
    base_s: float = 1.0
    cap_s: float = 30.0
    rate_limit_patience_s: float = 600.0
    rate_cap_s: float = 60.0
    timeout_s: float = 60.0  # Python's wait for one GraphQL answer from wandb-core
    core_retry_max: int = 1  # wandb-core's own retries per HTTP request (1 = the fewest it allows)

    def delay(self, retry: int, rng: random.Random | None = None, cap: float | None = None) -> float:
        r = (rng or random).uniform(0.5, 1.0)
        return min(self.cap_s if cap is None else cap, self.base_s * 2 ** (retry - 1)) * r


class RetryStats:
    """Thread-safe counters of retries and failed HTTP attempts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.retries = 0
        self.failures: dict[str, int] = {}
        self.log: list[str] = []
        self.paused_until = 0.0  # monotonic time before which no thread sends (a rate limit)

    def pause_all(self, seconds: float) -> None:
        with self._lock:
            self.paused_until = max(self.paused_until, time.monotonic() + seconds)

    def wait_for_pause(self, sleep: Callable[[float], None]) -> None:
        left = self.paused_until - time.monotonic()
        if left > 0:
            sleep(left)

    def failed(self, kind: str, attempts: int, what: str, retried: bool) -> None:
        with self._lock:
            self.failures[kind] = self.failures.get(kind, 0) + max(int(attempts), 1)
            if retried:
                self.retries += 1
            self.log.append(f"{what}: {kind} x{attempts}{' (retrying)' if retried else ''}")


_HTTP_RE = re.compile(r"HTTP (\d{3})")
_ATTEMPTS_RE = re.compile(r"after (\d+) attempt")
_TRANSIENT_RE = re.compile(
    r"timed? ?out|timeout|deadline exceeded|connection (refused|reset|aborted)|broken pipe|"
    r"\bEOF\b|temporarily unavailable|server closed|remote end closed",
    re.IGNORECASE,
)


NO_HISTORY, UNKNOWN_STEP = -1, -2  # RunInfo.last_step: the run has no history row / W&B did not say


class EmptyHistory(ConnectionError):
    """A history came back empty although the listing names a last step: a failed request (retried)."""


def classify_error(exc: BaseException) -> tuple[bool, str, int]:
    """(retryable, kind, failed HTTP attempts) of an error from the W&B client.

    Retryable: HTTP 429 and 5xx, timeouts, connection errors. wandb-core reports its own
    attempts ("giving up after N attempt(s) ... HTTP 429: ..."), which are counted.
    """
    msg = f"{type(exc).__name__}: {exc}"
    m = _ATTEMPTS_RE.search(msg)
    attempts = int(m.group(1)) if m else 1
    codes = _HTTP_RE.findall(msg)
    if codes:
        code = int(codes[-1])
        return (code == 429 or 500 <= code <= 599), f"HTTP {code}", attempts
    if isinstance(exc, (TimeoutError, ConnectionError)) or _TRANSIENT_RE.search(msg):
        return True, "timeout/connection", attempts
    return False, type(exc).__name__, attempts


def call_with_retries(
    fn: Callable[[], Any],
    what: str,
    policy: RetryPolicy,
    stats: RetryStats,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> Any:
    """fn(), retried on transient errors per `policy` (HTTP 429: for `rate_limit_patience_s`, all
    threads pausing together); counts into `stats`; re-raises the last error (or the first
    non-transient one)."""
    attempt = limited = 0
    waited_for_limits = 0.0
    while True:
        attempt += 1
        stats.wait_for_pause(sleep)
        try:
            return fn()
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - classified below
            retryable, kind, n = classify_error(exc)
            if kind == "HTTP 429":
                limited += 1
                delay = policy.delay(limited, rng, cap=policy.rate_cap_s)
                again = waited_for_limits + delay <= policy.rate_limit_patience_s
            else:
                delay = policy.delay(attempt - limited, rng)
                again = retryable and attempt - limited < policy.attempts
            if retryable or kind.startswith("HTTP"):
                stats.failed(kind, n, what, again)
            if not again:
                raise
            if kind == "HTTP 429":
                waited_for_limits += delay
                stats.pause_all(delay)
                continue
            sleep(delay)


def _n(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


# --------------------------------------------------------------------------- the W&B API


_CORE_ENV = {"core_retry_max": GRAPHQL_RETRY_MAX}


def make_api(policy: RetryPolicy, stats: RetryStats):
    """A `wandb.Api` whose wandb-core retry budget is `policy.core_retry_max` (module doc).

    `wandb.Api()` copies the process's W&B settings when it is created and hands that copy to
    wandb-core, so the budget is set on the settings for the duration of the constructor and
    restored after: other W&B use in the process keeps its own settings. The login check the
    constructor makes is retried like any other request.
    """
    import wandb

    settings = wandb.setup().settings
    check_graphql_retry_setting(settings)
    saved = {}
    for attr, (env, name) in _CORE_ENV.items():
        if os.environ.get(env):  # the user's explicit choice wins
            continue
        saved[name] = getattr(settings, name)
        setattr(settings, name, getattr(policy, attr))
    try:
        return call_with_retries(lambda: wandb.Api(timeout=int(policy.timeout_s)), "login", policy, stats)
    finally:
        for name, value in saved.items():
            setattr(settings, name, value)


def _run_info(run: Any, entity: str, project: str) -> RunInfo:
    raw_state = str(getattr(run, "state", "") or "")
    summary = getattr(run, "summary_metrics", None)
    if summary is None:
        summary = dict(getattr(run, "summary", {}) or {})
    summary = {k: v for k, v in dict(summary or {}).items() if not str(k).startswith("_") and _jsonable(v)}
    config = {k: v for k, v in dict(run.config or {}).items() if not str(k).startswith("_")}
    # What the `runs` listing (lazy=False) returned: no request per run, nothing to fail here.
    # A listing without historyKeys leaves it unknown (-2): the history is then always pulled.
    last_step = listed_last_step(run)
    return RunInfo(
        run_id=str(run.id),
        run_name=str(getattr(run, "name", None) or run.id),
        state=tidy_state(raw_state),
        wandb_state=raw_state.lower(),
        config=config,
        summary=summary,
        sweep_id=getattr(run, "sweep_name", None),
        entity=entity,
        project=project,
        created=str(getattr(run, "created_at", "") or ""),
        last_step=UNKNOWN_STEP if last_step is None else last_step,
    )


def _jsonable(v: Any) -> bool:
    if v is None or isinstance(v, (bool, int, float, str)):
        return True
    return False


# --------------------------------------------------------------------------- cache


class Cache:
    """`<root>/runs.json` + `<root>/history/<run_id>.parquet` (atomic writes)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def history_path(self, run_id: str) -> Path:
        return self.root / HISTORY_DIR / f"{run_id}.parquet"

    def read_listing(self) -> dict[str, Any] | None:
        p = self.root / RUNS_JSON
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError):
            return None
        if data.get("version") != CACHE_VERSION:
            return None
        return data

    def write_listing(self, sweep: str, runs: Sequence[RunInfo], histories_state: Mapping[str, Any]) -> None:
        data = {
            "version": CACHE_VERSION,
            "sweep": sweep,
            "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "runs": [r.to_json() for r in runs],
            "histories": dict(histories_state),  # run id -> {"state", "last_step"} at pull time
        }
        _atomic_write(self.root / RUNS_JSON, json.dumps(data, indent=1, sort_keys=True, default=str).encode())

    def has_history(self, run_id: str) -> bool:
        return self.history_path(run_id).is_file()

    def read_history(self, run_id: str) -> list[dict[str, float]]:
        frame = pd.read_parquet(self.history_path(run_id))
        rows = []
        for rec in frame.to_dict(orient="records"):
            rows.append({k: v for k, v in rec.items() if not (isinstance(v, float) and math.isnan(v))})
        return rows

    def write_history(self, run_id: str, rows: Sequence[Mapping[str, Any]]) -> None:
        clean = numeric_rows(rows)
        cols = sorted({k for r in clean for k in r})
        frame = pd.DataFrame.from_records(clean, columns=cols).astype("float64")
        path = self.history_path(run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def cache_root(out_dir: str | os.PathLike, sweep_id: str) -> Path:
    return Path(out_dir) / "cache" / sweep_id


# --------------------------------------------------------------------------- the pull


def pull_sweep(
    sweep: str,
    out_dir: str | os.PathLike,
    *,
    entity: str | None = None,
    project: str | None = None,
    refresh: bool = False,
    workers: int = 8,
    policy: RetryPolicy | None = None,
    progress: Callable[[str], None] | None = None,
) -> PullResult:
    """Every run of a sweep and its full per-epoch history, through `wandb.Api()`, cached.

    See the module docstring for the queries, the retries and the cache. Raises PullError
    (one-line message) when the sweep does not exist, the project is unknown or W&B cannot
    be reached, and PullIncomplete when some runs' histories failed (the rest is cached).
    """
    policy = policy or RetryPolicy()
    stats = RetryStats()
    t0 = time.monotonic()
    e, p, sid = parse_sweep(sweep, entity, project)
    cache = Cache(cache_root(out_dir, sid))
    say = progress or (lambda s: None)

    listing = None if refresh else cache.read_listing()
    if listing is not None:
        ce, cp, _ = listing["sweep"].split("/")
        if (e and e != ce) or (p and p != cp):
            listing = None  # a cache of another entity/project's sweep with the same id
        else:
            e, p = ce, cp
    if listing is not None:
        runs = [RunInfo.from_json(r) for r in listing["runs"]]
        done = listing.get("histories", {})
        if runs and all(r.state in ENDED_STATES and _cached_for_good(cache, done.get(r.run_id), r) for r in runs):
            histories = {r.run_id: cache.read_history(r.run_id) for r in runs}
            table, dups, ignored = tidy_table(runs, histories)
            return PullResult(
                table, runs, listing["sweep"], "cache", cached=[r.run_id for r in runs],
                seconds=time.monotonic() - t0, duplicate_epochs=dups, ignored_rows=ignored,
                requests_made=False, cache_dir=cache.root,
                notes=[f"read from the cache {cache.root} (written {listing.get('written', '?')}); --refresh re-pulls"],
            )

    if not p:
        raise PullError(
            f"no W&B project for sweep {sid!r}: give ENTITY/PROJECT/{sid}, --project or WANDB_PROJECT"
        )
    try:
        api = make_api(policy, stats)
    except Exception as exc:  # noqa: BLE001
        raise PullError(f"cannot reach W&B: {_one_line(exc)}") from exc
    if not e:
        try:
            e = call_with_retries(lambda: api.default_entity, "default entity", policy, stats)
        except Exception as exc:  # noqa: BLE001
            raise PullError(f"cannot find your default W&B entity ({_one_line(exc)}); give ENTITY/PROJECT/{sid}") from exc
    path = f"{e}/{p}/{sid}"

    def list_runs():
        clear_runs_cache(api)  # Api caches Runs objects; a retry must start afresh
        return list(api.runs(f"{e}/{p}", filters={"sweep": sid}, order="+created_at", per_page=500, lazy=False))

    say(f"listing the runs of sweep {path} ...")
    try:
        wruns = call_with_retries(list_runs, "runs query", policy, stats)
    except Exception as exc:  # noqa: BLE001
        raise PullError(f"cannot list the runs of sweep {path}: {_one_line(exc)}") from exc
    if not wruns:
        _check_sweep_exists(api, path, policy, stats)
        raise PullError(f"sweep {path} has no runs")
    runs = [_run_info(r, e, p) for r in wruns]
    by_id = {r.run_id: w for r, w in zip(runs, wruns)}
    infos = {r.run_id: r for r in runs}

    # Which histories the cache already holds for good.
    cached_state = (listing or {}).get("histories", {}) if listing else {}
    todo, cached_ids = [], []
    for r in runs:
        fresh = not refresh and _cached_for_good(cache, cached_state.get(r.run_id), r)
        (cached_ids if fresh else todo).append(r.run_id)
    hist_state = {rid: cached_state[rid] for rid in cached_ids}
    cache.write_listing(path, runs, hist_state)

    histories: dict[str, list[dict[str, Any]]] = {rid: cache.read_history(rid) for rid in cached_ids}
    failed: dict[str, str] = {}
    lock = threading.Lock()

    def pull_one(rid: str) -> None:
        run, info = by_id[rid], infos[rid]
        def scan() -> list[dict[str, Any]]:
            rows = list(run.scan_history(page_size=1000))
            if not rows and info.last_step >= 0:  # the listing says rows exist: never cache this
                raise EmptyHistory(f"the history of {info.label} came back empty; W&B lists step {info.last_step}")
            return rows

        rows: list[dict[str, Any]] = []
        if info.last_step != NO_HISTORY:  # W&B says the run has rows, or did not say
            rows = call_with_retries(scan, f"history of {info.label}", policy, stats)
        cache.write_history(rid, rows)
        with lock:
            histories[rid] = numeric_rows(rows)
            hist_state[rid] = {"state": info.state, "last_step": info.last_step}
            cache.write_listing(path, runs, hist_state)

    if todo:
        say(f"pulling {_n(len(todo), 'run history', 'run histories')} ({len(cached_ids)} cached) "
            f"with {_n(min(workers, len(todo)), 'thread')} ...")
        pool = ThreadPoolExecutor(max_workers=max(1, min(workers, len(todo))), thread_name_prefix="pull")
        try:
            futures = {pool.submit(pull_one, rid): rid for rid in todo}
            for fut in as_completed(futures):
                exc = fut.exception()
                if exc is not None:
                    failed[futures[fut]] = _one_line(exc)
        finally:  # on Ctrl-C: drop the queued runs; finished ones are already cached
            pool.shutdown(wait=False, cancel_futures=True)

    if failed:
        label = {r.run_id: r.label for r in runs}
        names = "; ".join(f"{label[r]}: {msg}" for r, msg in failed.items())
        raise PullIncomplete(
            f"could not pull {len(failed)} of {len(runs)} run histories ({names}); "
            f"the other {len(runs) - len(failed)} are cached in {cache.root}: re-run to resume",
            failed,
        )
    table, dups, ignored = tidy_table(runs, histories)
    return PullResult(
        table, runs, path, "api", pulled=list(todo), cached=cached_ids, retries=stats.retries,
        failures=dict(stats.failures), seconds=time.monotonic() - t0, duplicate_epochs=dups,
        ignored_rows=ignored, requests_made=True, cache_dir=cache.root,
    )


def _cached_for_good(cache: Cache, pulled: Mapping[str, Any] | None, run: RunInfo) -> bool:
    """Whether the cached history of `run` is complete and current: pulled after the run
    ended, in the state and with the last step W&B reports now."""
    return (
        pulled is not None
        and run.last_step != UNKNOWN_STEP  # without W&B's last step nothing says the cache is current
        and cache.has_history(run.run_id)
        and pulled.get("state") in ENDED_STATES
        and pulled.get("state") == run.state
        and int(pulled.get("last_step", UNKNOWN_STEP)) == run.last_step
    )


def _check_sweep_exists(api: Any, path: str, policy: RetryPolicy, stats: RetryStats) -> None:
    """Raise PullError("sweep ... not found") unless W&B knows the sweep."""
    try:
        sweep = call_with_retries(lambda: api.sweep(path), "sweep lookup", policy, stats)
    except Exception as exc:  # noqa: BLE001 - W&B says "not found" in several ways
        raise PullError(f"sweep {path} not found ({_one_line(exc)})") from exc
    if sweep is None:
        raise PullError(f"sweep {path} not found")
