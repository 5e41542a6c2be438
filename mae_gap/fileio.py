"""Writing files so that a reader (another process, a resumed run) sees the old file or the new one,
never half of one; and JSON that strict parsers accept (no NaN / Infinity)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside `path` (same folder, unique per process and thread). On a clean
    exit it replaces `path` in one step if it was written (a DDP rank > 0 may write nothing); on an
    error it is removed and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        yield tmp
        if tmp.exists():
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write `data` (text as UTF-8) to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)


def json_safe(obj: Any) -> Any:
    """`obj` as plain JSON values: dict keys as strings, tuples as lists, numpy scalars and arrays as
    Python numbers and lists, non-finite floats and pandas' missing values (NA, NaT) as None (JSON
    has no NaN). Neither numpy nor pandas is imported: their objects are known by their type."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if type(obj).__module__ == "numpy" and hasattr(obj, "tolist"):  # np.int64, np.bool_, np.ndarray, ...
        return json_safe(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if type(obj).__name__ in ("NAType", "NaTType"):
        return None
    return obj


def write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> None:
    """`obj` as strict JSON (see `json_safe`; other objects as their str), written atomically."""
    atomic_write(path, json.dumps(json_safe(obj), indent=indent, default=str) + "\n")
