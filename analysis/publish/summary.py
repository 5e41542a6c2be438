"""summary.md: the statistics a reader looks for first, as Markdown tables (from gap_statistics.json).

One table per condition (seeds, steps, final metrics, the direct contrast at equal MSE with its
interval and p-values, or why there is none), one of the sweep-level numbers (Γ against its null,
pooled and cross-run ρ, the omnibus test) and the seed planner. `pull_and_plot` writes it next to
the JSON; the README's results are this file.
"""

from __future__ import annotations

from typing import Any

from mae_gap import metrics as M
from mae_gap.fmt import num


def _f(x: Any, spec: str = ".3f") -> str:  # the tables' default precision
    return num(x, spec)


FINAL_COLUMNS = ((M.VAL_LINEAR_ACC, "linear_acc"), (M.VAL_KNN_ACC, "knn_acc"), (M.VAL_PROBE_ACC, "probe_acc"),
                 (M.VAL_MSE, "mse"), (M.TRAIN_GRAD_RATIO_MEDIAN, "grad_ratio (median)"))


LISTED_SEEDS = 8  # more seeds than this: their range, not each value (a 400-seed sweep stays readable)


def _seeds(values: list) -> str:
    if len(values) <= LISTED_SEEDS:
        return " / ".join(_f(v) for v in values)
    finite = [v for v in values if isinstance(v, (int, float)) and v == v]
    return f"{_f(min(finite))}–{_f(max(finite))} over {len(values)} seeds" if finite else f"n/a over {len(values)} seeds"


def _effect_cells(e: dict | None) -> list[str]:
    if e is None:
        return ["reference", "", "", ""]
    if not e.get("estimable"):
        return ["not estimable", "", "", (e.get("reason") or "").split(" (")[0]]
    shared = e.get("shared_mse") or [None, None]
    frac = e.get("shared_fraction") or {}
    return [f"{_f(e['effect_pp'], '+.2f')} [{_f(e['ci_low_pp'], '+.2f')}, {_f(e['ci_high_pp'], '+.2f')}]",
            f"{_f(e.get('p_value'), '.2g')} ({_f(e.get('min_attainable_p'), '.2g')})", _f(e.get("t_p_value"), ".2g"),
            f"{_f(shared[0])}–{_f(shared[1])} ({e['n_pairs']} pairs; {_f(frac.get('condition'), '.0%')} / "
            f"{_f(frac.get('reference'), '.0%')} of the ranges)"]


def _steps(steps: Any) -> str:
    return str(steps) if isinstance(steps, int) and steps >= 0 else "unknown"  # -1: the runs did not record it


def condition_table(doc: dict) -> list[str]:
    inputs = doc.get("inputs", {})
    acc = inputs.get("acc_key", M.VAL_LINEAR_ACC).split("/")[-1]
    effects = {r["condition"]: r for r in (doc.get("matched_mse") or {}).get("by_condition", [])}
    head = ["condition", "seeds", "steps/run", *(f"final {name}" for _, name in FINAL_COLUMNS),
            f"{acc} vs reference at equal MSE (pp) [95% t, paired]", "sign-flip p (smallest possible)", "t p",
            "shared MSE"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for c in doc.get("conditions", []):
        finals = [f"{_f(c['final_mean'].get(k))} ({_seeds(c['final'].get(k, []))})" for k, _ in FINAL_COLUMNS]
        lines.append("| " + " | ".join([c["condition"], str(c["n_seeds"]), _steps(c.get("total_steps")), *finals,
                                        *_effect_cells(effects.get(c["condition"]))]) + " |")
    return lines


def sweep_rows(doc: dict) -> list[tuple[str, str]]:
    cross, test, null = doc.get("cross_run_rho") or {}, doc.get("matched_mse") or {}, doc.get("gamma_null") or {}
    omni = test.get("omnibus") or {}
    ci = cross.get("ci") or [None, None]
    rows = [
        (f"Γ ({doc.get('inputs', {}).get('bins', '?')} bins)", _f(doc.get("gamma"))),
        ("Γ under the seed-noise null: median (95th percentile)",
         f"{_f(doc.get('noise_floor'))} ({_f(doc.get('noise_floor_q95'))})" if doc.get("noise_floor") is not None
         else (null.get("reason") or "n/a")),
        ("Γ − null median, p", f"{_f(doc.get('gamma_excess'), '+.3f')}, p {_f(doc.get('gamma_p'), '.2g')}"
                               f" ({null.get('n_draws', 0)} draws)"),
        ("pooled ρ (all points; training time drives it)", f"{_f(doc.get('rho'))} (p {_f(doc.get('p'), '.2g')})"),
        (f"cross-run ρ at the final epoch ({cross.get('n_units')} {cross.get('unit')}s as units)",
         f"{_f(cross.get('rho'))} [{_f(ci[0], '+.2f')}, {_f(ci[1], '+.2f')}], permutation p {_f(cross.get('p_value'), '.2g')}"),
        (f"any condition ≠ reference (Bonferroni over {omni.get('n_contrasts', 0)})",
         f"sign-flip p {_f(omni.get('p_value'), '.2g')} (smallest possible {_f(omni.get('min_attainable_p'), '.2g')}), "
         f"t p {_f(omni.get('t_p_value'), '.2g')}"),
    ]
    for v in (doc.get("by_sign") or {}).values():
        n = v.get("null") or {}
        rows.append((f"Γ of {v['condition']} (common bins)",
                     f"{_f(v.get('gamma'))}, null median {_f(n.get('noise_floor'))}, p {_f(n.get('gamma_p'), '.2g')}"
                     if n.get("noise_floor") is not None else f"{_f(v.get('gamma'))} ({n.get('reason') or 'no null'})"))
    return rows


def planner_line(doc: dict) -> str:
    pl = doc.get("planner") or {}
    if pl.get("sd_pp") is None:
        return f"Seed planner: {pl.get('reason') or 'n/a'}."
    needs = ", ".join(f"{e} pp: {n if n is not None else '> 10000'}" for e, n in (pl.get("seeds_for") or {}).items())
    return (f"Seed planner: the seed SD of the paired differences is {_f(pl['sd_pp'], '.2f')} pp ({pl['sd_df']} df); "
            f"with {pl['n_seeds']} seeds the minimal detectable effect (80% power, two-sided 0.05, paired t) is "
            f"{_f(pl.get('mde_pp'), '.2f')} pp; seeds needed: {needs}; the exact sign-flip test needs "
            f"{pl['min_seeds_sign_flip']} seeds to reach p < 0.05 at all.")


def render(doc: dict) -> str:
    inputs = doc.get("inputs", {})
    acc, mse = inputs.get("acc_key", M.VAL_LINEAR_ACC), inputs.get("mse_key", M.VAL_MSE)
    runs = doc.get("runs", {})
    table2 = ["| statistic | value |", "| --- | --- |", *(f"| {a} | {b} |" for a, b in sweep_rows(doc))]
    note = (doc.get("readouts") or {}).get("note")
    return "\n".join([
        f"Accuracy `{acc}`, reconstruction `{mse}`; {runs.get('used', '?')} runs used of {runs.get('found', '?')}"
        f" ({runs.get('excluded', 0)} excluded). Final metrics: mean over seeds (each seed; their range above 8 seeds).", "",
        *condition_table(doc), "", *table2, "", planner_line(doc), "", *([f"Note: {note}", ""] if note else []),
    ])
