"""thresher embed / search end to end: a real store, real Ray actors, the real MiniLM."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thresher.flows import dedup
from thresher.flows.demo_data import make_records
from thresher.flows.embed import IndexConfig, embed, search, update_index
from thresher.scoring.embedders import EmbedderConfig
from thresher.storage import vectors as vstore
from thresher.storage.check import check
from thresher.storage.ingest import IngestConfig, ingest
from thresher.storage.store import Store

from tests.helpers import clustered, write_jsonl

FAST = EmbedderConfig(max_seq_length=32, batch_size=32)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory, ray_session) -> Store:
    tmp = tmp_path_factory.mktemp("embed")
    recs = make_records(400, seed=5)
    write_jsonl(tmp / "a.jsonl", recs[:300])
    write_jsonl(tmp / "b.jsonl", recs[300:])
    store = Store.init(tmp / "store")
    ingest(store, [str(tmp / "a.jsonl")], IngestConfig(id_column="doc_id", text_column="text"))
    report = embed(store, FAST, IndexConfig(dims=(16, 64)))
    assert report.embedded == 300 and report.index is not None
    ingest(store, [str(tmp / "b.jsonl")], IngestConfig(id_column="doc_id", text_column="text"))
    return store


def test_embed_runs_as_ray_actors_and_only_new_items_later(embedded: Store) -> None:
    runs = embedded.query(
        "SELECT flow, rows_in FROM runs WHERE flow IN ('embed', 'index') ORDER BY run_id"
    ).to_pylist()
    assert runs[0] == {"flow": "embed", "rows_in": 300}
    report = embed(embedded, FAST, IndexConfig(dims=(16, 64)))
    assert (report.embedded, report.already) == (100, 300)
    info = report.index
    assert info is not None and info.n_items == 400 and info.version == 2
    assert len(info.parts) == 2  # the add wrote only its own part
    again = embed(embedded, FAST, IndexConfig(dims=(16, 64)))
    assert again.embedded == 0 and again.index == info  # no new work, no new version
    vectors = embedded.query("SELECT vector FROM embeddings").column(0).to_pylist()
    assert len(vectors) == 400 and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert embedded.query("SELECT dims FROM indexes ORDER BY version").column(0).to_pylist() == [
        "[16, 64, 384]",
        "[16, 64, 384]",
    ]


def test_search_like_and_text(embedded: Store) -> None:
    some = embedded.query(
        "SELECT item_id, doc_id, text FROM items ORDER BY item_id LIMIT 1"
    ).to_pylist()[0]
    hits = search(embedded, like=some["item_id"], k=5)
    # the hits show the user's own id column next to thresher's item_id
    assert hits.column_names == ["rank", "item_id", "similarity", "doc_id", "text"]
    assert search(embedded, like_id=str(some["doc_id"]), k=5).equals(hits)
    assert hits.num_rows == 5 and some["item_id"] not in hits.column("item_id").to_pylist()
    sims = hits.column("similarity").to_pylist()
    assert sims == sorted(sims, reverse=True)
    by_text = search(embedded, text=some["text"], k=3)
    assert by_text.column("item_id")[0].as_py() == some["item_id"]
    assert by_text.column("similarity")[0].as_py() == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"like": 12345678}, "has no 'minilm' embedding"),
        ({"text": "x", "model": "nope"}, "no embeddings for model 'nope'"),
        ({"text": "   "}, "--text is empty"),
        ({}, "exactly one of"),
        ({"like_id": "no-such-doc"}, "no item has doc_id = 'no-such-doc'"),
        ({"like": 1, "like_id": "1"}, "exactly one of"),
    ],
)
def test_search_errors_are_clear(embedded: Store, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        search(embedded, **kwargs)


def test_store_without_embeddings_says_so(store: Store) -> None:
    with pytest.raises(ValueError, match="has no embeddings"):
        search(store, text="anything")


def test_ingested_vectors_are_searchable_with_no_extra_flags(store: Store, tmp_path) -> None:
    x = clustered(500, 24, seed=4)
    table = pa.table({"id": np.arange(500), "vec": pa.array(list(x * 3.0), pa.list_(pa.float32()))})
    pq.write_table(table, tmp_path / "v.parquet")
    ingest(
        store, [str(tmp_path / "v.parquet")], IngestConfig(id_column="id", embedding_column="vec")
    )
    first = store.query("SELECT item_id FROM items WHERE id = 0").column(0)[0].as_py()
    hits = search(store, like=first, k=5)
    truth = np.argsort(-(x[1:] @ x[0]))[:5] + 1
    got_ids = (
        store.query(
            "SELECT id FROM items WHERE list_contains(?, item_id)",
            [hits.column(1).to_pylist()],
        )
        .column(0)
        .to_pylist()
    )
    assert sorted(got_ids) == sorted(truth.tolist())
    with pytest.raises(ValueError, match="ingested vectors"):
        search(store, text="hello")


def _ingest_vectors(store: Store, path, x: np.ndarray, start: int = 0) -> None:
    ids = np.arange(start, start + len(x))
    pq.write_table(pa.table({"id": ids, "vec": pa.array(list(x), pa.list_(pa.float32()))}), path)
    ingest(store, [str(path)], IngestConfig(id_column="id", embedding_column="vec"))


def test_dedup_leaves_the_shortlist_index_to_the_first_search(store: Store, tmp_path) -> None:
    x = clustered(500, 24, seed=6)
    _ingest_vectors(store, tmp_path / "v.parquet", x)
    dedup.dedup_semantic(store, 0.99)
    built = vstore.latest_index(store, "vec")
    assert built is not None and built.n_items == 500
    assert not built.has_shortlist  # dedup reads only the rotated vectors
    assert not check(store).problems
    first = store.query("SELECT item_id FROM items WHERE id = 0").column(0)[0].as_py()
    hits = search(store, like=first, k=5)
    got = store.query(
        "SELECT id FROM items WHERE list_contains(?, item_id)", [hits.column(1).to_pylist()]
    )
    assert sorted(got.column(0).to_pylist()) == sorted(
        (np.argsort(-(x[1:] @ x[0]))[:5] + 1).tolist()
    )
    searched = vstore.latest_index(store, "vec")
    assert searched is not None and searched.has_shortlist
    assert searched.version == built.version + 1  # the same vectors, a shortlist added
    assert (searched.parts, searched.rotation_file) == (built.parts, built.rotation_file)
    assert search(store, like=first, k=5).equals(hits)
    assert vstore.latest_index(store, "vec") == searched  # built once
    assert not check(store).problems


def test_dedup_and_score_keep_the_settings_of_the_index(store: Store, tmp_path) -> None:
    from thresher.flows.score import score

    x = clustered(700, 24, seed=7)
    _ingest_vectors(store, tmp_path / "a.parquet", x[:500])
    first = update_index(store, "vec", IndexConfig(dims=(8, 24), kind="flat"))
    _ingest_vectors(store, tmp_path / "b.parquet", x[500:], start=500)
    dedup.dedup_semantic(store, 0.99)
    score(store, metrics=("density",))
    after = vstore.latest_index(store, "vec")
    assert after is not None and after.n_items == 700  # the new vectors added ...
    assert (after.kind, after.dims, after.rotation_file) == ("flat", [8, 24], first.rotation_file)
    assert after.has_shortlist  # ... to the shortlist it had, not rebuilt with the defaults


def test_embed_options_change_only_the_settings_they_name(store: Store, tmp_path) -> None:
    from click.testing import CliRunner

    from thresher.flows.cli import cli
    from thresher.flows.embed import changed_settings

    recs = make_records(60, seed=9)
    write_jsonl(tmp_path / "a.jsonl", recs[:40])
    write_jsonl(tmp_path / "b.jsonl", recs[40:])
    ingest(store, [str(tmp_path / "a.jsonl")], IngestConfig(id_column="doc_id", text_column="text"))
    args = ["embed", str(store.root), "--max-seq-length", "16", "-q"]
    first = CliRunner().invoke(cli, [*args, "--index", "flat", "--rotation", "identity"])
    assert first.exit_code == 0, first.output
    built = vstore.latest_index(store, "minilm")
    assert built is not None and (built.kind, built.rotation) == ("flat", "identity")
    ingest(store, [str(tmp_path / "b.jsonl")], IngestConfig(id_column="doc_id", text_column="text"))
    later = CliRunner().invoke(cli, args)  # no index option: the new items added as it is
    assert later.exit_code == 0, later.output
    added = vstore.latest_index(store, "minilm")
    assert added is not None and added.n_items == 60
    assert (added.kind, added.rotation, added.rotation_file) == (
        "flat",
        "identity",
        built.rotation_file,
    )
    sq8 = changed_settings(store, "minilm", codes="sq8")  # one option: only that one changes
    assert (sq8.kind, sq8.rotation, sq8.codes, sq8.refit) == ("flat", "identity", "sq8", False)
    wider = changed_settings(store, "minilm", dims=(32, 384))
    assert wider.dims == (32, 384) and wider.shortlist_dim is None  # the default for new dims
