"""The same sweep read two ways gives the same tidy table: offline files vs the W&B API.

`python -m agent.local sweeps/smoke.yaml` (a real subprocess: the embedded controller and three
real `agent.train` runs, W&B offline) leaves offline runs; `analysis.pull.offline.load_offline_runs` reads
them. The same runs (ids, configs, summaries, states, histories) served by the fake W&B backend
(tests/fake_wandb.py, 127.0.0.1) under one sweep id and pulled with `analysis.pull.pull_sweep`
through the real `wandb.Api()` must give the identical table: no column differs.
CPU only, no network, isolated W&B folders.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from conftest import isolated_wandb_env, serve_fake_wandb  # noqa: E402
from fake_wandb import FakeWandb  # noqa: E402

from analysis import RUN_ID, TIDY_COLUMNS  # noqa: E402
from mae_gap.metrics import EPOCH
from analysis.pull.offline import load_offline_runs, offline_state  # noqa: E402
from agent.local import find_run_dir  # noqa: E402
from analysis.wandb_io.offline_runs import offline_wandb_state, read_offline_run, run_folders  # noqa: E402
from analysis.pull.api import pull_sweep  # noqa: E402
from analysis.pull.runs import tidy_state  # noqa: E402
from analysis.pull.selection import select_runs  # noqa: E402
from mae_gap import metrics as M  # noqa: E402

wandb = pytest.importorskip("wandb")
pytestmark = pytest.mark.slow  # three real training runs

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "sweeps" / "smoke.yaml"
ENTITY, PROJECT = "fake-team", "mae-gap-smoke"
OVERRIDES = {"epochs": 2, "train_limit": 128, "val_limit": 64}


def smoke_points() -> list[dict]:
    """sweeps/smoke.yaml's grid with the overrides, read straight from the YAML: alpha is its
    one swept parameter, the rest are constants."""
    params = yaml.safe_load(SMOKE.read_text())["parameters"]
    swept = [name for name, spec in params.items() if "values" in spec]
    assert swept == ["alpha"], swept
    constants = {name: spec["value"] for name, spec in params.items() if "value" in spec}
    return [{**constants, **OVERRIDES, "alpha": a} for a in params["alpha"]["values"]]


def run_agent_local(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    # W&B isolated in tmp_path (agent.local gives its runs WANDB_DIR=out and WANDB_MODE=offline).
    env = isolated_wandb_env(
        tmp_path, CUDA_VISIBLE_DEVICES="",
        OMP_NUM_THREADS="1",  # spinning OpenMP threads crawl on a shared 2-core box
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
    )
    sets = [arg for k, v in OVERRIDES.items() for arg in ("--set", f"{k}={v}")]
    res = subprocess.run([sys.executable, "-m", "agent.local", str(SMOKE), *sets, "--out", str(out)],
                         cwd=REPO, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    assert "3/3 run(s) finished" in res.stdout, res.stdout[-4000:]
    return out


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """A started FakeWandb, with this process's wandb pointed at it and its own W&B folders
    (in tmp_path/api: apart from the agent.local subprocess's)."""
    with serve_fake_wandb(monkeypatch, tmp_path, FakeWandb(entity=ENTITY), sub="api") as server:
        yield server


def test_agent_local_offline_runs_and_the_same_runs_through_the_api_give_one_table(tmp_path, fake):
    out = run_agent_local(tmp_path)
    manifest = json.loads((out / "sweep.json").read_text())

    # Three offline runs: the three grid points, every SPEC section 4 key every epoch.
    folders = sorted((out / "wandb").glob("offline-run-*"))
    infos = {info["run_id"]: info for info in map(read_offline_run, folders)}
    assert len(folders) == len(infos) == 3
    assert [r["run_id"] for r in manifest["runs"]] == list(infos)  # one start each, in grid order
    for run, grid in zip(manifest["runs"], smoke_points(), strict=True):
        info = infos[run["run_id"]]
        assert info["exit_code"] == 0 and run["state"] == "finished"
        assert run["summary"][M.EPOCH] == 2 and run["summary"][M.VAL_MSE] == info["history"][-1][M.VAL_MSE]
        assert {k: info["config"][k] for k in grid} == grid, "the run's config is its grid point"
        assert info["group"] == manifest["group"] and info["project"] == PROJECT
        assert [row[EPOCH] for row in info["history"]] == [1, 2]
        for row in info["history"]:
            assert set(M.EPOCH_KEYS) <= set(row), sorted(set(M.EPOCH_KEYS) - set(row))
            assert all(math.isfinite(row[k]) for k in M.EPOCH_KEYS), row  # knn_every=1 in smoke.yaml

    offline = load_offline_runs(out)
    assert offline.sweep == manifest["group"] and offline.duplicate_epochs == {}
    table = load_offline_runs(out / "wandb").table
    pd.testing.assert_frame_equal(table, offline.table)
    assert len(table) == 6 and list(table.columns) == list(TIDY_COLUMNS)

    # The same runs on the (fake) W&B server, in one sweep: ids, configs, summaries, states,
    # histories exactly as the offline files hold them (wandb sync would upload the same).
    sid = fake.add_sweep(ENTITY, PROJECT, SMOKE.read_text(), sweep_id=manifest["sweep_id"])
    for run in offline.runs:
        info = infos[run.run_id]
        fake.add_run(ENTITY, PROJECT, run.run_id, config=info["config"], summary=info["summary"],
                     state=run.state, history_rows=info["history"], sweep_id=sid,
                     display_name=info["run_name"])
    pulled = pull_sweep(f"{ENTITY}/{PROJECT}/{sid}", tmp_path / "pull")
    assert pulled.source == "api" and sorted(pulled.pulled) == sorted(infos)
    assert [r.state for r in pulled.runs] == ["finished"] * 3

    def tidy(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.sort_values([RUN_ID, EPOCH]).reset_index(drop=True)

    # Every column is the same, values and dtypes: none legitimately differs.
    pd.testing.assert_frame_equal(tidy(pulled.table), tidy(table), check_exact=True)


def write_run_file(folder: Path, run_id: str, exit_code: int | None = None, preempting: bool = False) -> Path:
    """A minimal `run-<id>.wandb` (run record, optional preempting and exit records) in `folder`."""
    import struct
    import zlib

    from analysis.wandb_io.compat import record_protos

    pb = record_protos()
    recs = [pb.Record()]
    recs[0].run.run_id = run_id
    if preempting:
        recs.append(pb.Record())
        recs[-1].preempting.SetInParent()
    if exit_code is not None:
        recs.append(pb.Record())
        recs[-1].exit.exit_code = exit_code
    data = b":W&B\xe1\xbe\x00"
    for rec in recs:
        body = rec.SerializeToString()
        data += struct.pack("<IHB", zlib.crc32(body, zlib.crc32(b"\x01")) & 0xFFFFFFFF, len(body), 1) + body
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"run-{run_id}.wandb").write_bytes(data)
    return folder


def test_run_folders_follow_wandbs_names_and_order(tmp_path):
    """`<mode>-<time>-<id>[-<n>]` (wandb_settings.sync_dir, wandb_init.set_sync_dir_suffix): the id is
    the one of the run file inside, so `-<n>` and ids with dashes are told apart; oldest first."""
    w = tmp_path / "wandb"
    earlier = write_run_file(w / "offline-run-20260101_115959-ab", "ab")
    same_second = write_run_file(w / "offline-run-20260101_120000-ab", "ab")
    suffixed = write_run_file(w / "offline-run-20260101_120000-ab-1", "ab", exit_code=0)
    dashed = write_run_file(w / "offline-run-20260101_120000-ab-2x", "ab-2x")
    online = write_run_file(w / "run-20260101_120500-ab", "ab")
    (w / "latest-run").symlink_to(suffixed)
    assert run_folders(tmp_path, "ab") == run_folders(w, "ab") == [earlier, same_second, suffixed, online]
    assert run_folders(tmp_path, "ab-2x") == [dashed] and run_folders(tmp_path, "b") == []
    assert len(run_folders(tmp_path)) == 5
    assert find_run_dir(tmp_path, "ab") == online and find_run_dir(tmp_path, "zz") is None  # agent.local's
    assert read_offline_run(suffixed)["exit_code"] == 0


@pytest.mark.parametrize("exit_code, preempting, wandb_state, tidy, raw", [
    (0, False, "finished", "finished", "finished"),
    (0, True, "finished", "finished", "finished"),
    (143, False, "preempted", "crashed", "preempted (exit code 143)"),
    (130, True, "preempted", "crashed", "preempted (exit code 130)"),
    (1, True, "preempted", "crashed", "preempted (exit code 1)"),  # W&B: non-zero exit while preempting
    (1, False, "failed", "failed", "failed (exit code 1)"),
    (None, True, "preempted", "crashed", "preempted (no exit record)"),
    (None, False, "crashed", "crashed", "crashed (no exit record)"),
])
def test_offline_state_is_the_state_wandb_gives(tmp_path, exit_code, preempting, wandb_state, tidy, raw):
    folder = write_run_file(tmp_path / "wandb" / "offline-run-20260101_120000-r1", "r1", exit_code, preempting)
    info = read_offline_run(folder)
    assert info["preempting"] is preempting
    assert offline_wandb_state(info) == wandb_state and tidy_state(wandb_state) == tidy  # = the API path's mapping
    assert offline_state(info) == (tidy, raw)
    result = load_offline_runs(tmp_path)
    (run,) = result.runs
    assert (run.state, run.wandb_state) == (tidy, raw)
    _, exclusions = select_runs(result.table, "val/linear_acc", "val/mse", runs=result.runs)
    assert [e.reason for e in exclusions] == (
        ["no history (no epoch was logged)"] if tidy == "finished" else [f"{tidy} (W&B state {raw})"])

