"""agent.local: W&B's grid order, wandb agent's commands and environment, and real runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from agent import local
from agent.local_plan import equivalence_key
from analysis.wandb_io.offline_runs import iter_wandb_records, read_offline_run
from agent.sweep_config import grid, load, validate
from conftest import FAKE_ENTITY, FAST_WANDB_AGENT

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = ROOT / "sweeps"


@pytest.fixture(autouse=True)
def isolated(isolated_wandb, monkeypatch):
    """No W&B state outside tmp_path, no network, no inherited sweep/run ids (conftest's
    isolated_wandb: W&B offline), and no inherited GPU choice."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def args_for(*argv: str):
    return local.build_parser().parse_args(list(argv))


def main(capsys, *argv: str):
    """agent.local's CLI in this process: (exit code, stdout, stderr)."""
    code = local.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def cli(*argv: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 60):
    return subprocess.run([sys.executable, "-m", "agent.local", *argv], cwd=cwd or ROOT, env=env or os.environ.copy(),
                          capture_output=True, text=True, timeout=timeout)


# ----------------------------------------------------------------------------- order and commands


def engine_order(config: dict) -> list[dict]:
    """The grid points in the order W&B's controller hands them out (sweeps.next_run)."""
    sweeps = pytest.importorskip("sweeps", reason="W&B's sweep engine (pip install --no-deps sweeps)")
    runs: list = []
    while True:
        nxt = sweeps.next_run(config, runs, validate=True)
        if nxt is None:
            return [{k: v["value"] for k, v in r.config.items()} for r in runs]
        runs.append(sweeps.SweepRun(name=f"r{len(runs)}", state=sweeps.RunState.finished, config=nxt.config))


@pytest.mark.parametrize("name", ["lr_alpha", "full_alpha", "smoke"])
def test_grid_order_is_the_sweeps_engines(name):
    config = load(SWEEPS / f"{name}.yaml")
    ours = grid(validate(config, name))
    theirs = engine_order(config)
    assert ours == theirs
    assert [list(p) for p in ours] == [list(p) for p in theirs]  # same key order too
    if name == "lr_alpha":  # names sorted, last name (lr) fastest, values in listed order
        assert [(p["alpha"], p["lr"]) for p in ours] == [
            (-0.5, 0.001), (-0.5, 0.0001), (0.0, 0.001), (0.0, 0.0001), (0.5, 0.001), (0.5, 0.0001)]


RECORD_ARGV = textwrap.dedent("""
    # Stands in for agent.train under the real `wandb agent` (python -m puts the cwd first on
    # sys.path): records the argv and the param file the agent wrote, and exits 0.
    import json, os, pathlib, sys
    out = pathlib.Path(os.environ["RECORD_DIR"]) / (os.environ["WANDB_RUN_ID"] + ".json")
    param = pathlib.Path(os.environ["WANDB_SWEEP_PARAM_PATH"])
    out.write_text(json.dumps({"argv": sys.argv[1:], "param_file": param.read_text(),
                               "param_path": str(param.relative_to(os.environ["WANDB_DIR"])),
                               "service": "WANDB_SERVICE" in os.environ}))
""")


