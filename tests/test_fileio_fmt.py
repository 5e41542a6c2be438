"""mae_gap.fileio and mae_gap.fmt: atomic writes, strict JSON, the two formatters."""

from __future__ import annotations

import json

import pytest

from mae_gap.fileio import atomic_path, atomic_write, json_safe, write_json
from mae_gap.fmt import num, plural


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "f.json"
    atomic_write(path, "old")
    atomic_write(path, b"new")
    assert path.read_text() == "new" and sorted(p.name for p in path.parent.iterdir()) == ["f.json"]


def test_an_error_leaves_the_old_file(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_nothing_written_leaves_nothing(tmp_path):
    with atomic_path(tmp_path / "f.txt"):
        pass  # a DDP rank > 0: Lightning writes only on rank 0
    assert not list(tmp_path.iterdir())


def test_json_is_strict():
    obj = {1: (float("nan"), float("inf"), 2.5), "a": [float("-inf"), None]}
    assert json_safe(obj) == {"1": [None, None, 2.5], "a": [None, None]}


def test_json_safe_takes_numpy_and_pandas_values():
    import numpy as np
    import pandas as pd

    obj = {"i": np.int64(3), "b": np.bool_(True), "f": np.float32(0.5), "nan": np.float64("nan"),
           "a": np.array([[1.0, np.inf], [2.0, 3.0]]), "na": pd.NA, "nat": pd.NaT, "s": "x"}
    out = json_safe(obj)
    assert out == {"i": 3, "b": True, "f": 0.5, "nan": None, "a": [[1.0, None], [2.0, 3.0]], "na": None,
                   "nat": None, "s": "x"}
    assert [type(out[k]) for k in ("i", "b", "f")] == [int, bool, float]
    json.dumps(out, allow_nan=False)


def test_write_json_round_trips(tmp_path):
    write_json(tmp_path / "x.json", {"p": float("nan"), "q": [1, 2]})
    assert json.loads((tmp_path / "x.json").read_text(), parse_constant=lambda c: pytest.fail(c)) == {"p": None, "q": [1, 2]}


@pytest.mark.parametrize("x, spec, unit, text", [
    (None, ".3f", "", "n/a"), (float("nan"), ".3f", "", "n/a"), (float("inf"), ",.0f", "", "n/a"),
    (0.12345, ".3f", "", "0.123"), (12345.0, ",.0f", " img/s", "12,345 img/s"), (3, "d", "", "3"),
])
def test_num(x, spec, unit, text):
    assert num(x, spec, unit) == text


def test_plural():
    assert [plural(1, "run"), plural(2, "run"), plural(0, "run"), plural(2, "was", "were")] == \
        ["1 run", "2 runs", "0 runs", "2 were"]
