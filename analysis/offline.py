"""Offline W&B runs (`wandb.init(mode="offline")`, `python -m agent.local`) -> the tidy table.

    table = load_offline("wandb/")                 # same tidy table as pulling the runs from W&B
    result = load_offline_runs("wandb/")           # the table plus the runs, states, sweep id

wandb 0.31 has no Python reader of its own for the `run-<id>.wandb` files of offline runs;
`iter_wandb_records`, `read_offline_history` and `read_offline_run` parse them (pure
functions, standard library + W&B's protobuf classes).

Layout handled: any folder under DIR (a WANDB_DIR, its `wandb/` folder, or one run folder)
holding `offline-run-<time>-<id>[-n]/run-<id>.wandb` or `run-<time>-<id>/run-<id>.wandb`
(online runs' local copies). Symlinked folders (`latest-run`) are skipped. A run resumed
offline gets a new folder with the same run id each time it restarts: the folders of one run
id are merged in start order (config and summary updated in turn, histories concatenated,
each epoch once: the last logging wins), and the state is the last folder's: exit code 0 ->
finished, non-zero -> failed, no exit record (killed, or still running) -> crashed. The
analysis runs this package writes (`job_type="analysis"`) are skipped.
"""

from __future__ import annotations

import json
import math
import os
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import STATE_CRASHED, STATE_FAILED, STATE_FINISHED
from analysis.pull import PullError, PullResult, RunInfo, tidy_table

__all__ = [
    "iter_wandb_records",
    "read_offline_history",
    "read_offline_run",
    "find_offline_run_files",
    "load_offline_runs",
    "load_offline",
]

ANALYSIS_JOB_TYPE = "analysis"

# --------------------------------------------------------------------------- the .wandb file

_LOG_BLOCK = 32768
_LOG_HEADER = struct.Struct("<IHB")  # crc32, length, record type
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def iter_wandb_records(path: str | Path) -> Iterator[Any]:
    """Yield the ``wandb_internal_pb2.Record`` messages of a ``.wandb`` file.

    The file is a LevelDB-style log: a 7-byte file header (":W&B", magic
    0xBEE1, version 0), then 32 KiB blocks of chunks, each with a 7-byte header
    (CRC-32 of the type byte and data, length, type FULL/FIRST/MIDDLE/LAST).
    Reading stops quietly at a truncated or corrupt chunk (a run killed while
    writing), keeping everything before it.
    """
    from analysis.wandb_compat import record_protos

    pb = record_protos()

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B transaction log")
    pos = 7
    pending: bytes | None = None
    while True:
        left = _LOG_BLOCK - pos % _LOG_BLOCK
        if left < _LOG_HEADER.size:  # block trailer padding
            pos += left
            continue
        if pos + _LOG_HEADER.size > len(data):
            return
        crc, length, rtype = _LOG_HEADER.unpack_from(data, pos)
        if rtype == 0 and length == 0:  # zero padding: skip to the next block
            pos += left
            continue
        chunk = data[pos + _LOG_HEADER.size : pos + _LOG_HEADER.size + length]
        if len(chunk) < length:
            return
        if zlib.crc32(chunk, zlib.crc32(bytes([rtype]))) & 0xFFFFFFFF != crc:
            return
        pos += _LOG_HEADER.size + length
        if rtype == _FULL:
            pending, whole = None, chunk
        elif rtype == _FIRST:
            pending, whole = chunk, None
        elif rtype == _MIDDLE and pending is not None:
            pending, whole = pending + chunk, None
        elif rtype == _LAST and pending is not None:
            pending, whole = None, pending + chunk
        else:
            return
        if whole is not None:
            rec = pb.Record()
            try:
                rec.ParseFromString(whole)
            except Exception:  # noqa: BLE001 - a record that does not parse ends the readable part
                return
            yield rec


def _item_key(item: Any) -> str:
    return ".".join(item.nested_key) if item.nested_key else item.key


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _item_value(item: Any) -> Any:
    if item.value_json:
        return _json(item.value_json)
    kind = item.WhichOneof("value") if "value" in item.DESCRIPTOR.oneofs_by_name else None
    if kind in (None, "none"):
        return None
    val = getattr(item, kind)
    if kind == "json":
        return _json(val)
    if kind == "number" and isinstance(val, float) and not math.isfinite(val):
        return val
    return val


def _apply(target: dict[str, Any], updates: Any, removes: Any) -> None:
    """Apply one config/summary record (items to set, items to remove) to a plain dict."""
    for item in updates:
        target[_item_key(item)] = _json(item.value_json)
    for item in removes:
        target.pop(_item_key(item), None)


