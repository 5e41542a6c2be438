"""analysis.publish.report: the offline analysis run (read back from its .wandb file) and the W&B Report
(wandb-workspaces) sent to a fake backend, without network."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from conftest import serve_fake_wandb  # noqa: E402
from fake_wandb import FakeWandb  # noqa: E402
from fake_wandb.common import _b64  # noqa: E402
from test_pull import ENTITY, PROJECT, epoch_rows  # noqa: E402

from analysis.figures import plots  # noqa: E402
from analysis.wandb_io.offline_runs import find_offline_run_files, read_offline_run  # noqa: E402
from analysis.pull.runs import RunInfo  # noqa: E402
from analysis.pull.tidy import tidy_table  # noqa: E402
from analysis.publish.report import build_report, save_report, summary_of, upload_analysis  # noqa: E402
from analysis.stats.gap import gap_statistics  # noqa: E402
from mae_gap import metrics as M  # noqa: E402

wandb = pytest.importorskip("wandb")


class ReportFake(FakeWandb):
    """The fake backend plus the three operations a report save sends: GetProjects (does the
    project exist), ProjectInternalId (per runset) and upsertView (the report itself)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.views: list[dict] = []

    def _op_GetProjects(self, q, v):
        ent = v.get("entity") or self.entity
        names = sorted({r.project for r in self.runs() if r.entity == ent})
        user = {**self._viewer(), "name": self.entity, "deletedAt": None}
        edges = [{"node": {"__typename": "Project", "id": _b64(f"Project:{n}"), "name": n, "entityName": ent,
                           "createdAt": "2024-01-01T00:00:00", "isBenchmark": False, "user": user}}
                 for n in names]
        return {"models": {"pageInfo": {"__typename": "PageInfo", "endCursor": None, "hasNextPage": False},
                           "edges": edges}}

    def _op_ProjectInternalId(self, q, v):
        pid = self._project_id(v["entityName"], v["projectName"])
        return {"project": {"id": _b64(f"Project:{pid}"), "internalId": pid}}

    def _op_upsertView(self, q, v):
        self.views.append(dict(v))
        return {"upsertView": {"inserted": True, "view": {
            "id": f"VIEW{len(self.views)}", "type": v.get("type"), "name": v.get("name"),
            "displayName": v.get("displayName"), "description": v.get("description"),
            "project": {"id": "p", "name": v["projectName"], "entityName": v["entityName"]},
            "spec": v["spec"], "updatedAt": "2024-01-01T00:00:00"}}}


@pytest.fixture
def report_fake(monkeypatch, tmp_path):
    """A started ReportFake, with this process's wandb pointed at it (conftest.serve_fake_wandb)."""
    with serve_fake_wandb(monkeypatch, tmp_path, ReportFake(entity=ENTITY)) as server:
        yield server


def small_analysis(out: Path):
    runs = [RunInfo(f"r{i}", f"run-{i}", "finished", config={"alpha": a, "lr": lr, "seed": 0})
            for i, (a, lr) in enumerate([(-1.0, 1e-3), (0.0, 1e-3), (0.5, 1e-4), (1.0, 1e-4)])]
    table, _, _ = tidy_table(runs, {r.run_id: epoch_rows(i, 5) for i, r in enumerate(runs)})
    stats = gap_statistics(table, n_perm=99, n_draws=50).to_json()
    images = plots.save_all(table, stats, out)
    parquet = out / "trajectories.parquet"
    table.to_parquet(parquet, index=False)
    return table, stats, images, [parquet, *images.values()]


def panels_of(spec: dict) -> list[dict]:
    grids = [b for b in spec["blocks"] if b.get("type") == "panel-grid"]
    return [p for g in grids for p in g["metadata"]["panelBankSectionConfig"]["panels"]]


def runset_filters(spec: dict) -> list[list[dict]]:
    grids = [b for b in spec["blocks"] if b.get("type") == "panel-grid"]
    return [rs["filters"]["filters"] for g in grids for rs in g["metadata"]["runSets"]]


