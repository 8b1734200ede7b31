from __future__ import annotations

import math
import os
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thresher.storage.ingest import IngestConfig, ingest, item_ids
from thresher.storage.readers import SourceError
from thresher.storage.store import Store

from tests.helpers import snapshot, write_jsonl

TEXT = IngestConfig(text_column="text")


def records(n: int, start: int = 0) -> list[dict]:
    return [
        {"id": i, "text": f"document number {i}", "label": i % 3} for i in range(start, start + n)
    ]


def count(store: Store, table: str = "items") -> int:
    return store.query(f"SELECT count(*) AS n FROM {table}").column("n")[0].as_py()


def test_jsonl_bad_rows_go_to_rejects_and_the_rest_is_ingested(store, tmp_path) -> None:
    path = write_jsonl(
        tmp_path / "a.jsonl",
        records(5),
        [
            b'{"id": 100, "text": ""}',
            b'{"id": 101, "text": null}',
            b'{"id": 102, "text": "cut',
            b'{"id": 103, "text": "caf\xe9"}',
            b"[1, 2]",
        ],
    )
    report = ingest(store, [str(path)], TEXT)
    assert (report.kept, report.rejected) == (5, 5)
    reasons = store.query("SELECT row, reason FROM rejects ORDER BY row").to_pylist()
    assert [r["row"] for r in reasons] == [6, 7, 8, 9, 10]
    assert "empty text" in reasons[0]["reason"] and "empty text" in reasons[1]["reason"]
    assert reasons[2]["reason"].startswith("invalid JSON")
    assert "not UTF-8" in reasons[3]["reason"]
    assert reasons[4]["reason"] == "not a JSON object"
    raw = store.query("SELECT raw FROM rejects WHERE row = 9").column(0)[0].as_py()
    assert "caf\\xe9" in raw  # the undecodable bytes are kept, escaped
    run = store.query("SELECT rows_in, rows_kept, rows_dropped, rows_rejected FROM runs")
    assert run.to_pylist() == [
        {"rows_in": 10, "rows_kept": 5, "rows_dropped": 0, "rows_rejected": 5}
    ]


def test_all_source_columns_are_kept_and_formats_agree(store, tmp_path) -> None:
    recs = records(4)
    write_jsonl(tmp_path / "a.jsonl", recs)
    pq.write_table(pa.Table.from_pylist(records(4, 10)), tmp_path / "b.parquet")
    (tmp_path / "c.csv").write_text(
        "id,text,label\n"
        + "".join(f'{r["id"]},"{r["text"]}",{r["label"]}\n' for r in records(4, 20))
    )
    report = ingest(store, [str(tmp_path)], IngestConfig(id_column="id", text_column="text"))
    assert [s.kept for s in report.sources] == [4, 4, 4]
    got = store.query("SELECT id, text, label FROM items ORDER BY id").to_pylist()
    assert got == records(4) + records(4, 10) + records(4, 20)


