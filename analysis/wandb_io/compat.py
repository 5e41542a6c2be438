"""Every use of a private or internal part of the wandb SDK, in one place.

The project's other modules use wandb's public API (`wandb.init`, `wandb.Api`, `wandb.Settings`'s
documented fields, `wandb agent`); what they need beyond it is here, each behind a function that
fails with one line naming the wandb version that has it. The floors are the first releases that
have each part (checked against the released wheels; `pyproject.toml` states the overall floor):

| part | first in |
| --- | --- |
| `Api.runs(lazy=...)` | 0.22.1 |
| `Settings.x_graphql_retry_max` (wandb-core's API retries) | 0.26.0 |
| `Settings.stop_fn` (how a stop from the UI reaches the program) | 0.27.0 |
| `Settings.x_transaction_log_flush_interval` (a run killed with its wandb-core keeps what it logged; 0.27–0.30 write the run file only as buffers fill, so a double kill lost every record of the attempt, the preempting mark included) | 0.31.0 |
| `wandb.sdk.launch.sweeps.utils.create_sweep_command(_args)`, `wandb.sdk.lib.config_util` | 0.12 |
| `wandb.proto.wandb_internal_pb2` (the offline `.wandb` records) | 0.12 |
| `wandb.sdk.launch.api.LaunchApi.check_stop_requested` (the service's `RunStoppedStatus`) | present in the floor, 0.31.0 |
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

MIN_WANDB = "0.31.0"


class WandbTooOld(RuntimeError):
    """The installed wandb lacks an internal part this project uses."""


def _missing(what: str, first: str) -> WandbTooOld:
    import wandb

    return WandbTooOld(f"wandb {wandb.__version__} has no {what} (first in wandb {first}); "
                       f"pip install 'wandb>={MIN_WANDB}'")


GRAPHQL_RETRY_MAX = ("WANDB__GRAPHQL_RETRY_MAX", "x_graphql_retry_max")  # (env variable, setting)


def check_graphql_retry_setting(settings: Any) -> None:
    if not hasattr(settings, GRAPHQL_RETRY_MAX[1]):
        raise _missing(f"Settings.{GRAPHQL_RETRY_MAX[1]}", "0.26.0")


def run_settings(stop_fn: Callable[[], None] | None = None, flush_interval_s: float | None = None):
    """`wandb.Settings` for a training run: `stop_fn` is called (in a thread) when the run is stopped
    from the UI; `flush_interval_s` bounds how much logged data a killed wandb-core can lose."""
    import wandb

    fields = getattr(wandb.Settings, "model_fields", {})
    values: dict[str, Any] = {}
    if stop_fn is not None:
        if "stop_fn" not in fields:
            raise _missing("Settings.stop_fn", "0.27.0")
        values["stop_fn"] = stop_fn
    if flush_interval_s is not None:
        if "x_transaction_log_flush_interval" not in fields:
            raise _missing("Settings.x_transaction_log_flush_interval", "0.31.0")
        values["x_transaction_log_flush_interval"] = flush_interval_s
    return wandb.Settings(**values)


def sweep_command_functions():
    """(create_sweep_command, create_sweep_command_args): the functions `wandb agent` builds a run's
    command with (wandb/wandb_agent.py, Agent._command_run)."""
    try:
        from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args
    except ImportError:
        raise _missing("wandb.sdk.launch.sweeps.utils.create_sweep_command", "0.12") from None
    return create_sweep_command, create_sweep_command_args


def save_sweep_param_file(path: str, params: dict[str, Any]) -> None:
    """Writes WANDB_SWEEP_PARAM_PATH as `wandb agent` does (wandb_agent.py: config_util)."""
    try:
        from wandb.sdk.lib import config_util
    except ImportError:
        raise _missing("wandb.sdk.lib.config_util", "0.12") from None
    config_util.save_config_file_from_dict(path, params)


def record_protos():
    """The protobuf module of the records in a `.wandb` transaction log."""
    try:
        from wandb.proto import wandb_internal_pb2
    except ImportError:
        raise _missing("wandb.proto.wandb_internal_pb2", "0.12") from None
    return wandb_internal_pb2


def run_stop_requested(entity: str | None, project: str | None, run_id: str, timeout_s: float = 10.0) -> bool | None:
    """Has the run been stopped from the W&B UI? The service's answer to `RunStoppedStatus` (the
    query of `LaunchApi.check_stop_requested`, wandb 0.31), asked in a thread; None when it cannot
    tell within `timeout_s` (no network, wandb-core gone, an error)."""
    try:
        from wandb.sdk.launch.api import LaunchApi
    except ImportError:
        raise _missing("wandb.sdk.launch.api.LaunchApi", "0.31.0") from None
    if not hasattr(LaunchApi, "check_stop_requested"):
        raise _missing("LaunchApi.check_stop_requested", "0.31.0")
    answer: dict[str, Any] = {}

    def ask() -> None:
        try:
            answer["stopped"] = bool(LaunchApi(timeout=int(max(timeout_s, 1))).check_stop_requested(project, entity, run_id))
        except Exception as err:  # noqa: BLE001 - any failure: the caller cannot tell, and says so
            answer["error"] = err

    thread = threading.Thread(target=ask, name="stop-status", daemon=True)
    thread.start()
    thread.join(timeout_s)
    return answer.get("stopped")
