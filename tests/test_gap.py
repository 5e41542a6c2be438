"""gap_statistics: every number of a sweep in one typed result and its JSON, on hand-computed tables."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from analysis import ALPHA, ALPHA_MODE, LR, RUN_ID, SEED, STEPS
from mae_gap.metrics import EPOCH
from analysis.stats.gap import gap_statistics
from mae_gap.metrics import VAL_KNN_ACC, VAL_LINEAR_ACC, VAL_MSE

approx = pytest.approx


def hand_table() -> pd.DataFrame:
    """3 runs x 2 epochs (+1 NaN row), hand-computed below."""
    rows = [
        ("a", -1.0, 1, 0.0, 0.1), ("a", -1.0, 2, 1.0, 0.3),
        ("b", 0.0, 1, 0.0, 0.2), ("b", 0.0, 2, 1.0, 0.5),
        ("c", 1.0, 1, 0.5, 0.4), ("c", 1.0, 2, 1.0, 0.9),
        ("c", 1.0, 3, 0.8, np.nan),  # dropped: accuracy missing
    ]
    return pd.DataFrame(rows, columns=[RUN_ID, ALPHA, EPOCH, VAL_MSE, VAL_LINEAR_ACC])


def test_gap_statistics_hand_computed():
    s = gap_statistics(hand_table(), bins=2, n_perm=99, n_draws=50).to_json()
    # range [0, 1], edges 0, 0.5, 1: bin 0 = mse {0, 0} acc {0.1, 0.2} -> 0.1;
    # bin 1 = mse {0.5 (on the edge -> right), 1, 1, 1} acc {0.4, 0.3, 0.5, 0.9} -> 0.6. Γ = 0.7
    assert s["gamma"] == approx(0.7)
    assert [b["count"] for b in s["bins"]] == [2, 4]
    # ρ: x ranks [1.5, 5, 1.5, 5, 3, 5], y ranks [1, 3, 2, 5, 4, 6] -> 13 / sqrt(15 * 17.5)
    assert s["rho"] == approx(13 / math.sqrt(15 * 17.5))
    assert s["n_points"] == 6 and s["n_runs"] == 3 and s["n_dropped_nan"] == 1
    # per sign, on the common edges 0, .5, 1: runs a and b have MSE 0 and 1 (different bins) -> Γ = 0;
    # run c has MSE .5 and 1, both in bin 1 -> .9 - .4 = .5. Each group on its own range: 2 bins, Γ = 0
    for g, gamma in (("negative", 0.0), ("zero", 0.0), ("positive", 0.5)):
        grp = s["by_sign"][g]
        assert grp["n_runs"] == 1 and grp["n_points"] == 2 and grp["gamma"] == approx(gamma)
        assert grp["gamma_own_bins"] == 0.0
        assert grp["rho"] is None and grp["null"]["noise_floor"] is None  # 2 points; no replicates
    # no seed replicates: no null for Γ, and the output says why
    assert s["noise_floor"] is None and s["gamma_excess"] is None and s["gamma_p"] is None
    assert "2 or more seeds" in s["gamma_null"]["reason"]
    # cross-run ρ over the 3 runs' finals (1.0, .3), (1.0, .5), (1.0, .9): MSE constant -> undefined
    assert s["cross_run_rho"]["rho"] is None and s["cross_run_rho"]["n_units"] == 3
    by = {c["condition"]: c for c in s["matched_mse"]["by_condition"]}
    assert set(by) == {"α=-1", "α=1"} and not any(c["estimable"] for c in by.values())  # one seed each
    assert s["planner"]["sd_pp"] is None
    assert s["inputs"] == {"acc_key": VAL_LINEAR_ACC, "mse_key": VAL_MSE, "bins": 2, "n_perm": 99, "seed": 0,
                           "level": 0.95, "reference": "alpha=0", "null_draws": 50, "plan_effects": [1.0, 2.0, 5.0],
                           "unit": RUN_ID}
    json.dumps(s, allow_nan=False)


def test_sign_groups_use_the_common_bin_edges():
    # Group α<0 alone spans [0.5, 0.6]; binned over its own range its 2 points fall into 2 bins
    # (Γ_own = 0), on the sweep's edges (2 bins over [0, 1]) both sit in bin 1 -> 0.3 - 0.1 = 0.2.
    rows = [("a", -1.0, 1, 0.5, 0.1), ("a", -1.0, 2, 0.6, 0.3), ("b", 1.0, 1, 0.0, 0.5), ("b", 1.0, 2, 1.0, 0.6)]
    s = gap_statistics(pd.DataFrame(rows, columns=[RUN_ID, ALPHA, EPOCH, VAL_MSE, VAL_LINEAR_ACC]), bins=2, n_perm=9, n_draws=20).to_json()
    neg = s["by_sign"]["negative"]
    assert neg["gamma_own_bins"] == 0.0 and neg["gamma"] == approx(0.2)


def test_conditions_null_and_contrasts_with_replicates():
    rows = []
    for alpha, mode in ((-1.0, "confusion"), (0.0, "grl"), (1.0, "grl")):
        for seed in (0, 1):
            for e in (1, 2, 3):
                rows.append({RUN_ID: f"{alpha}-{seed}", ALPHA: alpha, ALPHA_MODE: mode, LR: 1e-3, SEED: seed,
                             STEPS: 30, EPOCH: e, VAL_MSE: 1.0 - 0.1 * e + 0.01 * seed,
                             VAL_LINEAR_ACC: 0.2 + 0.1 * e + 0.05 * alpha + 0.01 * seed})
    s = gap_statistics(pd.DataFrame(rows), n_perm=199, n_draws=200).to_json()
    conds = {c["condition"]: c for c in s["conditions"]}
    assert list(conds) == ["α=-1 confusion", "α=0", "α=1"]
    assert conds["α=1"]["n_seeds"] == 2 and conds["α=1"]["total_steps"] == 30
    assert conds["α=1"]["final"][VAL_LINEAR_ACC] == approx([0.55, 0.56])
    assert conds["α=1"]["final_mean"][VAL_LINEAR_ACC] == approx(0.555)
    assert s["noise_floor"] is not None and s["gamma_excess"] == approx(s["gamma"] - s["noise_floor"])
    assert s["noise_floor"] <= s["noise_floor_q95"] and 0 < s["gamma_p"] <= 1
    # α shifts accuracy by 5 pp per unit at the same MSE: the direct contrasts see it, seed pairs agree
    by = {c["condition"]: c for c in s["matched_mse"]["by_condition"]}
    assert by["α=1"]["effect_pp"] == approx(5.0, abs=0.3) and by["α=1"]["n_pairs"] == 2
    assert by["α=-1 confusion"]["effect_pp"] == approx(-5.0, abs=0.3)
    assert by["α=1"]["alpha"] == 1.0 and by["α=1"]["alpha_mode"] == "grl" and by["α=1"]["lr"] == 1e-3
    assert s["planner"]["sd_pp"] is not None
    json.dumps(s, allow_nan=False)


def test_other_accuracy_key_with_nan_epochs_and_all_nan():
    df = hand_table()
    df[VAL_KNN_ACC] = np.where(df[EPOCH] == 2, df[VAL_LINEAR_ACC], np.nan)  # k-NN on epoch 2 only
    s = gap_statistics(df, acc_key=VAL_KNN_ACC, n_perm=9, n_draws=10).to_json()
    assert s["n_points"] == 3 and s["n_dropped_nan"] == 4 and s["inputs"]["acc_key"] == VAL_KNN_ACC
    df[VAL_KNN_ACC] = np.nan
    s = gap_statistics(df, acc_key=VAL_KNN_ACC, n_perm=9, n_draws=10).to_json()
    assert s["n_points"] == 0 and s["gamma"] is None and s["rho"] is None and s["bins"] == [] and s["n_runs"] == 0
    json.dumps(s, allow_nan=False)
    with pytest.raises(KeyError, match="val/nope"):
        gap_statistics(df, acc_key="val/nope")


def test_readouts_name_unconverged_probes_and_the_ceiling():
    from mae_gap.metrics import VAL_LINEAR_CONVERGED

    df = hand_table()
    df[VAL_LINEAR_CONVERGED] = [1.0, 1.0, 1.0, 0.0, 1.0, 1.0, np.nan]
    r = gap_statistics(df, n_perm=9, n_draws=10).readouts
    assert r.probe_not_converged == ["b"] and not r.at_ceiling and "did not converge in 1 run(s): b" in r.note
    df[VAL_LINEAR_ACC] = [0.96, 0.97, 0.95, 0.98, 0.96, 0.99, np.nan]  # linear_acc 0.975 / 0.972 in the smoke sweep
    r = gap_statistics(df, n_perm=9, n_draws=10).readouts
    assert r.at_ceiling and "ceiling" in r.note and "val/knn_acc" in r.note