def test_every_command_and_param_file_is_the_real_wandb_agents(fake_wandb, tmp_path):
    """The real `wandb agent` CLI against the fake service (grid points handed out by W&B's sweep
    engine, whole floats sent as ints as the service sends them) runs every grid point of
    full_alpha.yaml; agent.local plans the same runs in the same order with the same argv, param
    files and run environment. The agent's poll interval is cut from 5 s to 0.05 s (25 runs in
    seconds); nothing else of it is changed."""
    name = "full_alpha"
    sid = fake_wandb.add_sweep(FAKE_ENTITY, "twin", (SWEEPS / f"{name}.yaml").read_text())
    work, record = tmp_path / "work", tmp_path / "record"
    (work / "agent").mkdir(parents=True)
    record.mkdir()
    (work / "agent" / "__init__.py").write_text("")
    (work / "agent" / "train.py").write_text(RECORD_ARGV)
    env = dict(os.environ, RECORD_DIR=str(record), WANDB_DIR=str(tmp_path / "agent_dir"),
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    proc = subprocess.run([*FAST_WANDB_AGENT, f"{FAKE_ENTITY}/twin/{sid}"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    issued = fake_wandb.issued(sid)

    plan = local.make_plan(args_for(str(SWEEPS / f"{name}.yaml"), "--out", str(tmp_path / "local")))
    assert len(issued) == len(plan.runs) == len(grid(plan.values)), "every grid point runs under both"
    for cmd, run in zip(issued, plan.runs, strict=True):
        seen = json.loads((record / f"{cmd['run_id']}.json").read_text())
        assert run.command[:4] == ["/usr/bin/env", "python", "-m", "agent.train"]
        assert seen["argv"] == run.command[4:]
        from wandb.sdk.lib import config_util

        config_util.save_config_file_from_dict(str(plan.param_path(run)), local.run_args(run.params))
        assert plan.param_path(run).read_text() == seen["param_file"]
        assert str(plan.param_path(run).relative_to(plan.wandb_dir)) == seen["param_path"].replace(cmd["run_id"], run.run_id).replace(sid, plan.sweep_id)
        ours = plan.env(run)
        assert ours["WANDB_RUN_ID"] == run.run_id and ours["WANDB_SWEEP_PARAM_PATH"] == str(plan.param_path(run))
        assert "WANDB_SERVICE" not in ours and not seen["service"]
    # the 9 whole-number alphas of the 25 go out as ints (-10, -5, -2, -1, 0, 1, 2, 5, 10), as the service sends them
    whole = [a for run in plan.runs for a in run.command if a.startswith("--alpha=") and a[8:].lstrip("-").isdigit()]
    assert len(whole) == 9 and "--alpha=-10" in whole


@pytest.mark.parametrize("yaml_file", sorted(SWEEPS.glob("*.yaml")), ids=lambda p: p.stem)
def test_no_sweep_yaml_trains_a_point_twice(yaml_file):
    """`wandb agent` runs every grid point, so no YAML may hold two points that train the same thing."""
    keys = [equivalence_key(params) for params in grid(validate(load(str(yaml_file)), str(yaml_file), {}))]
    assert len(set(keys)) == len(keys)


def test_imagenette_cpu_arms_are_the_runs_of_the_committed_table():
    """The imagenette CPU study is two sweeps (grl alpha in {-1, 0, 1}; its confusion arm at alpha = -1)
    with the same settings and seeds; together they are exactly the 20 runs of the committed table."""
    import pandas as pd

    arms = [grid(validate(load(str(SWEEPS / f"{n}.yaml")), n, {})) for n in ("imagenette_cpu", "imagenette_cpu_confusion")]
    varied = {"alpha", "alpha_mode", "seed"}
    shared = [{k: v for k, v in p.items() if k not in varied} for arm in arms for p in arm]
    assert all(s == shared[0] for s in shared)
    points = sorted((float(p["alpha"]), p["alpha_mode"], p["seed"]) for arm in arms for p in arm)
    table = pd.read_csv(ROOT / "analysis" / "results" / "imagenette_cpu" / "trajectories.csv")
    runs = table.groupby("run_id")[["alpha", "alpha_mode", "seed"]].first()
    assert points == sorted(runs.itertuples(index=False, name=None)) and len(points) == 20


def equivalent_points_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "modes.yaml"
    config = load(str(SWEEPS / "smoke.yaml"))
    config["parameters"]["alpha"] = {"values": [-1.0, 0.0, 1.0]}
    config["parameters"]["alpha_mode"] = {"values": ["grl", "confusion"]}
    path.write_text(yaml.safe_dump(config))
    return path


def test_skip_equivalent_only_when_asked(tmp_path, capsys):
    """alpha x {grl, confusion}: all 6 points run by default (as under `wandb agent`); with
    --skip-equivalent the 2 where confusion at alpha >= 0 is grl are skipped, naming the run that
    trains them, and stay skipped on --resume; with --sweep-id the flag is refused."""
    sweep = equivalent_points_yaml(tmp_path)
    code, out, err = main(capsys, str(sweep), "--dry-run")
    assert code == 0, err
    assert len([ln for ln in out.splitlines() if ln.startswith("[")]) == 6

    code, out, err = main(capsys, str(sweep), "--dry-run", "--skip-equivalent")
    assert code == 0, err
    commands = [ln for ln in out.splitlines() if ln.startswith("[")]
    assert len(commands) == 4 and "6 run(s) (2 skipped: equivalent to an earlier point)" in out
    assert [c for c in commands if "--alpha_mode=confusion" in c] == [c for c in commands if "--alpha=-1 --alpha_mode=confusion" in c]

    plan = local.make_plan(args_for(str(sweep), "--skip-equivalent", "--out", str(tmp_path / "o")))
    by_point = {(r.params["alpha"], r.params["alpha_mode"]): r for r in plan.runs}
    assert by_point[(1.0, "confusion")].summary == {"skipped": f"trains what run {by_point[(1.0, 'grl')].run_id} trains"}
    plan.out_dir.mkdir(parents=True)
    plan.save()
    resumed = local.make_plan(args_for("--resume", str(tmp_path / "o")))
    assert [r.run_id for r in resumed.todo] == [r.run_id for r in plan.todo] and len(resumed.todo) == 4

    code, out, err = main(capsys, str(sweep), "--skip-equivalent", "--sweep-id", "team/proj/ab12cd34")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "drop --skip-equivalent with --sweep-id" in err


def test_set_overrides_every_run_and_rejects_unknown_keys(tmp_path, capsys):
    plan = local.make_plan(args_for(str(SWEEPS / "lr_alpha.yaml"), "--set", "epochs=2", "--set", "norm_pix_loss=false",
                                    "--out", str(tmp_path / "o")))
    assert len(plan.runs) == 6
    for run in plan.runs:
        assert "--epochs=2" in run.command and "--norm_pix_loss=False" in run.command  # as wandb formats booleans
        assert run.params["epochs"] == 2 and run.params["norm_pix_loss"] is False
    plan = local.make_plan(args_for(str(SWEEPS / "lr_alpha.yaml"), "--set", "alpha=0.25"))
    assert [r.params["lr"] for r in plan.runs] == [0.001, 0.0001]  # alpha pinned: the grid shrinks
    for bad, message in [("epoch=2", "did you mean epochs?"), ("epochs=2.5", "not a valid int"),
                         ("alpha_mode=x", "not one of grl, weighted"), ("epochs", "key=value")]:
        code, _out, err = main(capsys, str(SWEEPS / "smoke.yaml"), "--set", bad, "--dry-run")
        assert code == 2, err
        assert message in err and len(err.strip().splitlines()) == 1


def test_set_is_checked_against_the_whole_run_config(capsys):
    code, _out, err = main(capsys, str(SWEEPS / "smoke.yaml"), "--set", "img_size=30", "--dry-run")
    assert code == 2
    assert "img_size=30 is not a positive multiple of patch_size=4" in err
    assert main(capsys, str(SWEEPS / "smoke.yaml"), "--set", "img_size=24", "--dry-run")[0] == 0


def test_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SWEEP_ID", "stale")  # from an earlier agent: must not leak into runs
    plan = local.make_plan(args_for(str(SWEEPS / "smoke.yaml"), "--out", str(tmp_path / "o")))
    run = plan.runs[0]
    env = plan.env(run, gpu="1")
    assert env["WANDB_RUN_ID"] == run.run_id and len(run.run_id) == 8
    assert env["WANDB_SWEEP_PARAM_PATH"] == str(tmp_path / "o" / "wandb" / f"sweep-{plan.sweep_id}" / f"config-{run.run_id}.yaml")
    assert env["WANDB_DIR"] == str(tmp_path / "o")
    assert env["WANDB_MODE"] == "offline"
    assert env["WANDB_PROJECT"] == "mae-gap-smoke"
    assert env["WANDB_RUN_GROUP"] == f"smoke-{plan.sweep_id}"
    assert env["CUDA_VISIBLE_DEVICES"] == "1"
    assert "WANDB_SWEEP_ID" not in env  # a made-up id breaks `wandb sync` (sweep not found)
    assert env["PATH"].split(os.pathsep)[0] == os.path.dirname(sys.executable)
    assert len({r.run_id for r in plan.runs}) == len(plan.runs)

    plan = local.make_plan(args_for(str(SWEEPS / "smoke.yaml"), "--sweep-id", "team/proj/ab12cd34", "--online"))
    env = plan.env(plan.runs[0])
    assert (env["WANDB_SWEEP_ID"], env["WANDB_PROJECT"], env["WANDB_ENTITY"]) == ("ab12cd34", "proj", "team")
    assert env["WANDB_MODE"] == "offline"  # --online keeps the user's mode (offline in this test)
    assert plan.param_path(plan.runs[0]).parent.name == "sweep-ab12cd34"


def test_param_file_is_what_wandb_init_reads(tmp_path):
    from wandb.sdk.lib import config_util

    plan = local.make_plan(args_for(str(SWEEPS / "lr_alpha.yaml"), "--out", str(tmp_path / "o")))
    run = plan.runs[1]
    config_util.save_config_file_from_dict(str(plan.param_path(run)), local.run_args(run.params))
    loaded = config_util.dict_from_config_file(str(plan.param_path(run)), must_exist=True)
    assert loaded == run.params == {
        "alpha": -0.5, "batch_size": 64, "epochs": 10, "lr": 0.0001}


@pytest.mark.parametrize(
    "edit, message",
    [
        (("value: 0.00015", "values: [1e-4]"), "parameter lr value '1e-4' is a string; write 0.0001"),
        (("command:\n  - ${env}\n  - ${interpreter}\n  - -m\n  - agent.train\n  - ${args}\n",
          "command: [${env}, ${interpreter}, -m, agent.train, ${args}]\n"), "YAML block list"),
        (("method: grid", "method: bayes"), "method: bayes needs W&B's controller"),
        (("  epochs:\n    value: 10", "  epochs:\n    min: 1\n    max: 10"), "parameter epochs: max, min is not a grid setting"),
    ],
)
def test_bad_yaml_is_one_line_and_exit_2(tmp_path, capsys, edit, message):
    text = (SWEEPS / "quick.yaml").read_text()
    assert edit[0] in text
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace(*edit))
    code, out, err = main(capsys, str(bad), "--out", str(tmp_path / "out"))
    assert code == 2
    assert err.startswith(f"agent.local: error: {bad}") and message in err
    assert len(err.strip().splitlines()) == 1 and not out
    assert not (tmp_path / "out").exists()  # nothing started, nothing written


def test_bad_yaml_through_the_real_cli(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((SWEEPS / "quick.yaml").read_text().replace("value: 0.00015", "values: [1e-4]"))
    res = cli(str(bad))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr == f"agent.local: error: {bad}: parameter lr value '1e-4' is a string; write 0.0001\n"


def test_missing_file_and_bad_gpus(capsys):
    code, _out, err = main(capsys, "sweeps/nope.yaml")
    assert code == 2 and "cannot read the sweep file" in err
    code, _out, err = main(capsys, str(SWEEPS / "smoke.yaml"), "--gpus", "0,x")
    assert code == 2 and "GPU indices" in err


def test_dry_run_prints_commands_and_writes_nothing(tmp_path, capsys):
    code, out, err = main(capsys, str(SWEEPS / "lr_alpha.yaml"), "--dry-run", "--gpus", "0,1", "--out", str(tmp_path / "o"))
    assert code == 0, err
    lines = [ln for ln in out.splitlines() if ln.startswith("[")]
    assert len(lines) == 6
    assert [ln.split("CUDA_VISIBLE_DEVICES=")[1][0] for ln in lines] == list("010101")
    assert "--alpha=-0.5 --batch_size=64 --epochs=10 --lr=0.001" in lines[0]
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- real runs

FAKE_TRAIN = textwrap.dedent('''
    """Stand-in for agent.train: records argv/env, logs 3 epochs to a W&B offline run."""
    import json, os, sys, time
    args = dict(a[2:].split("=", 1) for a in sys.argv[1:])
    rec = {"argv": sys.argv[1:], "param_file": open(os.environ["WANDB_SWEEP_PARAM_PATH"]).read(),
           "env": {k: os.environ.get(k) for k in ("WANDB_RUN_ID", "WANDB_SWEEP_ID", "WANDB_MODE", "WANDB_DIR",
                                                  "WANDB_PROJECT", "WANDB_RUN_GROUP", "CUDA_VISIBLE_DEVICES")}}
    out = os.environ["FAKE_OUT"]
    path = os.path.join(out, os.environ["WANDB_RUN_ID"] + ".json")
    with open(path + ".tmp", "w") as fh:  # atomically: the test polls for these files
        json.dump(rec, fh)
    os.replace(path + ".tmp", path)
    print("fake train", sys.argv[1:], flush=True)
    if os.path.exists(os.path.join(out, "block")):
        time.sleep(120)
    if float(args["alpha"]) > 0.4:
        print("diverged: loss is nan", flush=True)
        sys.exit(3)
    import wandb
    run = wandb.init(config={"alpha": 0.0, "lr": 1.0})
    assert run.config["alpha"] == float(args["alpha"]), "the sweep param file sets the config"
    for epoch in range(1, 4):
        run.log({"epoch": epoch, "val/mse": 1.0 / epoch + float(args["alpha"]), "val/linear_acc": 0.25 * epoch})
    run.finish()
''')


def fake_sweep(tmp_path: Path, alphas="[-0.5, 0.0, 0.5]") -> Path:
    prog = tmp_path / "fake_train.py"
    prog.write_text(FAKE_TRAIN)
    sweep = tmp_path / "fake.yaml"
    sweep.write_text(textwrap.dedent(f"""\
        name: fake
        project: fake-project
        program: {prog}
        method: grid
        metric:
          name: val/linear_acc
          goal: maximize
        command:
          - ${{env}}
          - ${{interpreter}}
          - ${{program}}
          - ${{args}}
        parameters:
          alpha:
            values: {alphas}
          lr:
            value: 0.001
        """))
    (tmp_path / "fake-out").mkdir()
    return sweep


def test_end_to_end_with_a_fake_program(tmp_path):
    sweep = fake_sweep(tmp_path)
    env = dict(os.environ, FAKE_OUT=str(tmp_path / "fake-out"))
    out = tmp_path / "out"
    res = cli(str(sweep), "--out", str(out), cwd=tmp_path, env=env, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr  # a failed run is reported, not an error
    text = res.stdout
    assert "agent.local:" in text and "3 run(s)" in text and "W&B offline" in text
    for i in (1, 2, 3):
        assert f"[{i}/3] start" in text
    assert text.count("finished ") >= 2 and "failed" in text

    manifest = json.loads((out / "sweep.json").read_text())
    runs = manifest["runs"]
    assert [r["params"]["alpha"] for r in runs] == [-0.5, 0.0, 0.5]
    assert [r["state"] for r in runs] == ["finished", "finished", "failed"] and runs[2]["exit_code"] == 3
    assert runs[0]["summary"]["val/mse"] == pytest.approx(1 / 3 - 0.5)
    assert runs[1]["summary"]["val/linear_acc"] == pytest.approx(0.75)

    # the table: one row per run with state and final metrics
    table = text[text.index("\nrun ") + 1:]
    rows = {ln.split()[0]: ln for ln in table.splitlines()[2:5]}
    assert set(rows) == {r["run_id"] for r in runs}
    assert "finished" in rows[runs[1]["run_id"]] and "0.75" in rows[runs[1]["run_id"]]
    assert "failed (3)" in rows[runs[2]["run_id"]]
    assert "2/3 run(s) finished" in text
    assert f"wandb sync {out.name}/wandb/offline-run-*" in text
    assert f"python -m analysis.pull_and_plot --offline {out.name}/wandb" in text
    assert f"python -m agent.local --resume {out.name}" in text

    # each run: its own log, the agent's argv and environment, W&B's offline run folder
    for r in runs:
        rec = json.loads((tmp_path / "fake-out" / f"{r['run_id']}.json").read_text())
        alpha = r["params"]["alpha"]
        assert rec["argv"] == [f"--alpha={int(alpha) if float(alpha).is_integer() else alpha}", "--lr=0.001"]
        assert rec["env"]["WANDB_MODE"] == "offline" and rec["env"]["WANDB_PROJECT"] == "fake-project"
        assert rec["env"]["WANDB_DIR"] == str(out) and rec["env"]["WANDB_SWEEP_ID"] is None
        assert rec["env"]["WANDB_RUN_GROUP"] == f"fake-{manifest['sweep_id']}"
        assert yaml.safe_load(rec["param_file"])["alpha"] == {"value": r["params"]["alpha"]}
        assert "fake train" in Path(r["log"]).read_text()
    assert "diverged" in Path(runs[2]["log"]).read_text()
    run_dir = local.find_run_dir(out, runs[0]["run_id"])
    info = read_offline_run(run_dir)
    assert info["exit_code"] == 0 and info["group"] == f"fake-{manifest['sweep_id']}"
    assert info["config"]["alpha"] == -0.5 and info["config"]["lr"] == 0.001


def test_gpu_slots_ctrl_c_and_resume(tmp_path):
    sweep = fake_sweep(tmp_path, alphas="[-0.5, 0.0, 0.25]")
    env = dict(os.environ, FAKE_OUT=str(tmp_path / "fake-out"))
    (tmp_path / "fake-out" / "block").write_text("")  # the fake runs sleep
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "agent.local", str(sweep), "--out", str(out), "--gpus", "0,1"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while len(list((tmp_path / "fake-out").glob("*.json"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    recs = [json.loads(p.read_text()) for p in (tmp_path / "fake-out").glob("*.json")]
    assert sorted(r["env"]["CUDA_VISIBLE_DEVICES"] for r in recs) == ["0", "1"]  # one run per GPU, in parallel
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=40)
    assert proc.returncode == 130, stdout + stderr
    assert "stopping 2 running run" in stdout and "killed" in stdout and "Traceback" not in stderr
    manifest = json.loads((out / "sweep.json").read_text())
    assert [r["state"] for r in manifest["runs"]] == ["killed", "killed", "pending"]
    assert {r["env"]["WANDB_RUN_ID"] for r in recs} == {r["run_id"] for r in manifest["runs"][:2]}

    (tmp_path / "fake-out" / "block").unlink()
    res = cli("--resume", str(out), cwd=tmp_path, env=env, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    manifest2 = json.loads((out / "sweep.json").read_text())
    assert [r["run_id"] for r in manifest2["runs"]] == [r["run_id"] for r in manifest["runs"]]  # same ids
    assert [r["state"] for r in manifest2["runs"]] == ["finished", "finished", "finished"]


def test_read_offline_run_survives_a_truncated_file(tmp_path):
    good = tmp_path / "run-x.wandb"
    good.write_bytes(b":W&B\xe1\xbe\x00" + b"\x00" * 3 + b"\xff\x7f\x01" + b"abc")  # a chunk cut short
    assert list(iter_wandb_records(good)) == []
    assert read_offline_run(tmp_path)["summary"] == {}


@pytest.mark.slow
def test_agent_local_reads_summaries_without_pandas():
    code = "import sys, agent.local; assert 'pandas' not in sys.modules, 'agent.local imported pandas'"
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
