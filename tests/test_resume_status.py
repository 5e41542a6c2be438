"""The real wandb 0.31 client resuming an online run from the fake's RunResumeStatus answer, what a run
tells the server when it is marked preempting and ends (file stream ``preempting``/``exitcode``), and a
stop from the UI sent through the public API (``StopRun``)."""

from __future__ import annotations

import pytest

from conftest import FAKE_ENTITY, serve_fake_wandb

wandb = pytest.importorskip("wandb")

ROWS = [{"epoch": e, "loss": 1.0 / e} for e in range(1, 6)]  # _step 0..4
SUMMARY = {"epoch": 5, "failure/reason": "non-finite loss", "failure/deterministic": True}


def _init(**kw):
    settings = wandb.Settings(init_timeout=30, x_disable_stats=True, console="off")
    return wandb.init(project="p", settings=settings, **kw)


@pytest.fixture
def fake(monkeypatch, tmp_path):
    with serve_fake_wandb(monkeypatch, tmp_path) as server:
        yield server


def test_resume_reads_stored_run(fake):
    stored = fake.add_run(FAKE_ENTITY, "p", "r1", config={"alpha": -0.5, "lr": 1e-3}, summary=SUMMARY,
                          history_rows=ROWS, state="preempted")
    run = _init(id="r1", resume="allow", config={"alpha": 0.25, "new": 1})
    ask = next(r for r in fake.request_log if r.op == "RunResumeStatus")
    assert ask.variables == {"project": "p", "entity": None, "name": "r1"}
    assert "wandbConfig(keys: [\"t\"])" in ask.query and "historyTail" in ask.query
    assert run.resumed is True
    assert run.starting_step == 5  # max(last _step 4, historyLineCount 5 - 1) + 1
    assert {k: run.summary[k] for k in SUMMARY} == SUMMARY
    # init's config wins; keys only the stored run has are added
    assert dict(run.config) == {"alpha": 0.25, "new": 1, "lr": 1e-3}
    run.log({"epoch": 6, "loss": 0.1})
    assert run.step == 6
    run.finish()
    assert [r["_step"] for r in stored.history] == [0, 1, 2, 3, 4, 5]
    assert stored.history[-1]["epoch"] == 6


def test_resume_from_environment(fake, monkeypatch):
    """`wandb agent` sets only WANDB_RUN_ID; WANDB_RESUME=allow (or resume= in wandb.init) must come
    from the program."""
    fake.add_run(FAKE_ENTITY, "p", "r2", summary={"epoch": 2}, history_rows=ROWS[:2])
    monkeypatch.setenv("WANDB_RUN_ID", "r2")
    monkeypatch.setenv("WANDB_RESUME", "allow")
    run = _init()
    assert (run.id, run.resumed, run.starting_step, run.summary["epoch"]) == ("r2", True, 2, 2)
    run.finish()


@pytest.mark.parametrize("stored_state", [None, "pending"])
def test_missing_or_unstarted_run_starts_fresh(fake, stored_state):
    """No bucket, or a bucket whose wandbConfig has no "t" (a sweep run handed out, never started):
    resume="allow" starts a new run under that id."""
    if stored_state:
        fake.add_run(FAKE_ENTITY, "p", "r3", state=stored_state)
    run = _init(id="r3", resume="allow")
    assert (run.resumed, run.starting_step, dict(run.summary)) == (False, 0, {})
    run.finish()
    assert fake.get_run(FAKE_ENTITY, "p", "r3").telemetry  # now started: a later resume finds it


def test_malformed_answer_fails_init(fake, monkeypatch):
    fake.add_run(FAKE_ENTITY, "p", "r4", history_rows=ROWS)
    answer = fake._op_RunResumeStatus

    def no_tail(q, v):
        out = answer(q, v)
        out["model"]["bucket"]["historyTail"] = None
        return out

    monkeypatch.setattr(fake, "_op_RunResumeStatus", no_tail)
    with pytest.raises(wandb.Error, match="no history tail found"):
        _init(id="r4", resume="allow")


@pytest.mark.parametrize(("finish_code", "state"), [(1, "preempted"), (0, "finished")])
def test_preempting_then_exit_code(fake, finish_code, state):
    """mark_preempting() -> file stream `"preempting": true`; finish(exit_code) -> `complete` + `exitcode`
    (UpsertBucket never carries a state)."""
    run = _init(id=f"m{finish_code}", resume="allow")
    run.mark_preempting()
    run.log({"loss": float("nan")})
    run.finish(exit_code=finish_code)
    stored = fake.get_run(FAKE_ENTITY, "p", f"m{finish_code}")
    assert {"preempting": True} in stored.file_stream
    assert stored.file_stream[-1] == {"complete": True, "exitcode": finish_code}
    assert all(u["state"] is None for u in stored.upserts)
    assert stored.state == state


@pytest.mark.parametrize(("survives", "state"), [(False, "failed"), (True, "preempted")])
def test_unmarked_resumed_attempt(monkeypatch, tmp_path, survives, state):
    """The attempt after a preemption does not call mark_preempting() and exits 1: whether W&B keeps the
    earlier mark is not documented; the fake plays either (``preempting_survives_resume``)."""
    from fake_wandb import FakeWandb

    server = FakeWandb(entity=FAKE_ENTITY, preempting_survives_resume=survives)
    with serve_fake_wandb(monkeypatch, tmp_path, server) as fake:
        run = _init(id="u1", resume="allow")
        run.mark_preempting()
        run.log({"epoch": 1})
        run.finish(exit_code=143)
        assert fake.get_run(FAKE_ENTITY, "p", "u1").state == "preempted"
        run = _init(id="u1", resume="allow")
        assert (run.resumed, run.starting_step) == (True, 1)
        run.finish(exit_code=1)
        assert fake.get_run(FAKE_ENTITY, "p", "u1").state == state


def test_a_ui_stop_through_the_public_api(fake):
    """`Run.stop()` (wandb 0.31: wandb-core sends `StopRun` with the run's storage id, what the UI's Stop
    button sends) sets the run's stopped flag: the service then answers `RunStoppedStatus` (what
    agent.train asks on a SIGTERM) and every file-stream answer with it (what wandb-core's stop checker
    reads; tests/test_agent_e2e.py shows the agent's stop command and the run's end)."""
    from analysis.wandb_io.compat import run_stop_requested

    run = _init(id="s1", resume="allow")
    assert run_stop_requested(FAKE_ENTITY, "p", "s1", timeout_s=20) is False
    wandb.Api().run(f"{FAKE_ENTITY}/p/s1").stop()
    stored = fake.get_run(FAKE_ENTITY, "p", "s1")
    assert stored.stop_requested
    (ask,) = [r for r in fake.request_log if r.op == "StopRun"]
    assert ask.variables == {"id": stored.storage_id} and "stopRun(input: {id:$id})" in ask.query
    assert run_stop_requested(FAKE_ENTITY, "p", "s1", timeout_s=20) is True
    assert fake.file_stream(FAKE_ENTITY, "p", "s1", {})["stopped"] is True
    run.finish()