def _find_wandb_file(run_dir: str | Path) -> Path:
    p = Path(run_dir)
    if p.is_file():
        return p
    files = sorted(p.glob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"no run-*.wandb file in {p}")
    return files[0]


def read_offline_history(run_dir: str | Path) -> list[dict[str, Any]]:
    """History rows of an offline run, in logged order.

    ``run_dir`` is an ``offline-run-*`` folder (or the ``.wandb`` file itself).
    Each row is ``{key: value}`` including W&B's ``_step``, ``_runtime`` and
    ``_timestamp``; nested keys are joined with ".".
    """
    rows = []
    for rec in iter_wandb_records(_find_wandb_file(run_dir)):
        if rec.WhichOneof("record_type") == "history":
            rows.append({_item_key(i): _item_value(i) for i in rec.history.item})
    return rows


def read_offline_run(run_dir: str | Path) -> dict[str, Any]:
    """Everything analysis needs from an offline run folder (or its ``.wandb`` file).

    Keys: ``run_id`` (from the run record, else the file name), ``run_name``, ``entity``,
    ``project``, ``sweep_id``, ``group``, ``job_type``, ``start_time`` (POSIX seconds or
    None), ``config`` (plain values), ``summary``, ``history`` (list of rows),
    ``artifacts`` (``[{"name", "type", "files", "aliases"}]`` of logged artifacts), ``exit_code`` (None if the
    run did not end cleanly), ``complete`` (whether an exit record was written) and
    ``path`` (the ``.wandb`` file).
    """
    wfile = _find_wandb_file(run_dir)
    out: dict[str, Any] = {
        "run_id": None, "run_name": None, "entity": None, "project": None, "sweep_id": None,
        "group": None, "job_type": None, "start_time": None,
        "config": {}, "summary": {}, "history": [], "artifacts": [], "exit_code": None,
        "complete": False, "path": str(wfile),
    }
    for rec in iter_wandb_records(wfile):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            out.update(run_id=r.run_id or out["run_id"], entity=r.entity or None,
                       project=r.project or None, sweep_id=r.sweep_id or None,
                       group=r.run_group or None, job_type=r.job_type or None,
                       run_name=r.display_name or None)
            if r.HasField("start_time"):
                out["start_time"] = r.start_time.seconds + r.start_time.nanos / 1e9
            _apply(out["config"], r.config.update, ())
        elif kind == "config":
            _apply(out["config"], rec.config.update, rec.config.remove)
        elif kind == "history":
            out["history"].append(
                {_item_key(i): _item_value(i) for i in rec.history.item}
            )
        elif kind == "summary":
            _apply(out["summary"], rec.summary.update, rec.summary.remove)
        elif kind == "artifact":
            a = rec.artifact
            out["artifacts"].append({
                "name": a.name, "type": a.type,
                "files": [c.path for c in a.manifest.contents],
                "aliases": list(a.aliases),
            })
        elif kind == "exit":
            out["exit_code"] = rec.exit.exit_code
            out["complete"] = True
    if not out["run_id"]:  # no run record (killed before it was flushed): the file name has it
        stem = wfile.stem
        out["run_id"] = stem[4:] if stem.startswith("run-") else stem
    out["config"].pop("_wandb", None)
    out["summary"] = {
        k: v for k, v in out["summary"].items()
        if k != "_wandb" and not k.startswith("_wandb.")
    }
    return out


# --------------------------------------------------------------------------- a folder of runs


def find_offline_run_files(root: str | Path) -> list[Path]:
    """Every `run-*.wandb` file of a run folder under `root` (symlinked folders skipped)."""
    root = Path(root)
    if root.is_file():
        return [root] if root.suffix == ".wandb" else []
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not os.path.islink(os.path.join(dirpath, d)))
        for name in sorted(filenames):
            if name.startswith("run-") and name.endswith(".wandb"):
                found.append(Path(dirpath) / name)
    return found


def _state(info: dict[str, Any]) -> tuple[str, str]:
    if not info["complete"]:
        return STATE_CRASHED, "crashed (no exit record)"
    code = info["exit_code"]
    if code == 0:
        return STATE_FINISHED, "finished"
    return STATE_FAILED, f"failed (exit code {code})"


