#!/usr/bin/env bash
# Install the project with its test tools into a venv and run the tests (the README's test command;
# .ci/run calls it once per CI leg). CPU only, no network beyond the package index.
#
#   bash tests/run.sh                                   # ./.venv, the newest releases
#   VENV=.venv-floor bash tests/run.sh -c .ci/floor.txt # extra arguments go to pip (CI's floor leg)
#   PYTEST_ARGS="-m 'not slow'" bash tests/run.sh       # arguments for pytest
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-.venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
py="$venv/bin/python"
"$py" -m pip install -q --upgrade pip
"$py" -m pip install -q "$@" -e ".[dev]"
# W&B's sweep engine, the tests' reference for sweep schemas and grid order. It pins numpy<2 but
# runs on numpy 2, so it goes in without its dependencies (its others are in the dev extra).
"$py" -m pip install -q --no-deps "sweeps==0.3.0"
"$py" -c "import sweeps, jsonschema, jsonref" || { echo "W&B's sweep engine did not install" >&2; exit 1; }
"$py" -c "from importlib.metadata import version as v; print(*(f'{p} {v(p)}' for p in ('torch', 'wandb', 'wandb-workspaces', 'pytorch-lightning')), sep=' | ')"
eval "\"$py\" -m pytest -q ${PYTEST_ARGS:-}"
