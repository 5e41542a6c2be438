"""The fake's parquet history export (``FakeWandb(parquet_history=True)``), read by the real
wandb 0.31 client: ``Run.scan_history`` and ``Run.download_history_exports`` run inside
wandb-core, which asks ``RunParquetHistory`` first, reads the exported files, and pages through
``HistoryPage`` only from the first live (not yet exported) step on."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from conftest import FAKE_ENTITY, serve_fake_wandb  # noqa: E402
from fake_wandb import FakeWandb  # noqa: E402

wandb = pytest.importorskip("wandb")
pq = pytest.importorskip("pyarrow.parquet")

ENTITY, PROJECT = FAKE_ENTITY, "mae-gap-fake"
ROWS = [{"epoch": e, "val/mse": 1.0 / e} for e in range(1, 26)]
for _r in ROWS[::5]:
    _r["val/knn_acc"] = 0.5  # an optional key: a null in the export's other rows


def _expected(rows=ROWS):
    """Rows as a scan of the export yields them: every column in every row (None where the row
    lacks the key: the parquet null), ``_step`` = index."""
    keys = {k for r in rows for k in r} | {"_step"}
    return [{k: {**r, "_step": i}.get(k) for k in keys} for i, r in enumerate(rows)]


@pytest.fixture
def fake(monkeypatch, tmp_path):
    with serve_fake_wandb(monkeypatch, tmp_path, FakeWandb(entity=ENTITY, parquet_history=True)) as f:
        yield f


def _gets(fake):
    return [(q.op.split("/")[-1], q.status) for q in fake.request_log if q.op.startswith("GET ")]


def test_scan_history_reads_the_export_not_history_pages(fake):
    fake.add_run(ENTITY, PROJECT, "done", history_rows=ROWS)
    run = wandb.Api().run(f"{ENTITY}/{PROJECT}/done")
    fake.clear_requests()

    rows = list(run.scan_history(page_size=10))
    assert rows == _expected()
    assert fake.count("HistoryPage") == fake.count("SampledHistoryPage") == 0
    (ask,) = [q for q in fake.request_log if q.op == "RunParquetHistory"]
    assert ask.variables == {"entity": ENTITY, "project": PROJECT, "runName": "done", "liveKeys": ["_step"]}
    assert _gets(fake) == [("25.parquet", 200)]  # downloaded whole, into WANDB_CACHE_DIR
    cached = Path(os.environ["WANDB_CACHE_DIR"], f"{ENTITY}_{PROJECT}_done_0.runhistory.parquet")
    assert pq.read_table(cached).num_rows == 25

    fake.clear_requests()  # use_cache=True (default): the cached file is read, not fetched again
    assert list(run.scan_history(page_size=10)) == rows
    assert fake.requests == ["RunHistoryKeys", "RunParquetHistory"] and _gets(fake) == []

    # With keys and use_cache=False the Rust reader reads the URL by ranges; unlike
    # SampledHistoryPage it keeps rows that lack a key (value None).
    fake.clear_requests()
    knn = list(run.scan_history(keys=["epoch", "val/knn_acc"], use_cache=False))
    assert [(r["epoch"], r["val/knn_acc"]) for r in knn] == [(e, 0.5 if e % 5 == 1 else None) for e in range(1, 26)]
    assert {s for _, s in _gets(fake)} == {206} and fake.count("SampledHistoryPage") == 0


def test_download_history_exports(fake, tmp_path):
    fake.add_run(ENTITY, PROJECT, "done", history_rows=ROWS)
    run = wandb.Api().run(f"{ENTITY}/{PROJECT}/done")
    res = run.download_history_exports(tmp_path / "dl")
    assert res.paths == [tmp_path / "dl" / f"{ENTITY}_{PROJECT}_done_0.runhistory.parquet"]
    assert not res.contains_live_data and not res.errors
    assert pq.read_table(res.paths[0]).to_pylist() == _expected()


def test_incomplete_export(fake, tmp_path):
    """The first 10 rows exported, 15 live: liveData lists the live steps ({"_step": n})."""
    fake.add_run(ENTITY, PROJECT, "part", history_rows=ROWS).exported_rows = 10
    run = wandb.Api().run(f"{ENTITY}/{PROJECT}/part")
    fake.clear_requests()

    rows = list(run.scan_history(page_size=10))
    assert [r["_step"] for r in rows] == list(range(25))
    assert rows[:10] == _expected()[:10]  # from the file: nulls for missing keys
    assert rows[10] == {"_step": 10, "epoch": 11, "val/mse": 1 / 11, "val/knn_acc": 0.5}  # HistoryPage
    pages = [(q.variables["minStep"], q.variables["maxStep"]) for q in fake.request_log if q.op == "HistoryPage"]
    assert pages == [(10, 20), (20, 25)]  # only pages that reach the first live step

    fake.clear_requests()
    with pytest.raises(wandb.apis.public.runhistory.IncompleteRunHistoryError):
        run.download_history_exports(tmp_path / "strict")
    assert fake.requests == ["RunParquetHistory"] and _gets(fake) == []

    res = run.download_history_exports(tmp_path / "dl", require_complete_history=False)
    assert res.contains_live_data and len(res.paths) == 1
    assert pq.read_table(res.paths[0]).num_rows == 10


def test_running_run_has_no_export(fake):
    fake.add_run(ENTITY, PROJECT, "live", history_rows=ROWS, state="running")
    rows = list(wandb.Api().run(f"{ENTITY}/{PROJECT}/live").scan_history())
    assert [r["_step"] for r in rows] == list(range(25)) and "val/knn_acc" not in rows[1]
    assert fake.count("HistoryPage") == 1 and _gets(fake) == []
