"""analysis.wandb_io.compat against the fake service and a service that never answers."""

from __future__ import annotations

import socket
import time

import pytest

pytest.importorskip("wandb")

from analysis.wandb_io.compat import run_stop_requested  # noqa: E402


def test_stop_status_comes_from_the_service(fake_wandb):
    """The real SDK query (LaunchApi.check_stop_requested) reads the fake's RunStoppedStatus."""
    run = fake_wandb.add_run(fake_wandb.entity, "p", "r1", config={"alpha": 0.0})
    assert run_stop_requested(fake_wandb.entity, "p", "r1") is False
    fake_wandb.stop_run("r1")
    assert run_stop_requested(fake_wandb.entity, "p", "r1") is True
    assert run.stop_requested


def test_stop_status_of_a_service_that_never_answers_is_unknown_within_its_bound(isolated_wandb, monkeypatch):
    with socket.socket() as stalled:  # accepts connections (the kernel does), never answers
        stalled.bind(("127.0.0.1", 0))
        stalled.listen(16)
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{stalled.getsockname()[1]}")
        monkeypatch.setenv("WANDB_API_KEY", "f" * 40)
        t0 = time.monotonic()
        assert run_stop_requested("e", "p", "r1", timeout_s=2.0) is None
        assert time.monotonic() - t0 < 5.0
