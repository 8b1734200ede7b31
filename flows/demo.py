"""`thresher demo`: every stage built so far, on the bundled corpus, with a commentary."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from thresher.flows.dedup import dedup_exact
from thresher.flows.demo_data import write_demo_sources
from thresher.flows.output import summary_table
from thresher.storage.ingest import IngestConfig, ingest
from thresher.storage.sql import read_only_query
from thresher.storage.store import Store

QUERIES = {
    "items per topic": "SELECT topic, count(*) AS items FROM items GROUP BY topic ORDER BY topic",
    "why rows were rejected": "SELECT source, row, reason FROM rejects ORDER BY source, row",
    "a duplicate and the item kept in its place": "SELECT d.item_id, i.text AS dropped, "
    "k.text AS kept FROM duplicates d JOIN items i USING (item_id) "
    "JOIN items k ON k.item_id = d.kept_id "
    "WHERE i.text <> k.text ORDER BY d.item_id LIMIT 3",
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

    # dedup: exact duplicates of normalized text, through Ray
    with progress("dedup (exact)", quiet) as update:
        dd = dedup_exact(store, on_progress=update)
    echo(f"dedup: {dd.duplicates} exact duplicates of {dd.items} items")

    for title, query in QUERIES.items():
        echo(f'\n{title}:\n  thresher sql {store.root} "{query}"')
        echo(summary_table(read_only_query(store, query).to_pylist()))
    echo(f'next: thresher sql {store.root} "SELECT * FROM runs"')
    return store