def load_offline_runs(root: str | Path, sweep: str | None = None) -> PullResult:
    """All offline runs under `root` as a PullResult (table, runs, sweep id), source "offline".

    Runs are grouped by run id (resumed runs merged, see the module docstring) and ordered by
    their first start. `sweep` (an id, or `entity/project/id`) keeps the runs of that sweep:
    those whose W&B sweep id or group (agent.local groups runs by its local sweep id) is it.
    Without it, the runs must come from one sweep (or group), whose id becomes the result's
    sweep. Raises PullError (one line) for a missing folder, no runs, or several sweeps.
    """
    t0 = time.monotonic()
    root = Path(root)
    if not root.exists():
        raise PullError(f"--offline folder {root} does not exist")
    files = find_offline_run_files(root)
    if not files:
        raise PullError(f"no offline W&B runs (run-*.wandb) under {root}")

    pieces: dict[str, list[dict[str, Any]]] = {}
    for f in files:
        try:
            info = read_offline_run(f)
        except (OSError, ValueError) as exc:
            raise PullError(f"cannot read {f}: {exc}") from exc
        if info["job_type"] == ANALYSIS_JOB_TYPE:
            continue
        info["_mtime"] = f.stat().st_mtime
        pieces.setdefault(info["run_id"], []).append(info)
    if not pieces:
        raise PullError(f"no training runs under {root} (only analysis runs)")

    def start(info):
        return (info["start_time"] if info["start_time"] is not None else info["_mtime"], info["path"])

    merged: list[tuple[float, RunInfo, list[dict[str, Any]]]] = []
    names: dict[str, set[str]] = {}  # run id -> its sweep id and group
    for rid, parts in pieces.items():
        parts.sort(key=start)
        config: dict[str, Any] = {}
        summary: dict[str, Any] = {}
        history: list[dict[str, Any]] = []
        meta: dict[str, Any] = {}
        for part in parts:
            config.update(part["config"])
            summary.update(part["summary"])
            history.extend(part["history"])
            for k in ("run_name", "entity", "project", "sweep_id", "group"):
                meta[k] = part[k] or meta.get(k)
        state, raw = _state(parts[-1])
        run = RunInfo(
            run_id=rid,
            run_name=meta.get("run_name") or rid,
            state=state,
            wandb_state=raw,
            config=config,
            summary={k: v for k, v in summary.items() if v is None or isinstance(v, (bool, int, float, str))},
            sweep_id=meta.get("sweep_id") or meta.get("group"),
            entity=meta.get("entity"),
            project=meta.get("project"),
            created=_iso(start(parts[0])[0]),
            last_step=len(history) - 1,
            sources=[str(Path(p["path"]).parent) for p in parts],
        )
        merged.append((start(parts[0])[0], run, history))
        names[rid] = {n for n in (meta.get("sweep_id"), meta.get("group")) if n}
    merged.sort(key=lambda t: (t[0], t[1].run_id))

    want = sweep.strip().rstrip("/").split("/")[-1] if sweep else None
    known = sorted({r.sweep_id for _, r, _ in merged if r.sweep_id})

    def of_sweep(run: RunInfo) -> bool:  # agent.local groups runs as "<name>-<local sweep id>"
        return any(n == want or n.endswith(f"-{want}") for n in names[run.run_id])

    if want is not None:
        keep = [t for t in merged if of_sweep(t[1]) or (t[1].sweep_id is None and len(known) <= 1)]
        if not any(of_sweep(t[1]) for t in keep):
            raise PullError(
                f"no offline runs of sweep {want} under {root}"
                + (f" (sweeps/groups found: {', '.join(known)})" if known else "")
            )
        sweep_id = want
    else:
        if len(known) > 1:
            raise PullError(
                f"the runs under {root} come from {len(known)} sweeps/groups ({', '.join(known)}): give the SWEEP to analyse"
            )
        keep = merged
        sweep_id = known[0] if known else "offline"
    runs = [r for _, r, _ in keep]
    for r in runs:
        r.sweep_id = r.sweep_id or sweep_id
    histories = {r.run_id: h for _, r, h in keep}
    table, dups, ignored = tidy_table(runs, histories)
    return PullResult(
        table, runs, sweep_id, "offline", seconds=time.monotonic() - t0, duplicate_epochs=dups,
        ignored_rows=ignored, requests_made=False,
    )


def load_offline(root: str | Path, sweep: str | None = None) -> pd.DataFrame:
    """The tidy table of the offline runs under `root` (see `load_offline_runs`)."""
    return load_offline_runs(root, sweep).table


def _iso(t: float | None) -> str:
    if t is None:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
