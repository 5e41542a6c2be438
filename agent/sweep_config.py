"""Sweep YAMLs for the local controller: load, check against TrainConfig, expand, build commands.

Everything here mirrors what W&B does with the same file, so `python -m agent.local` and
`wandb sweep` + `wandb agent` run the same commands in the same order:

- grid order: W&B's sweeps engine (`sweeps.grid_search`) sorts the parameter names, keeps
  each parameter's values in listed order and takes `itertools.product`, so the last name
  (alphabetically) varies fastest; constant (`value:`) parameters join every run.
- commands: `wandb agent` (`wandb/wandb_agent.py`, `Agent._command_run`) fills the sweep's
  `command:` list with `create_sweep_command` (the `${envvar:NAME}` macros) and the
  formats of `create_sweep_command_args` (`${args}` = `--key=value`, booleans as
  `--flag=False`), with `${env}` = /usr/bin/env, `${interpreter}` = python and
  `${program}` = the `program:` key. We call the same two SDK functions.

No GPU, no network and no wandb server is touched here; wandb is imported lazily (only the
command builder needs it) so the checks also run where wandb is not installed.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import platform
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from mae_gap.config import ConfigError, TrainConfig, choices, closest_hint, expected_type, parse_args, parse_key_value

# the default command of W&B's agent when a sweep has no `command:`
DEFAULT_SWEEP_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]
BLOCK_STYLE_HINT = (
    "write command: as a YAML block list, one `- ${env}` item per line "
    "(in flow style [${env}, ...] YAML reads `{` as a mapping)"
)


class SweepConfigError(ValueError):
    """A bad sweep YAML or override; the one-line message names the file, the key and the fix."""


# ----------------------------------------------------------------------------- loading


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read and parse a sweep YAML (PyYAML's safe loader, as `wandb sweep` does)."""
    import yaml

    path = str(path)
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise SweepConfigError(f"{path}: cannot read the sweep file ({exc.strerror or exc})") from None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        hint = f"; {BLOCK_STYLE_HINT}" if "${" in _line(text, mark) else ""
        raise SweepConfigError(f"{path}: not valid YAML{where}: {problem}{hint}") from None
    if not config:
        raise SweepConfigError(f"{path}: the sweep file is empty")
    if not isinstance(config, dict):
        raise SweepConfigError(f"{path}: a sweep config is a mapping (method:, parameters:, ...), got {_tname(config)}")
    return config


def _line(text: str, mark: Any) -> str:
    if mark is None:
        return text
    lines = text.splitlines()
    return lines[mark.line] if 0 <= mark.line < len(lines) else ""


# ----------------------------------------------------------------------------- checking


def _tname(value: Any) -> str:
    return {bool: "a boolean", int: "an int", float: "a float", str: "a string"}.get(
        type(value), f"a {type(value).__name__}"
    )


def _decimal(text: str) -> str | None:
    """'1e-4' -> '0.0001' (a spelling PyYAML reads as a float); None if not a number."""
    try:
        number = Decimal(text.strip().replace("_", ""))
    except InvalidOperation:
        return None
    if not number.is_finite():
        return None
    plain = format(number, "f")
    return plain if "." in plain else plain + ".0"


def check_value(name: str, value: Any, where: str) -> None:
    """One value of parameter `name` must have TrainConfig's type (ints are fine for floats).

    `where` prefixes the message, e.g. "sweeps/x.yaml: parameter lr".
    """
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    if name not in fields:
        raise SweepConfigError(f"{where.rsplit(' ', 1)[0]} {name} is not a TrainConfig field"
                               f"{closest_hint(name, fields, prefix='')}")
    want = expected_type(name)
    bad = f"{where} value {value!r} is {_tname(value)}"
    if want is bool:
        if not isinstance(value, bool):
            raise SweepConfigError(f"{bad}; expected a boolean: write true or false (unquoted)")
    elif want is int:
        if isinstance(value, bool) or not isinstance(value, int):
            plain = _decimal(value) if isinstance(value, str) else repr(value) if isinstance(value, float) else None
            whole = plain is not None and Decimal(plain) == Decimal(plain).to_integral_value()
            raise SweepConfigError(f"{bad}; write {int(Decimal(plain))}" if whole else f"{bad}; expected a whole number")
    elif want is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            plain = _decimal(value) if isinstance(value, str) else None
            raise SweepConfigError(f"{bad}; write {plain}" if plain else f"{bad}; expected a number such as 0.5")
    elif want is str:
        if not isinstance(value, str):
            raise SweepConfigError(f"{bad}; expected a string: quote it, '{value}'")
    allowed = choices(name)
    if allowed and value not in allowed:
        raise SweepConfigError(f"{where} value {value!r} is not one of {', '.join(map(str, allowed))}")


