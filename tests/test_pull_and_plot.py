"""The analysis CLI (python -m analysis.pull_and_plot) end to end: fake W&B backend (real
wandb.Api()), offline runs, W&B offline upload, report spec, bad input. CPU, no network."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from test_pull import (  # noqa: E402
    ALPHAS,
    ENTITY,
    PROJECT,
    _json_rows,
    epoch_rows,
    fake,  # noqa: F401 - fixture
    write_offline_runs,
)
from test_report import panels_of, report_fake, runset_filters  # noqa: E402,F401

from analysis import RUN_ID, TIDY_COLUMNS  # noqa: E402
from analysis.wandb_io.offline_runs import find_offline_run_files, read_offline_run  # noqa: E402
from analysis.pull_and_plot import build_parser, main  # noqa: E402
from mae_gap import metrics as M  # noqa: E402

wandb = pytest.importorskip("wandb")

PNGS = ("tube_scatter_signed_alpha.png", "alpha_vs_final_metrics.png",
        "negative_vs_positive_comparison.png", "lr_alpha_scatter.png", "matched_mse_accuracy.png")


def one_line_error(capsys, argv) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 1, err
    assert len(err.splitlines()) == 1 and err.startswith("analysis.pull_and_plot: error: "), err
    return err


def messy_sweep(fake):
    """10 runs on a 2-lr grid: 5 good ones, and one each of crashed, failed, running, missing
    val/linear_acc, and a duplicate of a good run's grid point."""
    sid = fake.add_sweep(ENTITY, PROJECT, {"method": "grid", "parameters": {
        "alpha": {"values": ALPHAS[:8]}, "lr": {"values": [1e-3, 1e-4]}}})
    specs = [  # (name, alpha, lr, state, rows, summary)
        ("good-0", -1.0, 1e-3, "finished", epoch_rows(0, 6), {}),
        ("good-1", -0.01, 1e-4, "finished", epoch_rows(1, 6), {}),
        ("good-2", 0.0, 1e-3, "finished", epoch_rows(2, 6), {}),
        ("good-3", 0.01, 1e-4, "finished", epoch_rows(3, 6), {}),
        ("good-4", 1.0, 1e-3, "finished", epoch_rows(4, 6), {}),
        ("crashed-5", -0.5, 1e-4, "crashed", epoch_rows(5, 3), {}),
        ("failed-6", -10.0, 1e-3, "failed", epoch_rows(6, 2),
         {M.FAILURE_REASON: "non-finite loss (nan) at epoch 2"}),
        ("running-7", 5.0, 1e-4, "running", epoch_rows(7, 4), {}),
        ("noacc-8", 0.5, 1e-3, "finished", epoch_rows(8, 6, without=(M.VAL_LINEAR_ACC,)), {}),
        ("dup-9", 1.0, 1e-3, "finished", epoch_rows(9, 6), {}),  # same grid point as good-4
    ]
    for i, (name, alpha, lr, state, rows, summary) in enumerate(specs):
        fake.add_run(ENTITY, PROJECT, f"id{i}", config={"alpha": alpha, "lr": lr, "seed": 0, "epochs": 6},
                     summary={**rows[-1], **summary}, state=state, history_rows=rows, sweep_id=sid,
                     display_name=name)
    return sid


# --------------------------------------------------------------------------- the main flow