def test_item_id_is_stable_across_stores_and_reingest_adds_nothing(tmp_path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", records(20))
    ids = []
    for name in ("s1", "s2"):
        s = Store.init(tmp_path / name)
        ingest(s, [str(path)], TEXT)
        ids.append(s.query("SELECT item_id FROM items ORDER BY item_id").column(0).to_pylist())
    assert ids[0] == ids[1] and len(set(ids[0])) == 20
    s = Store(tmp_path / "s1")
    copy = shutil.copy(path, tmp_path / "renamed.jsonl")
    report = ingest(s, [str(path), str(copy)], TEXT)
    assert all(src.status.startswith("skipped") for src in report.sources)
    assert count(s) == 20
    new = write_jsonl(tmp_path / "b.jsonl", records(3, 50))
    report = ingest(s, [str(new)], TEXT)
    assert report.sources[0].batch_id == 2 and count(s) == 23


def test_id_column_keys_the_item_id_and_duplicate_ids_are_rejected(store, tmp_path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", records(3))
    b = write_jsonl(tmp_path / "b.jsonl", records(2, 2))  # id 2 again
    cfg = IngestConfig(id_column="id", text_column="text")
    ingest(store, [str(a), str(b)], cfg)
    got = store.query("SELECT id, item_id FROM items ORDER BY id").to_pylist()
    assert [r["id"] for r in got] == [0, 1, 2, 3]
    assert [r["item_id"] for r in got] == item_ids(0, np.arange(4, dtype=np.uint64)).tolist()
    assert store.query("SELECT reason FROM rejects").column(0).to_pylist() == ["duplicate id 2"]


def test_truncated_parquet_stops_the_ingest_and_changes_nothing(store, tmp_path) -> None:
    good = write_jsonl(tmp_path / "good.jsonl", records(5))
    pq.write_table(pa.Table.from_pylist(records(200)), tmp_path / "full.parquet")
    data = (tmp_path / "full.parquet").read_bytes()
    (tmp_path / "bad.parquet").write_bytes(data[: len(data) // 2])
    before = snapshot(store)
    with pytest.raises(SourceError, match=r"bad\.parquet"):
        ingest(store, [str(good), str(tmp_path / "bad.parquet")], TEXT)
    assert snapshot(store) == before


@pytest.mark.parametrize(
    "source, message",
    [
        ("missing.jsonl", "no such file"),
        ("*.nothing", "no files match"),
    ],
)
def test_missing_sources_are_named(store, tmp_path, source, message) -> None:
    with pytest.raises(SourceError, match=message):
        ingest(store, [str(tmp_path / source)], TEXT)


def test_missing_column_lists_the_columns(store, tmp_path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", records(2))
    with pytest.raises(SourceError, match=r"no column 'body'.*columns: id, text, label"):
        ingest(store, [str(path)], IngestConfig(text_column="body"))


def test_embedding_rows_are_checked_and_searchable_as_embeddings(store, tmp_path) -> None:
    vecs = [
        [1.0, 0.0, 0.0],
        [0.0, 1.0],
        [math.nan, 0.0, 1.0],
        None,
        [0.0, math.inf, 1.0],
        [0.5, 0.5, 0.5],
    ]
    table = pa.table({"id": list(range(6)), "emb": pa.array(vecs, pa.list_(pa.float32()))})
    pq.write_table(table, tmp_path / "e.parquet")
    report = ingest(store, [str(tmp_path / "e.parquet")], IngestConfig(embedding_column="emb"))
    assert report.kept == 2
    reasons = store.query("SELECT reason FROM rejects ORDER BY row").column(0).to_pylist()
    assert reasons == [
        "embedding length 2, expected 3",
        "non-finite embedding in column 'emb'",
        "null embedding in column 'emb'",
        "non-finite embedding in column 'emb'",
    ]
    emb = store.query("SELECT model, vector FROM embeddings ORDER BY vector[1]").to_pylist()
    assert emb == [
        {"model": "emb", "vector": [0.5, 0.5, 0.5]},
        {"model": "emb", "vector": [1.0, 0.0, 0.0]},
    ]
    pq.write_table(
        pa.table({"id": [9], "emb": pa.array([[1.0, 2.0]], pa.list_(pa.float32()))}),
        tmp_path / "f.parquet",
    )
    ingest(store, [str(tmp_path / "f.parquet")], IngestConfig(embedding_column="emb"))
    assert (
        "expected 3"
        in store.query("SELECT reason FROM rejects WHERE row = 1 AND source LIKE '%f.parquet'")
        .column(0)[0]
        .as_py()
    )


def test_csv_row_with_wrong_field_count_and_bad_bytes_are_rejected(store, tmp_path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"id,text\n1,hello\n2,one,two\n3,caf\xe9\n4,world\n")
    report = ingest(store, [str(path)], TEXT)
    assert report.kept == 2 and report.rejected == 2
    reasons = store.query("SELECT reason FROM rejects ORDER BY reason").column(0).to_pylist()
    assert reasons == ["3 fields, expected 2", "undecodable text in column 'text' (not UTF-8)"]


@pytest.mark.parametrize("batch", [64, 10_000])
def test_a_field_missing_from_the_first_lines_is_kept(store, tmp_path, batch) -> None:
    # Arrow's from_pylist takes the first record's keys: `label` (absent from line 1)
    # was dropped for the whole chunk; in a later chunk it must appear too
    rows = records(300)
    del rows[0]["label"]
    rows[200]["note"] = "only here"
    path = write_jsonl(tmp_path / "a.jsonl", rows)
    ingest(
        store, [str(path)], IngestConfig(text_column="text", label_column="label", batch_rows=batch)
    )
    got = store.query("SELECT id, label, note FROM items ORDER BY id").to_pylist()
    assert [r["label"] for r in got] == [None] + [i % 3 for i in range(1, 300)]
    assert [r["id"] for r in got if r["note"] is not None] == [200]


def test_ingest_streams_in_batches(store, tmp_path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", records(1000))
    report = ingest(store, [str(path)], IngestConfig(text_column="text", batch_rows=64))
    assert report.kept == 1000
    groups = sum(pq.ParquetFile(p).metadata.num_row_groups for p in store.table_files("items"))
    assert groups == math.ceil(1000 / 64)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kinds=st.lists(st.sampled_from(["ok", "empty", "json", "bytes", "array"]), max_size=40),
    batch=st.integers(1, 7),
)
def test_rows_in_equal_kept_plus_rejected(tmp_path_factory, kinds, batch) -> None:
    tmp = tmp_path_factory.mktemp("prop")
    lines = {
        "ok": b'{"text": "fine %d"}',
        "empty": b'{"text": "  "}',
        "json": b'{"text": ',
        "bytes": b'{"text": "\xff"}',
        "array": b"[]",
    }
    path = tmp / "x.jsonl"
    path.write_bytes(
        b"".join(lines[k].replace(b"%d", str(i).encode()) + b"\n" for i, k in enumerate(kinds))
    )
    s = Store.init(tmp / "s")
    if "ok" not in kinds and "empty" not in kinds:  # no line has a column: nothing to check
        with pytest.raises(SourceError, match="no column 'text'"):
            ingest(s, [str(path)], IngestConfig(text_column="text", batch_rows=batch))
        return
    report = ingest(s, [str(path)], IngestConfig(text_column="text", batch_rows=batch))
    assert report.kept == kinds.count("ok")
    assert report.kept + report.rejected == len(kinds)
    assert count(s) + count(s, "rejects") == len(kinds)


def test_unchanged_files_are_not_read_again_and_touched_ones_are_hashed(
    store, tmp_path, monkeypatch
) -> None:
    from thresher.storage import ingest as ingest_mod

    path = write_jsonl(tmp_path / "a.jsonl", records(20))
    ingest(store, [str(path)], TEXT)
    hashed: list[str] = []
    real = ingest_mod.fingerprint
    monkeypatch.setattr(ingest_mod, "fingerprint", lambda p: hashed.append(str(p)) or real(p))
    # same path, size and mtime: known without reading the file
    report = ingest(store, [str(path)], TEXT)
    assert report.sources[0].status == "skipped (already ingested as batch 1)"
    assert hashed == []
    assert ingest_mod.pending_sources(store, [path]) == [] and hashed == []
    # a new mtime: the content hash decides (same bytes: still skipped)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    report = ingest(store, [str(path)], TEXT)
    assert report.sources[0].status.startswith("skipped") and hashed == [str(path)]
    assert count(store) == 20
