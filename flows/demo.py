"""`thresher demo`: every stage built so far, on the bundled corpus, with a commentary."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from thresher.flows import dedup
from thresher.flows.demo_data import write_demo_sources
from thresher.flows.embed import embed, search
from thresher.flows.output import summary_table
from thresher.flows.score import score
from thresher.scoring.embedders import EmbedderConfig
from thresher.storage.ingest import IngestConfig, ingest
from thresher.storage.sql import read_only_query
from thresher.storage.store import Store

QUERIES = {
    "items per topic": "SELECT topic, count(*) AS items FROM items GROUP BY topic ORDER BY topic",
    "why rows were rejected": "SELECT source, row, reason FROM rejects ORDER BY source, row",
    "duplicates by method": "SELECT method, count(*) AS items, round(min(similarity), 3) AS "
    "min_similarity FROM duplicates GROUP BY method ORDER BY method",
    "the hardest (least typical) kept item of each cluster": "SELECT c.cluster_id, "
    "arg_max(i.text, c.distance) AS hardest, round(max(c.distance), 3) AS distance "
    "FROM clusters c JOIN items i USING (item_id) GROUP BY c.cluster_id ORDER BY c.cluster_id",
    "a near duplicate and the item kept in its place": "SELECT i.text AS dropped, "
    "k.text AS kept, round(d.similarity, 3) AS jaccard FROM duplicates d JOIN items i "
    "USING (item_id) JOIN items k ON k.item_id = d.kept_id WHERE d.method = 'fuzzy' "
    "ORDER BY d.similarity, d.item_id LIMIT 2",
}


def run_demo(root: Path, *, quiet: bool, echo: Callable[[str], object], progress) -> Store:
    """Build a store at `root` from the demo corpus and show what each stage did."""
    sources = write_demo_sources(root / "sources")
    store = Store.init(root / "store")
    echo(f"demo store: {store.root}")

    # ingest: three formats, bad rows go to `rejects`
    with progress("ingest", quiet) as update:
        report = ingest(
            store,
            [str(p) for p in sources],
            IngestConfig(id_column="doc_id", text_column="text", label_column="topic"),
            on_progress=update,
        )
    echo(f"\ningest: {report.kept} items kept, {report.rejected} rows rejected")

    # embed: MiniLM on Ray actors, PCA-rotated Matryoshka prefixes, FAISS index
    with progress("embed", quiet) as update:
        emb = embed(store, EmbedderConfig(max_seq_length=64), on_progress=update)
    assert emb.index is not None
    echo(
        f"embed: {emb.embedded} items, prefixes {emb.index.dims}, "
        f"shortlist on {emb.index.shortlist_dim} dims"
    )

    # dedup: exact, then fuzzy (MinHash-LSH), then semantic (SemDeDup)
    with progress("dedup", quiet) as update:
        passes = [
            dedup.dedup_exact(store, update),
            dedup.dedup_fuzzy(store, 0.8, update),
            dedup.dedup_semantic(store, 0.95),
        ]
    echo("dedup: " + ", ".join(f"{p.duplicates} {p.method}" for p in passes))

    # score: prototype distance (k-means, one cluster per topic), density, probe uncertainty
    with progress("score", quiet) as update:
        sc = score(store, on_progress=update)
    echo(
        f"score: {sc.scored.get('prototype_distance', 0)} kept items scored, {sc.clusters} clusters"
    )

    for title, query in QUERIES.items():
        echo(f'\n{title}:\n  thresher sql {store.root} "{query}"')
        echo(summary_table(read_only_query(store, query).to_pylist()))
    probe = "bread baking in a hot oven"
    echo(f'funnel search:\n  thresher search {store.root} --text "{probe}" -k 3')
    echo(summary_table(search(store, text=probe, k=3).to_pylist()))
    echo(f'next: thresher sql {store.root} "SELECT * FROM runs"')
    return store