def parameter_values(config: dict[str, Any], path: str = "sweep") -> dict[str, list[Any]]:
    """`parameters:` -> {name: [values in listed order]} (a constant `value:` is a 1-list).

    Checks the grid shape (only `value:` / `values:`, no distributions, no nesting) and
    every value's type against TrainConfig.
    """
    params = config.get("parameters")
    if not isinstance(params, dict) or not params:
        raise SweepConfigError(f"{path}: parameters: must map each TrainConfig field to value: or values:")
    out: dict[str, list[Any]] = {}
    for name, spec in params.items():
        where = f"{path}: parameter {name}"
        if not isinstance(name, str):
            raise SweepConfigError(f"{path}: parameter name {name!r} is not a string")
        if not isinstance(spec, dict):
            raise SweepConfigError(f"{where} must be a mapping with value: or values:, got {spec!r}")
        if "parameters" in spec:
            raise SweepConfigError(f"{where}: nested parameters are not TrainConfig fields; use flat names")
        extra = sorted(set(spec) - {"value", "values", "distribution", "description"})
        if extra:
            raise SweepConfigError(f"{where}: {', '.join(extra)} is not a grid setting (a grid takes value: or values:)")
        dist = spec.get("distribution", "categorical" if "values" in spec else "constant")
        if dist not in ("categorical", "constant") or ("value" in spec) == ("values" in spec):
            raise SweepConfigError(f"{where} needs exactly one of value: or values: (a grid has no distributions)")
        if "values" in spec:
            values = spec["values"]
            if not isinstance(values, list) or not values:
                raise SweepConfigError(f"{where}: values: must be a non-empty list, got {values!r}")
        else:
            values = [spec["value"]]
        for value in values:
            check_value(name, value, where)
        out[name] = list(values)
    return out


def validate(
    config: dict[str, Any],
    path: str = "sweep",
    overrides: dict[str, Any] | None = None,
    grid_only: bool = True,
) -> dict[str, list[Any]]:
    """Check a loaded sweep config; returns its parameter values with `overrides` applied.

    Every grid point's `--key=value` argv is parsed by TrainConfig's own parser, exactly as
    agent.train will parse it, so a bad combination (img_size not a multiple of patch_size,
    ...) fails here, before any run starts. Raises SweepConfigError.
    """
    method = config.get("method")
    if method is None:
        raise SweepConfigError(f"{path}: method: is missing (these sweeps are method: grid)")
    if grid_only and method != "grid":
        raise SweepConfigError(
            f"{path}: method: {method} needs W&B's controller (wandb sweep + wandb agent); agent.local runs grid sweeps"
        )
    command = config.get("command")
    if command is not None:
        if not isinstance(command, list) or not all(isinstance(c, (str, int, float)) for c in command):
            raise SweepConfigError(f"{path}: command: must be a list of strings; {BLOCK_STYLE_HINT}")
        if not any(str(c) in ("${args}", "${args_no_hyphens}", "${args_json}", "${args_json_file}",
                               "${args_no_boolean_flags}", "${args_no_equals}", "${args_append_hydra}",
                               "${args_override_hydra}") for c in command):
            raise SweepConfigError(f"{path}: command: has no ${{args}}: the runs would not get their parameters")
    uses_program = command is None or any("${program}" in str(c) for c in command)
    if uses_program and not config.get("program"):
        raise SweepConfigError(f"{path}: program: is missing and the command uses ${{program}}")
    metric = config.get("metric")
    if metric is not None:
        if not isinstance(metric, dict) or not isinstance(metric.get("name"), str):
            raise SweepConfigError(f"{path}: metric: needs name: (e.g. val/probe_acc) and goal: maximize|minimize")
        if metric.get("goal", "minimize") not in ("maximize", "minimize"):
            raise SweepConfigError(f"{path}: metric goal {metric.get('goal')!r} is not maximize or minimize")
    for key in ("project", "entity", "name"):
        if key in config and not isinstance(config[key], str):
            raise SweepConfigError(f"{path}: {key}: must be a string, got {config[key]!r}")
    values = apply_overrides(parameter_values(config, path), overrides or {})
    for params in grid(values):  # every run's argv must parse exactly as agent.train will parse it
        try:
            parse_args(sweep_args(params)["args"])
        except ConfigError as exc:
            shown = ", ".join(f"{k}={v}" for k, v in params.items() if len(values[k]) > 1)
            raise SweepConfigError(f"{path}: run {{{shown}}}: {exc}") from None
    return values


# ----------------------------------------------------------------------------- overrides


def parse_override(text: str, where: str = "--set") -> tuple[str, Any]:
    """`key=value` -> (key, typed value) with TrainConfig's type (mae_gap.config.parse_key_value);
    raises SweepConfigError prefixed with `where`."""
    try:
        return parse_key_value(text)
    except ConfigError as err:
        raise SweepConfigError(f"{where} {err}") from None