def test_cli_api_pull_exclusions_files_json_and_offline_upload(fake, tmp_path, capsys, monkeypatch):
    sid = messy_sweep(fake)
    out = tmp_path / "out"
    monkeypatch.setenv("WANDB_MODE", "offline")  # the upload writes an offline analysis run
    monkeypatch.setenv("WANDB_SWEEP_ID", "some-agent-sweep")  # ignored: analysis is outside sweeps
    code = main([f"{ENTITY}/{PROJECT}/{sid}", "--out", str(out), "--permutations", "50", "--bins", "4"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    wandb.teardown()  # flush the offline run's transaction log

    # Runs: used / excluded and why, by name.
    assert f"sweep {ENTITY}/{PROJECT}/{sid}: 10 runs, 5 used, 5 excluded" in printed
    for name, reason in [("crashed-5 (id5)", "crashed"), ("failed-6 (id6)", "failed: non-finite loss (nan) at epoch 2"),
                         ("running-7 (id7)", "running (still in progress)"),
                         ("noacc-8 (id8)", f"no {M.VAL_LINEAR_ACC} values"),
                         ("dup-9 (id9)", "duplicate grid point of good-4 (id4)")]:
        line = next(ln for ln in printed.splitlines() if name in ln)
        assert reason in line, line
    assert "Γ = " in printed and "ρ = " in printed and "at equal val/mse vs alpha=0" in printed
    assert "95% CI" not in printed  # the whole-run bootstrap of Γ is gone
    assert "retries: 0" in printed and "pull: 10 runs pulled" in printed

    # Files: the tidy table of the used runs, the four PNGs, the statistics.
    used = pd.read_parquet(out / "trajectories.parquet")
    assert list(used.columns) == list(TIDY_COLUMNS)
    assert sorted(used[RUN_ID].unique()) == ["id0", "id1", "id2", "id3", "id4"] and len(used) == 30
    assert len(pd.read_csv(out / "trajectories.csv")) == 30
    for png in PNGS:
        assert (out / png).stat().st_size > 10_000, png
    doc = json.loads((out / "gap_statistics.json").read_text())
    for key in ("gamma", "rho", "p", "bins", "by_sign", "n_points", "n_runs", "noise_floor", "noise_floor_q95",
                "gamma_excess", "gamma_p", "planner", "matched_mse", "cross_run_rho", "conditions", "runs",
                "exclusions", "inputs", "pull"):
        assert key in doc, key
    assert len(doc["bins"]) == 4 and set(doc["by_sign"]) == {"negative", "zero", "positive"}
    assert doc["runs"] == {"found": 10, "used": 5, "excluded": 5,
                           "by_state": {"crashed": 1, "failed": 1, "finished": 7, "running": 1},
                           "used_ids": ["id0", "id1", "id2", "id3", "id4"]}
    assert [(e["run_name"], e["reason"].split(" ")[0]) for e in doc["exclusions"]] == [
        ("crashed-5", "crashed"), ("failed-6", "failed:"), ("running-7", "running"),
        ("noacc-8", "no"), ("dup-9", "duplicate")]
    inputs = doc["inputs"]
    assert (inputs["sweep"], inputs["acc_key"], inputs["mse_key"], inputs["bins"], inputs["n_perm"]) == (
        f"{ENTITY}/{PROJECT}/{sid}", M.VAL_LINEAR_ACC, M.VAL_MSE, 4, 50)
    assert doc["n_runs"] == 5 and "gamma_ci" not in doc  # no whole-run bootstrap of a max - min
    assert doc["noise_floor"] is None and "2 or more seeds" in doc["gamma_null"]["reason"]
    assert "Γ has no null (add seeds)" in printed

    # The offline analysis run: images, table, statistics, artifact; not in the sweep.
    assert "upload: offline analysis run" in printed
    (wfile,) = find_offline_run_files(tmp_path / "wandb_dir")
    run = read_offline_run(wfile)
    assert run["job_type"] == "analysis" and run["sweep_id"] is None and run["complete"]
    (row,) = run["history"]
    assert {k.split(".")[0] for k in row if k.startswith("plots/")} == {f"plots/{Path(p).stem}" for p in PNGS}
    assert row["trajectories._type"] == "table-file" and row["trajectories.nrows"] == 30
    assert run["summary"]["gamma"] == pytest.approx(doc["gamma"])
    (art,) = [a for a in run["artifacts"] if a["type"] == "analysis"]
    assert sorted(art["files"]) == sorted(["trajectories.parquet", "trajectories.csv", "gap_statistics.json", "summary.md", *PNGS])

    # --include-unfinished keeps the crashed, failed and running runs, still names the rest.
    # The ended runs come from the cache; only the one still running is pulled again.
    fake.clear_requests()
    code = main([f"{ENTITY}/{PROJECT}/{sid}", "--out", str(out), "--permutations", "9", "--no-upload",
                 "--include-unfinished"])
    printed = capsys.readouterr().out
    assert code == 0 and "pull: 1 run pulled, 9 from the cache" in printed
    assert fake.count("Runs") == 1
    assert [q.variables["run"] for q in fake.request_log if q.op == "HistoryPage"] == ["id7"]
    assert "10 runs, 8 used, 2 excluded" in printed
    doc = json.loads((out / "gap_statistics.json").read_text())
    assert {e["run_name"] for e in doc["exclusions"]} == {"noacc-8", "dup-9"}
    assert doc["inputs"]["include_unfinished"] is True


def test_cli_retries_429_and_500_and_prints_the_count(fake, tmp_path, capsys):
    sid = messy_sweep(fake)
    fake.clear_requests()
    fake.fail_next(429, times=2, headers={"Retry-After": "1"})
    fake.fail_next(500, times=1)
    code = main([f"{ENTITY}/{PROJECT}/{sid}", "--out", str(tmp_path / "o"), "--permutations", "9", "--no-upload"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert [q.status for q in fake.request_log if q.path.endswith("graphql")][:3] == [429, 429, 500]
    assert "retries: 1 (failed requests seen: HTTP 429 x2)" in printed
    assert len(pd.read_parquet(tmp_path / "o" / "trajectories.parquet")) == 30


def test_cli_report_spec_names_the_sweep_and_the_panels(report_fake, tmp_path, capsys):
    sid = messy_sweep(report_fake)
    code = main([f"{ENTITY}/{PROJECT}/{sid}", "--out", str(tmp_path / "o"), "--permutations", "9",
                 "--no-upload", "--report"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    (view,) = report_fake.views
    assert f"report: {report_fake.url}/{ENTITY}/{PROJECT}/reports/" in printed and "--VIEW1" in printed
    spec = json.loads(view["spec"])
    assert runset_filters(spec) == [[{"key": {"section": "run", "name": "sweep"}, "op": "=",
                                      "value": sid, "disabled": False}]]
    kinds = sorted(p["viewType"] for p in panels_of(spec))
    assert kinds == ["Parallel Coordinates Plot", "Run History Line Plot", "Run History Line Plot",
                     "Run History Line Plot", "Scatter Plot"]
    assert "dup-9 (id9): duplicate grid point" in json.dumps(spec)


def test_cli_one_study_in_two_sweeps_through_the_api_and_its_report(report_fake, tmp_path, capsys, monkeypatch):
    """A study whose arms are two sweeps of one project (as imagenette_cpu + its confusion arm): the
    runs of both are analysed together, the default folder is named by both ids, and the report's
    runset holds both sweeps."""
    sid = messy_sweep(report_fake)
    arm = report_fake.add_sweep(ENTITY, PROJECT, {"method": "grid", "parameters": {
        "alpha": {"value": -1.0}, "alpha_mode": {"value": "confusion"}, "lr": {"value": 1e-3}}})
    rows = epoch_rows(20, 6)
    report_fake.add_run(ENTITY, PROJECT, "arm0", config={"alpha": -1.0, "alpha_mode": "confusion", "lr": 1e-3,
                                                         "seed": 0, "epochs": 6},
                        summary=rows[-1], state="finished", history_rows=rows, sweep_id=arm, display_name="conf-0")
    monkeypatch.chdir(tmp_path)
    code = main([f"{ENTITY}/{PROJECT}/{sid}", arm, "--project", PROJECT, "--entity", ENTITY, "--permutations", "9",
                 "--no-upload", "--report"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert f"sweep {ENTITY}/{PROJECT}/{sid} + {ENTITY}/{PROJECT}/{arm}: 11 runs, 6 used, 5 excluded" in printed
    out = tmp_path / "outputs" / "analysis" / f"{sid}+{arm}"
    doc = json.loads((out / "gap_statistics.json").read_text())
    assert doc["inputs"]["sweep_id"] == f"{sid}+{arm}" and "arm0" in doc["runs"]["used_ids"]
    assert "α=-1 confusion lr=0.001" in {c["condition"] for c in doc["conditions"]}
    assert sorted(p.name for p in (out / "cache").iterdir()) == sorted([sid, arm])
    (view,) = report_fake.views
    (sweep_filter,) = runset_filters(json.loads(view["spec"]))
    assert sweep_filter == [{"key": {"section": "run", "name": "sweep"}, "op": "IN", "value": [sid, arm],
                             "disabled": False}]


# --------------------------------------------------------------------------- offline input


def test_cli_offline_dir_without_sweep_argument(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    wdir = tmp_path / "w"
    runs = [{"id": f"o{i}", "name": f"off-{i}", "rows": _json_rows(epoch_rows(i, 4, knn_every=2, nan_knn=True)),
             "config": {"alpha": a, "lr": lr, "seed": 0}}
            for i, (a, lr) in enumerate([(-1.0, 1e-3), (0.0, 1e-3), (1.0, 1e-4)])]
    runs[1]["exit_code"] = 1
    write_offline_runs(tmp_path, runs, "local-sweep-x", wdir)
    out = tmp_path / "out"
    code = main(["--offline", str(wdir / "wandb"), "--out", str(out), "--permutations", "20"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "sweep local-sweep-x: 3 runs, 2 used, 1 excluded" in printed
    assert "off-1 (o1)" in printed and "failed (W&B state failed (exit code 1))" in printed
    assert "upload: skipped for --offline input" in printed
    doc = json.loads((out / "gap_statistics.json").read_text())
    assert doc["inputs"]["source"] == "offline" and doc["inputs"]["sweep_id"] == "local-sweep-x"
    assert all((out / p).is_file() for p in PNGS)

    # A second agent.local sweep in its own folder (a study's second arm): both folders, one study.
    arm = tmp_path / "arm"
    write_offline_runs(tmp_path, [{"id": "c0", "name": "conf-0", "rows": _json_rows(epoch_rows(5, 4)),
                                   "config": {"alpha": -1.0, "alpha_mode": "confusion", "lr": 1e-3, "seed": 0}}],
                       "local-sweep-y", arm)
    code = main(["--offline", str(wdir / "wandb"), "--offline", str(arm), "--out", str(out), "--permutations", "20"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "sweep local-sweep-x + local-sweep-y: 4 runs, 3 used, 1 excluded" in printed
    doc = json.loads((out / "gap_statistics.json").read_text())
    assert doc["inputs"]["sweep_id"] == "local-sweep-x+local-sweep-y" and "c0" in doc["runs"]["used_ids"]
    assert len(doc["inputs"]["offline_dir"]) == 2
    err = one_line_error(capsys, ["--offline", str(wdir), "--offline", str(arm), "local-sweep-x"])
    assert "several --offline folders of one sweep each" in err
    assert "run o0 is in both" in one_line_error(capsys, ["--offline", str(wdir), "--offline", str(wdir)])


# --------------------------------------------------------------------------- bad input


def test_cli_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--offline", "--out", "--acc", "--mse", "--bins", "--permutations", "--no-upload", "--report",
                 "--refresh", "--include-unfinished", "--entity", "--project"):
        assert flag in text, flag
    assert build_parser().parse_args([]).acc == M.VAL_LINEAR_ACC


def test_cli_bad_inputs_give_one_line_errors(fake, tmp_path, capsys):
    assert "does not exist" in one_line_error(capsys, ["--offline", str(tmp_path / "nope")])
    (tmp_path / "empty").mkdir()
    assert "no offline W&B runs" in one_line_error(capsys, ["--offline", str(tmp_path / "empty")])
    assert "unknown metric key 'val/acc' for --acc" in one_line_error(capsys, ["x/y/z", "--acc", "val/acc"])
    assert "give a SWEEP" in one_line_error(capsys, [])
    err = one_line_error(capsys, [f"{ENTITY}/{PROJECT}/nosuchsweep", "--out", str(tmp_path / "o")])
    assert f"sweep {ENTITY}/{PROJECT}/nosuchsweep not found" in err
    sid = fake.add_sweep(ENTITY, PROJECT, {"method": "grid", "parameters": {"alpha": {"values": [0]}}})
    assert "has no runs" in one_line_error(capsys, [f"{ENTITY}/{PROJECT}/{sid}", "--out", str(tmp_path / "o")])
