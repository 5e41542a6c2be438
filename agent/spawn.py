"""Starting a child process (a training run, a `wandb agent`) with its output in a log file.

    proc, log = spawn(cmd, env, "logs/run.log", ["agent.local run abc of sweep xyz", "command: ..."])

The log is opened for appending; each header line is written first as "# <line>" (readers of the
log skip lines starting with "# "). The child gets no stdin, its stdout and stderr go to the log,
and it runs in its own process group: a terminal's Ctrl-C does not reach it directly (the parent
forwards or sends signals itself, and can signal the whole group: `os.killpg(proc.pid, sig)`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any


def spawn(cmd: Sequence[str], env: Mapping[str, str], log: str | os.PathLike,
          header: Iterable[str] = ()) -> tuple[subprocess.Popen, IO[bytes]]:
    """(the started process, its open log file: close it when the process ended).

    If the command cannot be started, "# could not start: <error>" ends the log, the log is
    closed and the OSError is raised.
    """
    path = Path(log)
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "ab")
    for line in header:
        fh.write(f"# {line}\n".encode())
    fh.flush()
    kwargs: dict[str, Any] = {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}
    try:
        proc = subprocess.Popen(list(cmd), env=dict(env), stdin=subprocess.DEVNULL, stdout=fh,
                                stderr=subprocess.STDOUT, **kwargs)
    except OSError as exc:
        fh.write(f"# could not start: {exc}\n".encode())
        fh.close()
        raise
    return proc, fh
