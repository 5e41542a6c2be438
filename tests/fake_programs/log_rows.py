"""A tiny sweep program for the fake-W&B agent test.

Starts a run (the agent's environment decides the mode; the tests run children
offline), logs two history rows built from the parameters it received, and
writes what it saw (argv, run config, run id, WANDB_* environment, run dir) to
``$FAKE_PROGRAM_OUT/<run_id>.json`` so the test can check how ``wandb agent``
launched it.
"""

from __future__ import annotations

import json
import os
import sys

import wandb


def main() -> int:
    run = wandb.init()
    config = {k: v for k, v in dict(run.config).items() if not k.startswith("_")}
    alpha = float(config.get("alpha", 0.0))
    for epoch in (1, 2):
        run.log({"epoch": epoch, "alpha": alpha, "val/mse": 1.0 / epoch + alpha})
    record = {
        "argv": sys.argv[1:],
        "executable": sys.executable,
        "config": config,
        "run_id": run.id,
        "run_dir": os.path.dirname(run.dir),
        "offline": bool(run.offline),
        "env": {
            k: v
            for k, v in os.environ.items()
            if k.startswith("WANDB_") and k != "WANDB_API_KEY"
        },
    }
    run.finish()
    out = os.environ.get("FAKE_PROGRAM_OUT")
    if out:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, f"{record['run_id']}.json"), "w") as fh:
            json.dump(record, fh, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
