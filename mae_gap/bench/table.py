"""The benchmark's printed table: one row per figure, with its context and target beside it, so a
reader of a CI log needs nothing else. Missing figures read "n/a" (mae_gap.fmt.num)."""

from __future__ import annotations

from typing import Any

from ..fmt import num
from .benchmark import TARGETS


def _gib(nbytes: float | None) -> float | None:
    return nbytes / 2**30 if nbytes is not None else None


def _memory_text(mem: dict[str, Any]) -> str:
    text = num(_gib(mem["bytes"]), ".2f", " GiB")
    return text + (" (host peak RSS)" if mem["bytes"] is not None and mem["kind"] == "host_peak_rss" else "")


def _fixed_cost_row(r: dict[str, Any]) -> tuple[str, str, str]:
    fc = r.get("fixed_cost") or {}
    if not fc:
        return ("fixed cost: start -> 1st optimizer step", "skipped", "")
    parts = ", ".join(f"{k[:-2]} {v:.1f}" for k, v in fc.items() if k.endswith("_s") and k != "total_s" and v is not None)
    return ("fixed cost: start -> 1st optimizer step", num(fc.get("total_s"), ".1f", " s"),
            (parts or fc.get("error", "")) + f"; target <= {TARGETS['fixed_cost_s']:.0f} s")


def _timing_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    light = r["lightning"]["events"]
    step_mode = "sync" if r["device"].startswith("cuda") else "events"
    lt = r["lightning"][step_mode]
    pt = (r["plain"].get(step_mode) if r["plain"] else None) or {}
    return [
        ("train img/s (Lightning, epoch wall)", num(r["img_per_s"], ",.0f"),
         f"{light['epochs']} epochs x {r['steps_per_epoch']} steps; plain loop {num(r['plain_img_per_s'], ',.0f')}"),
        ("step time, Lightning (median)", num(lt["step_ms_median"], ".2f", " ms"),
         f"p10 {num(lt['step_ms_p10'], '.2f')} / p90 {num(lt['step_ms_p90'], '.2f')} ms, n={lt['steps']}, device-synced"),
        ("step time, plain PyTorch loop (median)", num(pt.get("step_ms_median"), ".2f", " ms"),
         f"p10 {num(pt.get('step_ms_p10'), '.2f')} / p90 {num(pt.get('step_ms_p90'), '.2f')} ms, n={num(pt.get('steps'), 'd')}"),
        ("Lightning / plain, step", num(r["lightning_over_plain"], ".3f"),
         f"target <= {TARGETS['lightning_over_plain']}; start-to-start iterations: {num(r['lightning_over_plain_iter'], '.3f')}"),
        ("epoch wall / sum of its steps", num(r["epoch_over_steps"], ".3f"),
         f"median of {light['epochs']} epochs (max {num(r['epoch_over_steps_max'], '.3f')}); target <= {TARGETS['epoch_over_steps']}"),
    ]


def _flop_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    flop, counted, mfu = r["flop"], r.get("flop_per_img_counted"), r["mfu"]
    return [
        ("FLOP per image (formula)", num(r["flop_per_img"] / 1e9, ".4g", " GFLOP"),
         f"3x masked pass {flop['masked_fwd_bwd'] / 1e9:.4g} (decoder blocks {100 * flop['decoder_blocks_share_of_masked']:.1f}%)"
         f" - pixel grad + probe pass {flop['probe_pass'] / 1e9:.3g}"),
        ("FLOP per image (FlopCounterMode)", num(counted / 1e9 if counted is not None else None, ".4g", " GFLOP"),
         f"formula / counted = {num(r.get('flop_formula_over_counted'), '.4f')}"),
        ("achieved TFLOP/s", num(r["tflops"], ".3g"), "img/s x formula FLOP"),
        ("MFU", num(100 * mfu if mfu is not None else None, ".1f", " %"), f"peak {num(r['peak_tflops'], '.1f')} TFLOP/s ({r['peak_note']})"),
    ]


def _cost_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    ro, aug, mem = r["readout"], r["augmentation"], r["peak_memory"]
    lin, whole = r["linear_probe_over_epoch"], r["readout_over_epoch"]
    sync = r["sync_check"]["lightning"]
    reserved = f", reserved {mem['reserved_bytes'] / 2**30:.2f} GiB" if mem.get("reserved_bytes") else ""
    return [
        ("augmentation img/s (gather + augment)", num(r["aug_img_per_s"], ",.0f"),
         f"batch {aug['batch']}, {aug['ms_median']:.2f} ms/call; target >= {TARGETS['aug_img_per_s']:,.0f} on a GPU"),
        ("linear probe per evaluation / epoch", num(100 * lin if lin is not None else None, ".1f", " %"),
         f"{num(ro['linear_s'], '.2f')} s, {ro['linear_iterations']} L-BFGS iterations, vs epoch "
         f"{num(ro['epoch_s'], '.1f')} s; target < 5%"),
        ("whole readout per evaluation / epoch", num(100 * whole if whole is not None else None, ".1f", " %"),
         f"unmasked feature pass {num(ro['features_s'], '.2f')} s (k-NN's, shared) + k-NN vote "
         f"{num(ro['knn_s'], '.2f')} s + linear probe; every knn_every epochs"),
        ("peak memory", _memory_text(mem), "Lightning run" + reserved),
        _fixed_cost_row(r),
        ("host syncs inside the step", num(sync["syncs"], "d"),
         "CPU: see tests/test_fast_path.py" if sync["syncs"] is None else f"{sync['checked_steps']} warm-up steps watched"),
    ]


def format_table(r: dict[str, Any]) -> str:
    """The benchmark result `r` (run_benchmark's dict) as the printed table, header line first."""
    rows = _timing_rows(r) + _flop_rows(r) + _cost_rows(r)
    head = (f"mae_gap.bench: {r['device_name']} | torch {r['torch']} | lightning {r['lightning_version']} | "
            f"config {r['config_name']} | batch {r['batch']} | {r['precision']} | compile {r['compile']} | "
            f"data {r['data_source']} {r['train_images']}+{r['val_images']} on {'device' if r['data_on_device'] else 'host'} | "
            f"{r['params'] / 1e6:.2f} M params")
    w1 = max(len(a) for a, _, _ in rows)
    w2 = max(len(b) for _, b, _ in rows)
    lines = [head, "-" * min(len(head), 160)]
    lines += [f"{a:<{w1}}  {b:>{w2}}  {c}" for a, b, c in rows]
    return "\n".join(lines)
