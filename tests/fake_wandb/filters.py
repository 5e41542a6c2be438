"""W&B's run filters and run order, as the fake W&B backend evaluates them (test infrastructure,
standard library only).

``Api.runs(path, filters=..., order=...)`` sends ``filters`` as a JSON MongoDB-style document and
``order`` as ``[+-]key``; ``matches`` evaluates the document on a stored run, ``sort_runs`` orders.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .common import _GraphQLError

if TYPE_CHECKING:
    from .records import FakeRun


def _sort_runs(runs: list[FakeRun], order: str) -> list[FakeRun]:
    desc = order.startswith("-")
    key = order.lstrip("+-")
    if key in ("created_at", "createdAt", ""):
        return sorted(runs, key=lambda r: r.created, reverse=desc)
    if key in ("name", "display_name"):
        return sorted(runs, key=lambda r: r.run_id, reverse=desc)
    return sorted(runs, key=lambda r: r.created, reverse=desc)


def _lookup(run: FakeRun, path: str) -> tuple[bool, Any]:
    if path in ("sweep", "sweepName"):
        return True, run.sweep_id
    if path in ("name", "id"):
        return True, run.run_id
    if path == "displayName":
        return True, run.display_name or run.run_id
    if path == "state":
        return True, run.state
    if path == "tags":
        return True, run.tags
    for prefix, src in (("config.", run.config), ("summary_metrics.", run.summary)):
        if path.startswith(prefix):
            rest = path[len(prefix) :]
            if prefix == "config." and rest.endswith(".value"):
                rest = rest[: -len(".value")]
            if rest in src:
                return True, src[rest]
            return False, None
    return False, None


def _matches(run: FakeRun, flt: Any) -> bool:
    """A small MongoDB-style filter: $and/$or/$nor, equality, $eq/$ne/$in/$nin/
    $gt/$gte/$lt/$lte/$exists on run fields, ``config.X`` and ``summary_metrics.X``."""
    if not flt:
        return True
    for key, cond in flt.items():
        if key == "$and":
            if not all(_matches(run, c) for c in cond):
                return False
            continue
        if key == "$or":
            if not any(_matches(run, c) for c in cond):
                return False
            continue
        if key == "$nor":
            if any(_matches(run, c) for c in cond):
                return False
            continue
        found, val = _lookup(run, key)
        if isinstance(cond, Mapping) and any(k.startswith("$") for k in cond):
            if not all(_compare(o, found, val, arg) for o, arg in cond.items()):
                return False
        else:
            if isinstance(val, list) and not isinstance(cond, list):
                if cond not in val:
                    return False
            elif not found or val != cond:
                return False
    return True


def _compare(opname: str, found: bool, val: Any, arg: Any) -> bool:
    if opname == "$eq":
        return found and val == arg
    if opname == "$ne":
        return not found or val != arg
    if opname == "$in":
        if isinstance(val, list):
            return found and any(x in arg for x in val)
        return found and val in arg
    if opname == "$nin":
        return not found or val not in arg
    if opname == "$exists":
        return found == bool(arg)
    if opname in ("$gt", "$gte", "$lt", "$lte"):
        if not found or val is None:
            return False
        return {
            "$gt": val > arg, "$gte": val >= arg, "$lt": val < arg, "$lte": val <= arg
        }[opname]
    raise _GraphQLError(f"FakeWandb: unsupported filter op {opname!r}")
