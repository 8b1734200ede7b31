"""thresher dedup end to end: real store, real Ray; idempotent and incremental."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from thresher.flows import dedup
from thresher.scoring.matryoshka import normalize
from thresher.storage.ingest import IngestConfig, ingest
from thresher.storage.store import Store

from tests.helpers import clustered, write_jsonl

TEXT = IngestConfig(id_column="id", text_column="text")
BASE = [
    "Fast streaming parser for large JSON documents with schema validation",
    "A tiny helper library to retry flaky network calls with backoff",
    "Command line tool that converts spreadsheets into clean CSV files",
    "Plugin that adds coverage reports to the test runner output",
    "Bindings for a high performance image decoding library written in C",
]


def dup_map(store: Store, method: str) -> dict[int, int]:
    rows = store.query(
        "SELECT i.id AS a, k.id AS b FROM duplicates d JOIN items i USING (item_id) "
        "JOIN items k ON k.item_id = d.kept_id WHERE method = ?",
        [method],
    )
    return dict(zip(rows.column("a").to_pylist(), rows.column("b").to_pylist(), strict=True))


def test_exact_and_fuzzy_are_idempotent_and_incremental(store, tmp_path, ray_session) -> None:
    first = [{"id": i, "text": t} for i, t in enumerate(BASE)]
    first += [
        {"id": 10, "text": "  " + BASE[0].upper()},  # exact of 0
        {"id": 11, "text": BASE[1].replace("flaky", "flakey")},
    ]  # fuzzy of 1
    write_jsonl(tmp_path / "a.jsonl", first)
    ingest(store, [str(tmp_path / "a.jsonl")], TEXT)
    assert dedup.dedup_exact(store).duplicates == 1
    assert dedup.dedup_fuzzy(store, 0.8).duplicates == 1
    assert dup_map(store, "exact") == {10: 0} and dup_map(store, "fuzzy") == {11: 1}

    again = [dedup.dedup_exact(store), dedup.dedup_fuzzy(store, 0.8)]
    assert [(r.checked, r.duplicates) for r in again] == [(0, 0), (0, 0)]  # twice == once

    second = [
        {"id": 20, "text": BASE[2] + "."},  # fuzzy of old 2
        {"id": 21, "text": BASE[3]},  # exact of old 3
        {"id": 22, "text": "An entirely new package about something else"},
    ]
    write_jsonl(tmp_path / "b.jsonl", second)
    ingest(store, [str(tmp_path / "b.jsonl")], TEXT)
    ex, fz = dedup.dedup_exact(store), dedup.dedup_fuzzy(store, 0.8)
    assert (ex.checked, ex.duplicates) == (3, 1)  # only the new batch was checked
    assert (fz.checked, fz.duplicates) == (2, 1)
    assert dup_map(store, "exact") == {10: 0, 21: 3}
    assert dup_map(store, "fuzzy") == {11: 1, 20: 2}
    runs = store.query(
        "SELECT rows_in, rows_kept, rows_dropped FROM runs WHERE flow = 'dedup' "
        "ORDER BY run_id DESC LIMIT 1"
    ).to_pylist()[0]
    assert runs == {"rows_in": 2, "rows_kept": 1, "rows_dropped": 1}


def test_semantic_on_ingested_vectors_protects_kept_items(store, tmp_path, ray_session) -> None:
    rng = np.random.default_rng(0)
    x = clustered(400, 32, seed=2)
    near = normalize(x[:20] + rng.standard_normal((20, 32)) * 0.01)

    def write(name, vecs, start):
        pq.write_table(
            pa.table(
                {
                    "id": np.arange(start, start + len(vecs)),
                    "vec": pa.array(list(vecs), pa.list_(pa.float32())),
                }
            ),
            tmp_path / name,
        )
        ingest(store, [str(tmp_path / name)], IngestConfig(id_column="id", embedding_column="vec"))

    write("a.parquet", x, 0)
    first = dedup.dedup_semantic(store, 0.999)
    write("b.parquet", near, 1000)
    second = dedup.dedup_semantic(store, 0.99)
    assert second.checked == 20 and second.duplicates == 20
    kept_of = dup_map(store, "semantic")
    assert {k: v for k, v in kept_of.items() if k >= 1000} == {1000 + i: i for i in range(20)}
    assert len(kept_of) == first.duplicates + 20  # no item kept in run 1 became a duplicate
