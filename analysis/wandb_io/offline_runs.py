"""Offline W&B runs (`wandb.init(mode="offline")`, `python -m agent.local`): the one reader of
their folders and files, pandas-free (standard library + W&B's protobuf classes).

    folders = run_folders(wandb_dir, run_id)        # oldest first, one per start of the run
    info = read_offline_run(folders[-1])            # config, summary, history, exit, preempting
    state = offline_wandb_state(info)               # the state W&B gives it: finished, failed, ...

wandb 0.31 has no Python reader of its own for the `run-<id>.wandb` files of offline runs;
`iter_wandb_records`, `read_offline_history` and `read_offline_run` parse them.

Folders. W&B names a run's folder `<mode>-<time>-<id>[-<n>]` with mode `offline-run` (or `run`
for an online run's local copy), time `%Y%m%d_%H%M%S` of the start, and `-<n>` added when the
folder of the same second exists (wandb/sdk/wandb_settings.py `sync_dir`, wandb/sdk/wandb_init.py
`set_sync_dir_suffix`); the run's file inside is `run-<id>.wandb`. `run_folders` matches the id
by that file, so an id with dashes and the `-<n>` suffix are told apart. `find_offline_run_files`
walks a whole tree (a WANDB_DIR, its `wandb/` folder, or one run folder). Symlinked folders
(`latest-run`) are skipped.

States (`offline_wandb_state`), as the W&B server gives them from what the run's last start
recorded: exit code 0 -> finished; exit code 143 / 130 (agent.train's exit after SIGTERM /
SIGINT, a preemption), or any non-zero exit or a missing exit record of a run marked preempting
-> preempted; another
non-zero exit -> failed; no exit record (killed, or still running) -> crashed.

A run resumed offline gets a new folder with the same run id each time it restarts (the analysis
merges them: `analysis.pull.offline`).
"""

from __future__ import annotations

import json
import os
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any


SIGNAL_EXIT_CODES = (143, 130)  # 128 + SIGTERM / SIGINT: agent.train's exit when preempted

# --------------------------------------------------------------------------- the .wandb file

_LOG_BLOCK = 32768
_LOG_HEADER = struct.Struct("<IHB")  # crc32, length, record type
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def iter_wandb_records(path: str | Path) -> Iterator[Any]:
    """Yield the W&B protobuf ``Record`` messages of a ``.wandb`` file.

    The file is a LevelDB-style log: a 7-byte file header (":W&B", magic
    0xBEE1, version 0), then 32 KiB blocks of chunks, each with a 7-byte header
    (CRC-32 of the type byte and data, length, type FULL/FIRST/MIDDLE/LAST).
    Reading stops quietly at a truncated or corrupt chunk (a run killed while
    writing), keeping everything before it.
    """
    from analysis.wandb_io.compat import record_protos

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
    return _json(val) if kind == "json" else val


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
    run did not end cleanly), ``complete`` (whether an exit record was written), ``preempting``
    (whether the run marked itself preempting: `wandb.Run.mark_preempting`) and ``path`` (the
    ``.wandb`` file).
    """
    wfile = _find_wandb_file(run_dir)
    out: dict[str, Any] = {
        "run_id": None, "run_name": None, "entity": None, "project": None, "sweep_id": None,
        "group": None, "job_type": None, "start_time": None,
        "config": {}, "summary": {}, "history": [], "artifacts": [], "exit_code": None,
        "complete": False, "preempting": False, "path": str(wfile),
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
        elif kind == "preempting":
            out["preempting"] = True
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


# --------------------------------------------------------------------------- run folders


_RUN_FOLDER = re.compile(r"^(?:offline-)?run-([0-9_]*)-(.+)$")  # <mode>-<time>-<id>[-<n>]


def run_folders(wandb_dir: str | Path, run_id: str | None = None) -> list[Path]:
    """The folders of run `run_id` (every run's: None) directly in `wandb_dir` or in its `wandb/`
    folder (so a WANDB_DIR and W&B's `wandb/` folder both work), oldest first: by start time,
    then W&B's `-<n>` suffix. A folder counts when it holds `run-<id>.wandb` (module docstring)."""
    base = Path(wandb_dir)
    found: list[tuple[str, int, str, Path]] = []
    for parent in (base, base / "wandb"):
        if not parent.is_dir():
            continue
        for folder in parent.iterdir():
            m = _RUN_FOLDER.match(folder.name)
            if not m or folder.is_symlink() or not folder.is_dir():
                continue
            for f in folder.glob("run-*.wandb"):
                rid, rest = f.name[len("run-") : -len(".wandb")], m.group(2)
                suffix = rest[len(rid) + 1 :] if rest.startswith(f"{rid}-") else None
                if rest != rid and not (suffix and suffix.isdigit()):
                    continue
                if run_id is None or rid == run_id:
                    found.append((m.group(1), int(suffix) if suffix else 0, folder.name, folder))
                break
    return [folder for *_, folder in sorted(found)]


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


# --------------------------------------------------------------------------- states


def offline_wandb_state(info: dict[str, Any]) -> str:
    """The state W&B gives a run from one start's `read_offline_run` record (module docstring):
    finished, preempted, failed or crashed."""
    code = info["exit_code"] if info["complete"] else None
    if code == 0:
        return "finished"
    if code in SIGNAL_EXIT_CODES or info.get("preempting"):
        return "preempted"
    return "crashed" if code is None else "failed"
