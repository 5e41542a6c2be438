"""W&B isolation shared by the tests: each test gets its own W&B folders and none of the
developer's W&B settings, and (where it asks) the fake W&B backend of tests/fake_wandb.py with
this process's wandb pointed at it.

* `isolated_wandb_env(tmp_path, ...)`: the environment for a subprocess (a dict).
* `isolate_wandb(monkeypatch, tmp_path, ...)`: the same applied to this process, undone after the test;
  fixture `isolated_wandb`.
* `serve_fake_wandb(monkeypatch, tmp_path, server)`: a started fake with this process's wandb
  pointed at it, torn down after; fixture `fake_wandb`.
* `wandb_pointed_at(monkeypatch, tmp_path, server)`: this process's wandb pointed at a fake that is
  already running (a test whose children use it asks it something through the real client).

Test modules import the functions (`from conftest import ...`) where they need other settings.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fake_wandb import FakeWandb



def wandb_agent_polling_every(seconds: float) -> list[str]:
    """The real `wandb agent` CLI (`... SWEEP` to append), its poll interval (5 s in wandb 0.31's
    `Agent.POLL_INTERVAL`) cut to `seconds`, nothing else of it changed: for tests that check what
    it does, not how long it waits between heartbeats."""
    code = (f"import sys; from wandb import wandb_agent; wandb_agent.Agent.POLL_INTERVAL = {seconds!r}; "
            "from wandb.cli.cli import cli; sys.exit(cli())")
    return [sys.executable, "-c", code, "agent"]


FAST_WANDB_AGENT = wandb_agent_polling_every(0.05)  # runs that exit at once: seconds for a whole grid
FAKE_ENTITY = "fake-team"  # the entity the fake_wandb fixture's server answers for
# Removed from the inherited environment: every W&B setting (mode, entity, project, sweep and
# run ids, service, retry settings, ...) and this project's own (MAE_GAP_CACHE).
LEAKY_PREFIXES = ("WANDB_", "MAE_GAP_")
# Per-test folders, each named after its variable: <tmp_path>[/<sub>]/wandb_dir, ...
FOLDER_VARS = ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "MAE_GAP_CACHE")


def isolated_wandb_env(
    tmp_path: Path,
    *,
    sub: str = "",
    wandb_dir: Path | None = None,
    mode: str | None = "offline",
    **extra: str,
) -> dict[str, str]:
    """A copy of os.environ for a subprocess, with W&B isolated in tmp_path.

    No inherited WANDB_* / MAE_GAP_* variable; WANDB_DIR, WANDB_CACHE_DIR, WANDB_CONFIG_DIR,
    WANDB_DATA_DIR and MAE_GAP_CACHE are folders (created) named after the variable in
    tmp_path/sub (`wandb_dir` gives WANDB_DIR another place); WANDB_SILENT=true;
    WANDB_MODE=mode (None: left unset). `extra` variables are set last.
    """
    root = Path(tmp_path, sub)
    env = {k: v for k, v in os.environ.items() if not k.startswith(LEAKY_PREFIXES)}
    for var in FOLDER_VARS:
        path = Path(wandb_dir) if var == "WANDB_DIR" and wandb_dir is not None else root / var.lower()
        path.mkdir(parents=True, exist_ok=True)
        env[var] = str(path)
    env["WANDB_SILENT"] = "true"
    if mode is not None:
        env["WANDB_MODE"] = mode
    env.update(extra)
    return env


def isolate_wandb(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **kw) -> dict[str, str]:
    """isolated_wandb_env(tmp_path, **kw) applied to this process's environment (monkeypatch
    restores it after the test); returns that environment."""
    env = isolated_wandb_env(tmp_path, **kw)
    for var in [v for v in os.environ if v not in env]:
        monkeypatch.delenv(var)
    for var, value in env.items():
        if os.environ.get(var) != value:
            monkeypatch.setenv(var, value)
    return env


@contextlib.contextmanager
def wandb_pointed_at(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, server: FakeWandb, **kw) -> Iterator[FakeWandb]:
    """This process's wandb pointed at the started `server` (WANDB_BASE_URL, WANDB_API_KEY) in an
    isolated W&B environment (isolate_wandb's `kw`; WANDB_MODE unset) with a fresh wandb-core, torn
    down on exit (the server keeps running)."""
    import wandb

    isolate_wandb(monkeypatch, tmp_path, **{"mode": None, **kw})
    for var, value in server.env().items():
        monkeypatch.setenv(var, value)
    teardown_wandb()  # fresh settings singleton + wandb-core for this environment
    try:
        yield server
    finally:
        teardown_wandb()


def teardown_wandb(patience_s: float = 20.0) -> None:
    """`wandb.teardown()`, bounded. Now and then wandb 0.31's wandb-core loses its client's
    connection (its core-debug log: "processOutgoingData: flush error ... broken pipe"), never hears
    the teardown and stays up until its 10-minute idle timeout while `wandb.teardown()` waits for it
    to exit (seen in CI as a 600 s test timeout). After `patience_s` this process's wandb-core is
    killed, which ends that wait."""
    import signal
    import threading

    import wandb

    killed: list[int] = []

    def kill_cores() -> None:
        for pid in _children(os.getpid()):
            with contextlib.suppress(OSError):
                if b"wandb-core" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)

    timer = threading.Timer(patience_s, kill_cores)
    timer.daemon = True
    timer.start()
    try:
        wandb.teardown()
    except SystemExit:  # wandb.teardown exits with wandb-core's exit code (-9 once it was killed)
        if not killed:
            raise
    finally:
        timer.cancel()


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@contextlib.contextmanager
def serve_fake_wandb(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, server: FakeWandb | None = None,
                     **kw) -> Iterator[FakeWandb]:
    """`server` (default: a FakeWandb for FAKE_ENTITY) started, with this process's wandb pointed
    at it (`wandb_pointed_at`); torn down and stopped on exit."""
    server = (FakeWandb(entity=FAKE_ENTITY) if server is None else server).start()
    try:
        with wandb_pointed_at(monkeypatch, tmp_path, server, **kw):
            yield server
    finally:
        server.stop()


@pytest.fixture
def isolated_wandb(monkeypatch, tmp_path) -> dict[str, str]:
    """This test's own W&B folders, W&B offline and silent, no inherited W&B settings."""
    return isolate_wandb(monkeypatch, tmp_path)


@pytest.fixture
def fake_wandb(monkeypatch, tmp_path) -> Iterator[FakeWandb]:
    """A started FakeWandb (entity FAKE_ENTITY) with this process's wandb pointed at it."""
    pytest.importorskip("wandb")
    with serve_fake_wandb(monkeypatch, tmp_path) as server:
        yield server
