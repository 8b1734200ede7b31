"""thresher dedup end to end: real store, real Ray; idempotent and incremental."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thresher.flows import dedup
from thresher.scoring.matryoshka import normalize
from thresher.selection.minhash import (
    LSHParams,
    fuzzy_duplicates,
    minhash_signatures,
    shingle_hashes,
)
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


def _near_copies(n: int, seed: int, start: int) -> list[dict]:
    """Short texts, a third of them near copies (one or two characters changed)."""
    rng = np.random.default_rng(seed)
    words = [f"tok{i}" for i in range(120)]
    texts = [" ".join(rng.choice(words, rng.integers(6, 14))) for _ in range(n)]
    for _ in range(n // 3):
        t = list(texts[int(rng.integers(0, n))])
        t[int(rng.integers(0, len(t)))] = "#"
        texts.append("".join(t))
    return [{"id": start + i, "text": t} for i, t in enumerate(texts)]


@pytest.mark.parametrize("shards", [1, 4])
def test_partitioned_fuzzy_equals_the_single_process_groups(
    store, tmp_path, ray_session, shards
) -> None:
    params = LSHParams(threshold=0.7)
    batches = [_near_copies(240, seed=1, start=0), _near_copies(90, seed=2, start=10_000)]
    reference: dict[int, int] = {}
    seen: list[dict] = []
    for b, batch in enumerate(batches):
        write_jsonl(tmp_path / f"{b}.jsonl", batch)
        ingest(store, [str(tmp_path / f"{b}.jsonl")], TEXT)
        dedup.dedup_fuzzy(store, 0.7, shards=shards)
        # the single-process rule over the kept items so far, then the new ones, in keep order
        kept_before = [r for r in seen if r["id"] not in reference]
        order = store.query(
            "SELECT id FROM items WHERE batch_id = $b ORDER BY item_id", {"b": b + 1}
        ).column(0)
        new = sorted(batch, key=lambda r: order.to_pylist().index(r["id"]))
        texts = pa.array([r["text"] for r in kept_before + new])
        hashes, offsets = shingle_hashes(texts)
        sig = minhash_signatures(hashes, offsets, params)
        res = fuzzy_duplicates(hashes, offsets, sig, params, np.arange(len(kept_before)))
        ids = [r["id"] for r in kept_before + new]
        reference.update({ids[d]: ids[k] for d, k in zip(res.dup, res.kept, strict=True)})
        seen += batch
        assert dup_map(store, "fuzzy") == reference
    assert len(reference) > 20


def test_a_verification_part_reads_its_own_texts_from_the_staged_folder(store, tmp_path) -> None:
    from thresher.flows.fuzzy import _part_texts

    # unordered, as the candidate texts are staged (sorting them failed at 10M items)
    parts, ids = [1, 0, 1, 2, 0, 1], [7, 9, 3, 1, 5, 5]
    texts = [f"p{p}-{i}" for p, i in zip(parts, ids, strict=True)]
    src = tmp_path / "texts.parquet"
    pq.write_table(pa.table({"part": parts, "item_id": ids, "text": texts}), src)
    folder = tmp_path / "staged"
    sql = f"SELECT * FROM read_parquet('{src}')"
    assert store.copy_to(sql, folder, partition_by="part", row_group_rows=2) == 6
    assert sorted(p.name for p in folder.iterdir()) == ["part=0", "part=1", "part=2"]
    got = _part_texts(str(folder), 1, np.array([3, 4, 5, 7], np.int64))
    assert got.to_pylist() == ["p1-3", None, "p1-5", "p1-7"]  # 4: not in the store
    assert _part_texts(str(folder), 9, np.array([1], np.int64)).to_pylist() == [None]
    assert _part_texts(str(tmp_path / "no"), 0, np.array([5], np.int64)).to_pylist() == [None]


@pytest.mark.parametrize(("groups", "keep"), [(1, "first"), (3, "hard")])
def test_partitioned_semantic_equals_the_single_process_pass(
    store, tmp_path, ray_session, groups, keep
) -> None:
    from thresher.selection.semantic import SemanticParams, semantic_duplicates
    from thresher.storage import vectors as vstore

    rng = np.random.default_rng(4)
    x = clustered(900, 48, seed=4, centres=8)
    x = np.concatenate([x, normalize(x[:150] + rng.standard_normal((150, 48)) * 0.02)])
    pq.write_table(
        pa.table({"id": np.arange(len(x)), "vec": pa.array(list(x), pa.list_(pa.float32()))}),
        tmp_path / "v.parquet",
    )
    ingest(
        store, [str(tmp_path / "v.parquet")], IngestConfig(id_column="id", embedding_column="vec")
    )
    report = dedup.dedup_semantic(store, 0.97, keep=keep, groups=groups)
    # the single-process pass over the same rotated vectors, in keep order (batch, item_id)
    info = vstore.latest_index(store, "vec")
    loaded = vstore.load(store, info)
    order = np.argsort(loaded.ids, kind="stable")
    ids, vectors = loaded.ids[order], loaded.vectors[order]
    params = SemanticParams(threshold=0.97, prefix_dim=info.shortlist_dim)
    res = semantic_duplicates(vectors, params, keep=keep)
    expected = dict(zip(ids[res.dup].tolist(), ids[res.kept].tolist(), strict=True))
    got = store.query("SELECT item_id, kept_id FROM duplicates WHERE method = 'semantic'")
    assert (
        dict(zip(*(got.column(c).to_pylist() for c in ("item_id", "kept_id")), strict=True))
        == expected
    )
    assert report.duplicates == len(expected) >= 100


@pytest.mark.parametrize("most", [None, 60])
def test_semantic_fits_on_a_sample_when_the_prefixes_do_not_fit(
    store, tmp_path, ray_session, most
) -> None:
    rng = np.random.default_rng(5)
    x = clustered(600, 32, seed=5, centres=6)
    near = normalize(x[:40] + rng.standard_normal((40, 32)) * 0.005)
    pq.write_table(
        pa.table(
            {
                "id": np.arange(640),
                "vec": pa.array(list(np.concatenate([x, near])), pa.list_(pa.float32())),
            }
        ),
        tmp_path / "v.parquet",
    )
    ingest(
        store, [str(tmp_path / "v.parquet")], IngestConfig(id_column="id", embedding_column="vec")
    )
    # k-means on a 256-per-centroid sample; most=60: each cluster (~53 rows, ~106 members
    # with 2 probes) split again into ~8 parts of ~30
    dedup.dedup_semantic(store, 0.99, fit_bytes=1024, most=most)
    # one batch: keep order is item_id order, so either of a pair may be the one kept
    found = {frozenset(p) for p in dup_map(store, "semantic").items()}
    assert {frozenset((i, 600 + i)) for i in range(40)} <= found
