"""summary.md: the statistics a reader looks for first, as Markdown tables (from gap_statistics.json).

One table per condition (seeds, steps, final metrics, matched-MSE effect with its interval and p)
and one of the sweep-level numbers (Γ, its seed-noise floor, Γ − floor, pooled and cross-run ρ, the
matched-MSE test). `pull_and_plot` writes it next to the JSON; the README's results are this file.
"""

from __future__ import annotations

from typing import Any

from mae_gap import metrics as M
from mae_gap.fmt import num


def _f(x: Any, spec: str = ".3f") -> str:  # the tables' default precision
    return num(x, spec)


FINAL_COLUMNS = ((M.VAL_LINEAR_ACC, "linear_acc"), (M.VAL_KNN_ACC, "knn_acc"), (M.VAL_PROBE_ACC, "probe_acc"),
                 (M.VAL_MSE, "mse"), (M.TRAIN_GRAD_RATIO, "grad_ratio"))


def _seeds(values: list) -> str:
    return " / ".join(_f(v) for v in values)


def render(doc: dict) -> str:
    inputs = doc.get("inputs", {})
    acc, mse = inputs.get("acc_key", M.VAL_LINEAR_ACC), inputs.get("mse_key", M.VAL_MSE)
    effects = {r["condition"]: r for r in (doc.get("matched_mse") or {}).get("by_condition", [])}
    head = ["condition", "seeds", "steps/run", *(f"final {name}" for _, name in FINAL_COLUMNS),
            f"{acc.split('/')[-1]} vs α=0 at equal MSE (pp) [95% Welch]", "p (smallest possible)", "MSE range shared with α=0"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for c in doc.get("conditions", []):
        e = effects.get(c["condition"], {})
        effect = "reference" if c["alpha"] == 0 else _f(e.get("effect_pp"), "+.2f") + (
            f" [{e['ci_pp'][0]:+.1f}, {e['ci_pp'][1]:+.1f}]" if e.get("ci_pp") else "")
        finals = [f"{_f(c['final_mean'].get(k))} ({_seeds(c['final'].get(k, []))})" for k, _ in FINAL_COLUMNS]
        overlap = e.get("overlap_mse")
        shared = "" if c["alpha"] == 0 else ("none" if not overlap else f"{overlap[0]:.3f}–{overlap[1]:.3f}")
        p = "" if c["alpha"] == 0 else f"{_f(e.get('p_value'), '.2g')} ({_f(e.get('min_attainable_p'), '.2g')})"
        lines.append("| " + " | ".join([c["condition"], str(c["n_seeds"]), str(c["total_steps"]), *finals, effect,
                                        p, shared]) + " |")
    floor = doc.get("noise_floor") or {}
    cross = doc.get("cross_run_rho") or {}
    test = doc.get("matched_mse") or {}
    sweep_rows = [
        ("Γ (15 bins)", _f(doc.get("gamma"))),
        ("seed-noise floor of Γ", _f(floor.get("floor")) if floor.get("floor") is not None else (floor.get("note") or "n/a")),
        ("Γ − floor", _f(floor.get("gamma_excess"), "+.3f")),
        ("pooled ρ (all points; training time drives it)", f"{_f(doc.get('rho'))} (p {_f(doc.get('p'), '.2g')})"),
        ("cross-run ρ at the final epoch", f"{_f(cross.get('rho'))} (permutation p {_f(cross.get('p_value'), '.2g')},"
                                           f" {cross.get('n_runs')} runs)"),
        ("matched-MSE test, all conditions", f"permutation p {_f(test.get('p_value'), '.2g')} (smallest possible with "
                                             f"these seeds: {_f(test.get('min_attainable_p'), '.2g')}), η² "
                                             f"{_f(test.get('eta_squared'), '.2f')}"),
    ]
    for g, v in (doc.get("by_sign") or {}).items():
        sweep_rows.append((f"Γ of α {v['condition'].split()[-2]} {v['condition'].split()[-1]} (common bins)",
                           f"{_f(v.get('gamma'))}, floor {_f(v.get('floor'))}, Γ − floor {_f(v.get('gamma_excess'), '+.3f')}"))
    table2 = ["| statistic | value |", "| --- | --- |", *(f"| {a} | {b} |" for a, b in sweep_rows)]
    runs = doc.get("runs", {})
    return "\n".join([
        f"Accuracy `{acc}`, reconstruction `{mse}`; {runs.get('used', '?')} runs used of {runs.get('found', '?')}"
        f" ({runs.get('excluded', 0)} excluded). Final metrics: mean over seeds (each seed).", "",
        *lines, "", *table2, "",
    ])