# --------------------------------------------------------------------------- the analysis run


def test_offline_analysis_run_has_images_table_stats_and_artifact(isolated_wandb, monkeypatch, tmp_path):
    # isolated_wandb: W&B offline, its folders in tmp_path (WANDB_DIR = tmp_path / "wandb_dir").
    # As if started from a sweep agent's shell: must not join (or resume) the sweep's run.
    monkeypatch.setenv("WANDB_SWEEP_ID", "agent-sweep")
    monkeypatch.setenv("WANDB_RUN_ID", "agentrun1")
    monkeypatch.setenv("WANDB_SWEEP_PARAM_PATH", str(tmp_path / "gone.yaml"))
    wandb.teardown()
    wandb.setup()  # W&B already set up in this process, with the agent's variables captured
    table, stats, images, files = small_analysis(tmp_path / "out")
    try:
        info = upload_analysis(table=table, stats=stats, images=images, files=files,
                               sweep=f"{ENTITY}/{PROJECT}/sw1", entity=ENTITY, project=PROJECT)
    finally:
        wandb.teardown()  # flushes wandb-core's transaction log (run.finish() does not wait for it)
    assert info["offline"] and info["run_id"] != "agentrun1"
    (wfile,) = find_offline_run_files(tmp_path / "wandb_dir")
    run = read_offline_run(wfile)
    assert run["run_id"] == info["run_id"] and run["job_type"] == "analysis"
    assert run["sweep_id"] is None and run["project"] == PROJECT
    assert run["config"]["sweep"] == f"{ENTITY}/{PROJECT}/sw1"
    (row,) = run["history"]
    for stem in images:
        assert row[f"plots/{stem}._type"] == "image-file"
        assert (wfile.parent / "files" / row[f"plots/{stem}.path"]).is_file()
    assert len(images) == 5
    assert row["trajectories._type"] == "table-file" and row["trajectories.nrows"] == len(table)
    assert run["summary"]["gamma"] == pytest.approx(stats["gamma"])
    assert run["summary"]["cross_run_rho/rho"] == pytest.approx(stats["cross_run_rho"]["rho"])
    assert "gamma_excess" not in run["summary"] and "gamma_p" not in run["summary"]  # one seed per run: no null
    assert run["summary"]["by_sign/negative/n_runs"] == 1
    (art,) = [a for a in run["artifacts"] if a["type"] == "analysis"]
    assert art["name"] == "gap-analysis-sw1"
    assert sorted(art["files"]) == sorted(Path(f).name for f in files)


def test_summary_of_flattens_and_drops_missing():
    s = summary_of({"gamma": 1.0, "rho": None, "p": 0.1, "gamma_excess": 0.25, "noise_floor": 0.75, "gamma_p": 0.01,
                    "matched_mse": {"omnibus": {"p_value": 0.06, "t_p_value": None},
                                    "by_condition": [{"condition": "α=1", "effect_pp": 4.0, "ci_low_pp": 3.0,
                                                      "ci_high_pp": 5.0, "p_value": 0.06, "t_p_value": 0.001},
                                                     {"condition": "α=-1", "effect_pp": None}]},
                    "cross_run_rho": {"rho": -0.2, "p_value": 0.5}, "planner": {"sd_pp": 0.7, "mde_pp": None},
                    "by_sign": {"zero": {"gamma": 0.0, "rho": None, "n_runs": 1, "null": {"gamma_p": 0.5}}}},
                   {"runs_found": 3})
    assert s == {"gamma": 1.0, "p": 0.1, "noise_floor": 0.75, "gamma_excess": 0.25, "gamma_p": 0.01,
                 "cross_run_rho/rho": -0.2, "cross_run_rho/p_value": 0.5, "planner/sd_pp": 0.7,
                 "matched_mse/omnibus/p_value": 0.06, "matched_mse/α=1/effect_pp": 4.0, "matched_mse/α=1/ci_low_pp": 3.0,
                 "matched_mse/α=1/ci_high_pp": 5.0, "matched_mse/α=1/p_value": 0.06, "matched_mse/α=1/t_p_value": 0.001,
                 "by_sign/zero/gamma": 0.0, "by_sign/zero/n_runs": 1, "by_sign/zero/gamma_p": 0.5, "runs_found": 3}