def apply_overrides(values: dict[str, list[Any]], overrides: dict[str, Any]) -> dict[str, list[Any]]:
    """Each override replaces (or adds) that parameter with one value for every run."""
    out = dict(values)
    for key, value in overrides.items():
        out[key] = [value]
    return out


# ----------------------------------------------------------------------------- grid and commands


def grid(values: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """All grid points in W&B's order: names sorted, values as listed, last name fastest."""
    names = sorted(values)
    return [dict(zip(names, combo)) for combo in itertools.product(*(values[n] for n in names))]


def sweep_args(params: dict[str, Any]) -> dict[str, Any]:
    """The SDK's argument formats (`args`, `args_json`, ...) for one run's parameters."""
    from analysis.wandb_io.compat import sweep_command_functions

    return sweep_command_functions()[1]({"args": run_args(params)})


def as_sent(value: Any) -> Any:
    """A parameter value as W&B's service hands it to an agent: a whole-number float becomes an int
    (`--alpha=-10`, not `-10.0`). The service stores the run config as JSON text, where -10.0 reads
    back as -10 (W&B's sweep engine says so beside `grid_search.yaml_hash`, sweeps 0.3)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def run_args(params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A run's parameters in the form W&B's controller sends them: {name: {"value": v}}."""
    return {k: {"value": as_sent(v)} for k, v in params.items()}


def build_command(
    config: dict[str, Any],
    params: dict[str, Any],
    args_json_file: str = "",
    interpreter: str = "python",
) -> list[str]:
    """The argv `wandb agent` would run for these parameters (Agent._command_run, verbatim)."""
    from analysis.wandb_io.compat import sweep_command_functions

    create_sweep_command = sweep_command_functions()[0]
    command_template = config.get("command")
    if not (command_template and isinstance(command_template, list)):
        command_template = None
    # create_sweep_command fills ${envvar:X} macros in place: give it a copy
    sweep_command = create_sweep_command(list(command_template) if command_template else list(DEFAULT_SWEEP_COMMAND))
    sweep_vars: dict[str, Any] = dict(sweep_args(params))
    sweep_vars["interpreter"] = [interpreter]
    sweep_vars["program"] = [config.get("program")]
    sweep_vars["args_json_file"] = [args_json_file]
    if platform.system() != "Windows":
        sweep_vars["env"] = ["/usr/bin/env"]
    command_list: list[str] = []
    for c in sweep_command:
        c = str(c)
        if c.startswith("${") and c.endswith("}"):
            command_list += sweep_vars.get(c[2:-1]) or []
        else:
            command_list += [c]
    return command_list


# ----------------------------------------------------------------------------- GPUs


def count_gpus() -> int:
    """GPUs visible to this process: `nvidia-smi -L`, else torch.cuda.device_count(), else 0."""
    import shutil
    import subprocess

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        tokens = [t for t in visible.split(",") if t.strip()]
        if not tokens or tokens[0].strip() == "-1":
            return 0
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
            if out.returncode == 0:
                n = sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))
                if visible is not None:
                    n = min(n, len(tokens))
                if n:
                    return n
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        import torch

        return int(torch.cuda.device_count())
    except Exception:  # torch missing or a broken driver: no usable GPU
        return 0


def parse_gpus(text: str, tool: str) -> list[str]:
    """`all` or `0,1,2` -> device ids for CUDA_VISIBLE_DEVICES; raises SweepConfigError."""
    text = text.strip()
    if text == "all":
        n = count_gpus()
        if n == 0:
            other = "run `python -m agent.local`" if tool == "agent.launch" else "leave out --gpus to run on the CPU"
            raise SweepConfigError(
                f"--gpus all: no GPU visible (nvidia-smi -L and torch.cuda find none); pass --gpus 0,1 or {other}"
            )
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible:  # keep the caller's restriction: slot i uses the i-th visible device
            return [t.strip() for t in visible.split(",") if t.strip()][:n]
        return [str(i) for i in range(n)]
    ids = [t.strip() for t in text.split(",")]
    if not ids or any(not t or not (t.isdigit() or t.startswith(("GPU-", "MIG-"))) for t in ids):
        raise SweepConfigError(f"--gpus {text!r}: write all or comma-separated GPU indices such as 0,1,2")
    if len(set(ids)) != len(ids):
        raise SweepConfigError(f"--gpus {text!r}: a GPU is listed twice; use --per-gpu N for several per GPU")
    return ids


def relpath(path: str | os.PathLike) -> str:
    """A path relative to the current folder when it lies below it (for printed commands)."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(Path.cwd().resolve())) or "."
    except ValueError:
        return str(p)
