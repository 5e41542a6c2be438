"""The README's Imagenette result is reproduced exactly from the committed tidy table alone."""

from __future__ import annotations

import json
from pathlib import Path

from analysis.pull_and_plot import main

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "analysis" / "results" / "imagenette_cpu"
BEGIN, END = "<!-- summary.md of analysis/results/imagenette_cpu", "<!-- end of summary.md -->"


def test_readme_tables_regenerate_from_the_committed_table(tmp_path, capsys):
    code = main(["--table", str(RESULTS / "trajectories.csv"), "--out", str(tmp_path), "--no-upload"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    summary = (tmp_path / "summary.md").read_text().strip()
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index(BEGIN):readme.index(END)].split("\n", 1)[1].strip()
    assert block == summary
    assert (RESULTS / "summary.md").read_text().strip() == summary
    # the committed statistics are the ones the table gives (the run accounting aside)
    new, old = (json.loads(p.read_text()) for p in (tmp_path / "gap_statistics.json", RESULTS / "gap_statistics.json"))
    for key in ("gamma", "rho", "noise_floor", "noise_floor_q95", "gamma_p", "matched_mse", "planner", "cross_run_rho"):
        assert new[key] == old[key], key