# --------------------------------------------------------------------------- the report


def test_report_spec_sent_to_the_backend(report_fake):
    report_fake.add_run(ENTITY, PROJECT, "seed-run", config={"alpha": 0.0})  # the project exists
    report = build_report(
        ENTITY, PROJECT, "sw42", acc_key=M.VAL_PROBE_ACC, mse_key=M.VAL_MSE,
        analysis_run_id="ana123", image_keys=["plots/tube_scatter_signed_alpha", "plots/alpha_vs_final_metrics"],
        stats={"gamma": 0.5, "rho": -0.4, "p": 1e-5, "n_runs": 3, "n_points": 30,
               "noise_floor": 0.3, "gamma_excess": 0.2, "gamma_p": 0.01, "cross_run_rho": {"rho": -0.1, "p_value": 0.8},
               "matched_mse": {"by_condition": [{"condition": "α=1", "estimable": True, "effect_pp": 4.0,
                                                 "ci_low_pp": 3.0, "ci_high_pp": 5.0}]}},
        exclusions=["run-9 (r9): crashed"],
    )
    assert report_fake.views == []  # building sends nothing
    url = save_report(report)
    assert url.endswith("--VIEW1")
    (view,) = report_fake.views
    assert (view["entityName"], view["projectName"], view["type"]) == (ENTITY, PROJECT, "runs")
    spec = json.loads(view["spec"])
    sweep_filter, analysis_filter = runset_filters(spec)
    assert sweep_filter == [{"key": {"section": "run", "name": "sweep"}, "op": "=", "value": "sw42", "disabled": False}]
    assert analysis_filter[0]["key"] == {"section": "run", "name": "name"} and analysis_filter[0]["value"] == "ana123"

    panels = {p["config"].get("chartTitle"): p for p in panels_of(spec)}
    kinds = sorted(p["viewType"] for p in panels.values())
    assert kinds == ["Media Browser", "Parallel Coordinates Plot", "Run History Line Plot",
                     "Run History Line Plot", "Run History Line Plot", "Scatter Plot"]
    scatter = next(p for p in panels.values() if p["viewType"] == "Scatter Plot")["config"]
    assert (scatter["xAxis"], scatter["yAxis"]) == (f"summary:{M.VAL_MSE}", f"summary:{M.VAL_PROBE_ACC}")
    lines = [p["config"] for p in panels.values() if p["viewType"] == "Run History Line Plot"]
    assert {(c["xAxis"], tuple(c["metrics"]), c.get("groupBy")) for c in lines} == {
        (M.VAL_MSE, (M.VAL_PROBE_ACC,), None),  # the tube: each run's path, epoch by epoch
        ("epoch", (M.VAL_PROBE_ACC,), "alpha.value"),
        ("epoch", (M.VAL_MSE,), "alpha.value"),
    }
    pc = next(p for p in panels.values() if p["viewType"] == "Parallel Coordinates Plot")["config"]
    assert [c["accessor"] for c in pc["columns"]] == [
        "config:alpha.value", "config:lr.value", f"summary:{M.VAL_MSE}", f"summary:{M.VAL_PROBE_ACC}"]
    media = next(p for p in panels.values() if p["viewType"] == "Media Browser")["config"]
    assert media["mediaKeys"] == ["plots/tube_scatter_signed_alpha", "plots/alpha_vs_final_metrics"]
    text = json.dumps(spec, ensure_ascii=False)
    assert "Γ = 0.5; under the seed-noise null its median is 0.3" in text and "Γ − median = 0.2, p = 0.01" in text
    assert "α=1 +4.00 pp [+3.00, +5.00]" in text
    assert "run-9 (r9): crashed" in text
